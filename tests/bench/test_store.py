"""The result store: run ids and variants pinned, layout, reading and writing."""

import json
from pathlib import Path

import numpy as np
import pytest

from skad_transfer.bench import ResultStore, make_tasks, oe_ablation, one_vs_rest, runner
from skad_transfer.bench.store import StoreError, config_id, corpus_key, corpus_label, variant_id

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"

# Run ids and summarize() variants of a fixed grid, computed with the code before the store had
# its own module (commit d9be434). Existing stores are named by these hashes: a change here would
# make every rerun redo every stored run and split one table row into two.
PINNED = [  # method, split, seed, run id, variant
    ("adib", "0:a", 0, "da794ee54f58de2e", "4fd8473c"),
    ("adib", "0:a", 3, "2a7f6b6becf2b417", "4fd8473c"),
    ("knn", "0:a", 0, "0d0fb977a7555432", "76c3a828"),
    ("knn", "0:a", 3, "f45fd453fdfe0f48", "76c3a828"),
    ("adib", "0:a|oe=arr", 0, "ee3e7cc61b25ec8a", "9eb1641c"),
    ("adib", "0:a|oe=arr", 3, "cf5c651b2c611f70", "9eb1641c"),
    ("knn", "0:a|oe=arr", 0, "181e55e72f832496", "d17546dc"),
    ("knn", "0:a|oe=arr", 3, "061020ad5ae5787b", "d17546dc"),
    ("adib", "0:a|oe=none", 0, "abbf7ef5a03e68c8", "9b6bb393"),
    ("adib", "0:a|oe=none", 3, "891c3af6fc81bb47", "9b6bb393"),
    ("knn", "0:a|oe=none", 0, "dc8f232e4efff6a0", "2c6b4e0b"),
    ("knn", "0:a|oe=none", 3, "9bc576fdcfe82d5e", "2c6b4e0b"),
]


def _pinned_tasks():
    X = np.arange(40 * 4 * 4 * 3, dtype=np.uint8).reshape(40, 4, 4, 3)
    y = np.repeat([0, 1], 20)
    oe = np.arange(6 * 4 * 4 * 3, dtype=np.uint8).reshape(6, 4, 4, 3)
    base = one_vs_rest(X, y, X, y, 0, outlier_exposure="tinyimagenet", class_names=["a", "b"], random_state=0)
    splits = [base, *oe_ablation(base, {"arr": oe, "none": None})]
    return make_tasks(["adib", "knn"], splits, [0, 3], protocol="one-vs-rest", dataset="toy",
                      settings={"steps": 10, "weights": None, "width": 4},
                      method_params={"knn": {"n_neighbors": 3}})


def test_run_ids_are_those_of_existing_stores():
    tasks = _pinned_tasks()
    assert [(t.method, t.split.name, t.seed, runner.run_id(t)) for t in tasks] == [p[:4] for p in PINNED]


def test_variants_are_those_of_existing_stores():
    assert [variant_id(t.config()) for t in _pinned_tasks()] == [p[4] for p in PINNED]


@pytest.mark.skipif(not RESULTS.is_dir(), reason="no benchmarks/results in this checkout")
def test_every_committed_run_is_named_by_its_configuration():
    stores = sorted(p.parent for p in RESULTS.glob("*/runs"))
    records = [r for store in stores for r in ResultStore(store).records()]
    assert records
    for record in records:
        assert config_id(record["config"]) == record["run_id"]


def test_write_read_round_trip_keeps_the_layout(tmp_path):
    store = ResultStore(tmp_path / "store")
    rid = config_id({"method": "knn", "seed": 0})
    record = {"run_id": rid, "method": "knn", "protocol": "one-vs-rest", "dataset": "toy", "split": "0:a",
              "seed": 0, "config": {"method": "knn", "seed": 0}, "metrics": {"auc": 0.5, "ap": 0.5},
              "timing": {"fit_seconds": 1.0}}
    assert rid not in store and store.records() == []
    scores, labels = np.array([0.1, -0.2, 0.3]), np.array([1, -1, 1])
    path = store.write(record, scores=scores, labels=labels)
    assert path == tmp_path / "store" / "runs" / f"{rid}.json" and rid in store
    assert sorted(p.name for p in store.runs_dir.iterdir()) == [f"{rid}.json", f"{rid}.npz"]
    assert json.loads(path.read_text()) == record == store.read(rid) == store.records()[0]
    arrays = store.read_scores(rid)
    assert sorted(arrays) == ["labels", "scores"]
    np.testing.assert_array_equal(arrays["scores"], scores)
    np.testing.assert_array_equal(arrays["labels"], labels)
    store.write(record, scores=scores, labels=labels, features=np.ones((3, 2), np.float32))
    assert store.read_scores(rid)["features"].shape == (3, 2)
    # a ResultStore is path-like: the runner's functions take it as a folder
    assert runner.load_records(store) == [record] and runner.summarize(store)[0]["n_seeds"] == 1
    with pytest.raises(FileNotFoundError, match="no scores file"):
        store.read_scores("0123456789abcdef")


def test_scores_that_do_not_match_their_labels_are_a_store_error(tmp_path):
    store = ResultStore(tmp_path)
    rid = "0123456789abcdef"
    store.runs_dir.mkdir()
    np.savez(store.path(rid, ".npz"), scores=np.zeros(3), labels=np.ones(3), features=np.zeros((2, 4)))
    with pytest.raises(StoreError, match="features .* not one row per label"):
        store.read_scores(rid)
    np.savez(store.path(rid, ".npz"), scores=np.zeros(3), labels=np.ones(4))
    with pytest.raises(StoreError, match="not one score per label"):
        store.read_scores(rid)


def test_corpus_keys_and_labels():
    array = np.zeros((2, 4, 4, 3), np.uint8)
    key = corpus_key(array)
    assert key.startswith("array(2, 4, 4, 3):") and len(key.split(":")[1]) == 12
    assert corpus_key(array) == key and corpus_key(array + 1) != key   # the digest is of the contents
    assert corpus_label(key) == "array(2, 4, 4, 3)"
    for unchanged in ("tinyimagenet", "/data/oe:v2.npy", "array(2, 4, 4, 3)", None):
        assert corpus_label(unchanged) == unchanged
    assert corpus_key(Path("oe.npy")) == "oe.npy" and corpus_key(None) is None
    config = {"settings": {"lr": 0.1}, "method_params": {}, "outlier_exposure": key}
    assert variant_id(config, outlier_exposure="label") == variant_id({**config, "outlier_exposure": "array(2, 4, 4, 3)"})
    assert variant_id(config, outlier_exposure=None) == variant_id({**config, "outlier_exposure": None})
    assert variant_id(config) != variant_id(config, outlier_exposure="label")
