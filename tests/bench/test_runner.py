"""Runner: grids through run_grid and the CLI, the result store, metrics, summaries, devices."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from skad_transfer.bench import ResultStore, interventions, make_estimator, make_tasks, run_grid, summarize
from skad_transfer.bench import runner
from skad_transfer.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(weights=None, width=4, epochs=1, batch_size=16, device="cpu")


@pytest.fixture(scope="module")
def split():
    return interventions(n_normal=24, n_outlier=24, n_test=16, random_state=0)[0]


def _tasks(split, methods=("adib", "knn"), seeds=(0, 1)):
    return make_tasks(list(methods), split, list(seeds), protocol="interventions", dataset="synthetic",
                      settings=TINY)


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown method 'nope'; valid methods are \['adib', 'adra'"):
        make_estimator("nope")
    with pytest.raises(ValueError, match="settings: unknown keys"):
        make_estimator("adib", {"epoch": 1})
    est = make_estimator("ewc", TINY, random_state=3)
    assert est.regularizer == "ewc" and est.epochs == 1 and est.random_state == 3


def test_grid_store_metrics_and_rerun(split, tmp_path, monkeypatch):
    tasks = _tasks(split)
    assert len(tasks) == 4 and len({runner.run_id(t) for t in tasks}) == 4
    started = time.perf_counter()
    records = run_grid(tasks, store=tmp_path)
    wall = time.perf_counter() - started
    assert [(r["method"], r["seed"]) for r in records] == [("adib", 0), ("adib", 1), ("knn", 0), ("knn", 1)]
    # Each run's own timings: positive, and together within the wall time of the grid around them.
    assert sum(r["timing"]["fit_seconds"] + r["timing"]["score_seconds"] for r in records) < wall
    for record in records:
        path = tmp_path / "runs" / f"{record['run_id']}.json"
        stored = json.loads(path.read_text())
        assert stored["protocol"] == "interventions" and stored["split"] == "color->blue"
        assert stored["config"]["settings"]["epochs"] == 1 and "device" not in stored["config"]["settings"]
        assert {"python", "torch", "sklearn", "skad_transfer", "device", "commit", "threads"} <= set(stored["versions"])
        # Provenance: the thread count the run had, and what precision a deep method trained in.
        import torch

        from skad_transfer.device import Precision, resolve_device

        assert stored["versions"]["threads"] == torch.get_num_threads()
        trained = Precision.resolve(resolve_device("cpu"), record["params"].get("precision", "auto")).name
        assert stored["versions"]["training_precision"] == (None if record["method"] == "knn" else trained)
        assert stored["timing"] == record["timing"]
        assert stored["timing"]["fit_seconds"] > 0 and stored["timing"]["score_seconds"] > 0
        data = np.load(path.with_suffix(".npz"))
        np.testing.assert_array_equal(data["labels"], split.y_test)
        anomaly = data["labels"] == -1
        assert stored["metrics"]["auc"] == pytest.approx(roc_auc_score(anomaly, -data["scores"]))
        assert stored["metrics"]["ap"] == pytest.approx(average_precision_score(anomaly, -data["scores"]))
        # the anomaly is the positive class: AP differs from the normal-positive AP in general
        assert stored["metrics"]["auc"] == pytest.approx(roc_auc_score(data["labels"], data["scores"]))
    assert not list((tmp_path / "runs").glob("*.tmp"))

    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    fits = []
    monkeypatch.setattr(runner, "_fit", lambda est, s, root=None: fits.append(est) or est.fit(s.X_normal))
    again = run_grid(tasks, store=tmp_path)
    assert fits == [] and all(r["skipped"] for r in again)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()} == mtimes
    # one new seed: only that method x seed runs
    run_grid(_tasks(split, methods=("knn",), seeds=(0, 2)), store=tmp_path)
    assert len(fits) == 1


def test_interrupted_sweep_keeps_finished_runs(split, tmp_path, monkeypatch):
    tasks = _tasks(split, methods=("knn",), seeds=(0, 1, 2))
    real_fit, calls = runner._fit, []

    def flaky(estimator, s, root=None):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real_fit(estimator, s, root)

    monkeypatch.setattr(runner, "_fit", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_grid(tasks, store=tmp_path)
    files = sorted(p.name for p in (tmp_path / "runs").iterdir())
    first = runner.run_id(tasks[0])
    assert files == [f"{first}.json", f"{first}.npz"]
    json.loads((tmp_path / "runs" / f"{first}.json").read_text())
    monkeypatch.setattr(runner, "_fit", real_fit)
    records = run_grid(tasks, store=tmp_path)
    assert [bool(r.get("skipped")) for r in records] == [True, False, False]


def test_errors_continue_records_failure(split, tmp_path, monkeypatch):
    def boom(estimator, s, root=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "_fit", boom)
    records = run_grid(_tasks(split, methods=("knn",), seeds=(0,)), store=tmp_path, errors="continue")
    assert "RuntimeError: boom" in records[0]["error"]
    assert not list((tmp_path / "runs").glob("*.json"))


def test_summarize_mean_std(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for i, (seed, auc, ap) in enumerate([(0, 0.6, 0.5), (1, 0.8, 0.7), (2, 1.0, 0.9)]):
        record = {"run_id": f"r{i}", "method": "adib", "protocol": "p", "dataset": "d", "split": "s", "seed": seed,
                  "config": {"settings": {"epochs": 1}, "method_params": {}, "outlier_exposure": None},
                  "metrics": {"auc": auc, "ap": ap}, "timing": {"fit_seconds": 1.0 + i, "score_seconds": 0.0}}
        (runs / f"r{i}.json").write_text(json.dumps(record))
    other = dict(record, run_id="x", method="knn", config={"settings": {"epochs": 2}})
    (runs / "x.json").write_text(json.dumps(other))
    rows = summarize(tmp_path)
    assert [r["method"] for r in rows] == ["adib", "knn"]
    row = rows[0]
    assert row["n_seeds"] == 3 and row["seeds"] == [0, 1, 2]
    assert row["auc_mean"] == pytest.approx(0.8) and row["auc_std"] == pytest.approx(np.std([0.6, 0.8, 1.0]))
    assert row["ap_mean"] == pytest.approx(0.7) and row["ap_std"] == pytest.approx(np.std([0.5, 0.7, 0.9]))
    assert row["fit_seconds"] == pytest.approx(2.0)
    assert rows[1]["n_seeds"] == 1 and rows[1]["auc_std"] == 0.0
    assert summarize(tmp_path / "empty") == []


def test_cli_grid_and_rerun(tmp_path, capsys):
    store = tmp_path / "store"
    argv = ["bench", "--dataset", "synthetic", "--protocol", "one-vs-rest", "--classes", "0", "--methods", "adib",
            "knn", "--seeds", "0", "1", "--weights", "none", "--width", "4", "--epochs", "1", "--batch-size", "16",
            "--device", "cpu", "--n-normal", "16", "--n-outlier", "16", "--n-test", "20", "--store", str(store)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "4 runs: 4 new, 0 already stored" in out
    for name in ("one-vs-rest", "0:circle", "adib", "knn"):
        assert name in out
    assert len(list((store / "runs").glob("*.json"))) == 4 and len(list((store / "runs").glob("*.npz"))) == 4
    rows = summarize(store)
    assert [(r["method"], r["n_seeds"]) for r in rows] == [("adib", 2), ("knn", 2)]
    assert main(argv) == 0
    assert "4 runs: 0 new, 4 already stored" in capsys.readouterr().out


def test_cli_config_file_toml_and_flags_override(tmp_path, capsys):
    config = tmp_path / "bench.toml"
    config.write_text(f'dataset = "synthetic"\nprotocol = "one-vs-rest"\nclasses = [0]\nmethods = ["knn"]\n'
                      f'seeds = [0, 1]\nweights = "none"\nwidth = 4\ndevice = "cpu"\nn_normal = 20\nn_test = 30\n'
                      f'store = "{tmp_path / "s"}"\n[method_params.knn]\nn_neighbors = 3\n')
    assert main(["bench", "--config", str(config), "--seeds", "5", "--quiet"]) == 0
    records = runner.load_records(tmp_path / "s")
    assert [r["seed"] for r in records] == [5] and records[0]["config"]["method_params"] == {"n_neighbors": 3}
    assert records[0]["split"] == "0:circle"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"methodz": ["knn"]}))
    assert main(["bench", "--config", str(bad)]) == 2   # a user error: one line, status 2
    assert "unknown keys ['methodz']" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown keys"):
        runner.load_config(bad)


def test_devices_cuda_all_needs_gpus(split, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="cuda:all"):
        run_grid(_tasks(split), store=tmp_path, devices="cuda:all")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    devices, chunks = runner._device_plan(_tasks(split, seeds=(0, 1, 2)), "cuda:all")
    assert devices == ["cuda:0", "cuda:1"]
    assert [len(c) for c in chunks] == [3, 3]
    assert [t.seed for t in chunks[0]] == [0, 2, 1]


def test_backend_is_passed_to_joblib(split, tmp_path, monkeypatch):
    import threading

    import joblib

    tasks = _tasks(split, methods=("knn",), seeds=(0, 1))
    serial = run_grid(tasks, store=tmp_path / "serial")
    real_chunk, workers = runner._run_chunk, []

    def recording(*args, **kwargs):
        workers.append((os.getpid(), threading.current_thread() is threading.main_thread()))
        return real_chunk(*args, **kwargs)

    monkeypatch.setattr(runner, "_run_chunk", recording)
    with joblib.parallel_config(backend="threading"):
        records = run_grid(tasks, store=tmp_path / "threads", n_jobs=2)
    # The enclosing backend ran the jobs: threads of this process (loky's workers are other
    # processes, where this list would stay empty; a sequential run uses the main thread).
    assert workers == [(os.getpid(), False)] * 2
    assert [r["metrics"] for r in records] == [r["metrics"] for r in serial]
    for parallel, alone in zip(records, serial):
        scores = np.load(tmp_path / "threads" / "runs" / f"{parallel['run_id']}.npz")["scores"]
        np.testing.assert_array_equal(scores, np.load(tmp_path / "serial" / "runs" / f"{alone['run_id']}.npz")["scores"])


def test_device_list_runs_one_loky_process_per_device(split, tmp_path):
    tasks = _tasks(split, methods=("knn",), seeds=(0, 1))
    records = run_grid(tasks, store=tmp_path, devices=["cpu", "cpu"])
    assert [r["seed"] for r in records] == [0, 1] and all(r["versions"]["device"] == "cpu" for r in records)
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2


def test_cli_reads_registered_corpora_from_data_and_leaves_the_environment_alone(tmp_path, monkeypatch):
    from skad_transfer.data import corpora

    seen = []

    def opener(root):
        seen.append(str(root))
        assert os.environ["SKAD_TRANSFER_DATA"] == str(tmp_path / "elsewhere")
        return corpora.OutlierCorpus(np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8))

    monkeypatch.setattr(corpora, "_REGISTRY", dict(corpora._REGISTRY))
    corpora.register_corpus("test-data-root-probe", opener)
    monkeypatch.setenv("SKAD_TRANSFER_DATA", str(tmp_path / "elsewhere"))
    store, data = tmp_path / "store", tmp_path / "data"
    argv = ["bench", "--dataset", "synthetic", "--protocol", "one-vs-rest", "--classes", "0", "--methods", "adib",
            "--weights", "none", "--width", "4", "--epochs", "1", "--batch-size", "16", "--device", "cpu",
            "--n-normal", "16", "--n-test", "20", "--outlier-exposure", "test-data-root-probe", "--data", str(data),
            "--store", str(store), "--save-features", "--quiet"]
    assert main(argv) == 0
    assert seen == [str(data)]
    (record,) = runner.load_records(store)
    features = ResultStore(store).read_scores(record["run_id"])["features"]
    assert features.shape[0] == record["n_test"] == 20


def test_cli_cifar10_reads_torchvision_files_without_the_jpeg_copy_and_download_fetches_them(
        tmp_path, monkeypatch, capsys, skip_md5):
    import torchvision.datasets.cifar

    from conftest import write_fake_cifar10

    monkeypatch.setenv("SKAD_TRANSFER_HOME", str(tmp_path / "home"))
    data, store = tmp_path / "data", tmp_path / "store"
    argv = ["bench", "--dataset", "cifar10", "--data", str(data), "--protocol", "one-vs-rest", "--classes", "0",
            "--methods", "knn", "--weights", "none", "--width", "4", "--device", "cpu", "--outlier-exposure", "none",
            "--store", str(store), "--quiet"]
    assert main(argv) == 2  # nothing there yet: one line that says what to do
    assert "--download" in capsys.readouterr().err

    fetched = []

    def fake_download(self):  # what torchvision's download() leaves behind, without the network
        fetched.append(self.root)
        if not (Path(self.root) / "cifar-10-batches-py").exists():
            write_fake_cifar10(Path(self.root), per_batch=4)

    monkeypatch.setattr(torchvision.datasets.cifar.CIFAR10, "download", fake_download)
    assert main([*argv, "--download"]) == 0
    assert fetched and all(Path(root) == data for root in fetched)
    (record,) = runner.load_records(store)
    assert record["config"]["split_meta"]["source"] == "torchvision" and record["n_normal"] == 2
    assert main(argv) == 0  # the files are there now: read without --download, the same run (already stored)
    assert "0 new, 1 already stored" in capsys.readouterr().out


def test_printed_tables_say_what_their_numbers_are():
    from skad_transfer.bench import format_summary
    from skad_transfer.demo import format_table

    row = {"dataset": "d", "protocol": "p", "split": "s", "method": "adib", "variant": "v", "n_seeds": 2,
           "auc_mean": 0.9, "auc_std": 0.01, "ap_mean": 0.5, "ap_std": 0.02, "fit_seconds": 3.0}
    summary = format_summary([row]).splitlines()
    assert "AUC and AP" in summary[0] and "in %" in summary[0] and "AUC %" in summary[1]
    assert "90.0 (1.0)" in summary[3]
    demo = format_table({"ADIB": {"color": 0.75, "seconds": 1.0}}, {"color": "blue"}).splitlines()
    assert demo[0].startswith("AUC of each detector") and "0.750" in demo[3]


def test_a_verbose_grid_shows_one_progress_bar_over_all_its_runs(split, tmp_path, capsys):
    run_grid(_tasks(split, methods=("knn",), seeds=(0, 1, 2)), store=tmp_path, verbose=True)
    err = capsys.readouterr().err
    assert "bench grid" in err and "3/3" in err


def test_summary_names_variants_by_what_sets_them_apart(split, tmp_path):
    tasks = [*_tasks(split, methods=("knn",), seeds=(0,)),
             *make_tasks(["knn"], split, [0], protocol="interventions", dataset="synthetic", settings=TINY,
                         method_params={"knn": {"n_neighbors": 3}})]
    run_grid(tasks, store=tmp_path)
    rows = summarize(tmp_path)
    assert sorted(r["variant_label"] for r in rows) == ["n_neighbors=3", "n_neighbors=None"]
    assert "n_neighbors=3" in runner.format_summary(rows)


def test_the_default_protocol_follows_the_dataset_and_keeps_synthetic_run_ids(tmp_path):
    base = {**runner.CLI_DEFAULTS, "methods": ["knn"], "n_normal": 16, "n_outlier": 16, "n_test": 20,
            "weights": "none", "width": 4, "store": str(tmp_path)}
    expected = {"synthetic": "interventions", "cifar10": "one-vs-rest", "digits": "one-vs-rest"}
    assert {d: runner.check_options({**base, "dataset": d})["protocol"] for d in expected} == expected
    assert runner.DEFAULT_PROTOCOLS == expected

    def run_ids(options):
        options = runner.check_options(options)
        splits = runner.build_splits(options)
        return [runner.run_id(t) for t in make_tasks(options["methods"], splits, options["seeds"], settings=TINY,
                                                     protocol=options["protocol"], dataset=options["dataset"])]

    # A store made before the default depended on the dataset (synthetic, no --protocol) keeps its runs.
    assert run_ids(base) == run_ids({**base, "protocol": "interventions"})
    assert runner.build_splits({**base, "protocol": None})[0].meta["protocol"] == "interventions"


def test_cli_cifar10_without_protocol_runs_one_vs_rest(tmp_path, monkeypatch, capsys, skip_md5):
    from conftest import write_fake_cifar10

    monkeypatch.setenv("SKAD_TRANSFER_HOME", str(tmp_path / "home"))
    data, store = tmp_path / "data", tmp_path / "store"
    write_fake_cifar10(data, per_batch=4)
    argv = ["bench", "--dataset", "cifar10", "--data", str(data), "--classes", "0", "--methods", "knn",
            "--weights", "none", "--width", "4", "--device", "cpu", "--outlier-exposure", "none",
            "--store", str(store), "--quiet"]
    assert main(argv) == 0
    (record,) = runner.load_records(store)
    assert record["protocol"] == "one-vs-rest" and record["dataset"] == "cifar10"
    assert main([*argv, "--protocol", "one-vs-rest"]) == 0   # the same run: the default is the resolved name
    assert "0 new, 1 already stored" in capsys.readouterr().out


@pytest.mark.parametrize("dataset", ["cifar10", "digits"])
def test_a_synthetic_only_protocol_on_another_dataset_fails_before_any_data_is_read(tmp_path, monkeypatch, capsys,
                                                                                   dataset):
    def forbidden(*args, **kwargs):
        raise AssertionError("data read for options that cannot run")

    monkeypatch.setattr(runner, "build_splits", forbidden)
    assert main(["bench", "--dataset", dataset, "--protocol", "interventions", "--data", str(tmp_path / "none"),
                 "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("skad-transfer bench: error: --protocol interventions: runs on "
                                                   "--dataset synthetic only")
    assert f"got --dataset {dataset}" in err and "leave --protocol out for one-vs-rest" in err


def test_cli_offline_download_is_one_line_naming_the_url_the_file_and_the_folder(tmp_path, monkeypatch, capsys):
    import socket
    import urllib.error
    import urllib.request

    def offline(request, *args, **kwargs):  # no network: urllib fails as a DNS lookup does
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("SKAD_TRANSFER_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    common = ["--data", str(data), "--classes", "0", "--methods", "knn", "--weights", "none", "--width", "4",
              "--device", "cpu", "--store", str(tmp_path / "store"), "--download", "--quiet"]
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert main(["bench", "--dataset", "cifar10", "--outlier-exposure", "none", *common]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "<urlopen error" not in err
    assert err.startswith(f"skad-transfer bench: error: cifar10: could not download {url} into {data}: "
                          f"[Errno -2] Name or service not known. ")
    assert f"fetch cifar-10-python.tar.gz from {url}" in err
    assert f"so that {data / 'cifar-10-batches-py'}/ exists" in err
    assert main(["bench", "--dataset", "digits", "--outlier-exposure", "svhn", *common]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "<urlopen error" not in err
    assert err.startswith("skad-transfer bench: error: outlier_exposure='svhn': svhn: could not download http")
    assert f"put it into {data} (as {data / 'train_32x32.mat'})" in err
