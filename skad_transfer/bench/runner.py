"""Run method x split x seed grids, keep every finished run in a result store, summarise over seeds.

``skad-transfer bench`` is the command line front end (:func:`add_arguments`, :func:`run`).

This module executes runs; the rest of the benchmark machinery lives beside it and is re-exported
here: the method registry (:mod:`~skad_transfer.bench.methods`: :data:`METHODS`,
:func:`make_estimator`), the tasks and their run ids (:mod:`~skad_transfer.bench.tasks`:
:class:`Task`, :func:`make_tasks`, :func:`run_id`), the summaries over seeds
(:mod:`~skad_transfer.bench.summary`: :func:`summarize`, :func:`format_summary`) and the command's
options (:mod:`~skad_transfer.bench.options`: :func:`check_options`, :func:`build_splits`).

The result store
----------------
Every finished run is kept in a :class:`~skad_transfer.bench.store.ResultStore`: a folder with
``runs/<run_id>.json`` (method, protocol, dataset, split, seed, settings, params, metrics, timing,
versions) and ``runs/<run_id>.npz`` (scores and labels of the test images). ``run_id`` hashes the
run's configuration (:meth:`Task.config`: method, protocol, dataset, split and its meta, OE corpus,
seed, shared settings except the device, method parameters), so the same run always lands in the
same file. A rerun skips every run whose JSON exists, so an interrupted sweep loses only the runs in
progress. A JSON file that is not a run record (truncated, edited, foreign) is never skipped or
averaged around: reading it raises :class:`StoreError` naming the file (``docs/design.md``, "What
is trusted").

Metrics take the **anomaly** as the positive class: ``auc = roc_auc_score(y_test == -1, -scores)``
and ``ap = average_precision_score(y_test == -1, -scores)`` (``scores`` are ``score_samples``,
higher = more normal).

Parallel execution
------------------
:func:`run_grid` goes through :func:`joblib.Parallel`, so any joblib backend works. Locally,
``n_jobs=4`` uses loky processes. On a Dask cluster (``pip install dask[distributed]``; not a
dependency of this package)::

    from dask.distributed import Client
    import joblib
    client = Client("tcp://scheduler:8786")
    with joblib.parallel_config(backend="dask"):
        run_grid(tasks, store="runs/", n_jobs=-1)

or ``run_grid(..., backend="dask")`` (``"ray"`` after ``ray.util.joblib.register_ray()``). The
store must then be on a file system that every worker sees. ``devices="cuda:all"`` runs one
process per local GPU, each pinned to its device (``torch.cuda.set_device``) and running its share
of the grid (task ``i`` on ``cuda:{i % n_gpus}``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Besides what it defines, this module re-exports the names it held before the benchmark machinery was
# split into one module per idea: the CLI, tests and user scripts import them as runner.<name>.
from .methods import DEFAULT_SETTINGS, METHODS, make_estimator
from .options import (CLI_DEFAULTS, DEFAULT_PROTOCOLS, add_arguments, build_splits, check_options, default_protocol,
                      load_config, merge_options, task_settings)
from .protocols import Split
from .store import ResultStore, StoreError, read_record
from .summary import format_summary, load_records, summarize
from .tasks import Task, jsonable, make_tasks, run_id, run_path

__all__ = ["METHODS", "DEFAULT_SETTINGS", "StoreError", "Task", "add_arguments", "check_options", "format_summary",
           "load_config", "load_records", "make_estimator", "make_tasks", "read_record", "run", "run_grid", "run_id",
           "run_path", "summarize"]


def _versions(device: str) -> dict:
    import sklearn
    import torch

    from .._version import __version__

    resolved = device
    try:
        from ..device import resolve_device

        resolved = str(resolve_device(device))
    except Exception:  # noqa: BLE001 - informative only
        pass
    info = {"python": platform.python_version(), "torch": torch.__version__, "sklearn": sklearn.__version__,
            "numpy": np.__version__, "skad_transfer": __version__, "commit": _commit(), "device": resolved,
            "threads": torch.get_num_threads(), "platform": platform.platform()}
    if resolved.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(resolved))
    return info


def _commit() -> str | None:
    """The git commit the package runs from ("+dirty" with uncommitted changes to tracked files);
    None outside a git checkout (an installed wheel)."""
    import subprocess

    folder = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def _training_precision(estimator, device: str) -> str | None:
    """The precision a deep estimator's ``precision`` parameter resolves to on ``device``; None for others."""
    precision = getattr(estimator, "precision", None)
    if precision is None:
        return None
    try:
        from ..device import Precision, resolve_device

        return Precision.resolve(resolve_device(device), precision).name
    except Exception:  # noqa: BLE001 - informative only
        return str(precision)


def _fit(estimator, split: Split, data_root=None):
    from ..data.corpora import list_corpora, resolve_corpus
    from ..detectors.base import TransferDetector

    if isinstance(estimator, TransferDetector) and split.outlier_exposure is not None \
            and estimator.uses_outlier_exposure:
        corpus = split.outlier_exposure
        if isinstance(corpus, str) and corpus in list_corpora():
            # A registered name is read from the sweep's data folder; the run id keeps the name.
            corpus = resolve_corpus(corpus, root=data_root)
        return estimator.fit(split.X_normal, X_outlier=corpus)
    return estimator.fit(split.X_normal)


def _params(estimator) -> dict:
    try:
        return jsonable(estimator.get_params(deep=True))
    except Exception:  # noqa: BLE001
        return {}


def _test_features(estimator, X_test, device) -> np.ndarray:
    """Features of the test images under a fitted method: its network's pooled features (deep
    detectors) or its pipeline's feature step (kNN, OC-SVM), the embedding of the report's t-SNE."""
    from ..features import LayerFeatures

    if hasattr(estimator, "network_"):
        features = LayerFeatures(backbone=estimator, device=device).fit(X_test[:1])
    elif hasattr(estimator, "steps") and isinstance(estimator.steps[0][1], LayerFeatures):
        features = estimator.steps[0][1]
    else:
        raise ValueError(f"{type(estimator).__name__} has no network whose features could be kept")
    return np.asarray(features.transform(X_test), dtype=np.float32)


def execute(task: Task, store, *, device: str | None = None, skip_existing: bool = True,
            save_features: bool = False, data_root=None) -> dict:
    """Run one task (or load its stored result) and return its record.

    Parameters
    ----------
    task : Task
    store : str, path-like or ResultStore
        Result store folder.
    device : str, optional
        Overrides ``task.settings["device"]`` (not part of the run id); a ``"cuda:<i>"`` device is
        also made the process's current CUDA device.
    skip_existing : bool, default=True
        Return the stored record if the run's JSON exists.
    save_features : bool, default=False
        Also store the test images' features under the fitted model (float32, next to the
        scores), from which ``skad-transfer report --tsne`` draws its t-SNE. Not part of the run
        id: a stored run is not redone to add them.
    data_root : str or path-like, optional
        The folder registered OE corpora (``"tinyimagenet"``, ...) are read from; the data root
        (:func:`skad_transfer.data.data_root`) by default. Not part of the run id.

    Returns
    -------
    record : dict
        The stored JSON content, plus ``"skipped": True`` when it was loaded rather than run.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    store = ResultStore(store)
    rid = run_id(task)
    if skip_existing and rid in store:
        return {**store.read(rid), "skipped": True}
    settings = dict(task.settings)
    if device is not None:
        settings["device"] = device
    if isinstance(settings["device"], str) and settings["device"].startswith("cuda:"):
        import torch

        torch.cuda.set_device(torch.device(settings["device"]))
    estimator = make_estimator(task.method, settings, random_state=task.seed, **task.method_params)
    t0 = time.perf_counter()
    _fit(estimator, task.split, data_root)
    t1 = time.perf_counter()
    scores = np.asarray(estimator.score_samples(task.split.X_test), dtype=np.float64)
    t2 = time.perf_counter()
    labels = np.asarray(task.split.y_test, dtype=np.int64)
    anomaly = labels == -1
    if not np.isfinite(scores).all():
        auc = ap = float("nan")
    else:
        auc = float(roc_auc_score(anomaly, -scores))
        ap = float(average_precision_score(anomaly, -scores))
    config = task.config()
    record = {"run_id": rid, "method": task.method, "protocol": task.protocol, "dataset": task.dataset,
              "split": task.split.name, "seed": int(task.seed), "config": config,
              "params": _params(estimator), "metrics": {"auc": auc, "ap": ap},
              "n_normal": config["n_normal"], "n_test": config["n_test"], "n_anomalies": int(anomaly.sum()),
              "timing": {"fit_seconds": t1 - t0, "score_seconds": t2 - t1},
              "versions": {**_versions(settings["device"]),
                           "training_precision": _training_precision(estimator, settings["device"])},
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    features = _test_features(estimator, task.split.X_test, settings["device"]) if save_features else None
    store.write(record, scores=scores, labels=labels, features=features)
    return record


def _run_chunk(tasks: Sequence[Task], store, device: str | None, skip_existing: bool, errors: str,
               verbose: bool, save_features: bool = False, data_root=None) -> list[dict]:
    out = []
    for task in tasks:
        try:
            record = execute(task, store, device=device, skip_existing=skip_existing, save_features=save_features,
                             data_root=data_root)
        except Exception as error:  # noqa: BLE001
            if errors == "raise":
                raise
            record = {"run_id": run_id(task), "method": task.method, "protocol": task.protocol,
                      "dataset": task.dataset, "split": task.split.name, "seed": task.seed,
                      "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        if verbose:
            if "error" in record:
                print(f"FAILED {task.method:<8}{task.split.name:<24}seed {task.seed}: {record['error']}",
                      file=sys.stderr, flush=True)
            elif not record.get("skipped"):
                m = record["metrics"]
                print(f"{task.method:<8}{task.split.name:<24}seed {task.seed:<4}AUC {100 * m['auc']:.1f}%  "
                      f"AP {100 * m['ap']:.1f}%  ({record['timing']['fit_seconds']:.1f} s)", flush=True)
        out.append(record)
    return out


def _device_plan(tasks: Sequence[Task], devices) -> tuple[list[str], list[list[Task]]]:
    """Devices and, per device, its share of the tasks (task ``i`` -> device ``i % n``)."""
    if isinstance(devices, str):
        if devices != "cuda:all":
            raise ValueError(f"devices must be 'cuda:all' or a list of device strings, got {devices!r}")
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError("devices='cuda:all' needs at least one CUDA GPU, but torch sees none on this machine; "
                             "leave devices=None to use settings['device'] (e.g. 'cpu') with n_jobs")
        devices = [f"cuda:{i}" for i in range(n)]
    devices = [str(d) for d in devices]
    if not devices:
        raise ValueError("devices must name at least one device")
    chunks = [[t for i, t in enumerate(tasks) if i % len(devices) == g] for g in range(len(devices))]
    return devices, chunks


def run_grid(tasks: Sequence[Task], *, store, n_jobs: int = 1, backend: str | None = None, devices=None,
             skip_existing: bool = True, errors: str = "raise", verbose: bool = False,
             save_features: bool = False, data_root=None) -> list[dict]:
    """Run tasks through :class:`joblib.Parallel`, storing each finished run.

    Parameters
    ----------
    tasks : sequence of Task
        From :func:`make_tasks`.
    store : str, path-like or ResultStore
        Result store folder (created if missing); runs go to ``store/runs/``.
    n_jobs : int, default=1
        Parallel jobs (joblib semantics; ``1`` runs in this process, in order).
    backend : str, optional
        A joblib backend (``"loky"``, ``"threading"``, ``"dask"``, ``"ray"``, ...). ``None`` defers
        to an enclosing ``joblib.parallel_config(backend=...)``, so
        ``with joblib.parallel_config(backend="dask"): run_grid(...)`` runs on a connected Dask
        cluster (Dask is not a dependency of this package).
    devices : "cuda:all" or list of str, optional
        Spread the runs over devices with one loky process per device, each pinned to it (task
        ``i`` runs on ``devices[i % n]``); ``"cuda:all"`` means every local GPU. Overrides each
        task's ``settings["device"]`` and ``n_jobs``.
    skip_existing : bool, default=True
        Skip runs whose JSON already exists in the store (their stored records are returned).
    errors : {"raise", "continue"}, default="raise"
        On a failing run, stop the sweep (finished runs stay in the store) or record the error in
        the returned list and go on.
    verbose : bool, default=False
        Print one line per finished run.
    save_features : bool, default=False
        Also store each new run's test features (see :func:`execute`), for ``report --tsne``.
    data_root : str or path-like, optional
        Where registered OE corpora are read from (see :func:`execute`).

    Returns
    -------
    records : list of dict
        One record per task, in the order of ``tasks`` (stored ones carry ``"skipped": True``; with
        ``errors="continue"`` failed ones carry ``"error"``).

    Raises
    ------
    ValueError
        For ``devices="cuda:all"`` on a machine without GPUs, or invalid arguments.
    """
    if errors not in ("raise", "continue"):
        raise ValueError(f"errors must be 'raise' or 'continue', got {errors!r}")
    tasks = list(tasks)
    ids = _grid_ids(tasks)
    store = ResultStore(store)
    store.runs_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict] = {}
    pending = []
    for rid, task in zip(ids, tasks):
        if skip_existing and rid in store:
            records[rid] = {**store.read(rid), "skipped": True}
        else:
            pending.append(task)
    if pending:
        jobs, parallel = _grid_jobs(pending, store, n_jobs=n_jobs, backend=backend, devices=devices,
                                    skip_existing=skip_existing, errors=errors, verbose=verbose,
                                    save_features=save_features, data_root=data_root)
        from tqdm.auto import tqdm

        # One bar over the whole grid (runs, not chunks), fed as jobs finish.
        with tqdm(total=len(pending), desc="bench grid", unit="run", disable=not verbose, dynamic_ncols=True,
                  file=sys.stderr) as bar:
            for chunk in parallel(jobs):
                for record in chunk:
                    records[record["run_id"]] = record
                bar.update(len(chunk))
    return [records[rid] for rid in ids]


def _grid_ids(tasks: list[Task]) -> list[str]:
    """The run ids of ``tasks``, one per task in order.

    Raises
    ------
    ValueError
        For an element that is not a :class:`Task`, or two tasks of the same run (they would write
        the same files).
    """
    for i, task in enumerate(tasks):
        if not isinstance(task, Task):
            raise ValueError(f"tasks[{i}] is a {type(task).__name__}, not a Task (build them with make_tasks)")
    ids = [run_id(t) for t in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError("tasks contain duplicate runs (same method, split, seed and settings)")
    return ids


def _grid_jobs(pending: Sequence[Task], store: ResultStore, *, n_jobs, backend, devices, skip_existing: bool,
               errors: str, verbose: bool, save_features: bool, data_root) -> tuple[list, Any]:
    """The joblib jobs that run ``pending``, and the ``Parallel`` that runs them.

    With ``devices``, one job per device runs that device's share of the tasks in one process
    (loky unless ``backend`` says otherwise); without, one job per task under ``n_jobs`` and
    ``backend``.
    """
    from joblib import delayed

    if devices is not None:
        device_list, chunks = _device_plan(pending, devices)
        jobs = [delayed(_run_chunk)(chunk, store, dev, skip_existing, errors, verbose, save_features, data_root)
                for dev, chunk in zip(device_list, chunks) if chunk]
        return jobs, _streaming_parallel(n_jobs=len(jobs), backend=backend or "loky")
    jobs = [delayed(_run_chunk)([t], store, None, skip_existing, errors, verbose, save_features, data_root)
            for t in pending]
    return jobs, _streaming_parallel(n_jobs=n_jobs, backend=backend)


def _streaming_parallel(**kwargs):
    """A joblib ``Parallel`` that yields results as jobs finish, where the backend can (Dask's
    cannot: it returns them all at the end)."""
    from joblib import Parallel

    try:
        return Parallel(return_as="generator_unordered", **kwargs)
    except ValueError:
        return Parallel(**kwargs)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``skad-transfer bench``: build splits, run the grid, print the summary."""
    options = check_options(merge_options(args))
    if options["data"] is None:
        from .._paths import data_root

        options["data"] = str(data_root())  # $SKAD_TRANSFER_DATA, else $SKAD_TRANSFER_HOME/datasets
    devices = options["devices"]
    if isinstance(devices, str) and devices != "cuda:all":
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    splits = build_splits(options)
    tasks = make_tasks(options["methods"], splits, options["seeds"], protocol=options["protocol"],
                       dataset=options["dataset"], settings=task_settings(options),
                       method_params=options["method_params"])
    started = time.perf_counter()
    records = run_grid(tasks, store=options["store"], n_jobs=options["n_jobs"], backend=options["backend"],
                       devices=devices, errors=options["errors"], verbose=not options["quiet"],
                       save_features=options["save_features"], data_root=options["data"])
    skipped = sum(1 for r in records if r.get("skipped"))
    failed = sum(1 for r in records if "error" in r)
    print(f"{len(records)} runs: {len(records) - skipped - failed} new, {skipped} already stored, {failed} failed "
          f"({time.perf_counter() - started:.0f} s); store {options['store']}")
    print(format_summary(summarize(options["store"])))
    return 1 if failed else 0
