"""Report: paper-style tables and figures of a result store (``skad-transfer report``)."""

import csv
import json

import numpy as np
import pytest

from skad_transfer.bench import ResultStore, interventions, make_tasks, non_semantic_shift, run_grid, summarize
from skad_transfer.bench import report, runner
from skad_transfer.bench.store import config_id
from skad_transfer.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(weights=None, width=4, epochs=1, batch_size=16, device="cpu")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One-vs-rest (2 classes), interventions and a 2-step shift, tiny runs, two seeds; test features kept."""
    path = tmp_path_factory.mktemp("store")
    options = {**runner.CLI_DEFAULTS, "dataset": "synthetic", "protocol": "one-vs-rest", "classes": [0, 1],
               "n_normal": 16, "n_test": 24, "n_outlier": 16}
    ovr = runner.build_splits(options)
    tasks = make_tasks(["adib", "knn"], ovr, [0, 1], protocol="one-vs-rest", dataset="synthetic", settings=TINY)
    iv = interventions(n_normal=16, n_outlier=16, n_test=16, random_state=0)
    tasks += make_tasks(["adib", "knn"], iv, [0], protocol="interventions", dataset="synthetic", settings=TINY)
    shift = non_semantic_shift(colors=["red", "green"], n_normal=16, n_outlier=16, n_test=16, random_state=0)
    tasks += make_tasks(["knn"], shift, [0, 1], protocol="non-semantic-shift", dataset="synthetic", settings=TINY)
    run_grid(tasks, store=path, save_features=True)
    return path


def _md_table(text, title_start):
    """Rows (lists of cells) of the markdown table under the heading starting with title_start."""
    block = text.split(f"## {title_start}", 1)[1]
    out, started = [], False
    for ln in block.splitlines():
        if not ln.startswith("|"):
            if started:
                break
            continue
        started = True
        if not ln.startswith("|---"):
            out.append([c.strip() for c in ln.strip("|").split("|")])
    return out


def test_report_cli_tables_and_figures(store, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", str(store), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "skad-transfer report" in md and "Settings:" in md and "epochs 1" in md and "random init" in md

    rows = {(r["protocol"], r["split"], r["method"]): r for r in summarize(store)}
    table = _md_table(md, "Table 5")
    header, body = table[0], {row[0]: row for row in table[1:]}
    assert header == ["method", "circle", "square", "mean"]
    assert set(body) == {"adib", "knn"}
    for method in ("adib", "knn"):
        means = []
        for j, split in enumerate(["0:circle", "1:square"], start=1):
            r = rows[("one-vs-rest", split, method)]
            assert r["n_seeds"] == 2
            assert body[method][j] == f"{100 * r['auc_mean']:.1f} ({100 * r['auc_std']:.1f})"
            means.append(r["auc_mean"])
        assert body[method][3].startswith(f"{100 * np.mean(means):.1f} (")

    with open(out / "table5_synthetic.csv", newline="") as handle:
        parsed = list(csv.reader(handle))
    assert parsed[0][:3] == ["method", "circle", "circle std"] and len(parsed) == 3
    adib = next(p for p in parsed if p[0] == "adib")
    assert float(adib[1]) == pytest.approx(100 * rows[("one-vs-rest", "0:circle", "adib")]["auc_mean"], abs=1e-3)

    iv = _md_table(md, "Figure 1")
    assert iv[0] == ["method", "color->blue", "shape->square", "size->large", "mean"]
    assert iv[1][1] == f"{100 * rows[('interventions', 'color->blue', 'adib')]['auc_mean']:.1f} (0.0)"
    shift = _md_table(md, "Figure 2")
    assert shift[0] == ["method", "colors=1", "colors=2", "mean"] and [r[0] for r in shift[1:]] == ["knn"]

    for name in ("fig1_interventions_synthetic.png", "fig2_shift_synthetic.png", "fig4_top_anomalies.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
        assert f"]({name})" in md
    assert "fig3_tsne" not in md                                       # only with --tsne
    for absent in ("table2", "table3", "table6"):
        assert not list(out.glob(f"{absent}*"))
    assert "Table 2" not in md and "Table 6" not in md
    for name in ("table5_synthetic", "fig1_interventions_synthetic", "fig2_shift_synthetic"):
        assert (out / f"{name}.md").is_file() and (out / f"{name}.csv").is_file()


def test_recreate_split_matches_stored_labels(store):
    for record in runner.load_records(store):
        split = report.recreate_split(record)
        labels = np.load(store / "runs" / f"{record['run_id']}.npz")["labels"]
        np.testing.assert_array_equal(split.y_test, labels)
        assert split.name == record["split"]


@pytest.mark.parametrize("protocol", ["interventions", "one-vs-rest"])
def test_tsne_draws_the_features_stored_at_run_time(store, tmp_path, monkeypatch, protocol):
    adib = next(r for r in runner.load_records(store) if r["method"] == "adib" and r["protocol"] == protocol)
    features = ResultStore(store).read_scores(adib["run_id"])["features"]
    assert features.dtype == np.float32 and len(features) == adib["n_test"]
    # the report fits nothing and computes no features: both fail from here on
    from skad_transfer.detectors.base import TransferDetector
    from skad_transfer.features import LayerFeatures

    monkeypatch.setattr(TransferDetector, "fit", lambda *a, **k: pytest.fail("the report fitted a detector"))
    monkeypatch.setattr(LayerFeatures, "transform", lambda *a, **k: pytest.fail("the report computed features"))
    result = report.build_report(store, tmp_path, run_id=adib["run_id"], tsne=True, top_k=4, verbose=False)
    assert result.figures["fig3_tsne"].read_bytes()[:8] == PNG
    assert result.figures["fig4_top_anomalies"].read_bytes()[:8] == PNG
    assert not result.skipped


def test_tsne_of_a_run_without_stored_features_is_skipped_with_the_fix(tmp_path):
    split = interventions(n_normal=16, n_outlier=16, n_test=16, random_state=0)[0]
    run_grid(make_tasks(["knn"], split, [0], protocol="interventions", dataset="synthetic", settings=TINY),
             store=tmp_path)
    result = report.build_report(tmp_path, tmp_path / "out", tsne=True, verbose=False)
    assert "fig3_tsne" not in result.figures and "fig4_top_anomalies" in result.figures
    assert any(s.startswith("fig3_tsne.png: LookupError") and "--save-features" in s for s in result.skipped)


def _fake(store, *, protocol, dataset, split, method, seed, auc, ap, meta, oe="tinyimagenet", settings=None):
    config = {"method": method, "protocol": protocol, "dataset": dataset, "split": split, "split_meta": meta,
              "outlier_exposure": oe, "n_normal": 10, "n_test": 10, "seed": seed,
              "settings": settings or {"epochs": 30, "weights": "default", "width": None, "lr": 0.01,
                                       "batch_size": 64},
              "method_params": {}}
    rid = config_id(config)
    record = {"run_id": rid, "method": method, "protocol": protocol, "dataset": dataset, "split": split,
              "seed": seed, "config": config, "params": {}, "metrics": {"auc": auc, "ap": ap},
              "timing": {"fit_seconds": 1.0, "score_seconds": 0.1}, "versions": {}}
    (store / "runs").mkdir(parents=True, exist_ok=True)
    (store / "runs" / f"{rid}.json").write_text(json.dumps(record))
    np.savez(store / "runs" / f"{rid}.npz", scores=np.zeros(4), labels=np.array([1, 1, -1, -1]))


def test_fake_store_tables_2_3_6(tmp_path):
    store = tmp_path / "store"
    names = ["airplane", "bird"]
    for seed in (0, 1):
        for c, name in enumerate(names):
            for method, base in (("adib", 0.9), ("adra", 0.8)):
                meta = {"anomaly_class": c, "class_name": name}
                _fake(store, protocol="leave-one-out", dataset="cifar10", split=f"{c}:{name}", method=method,
                      seed=seed, auc=base + 0.01 * seed, ap=base - 0.2 + 0.02 * c, meta=meta)
                _fake(store, protocol="leave-one-out", dataset="stl10", split=f"{c}:{name}", method=method,
                      seed=seed, auc=base, ap=base - 0.4 + 0.02 * seed, meta=meta)
                for oe in ("svhn", "cifar100"):
                    _fake(store, protocol="oe-ablation", dataset="cifar10", split=f"{c}:{name}|oe={oe}",
                          method=method, seed=seed, auc=base - (0.2 if oe == "svhn" else 0) + 0.01 * c, ap=0.5,
                          meta={"normal_class": c, "class_name": name, "oe": oe}, oe=oe)
    out = tmp_path / "out"
    result = report.build_report(store, out, verbose=False)
    assert set(result.tables) == {"table2_cifar10", "table3_stl10", "table6_cifar10"}
    md = result.markdown.read_text()
    t2 = _md_table(md, "Table 2")
    assert t2[0] == ["held-out class", "adib AUC", "adib AP", "adra AUC", "adra AP"]
    assert [r[0] for r in t2[1:]] == ["airplane", "bird", "mAUC", "mAP"]
    assert t2[1][1] == "90.5 (0.5)" and t2[2][2] == "72.0 (0.0)" and t2[3][1] == "90.5 (0.5)"
    t3 = _md_table(md, "Table 3")
    assert t3[0] == ["held-out class", "adib", "adra"] and t3[-1][0] == "mAP" and t3[1][1] == "51.0 (1.0)"
    t6 = _md_table(md, "Table 6")
    assert t6[0] == ["method", "cifar100", "svhn"]
    assert t6[1] == ["adib", "90.5 (0.0)", "70.5 (0.0)"]
    # Fig. 4 needs real images (not in the store, no --data): skipped with a message, the report is still written
    assert any(s.startswith("fig4_top_anomalies.png: LookupError") for s in result.skipped) and "Skipped" in md
    assert "fig4_top_anomalies" not in result.figures
    cifar = next(r for r in runner.load_records(store) if r["dataset"] == "cifar10")
    with pytest.raises(LookupError, match="--data"):
        report.recreate_split(cifar)
    for path in result.tables.values():
        assert list(csv.reader(path.open()))[0]


def test_equivalent_command_leaves_out_settings_at_the_estimators_defaults(tmp_path):
    store = tmp_path / "store"
    defaults = {"epochs": None, "steps": None, "weights": "default", "width": None, "lr": None, "batch_size": None}
    _fake(store, protocol="leave-one-out", dataset="cifar10", split="0:airplane", method="knn", seed=0, auc=0.6,
          ap=0.1, meta={"anomaly_class": 0, "class_name": "airplane"}, settings=defaults)
    md = report.build_report(store, tmp_path / "out", verbose=False).markdown.read_text()
    command = next(line for line in md.splitlines() if "skad-transfer bench" in line)
    assert "None" not in command and "--epochs" not in command and "--lr" not in command
    assert "--weights default" in command and "--classes 0" in command


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        report.build_report(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no finished runs"):
        report.build_report(tmp_path)


def test_tables_read_split_metadata_not_split_names(tmp_path):
    store = tmp_path / "store"
    # split names that say nothing: the class and the OE corpus come from the split metadata
    _fake(store, protocol="leave-one-out", dataset="cifar10", split="first", method="adib", seed=0, auc=0.7, ap=0.2,
          meta={"anomaly_class": 0, "class_name": "airplane"})
    _fake(store, protocol="oe-ablation", dataset="cifar10", split="second", method="adib", seed=0, auc=0.8, ap=0.3,
          meta={"normal_class": 1, "class_name": "bird", "oe": "svhn"}, oe="svhn")
    md = report.build_report(store, tmp_path / "out", verbose=False).markdown.read_text()
    assert [r[0] for r in _md_table(md, "Table 2")[1:]] == ["airplane", "mAUC", "mAP"]
    assert _md_table(md, "Table 6")[:2] == [["method", "svhn"], ["adib", "80.0 (0.0)"]]
    assert "--oe-corpora svhn" in md

    bare = tmp_path / "bare"
    _fake(bare, protocol="leave-one-out", dataset="cifar10", split="0:airplane", method="adib", seed=0, auc=0.7,
          ap=0.2, meta={"anomaly_class": 0})
    with pytest.raises(LookupError, match="split metadata has no 'class_name'"):
        report.build_report(bare, tmp_path / "out2", verbose=False)
