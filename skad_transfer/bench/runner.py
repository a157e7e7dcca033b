"""Run method x split x seed grids, keep every finished run in a result store, summarise over seeds.

``skad-transfer bench`` is the command line front end (:func:`add_arguments`, :func:`run`).

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
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .protocols import Split
from .store import ResultStore, StoreError, config_id, corpus_key, read_record, variant_id

__all__ = ["METHODS", "DEFAULT_SETTINGS", "StoreError", "Task", "add_arguments", "check_options", "format_summary",
           "load_config", "load_records", "make_estimator", "make_tasks", "read_record", "run", "run_grid", "run_id",
           "run_path", "summarize"]

#: Shared settings every method factory receives (and their defaults).
DEFAULT_SETTINGS: dict[str, Any] = {
    "epochs": None,  # None: the estimators' own training length (their ``steps``)
    "steps": None,
    "weights": "default",
    "width": None,
    "lr": 0.01,
    "batch_size": 128,  # the paper's 64 normal + 64 OE
    "device": "auto",
}


# ----------------------------------------------------------------------------- methods
def _deep(cls_name: str, **fixed) -> Callable[..., Any]:
    def factory(settings: Mapping[str, Any], random_state: int, **extra):
        from .. import detectors

        cls = getattr(detectors, cls_name)
        kwargs = dict(weights=settings["weights"], width=settings["width"], epochs=settings["epochs"],
                      lr=settings["lr"], batch_size=settings["batch_size"], device=settings["device"],
                      random_state=random_state, verbose=False)
        if settings.get("steps") is not None:
            kwargs["steps"] = settings["steps"]
        return cls(**{**fixed, **kwargs, **extra})

    factory.__doc__ = f"{cls_name}({', '.join(f'{k}={v!r}' for k, v in fixed.items())}) with the shared settings"
    return factory


def _knn(settings, random_state, n_neighbors=2, layer="pooled", **extra):
    """LayerFeatures of theta0 (pooled) + kNN distance (kNN-AD)."""
    from sklearn.pipeline import make_pipeline

    from ..detectors import KNNDetector
    from ..features import LayerFeatures

    features = LayerFeatures(weights=settings["weights"], width=settings["width"], layer=layer,
                             device=settings["device"], random_state=random_state)
    return make_pipeline(features, KNNDetector(n_neighbors=n_neighbors, **extra))


def _ocsvm(settings, random_state, layer="stage3", nu=0.1, gamma="scale", **extra):
    """LayerFeatures of theta0 (stage3) + standardisation + one-class SVM (linear-probe baseline)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import OneClassSVM

    from ..features import LayerFeatures

    features = LayerFeatures(weights=settings["weights"], width=settings["width"], layer=layer,
                             device=settings["device"], random_state=random_state)
    return make_pipeline(features, StandardScaler(), OneClassSVM(nu=nu, gamma=gamma, **extra))


#: Method name -> factory ``(settings, random_state, **method_params) -> estimator``.
METHODS: dict[str, Callable[..., Any]] = {
    "adib": _deep("ADIBDetector"),
    "adra": _deep("ADRADetector"),
    "hsc": _deep("HSCDetector"),
    "dsvdd": _deep("DSVDDDetector"),
    "doc": _deep("DOCDetector"),
    "ewc": _deep("ADIBDetector", regularizer="ewc"),
    "knn": _knn,
    "ocsvm": _ocsvm,
}


def _check_method(name) -> str:
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods are {sorted(METHODS)}")
    return name


def _check_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(f"settings: unknown keys {unknown}; valid keys are {sorted(DEFAULT_SETTINGS)}")
    return {**DEFAULT_SETTINGS, **settings}


def make_estimator(method: str, settings: Mapping[str, Any] | None = None, *, random_state: int = 0,
                   **method_params):
    """Build the estimator of a named method.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`: ``adib``, ``adra``, ``hsc``, ``dsvdd``, ``doc``, ``ewc`` (ADIB with
        the EWC regularizer), ``knn`` (theta0 features + kNN), ``ocsvm`` (theta0 stage3 features +
        one-class SVM).
    settings : dict, optional
        Shared settings (keys of :data:`DEFAULT_SETTINGS`: epochs, weights, width, lr, batch_size,
        device); missing keys take their defaults. Feature-based methods use weights, width and
        device only.
    random_state : int, default=0
        Seed of the estimator.
    **method_params
        Extra constructor arguments of this method (e.g. ``alpha=0.1`` for adib,
        ``n_neighbors=5`` for knn).

    Returns
    -------
    estimator : scikit-learn estimator with ``fit`` and ``score_samples`` (higher = more normal)

    Raises
    ------
    ValueError
        For an unknown method (the message lists the valid ones) or unknown settings keys.
    """
    return METHODS[_check_method(method)](_check_settings(settings), random_state, **method_params)


# ----------------------------------------------------------------------------- tasks
@dataclass(frozen=True, eq=False)
class Task:
    """One run of the grid: a method fitted on a split with one seed.

    Attributes
    ----------
    method : str
        Name in :data:`METHODS`.
    split : Split
        The data.
    seed : int
        The estimator's ``random_state``.
    protocol, dataset : str
        Labels stored with the result (and part of its ``run_id``).
    settings : dict
        Shared settings (:data:`DEFAULT_SETTINGS` filled in).
    method_params : dict
        Extra constructor arguments of the method.
    """

    method: str
    split: Split
    seed: int
    protocol: str
    dataset: str
    settings: dict = field(default_factory=dict)
    method_params: dict = field(default_factory=dict)

    def config(self) -> dict:
        """The JSON-serialisable configuration that identifies this run (device excluded)."""
        settings = {k: v for k, v in self.settings.items() if k != "device"}
        return {"method": self.method, "protocol": self.protocol, "dataset": self.dataset, "split": self.split.name,
                "split_meta": _jsonable(self.split.meta), "outlier_exposure": corpus_key(self.split.outlier_exposure),
                "n_normal": int(len(self.split.X_normal)), "n_test": int(len(self.split.X_test)),
                "seed": int(self.seed), "settings": _jsonable(settings), "method_params": _jsonable(self.method_params)}


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return f"array{value.shape}"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def run_id(task: Task) -> str:
    """The short hash of ``task.config()`` that names its files in the store (:func:`~.store.config_id`)."""
    return config_id(task.config())


def make_tasks(methods: Sequence[str], splits: Split | Iterable[Split], seeds: Sequence[int], *, protocol: str,
               dataset: str, settings: Mapping[str, Any] | None = None,
               method_params: Mapping[str, Mapping[str, Any]] | None = None) -> list[Task]:
    """The full grid ``splits x methods x seeds`` as a list of :class:`Task`.

    Parameters
    ----------
    methods : sequence of str
        Method names (validated against :data:`METHODS`).
    splits : Split or iterable of Split
    seeds : sequence of int
    protocol, dataset : str
        Labels stored with each result.
    settings : dict, optional
        Shared settings (:data:`DEFAULT_SETTINGS` keys).
    method_params : dict of str to dict, optional
        Extra constructor arguments per method name, e.g. ``{"adib": {"alpha": 0.1}}``.

    Returns
    -------
    tasks : list of Task
    """
    if isinstance(splits, Split):
        splits = [splits]
    splits = list(splits)
    if isinstance(methods, str):
        methods = [methods]
    methods = [_check_method(m) for m in methods]
    seeds = [int(s) for s in seeds]
    if not methods or not splits or not seeds:
        raise ValueError(f"make_tasks needs at least one method, split and seed; got {len(methods)} methods, "
                         f"{len(splits)} splits, {len(seeds)} seeds")
    method_params = dict(method_params or {})
    unknown = sorted(set(method_params) - set(METHODS))
    if unknown:
        raise ValueError(f"method_params: unknown methods {unknown}; valid methods are {sorted(METHODS)}")
    settings = _check_settings(settings)
    return [Task(m, s, seed, protocol, dataset, dict(settings), dict(method_params.get(m, {})))
            for s in splits for m in methods for seed in seeds]


# ----------------------------------------------------------------------------- store
def run_path(store, rid: str, suffix: str = ".json") -> Path:
    """``STORE/runs/<rid><suffix>``, for a ``rid`` of the form :func:`run_id` produces.

    Raises
    ------
    StoreError
        If ``rid`` is not 16 lowercase hex digits (so that no id can lead out of the store).
    """
    return ResultStore(store).path(rid, suffix)


def _versions(device: str) -> dict:
    import sklearn
    import torch

    from .. import __version__

    resolved = device
    try:
        from ..engine import resolve_device

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
        from ..engine import Precision, resolve_device

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
        return _jsonable(estimator.get_params(deep=True))
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
    from joblib import delayed

    if errors not in ("raise", "continue"):
        raise ValueError(f"errors must be 'raise' or 'continue', got {errors!r}")
    tasks = list(tasks)
    for i, task in enumerate(tasks):
        if not isinstance(task, Task):
            raise ValueError(f"tasks[{i}] is a {type(task).__name__}, not a Task (build them with make_tasks)")
    ids = [run_id(t) for t in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError("tasks contain duplicate runs (same method, split, seed and settings)")
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
        if devices is not None:
            device_list, chunks = _device_plan(pending, devices)
            jobs = [delayed(_run_chunk)(chunk, store, dev, skip_existing, errors, verbose, save_features, data_root)
                    for dev, chunk in zip(device_list, chunks) if chunk]
            parallel = _streaming_parallel(n_jobs=len(jobs), backend=backend or "loky")
        else:
            jobs = [delayed(_run_chunk)([t], store, None, skip_existing, errors, verbose, save_features, data_root)
                    for t in pending]
            parallel = _streaming_parallel(n_jobs=n_jobs, backend=backend)
        from tqdm.auto import tqdm

        # One bar over the whole grid (runs, not chunks), fed as jobs finish.
        with tqdm(total=len(pending), desc="bench grid", unit="run", disable=not verbose, dynamic_ncols=True,
                  file=sys.stderr) as bar:
            for chunk in parallel(jobs):
                for record in chunk:
                    records[record["run_id"]] = record
                bar.update(len(chunk))
    return [records[rid] for rid in ids]


def _streaming_parallel(**kwargs):
    """A joblib ``Parallel`` that yields results as jobs finish, where the backend can (Dask's
    cannot: it returns them all at the end)."""
    from joblib import Parallel

    try:
        return Parallel(return_as="generator_unordered", **kwargs)
    except ValueError:
        return Parallel(**kwargs)


# ----------------------------------------------------------------------------- summary
def load_records(store) -> list[dict]:
    """All stored run records (JSON files under ``store/runs``), sorted by file name.

    Raises
    ------
    StoreError
        If one of the files is not a run record (see :func:`read_record`): a damaged record is an
        error, not skipped, so that no summary silently averages over fewer runs than were made.
    """
    return ResultStore(store).records()


def summarize(store) -> list[dict]:
    """Mean and standard deviation over seeds of every (method, protocol, dataset, split, settings).

    Parameters
    ----------
    store : str or path-like
        Result store folder.

    Returns
    -------
    rows : list of dict
        Keys ``method``, ``protocol``, ``dataset``, ``split``, ``variant`` (a short hash of the
        shared settings, method parameters and OE corpus, so runs with different settings are
        never averaged together), ``variant_label`` (what sets the variant apart from the other
        variants of its method and split, e.g. ``"lr=0.1"``; empty when it has none), ``n_seeds``, ``seeds``, ``auc_mean``, ``auc_std``, ``ap_mean``, ``ap_std``,
        ``fit_seconds`` (mean). The std is numpy's default (population, ``ddof=0``; 0 for one
        seed). Sorted by dataset, protocol, split, method.
    """
    groups: dict[tuple, list[dict]] = {}
    for record in load_records(store):
        config = record.get("config", {})
        variant = variant_id(config)
        key = (record["dataset"], record["protocol"], record["split"], record["method"], variant)
        groups.setdefault(key, []).append(record)
    # A variant is named by what sets it apart from the other variants of its method and split.
    described: dict[tuple, dict[str, dict]] = {}
    for (dataset, protocol, split, method, variant), records in groups.items():
        described.setdefault((dataset, protocol, split, method), {})[variant] = _flat_settings(records[0]["config"])
    rows = []
    for (dataset, protocol, split, method, variant), records in sorted(groups.items()):
        auc = np.array([r["metrics"]["auc"] for r in records], dtype=float)
        ap = np.array([r["metrics"]["ap"] for r in records], dtype=float)
        siblings = described[(dataset, protocol, split, method)]
        differing = sorted({k for flat in siblings.values() for k in flat
                            if len({repr(other.get(k)) for other in siblings.values()}) > 1})
        label = " ".join(f"{k}={siblings[variant].get(k)}" for k in differing)
        rows.append({"method": method, "protocol": protocol, "dataset": dataset, "split": split,
                     "variant": variant, "variant_label": label, "n_seeds": len(records),
                     "seeds": sorted(r["seed"] for r in records),
                     "auc_mean": float(auc.mean()), "auc_std": float(auc.std()),
                     "ap_mean": float(ap.mean()), "ap_std": float(ap.std()),
                     "fit_seconds": float(np.mean([r["timing"]["fit_seconds"] for r in records]))})
    return rows


def _flat_settings(config: Mapping[str, Any]) -> dict:
    """A run's settings, method parameters and OE corpus as one flat dict (for variant labels)."""
    flat = {"oe": config.get("outlier_exposure")}
    flat.update({k: v for k, v in (config.get("settings") or {}).items()})
    flat.update({k: v for k, v in (config.get("method_params") or {}).items()})
    return flat


def format_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of :func:`summarize` rows (AUC and AP in percent, mean (std)), under a line
    that says what the numbers are."""
    if not rows:
        return "(no finished runs)"
    head = ["dataset", "protocol", "split", "method", "variant", "seeds", "AUC %", "AP %", "fit s"]
    body = [[r["dataset"], r["protocol"], r["split"], r["method"],
             f"{r['variant']} {r['variant_label']}".strip() if r.get("variant_label") else r["variant"],
             str(r["n_seeds"]),
             f"{100 * r['auc_mean']:.1f} ({100 * r['auc_std']:.1f})",
             f"{100 * r['ap_mean']:.1f} ({100 * r['ap_std']:.1f})", f"{r['fit_seconds']:.1f}"] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["AUC and AP of the test images, anomalies as the positive class, in %: mean (std) over seeds",
             "  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI
#: Defaults of the ``bench`` options (flags override a config file, which overrides these).
#: ``protocol`` None means the dataset's own protocol, :data:`DEFAULT_PROTOCOLS`.
CLI_DEFAULTS: dict[str, Any] = {
    "dataset": "synthetic", "data": None, "download": False,
    "protocol": None, "classes": None, "methods": ["adib", "adra"], "seeds": [0],
    "epochs": None, "steps": None, "weights": "default", "width": None, "lr": 0.01, "batch_size": 128,
    "device": "auto", "devices": None, "n_jobs": 1, "backend": None, "store": "runs", "outlier_exposure": None,
    "oe_corpora": None, "n_normal": None, "n_test": None, "n_outlier": 1000, "data_seed": 0,
    "method_params": None, "errors": "raise", "quiet": False, "save_features": False,
}


def load_config(path) -> dict:
    """Read a ``bench`` config file: JSON (``.json``) or TOML (anything else, via :mod:`tomllib`).

    Keys are the long option names with underscores (``methods``, ``seeds``, ``batch_size``,
    ``store``, ...), plus ``method_params`` (a table of method name to constructor arguments).
    Values are checked by :func:`check_options` once flags are merged in.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (IsADirectoryError if it is a folder).
    ValueError
        If the file is not valid JSON/TOML, its top level is not a table, or it has unknown keys;
        the message names the file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"--config {path}: is a directory, not a JSON or TOML file")
    if not path.is_file():
        raise FileNotFoundError(f"--config: no such file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"--config {path}: not a text file ({error})") from error
    if path.suffix.lower() == ".json":
        try:
            config = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"--config {path}: invalid JSON: {error}") from error
    else:
        try:
            import tomllib
        except ModuleNotFoundError as error:  # Python 3.10
            raise ValueError(f"--config {path}: TOML needs Python >= 3.11 (tomllib); use a .json file") from error
        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"--config {path}: invalid TOML: {error}") from error
    if not isinstance(config, dict):
        raise ValueError(f"--config {path}: the top level must be a table/object, got {type(config).__name__}")
    config = {k.replace("-", "_"): v for k, v in config.items()}
    # "config" is not a key: a config file naming another would be silently ignored.
    unknown = sorted(set(config) - set(CLI_DEFAULTS))
    if unknown:
        raise ValueError(f"--config {path}: unknown keys {unknown}; valid keys are {sorted(CLI_DEFAULTS)}")
    return config


#: Classes of each ``--dataset`` (for checking ``--classes`` before anything is loaded).
_N_CLASSES = {"cifar10": 10, "digits": 10, "synthetic": None}  # synthetic: its shapes, filled in on use

#: The protocol of each ``--dataset`` when ``--protocol`` is not given. The interventions run only on
#: the synthetic shapes (MPI3D goes through the Python API); labelled image datasets get the class
#: protocol. The resolved name is what a task's config (and so its run id) holds, so a store made with
#: ``--dataset synthetic`` and no ``--protocol`` keeps its run ids.
DEFAULT_PROTOCOLS = {"cifar10": "one-vs-rest", "digits": "one-vs-rest", "synthetic": "interventions"}
#: Protocols that run on ``--dataset synthetic`` only.
_SYNTHETIC_ONLY = ("interventions", "non-semantic-shift")


def default_protocol(dataset: str) -> str:
    """The protocol that ``bench --dataset DATASET`` runs when ``--protocol`` is not given.

    Examples
    --------
    >>> default_protocol("cifar10"), default_protocol("synthetic")
    ('one-vs-rest', 'interventions')
    """
    if dataset not in DEFAULT_PROTOCOLS:
        raise ValueError(f"--dataset: unknown dataset {dataset!r}; valid names are {sorted(DEFAULT_PROTOCOLS)}")
    return DEFAULT_PROTOCOLS[dataset]


def _check_protocol_fits_dataset(protocol: str, dataset: str) -> None:
    """A synthetic-only protocol on another dataset fails here, before any data is read."""
    from .protocols import PROTOCOLS

    if protocol in _SYNTHETIC_ONLY and dataset != "synthetic":
        others = sorted(p for p in PROTOCOLS if p not in _SYNTHETIC_ONLY)
        raise ValueError(f"--protocol {protocol}: runs on --dataset synthetic only (MPI3D through the Python API: "
                         f"skad_transfer.bench.{protocol.replace('-', '_')}(X, factors)), got --dataset {dataset}; "
                         f"for {dataset} use one of {others} (leave --protocol out for "
                         f"{DEFAULT_PROTOCOLS.get(dataset, 'one-vs-rest')})")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _int_option(options, key: str, minimum: int | None = 1, *, optional: bool = True, maximum: int | None = None):
    value = options[key]
    if value is None and optional:
        return None
    if not _is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{_flag(key)}: expected an int {bounds}, got {value!r}")
    return int(value)


def _str_list(options, key: str, *, optional: bool = True) -> list[str] | None:
    value = options[key]
    if value is None and optional:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{_flag(key)}: expected a non-empty list of names, got {value!r}")
    duplicated = sorted({v for v in value if list(value).count(v) > 1})
    if duplicated:
        raise ValueError(f"{_flag(key)}: {duplicated} given more than once")
    return list(value)


def check_options(options: Mapping[str, Any]) -> dict:
    """Check and normalise the ``bench`` options (flags over a config file over :data:`CLI_DEFAULTS`).

    Everything that can be checked without loading data is checked here, so that a wrong value
    fails in a second rather than after a dataset was decoded: names (dataset, protocol, methods,
    method parameters, errors), numbers and their ranges (classes against the dataset's class
    count, seeds, epochs, steps, lr, batch size, sizes, jobs), that the weights resolve to a file
    (and fit ``--width``), that an OE path exists, and that the store is not a file.

    Parameters
    ----------
    options : dict
        Keys of :data:`CLI_DEFAULTS`.

    Returns
    -------
    options : dict
        A copy with lists for list options and ints for int options.

    Raises
    ------
    ValueError
        Naming the option as its flag (``--classes: ...``); FileNotFoundError for missing paths.
    """
    from ..data.corpora import list_corpora
    from ..data.synthetic import SHAPE_NAMES
    from ..weights import resolve_weights
    from .protocols import PROTOCOLS

    o = dict(options)
    if o["dataset"] not in _N_CLASSES:
        raise ValueError(f"--dataset: unknown dataset {o['dataset']!r}; valid names are {sorted(_N_CLASSES)}")
    if o["protocol"] is None:
        o["protocol"] = default_protocol(o["dataset"])
    if o["protocol"] not in PROTOCOLS:
        raise ValueError(f"--protocol: unknown protocol {o['protocol']!r}; valid names are {sorted(PROTOCOLS)}")
    _check_protocol_fits_dataset(o["protocol"], o["dataset"])
    if o["errors"] not in ("raise", "continue"):
        raise ValueError(f"--errors: expected 'raise' or 'continue', got {o['errors']!r}")
    if not isinstance(o["save_features"], bool):
        raise ValueError(f"--save-features: expected true or false, got {o['save_features']!r}")
    o["methods"] = _str_list(o, "methods", optional=False)
    unknown = [m for m in o["methods"] if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown methods {unknown}; valid methods are {sorted(METHODS)}")
    params = o["method_params"]
    if params is not None:
        if not isinstance(params, Mapping) or not all(isinstance(v, Mapping) for v in params.values()):
            raise ValueError(f"method_params: expected a table of method name to a table of arguments, got {params!r}")
        unknown = sorted(set(params) - set(METHODS))
        if unknown:
            raise ValueError(f"method_params: unknown methods {unknown}; valid methods are {sorted(METHODS)}")
    seeds = o["seeds"]
    seeds = [seeds] if _is_int(seeds) else seeds
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise ValueError(f"--seeds: expected a non-empty list of ints, got {seeds!r}")
    o["seeds"] = [_int_option({"seeds": s}, "seeds", 0, optional=False, maximum=2**32 - 1) for s in seeds]
    if len(set(o["seeds"])) != len(o["seeds"]):
        raise ValueError(f"--seeds: {o['seeds']} repeats a seed")
    classes = o["classes"]
    if classes is not None:
        classes = [classes] if _is_int(classes) else classes
        n = _N_CLASSES[o["dataset"]] or len(SHAPE_NAMES)
        if not isinstance(classes, (list, tuple)) or not classes \
                or not all(_is_int(c) and 0 <= c < n for c in classes):
            raise ValueError(f"--classes: expected class indices in [0, {n - 1}] for dataset {o['dataset']!r}, "
                             f"got {classes!r}")
        if len(set(classes)) != len(classes):
            raise ValueError(f"--classes: {list(classes)} repeats a class")
        o["classes"] = [int(c) for c in classes]
    for key in ("epochs", "steps", "width", "n_normal", "n_test", "n_outlier"):
        o[key] = _int_option(o, key, 1)
    o["batch_size"] = _int_option(o, "batch_size", 2, optional=False)
    o["data_seed"] = _int_option(o, "data_seed", 0, optional=False, maximum=2**32 - 1)
    if not _is_int(o["n_jobs"]) or o["n_jobs"] == 0:
        raise ValueError(f"--n-jobs: expected a non-zero int (joblib: -1 for all cores), got {o['n_jobs']!r}")
    lr = o["lr"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"--lr: expected a finite number > 0, got {lr!r}")
    for key in ("device", "backend", "data", "store"):
        if o[key] is not None and not (isinstance(o[key], str) and o[key]):
            raise ValueError(f"{_flag(key)}: expected a non-empty string, got {o[key]!r}")
    devices = o["devices"]
    if devices is not None and not (isinstance(devices, str) or (isinstance(devices, (list, tuple))
                                                                  and all(isinstance(d, str) for d in devices))):
        raise ValueError(f"--devices: expected 'cuda:all' or a comma list of devices, got {devices!r}")
    if o["store"] is None:
        raise ValueError("--store: a result store folder is required")
    if Path(o["store"]).exists() and not Path(o["store"]).is_dir():
        raise NotADirectoryError(f"--store {o['store']}: is a file, not a result store folder")
    weights = _weights(o["weights"])
    if weights is not None and not isinstance(weights, str):
        raise ValueError(f"--weights: expected a registered name, a checkpoint path or 'none', got {weights!r}")
    record = resolve_weights(weights)
    if record is not None:
        record.locate()   # a missing checkpoint fails now, not in every run after the data is loaded
        if o["width"] is not None and o["width"] != record.width:
            raise ValueError(f"--width {o['width']}: the weights {record.name!r} have width {record.width}; "
                             f"--width is for --weights none")
    o["oe_corpora"] = _str_list(o, "oe_corpora")
    for key, corpora in (("outlier_exposure", [o["outlier_exposure"]]), ("oe_corpora", o["oe_corpora"] or [])):
        for corpus in corpora:
            if corpus is None or (isinstance(corpus, str) and (corpus.lower() == "none" or corpus in list_corpora())):
                continue
            if not isinstance(corpus, str) or not corpus:
                raise ValueError(f"{_flag(key)}: expected a registered corpus name or a path, got {corpus!r}")
            if not Path(corpus).expanduser().exists():
                raise FileNotFoundError(f"{_flag(key)} {corpus}: not a registered corpus name {list_corpora()} "
                                        f"and no such file or folder")
    return o


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``skad-transfer bench``."""
    from .protocols import PROTOCOLS

    a = parser.add_argument
    a("--config", help="JSON or TOML file with any of the options below (underscored keys); flags override it")
    a("--dataset", choices=["cifar10", "digits", "synthetic"],
      help="dataset (default synthetic; digits is scikit-learn's 8x8 grayscale digits, no download)")
    a("--data", help="folder holding cifar10-jpg.zip (or torchvision's CIFAR-10 files) and the registered OE "
                    "corpora (default $SKAD_TRANSFER_DATA, else $SKAD_TRANSFER_HOME/datasets)")
    a("--download", action="store_true", default=None,
      help="fetch into --data what torchvision can: CIFAR-10 (--dataset cifar10 then uses torchvision's copy) and "
           "the OE corpora cifar100, svhn, stl10-unlabeled (Tiny-ImageNet cannot be fetched; default off)")
    a("--protocol", choices=sorted(PROTOCOLS),
      help="evaluation protocol (default: one-vs-rest for cifar10 and digits, interventions for synthetic; "
           "interventions and non-semantic-shift run on synthetic only)")
    a("--classes", type=int, nargs="+", help="class protocols: normal (one-vs-rest) or anomalous (leave-one-out) "
                                            "classes; default all")
    a("--methods", nargs="+", help=f"methods, from {sorted(METHODS)} (default adib adra)")
    a("--seeds", type=int, nargs="+", help="model seeds (default 0)")
    a("--epochs", type=int, help="passes over the normal set (default: the estimators' step budget, --steps)")
    a("--steps", type=int, help="SGD steps per deep fit (default: the estimators' default, 1500)")
    a("--weights", help="theta0: a registered name, a checkpoint path, or 'none' (random init)")
    a("--width", type=int, help="ResNet26 width (only with --weights none)")
    a("--lr", type=float, help="learning rate of the deep methods (default 0.01)")
    a("--batch-size", dest="batch_size", type=int, help="normal + OE images per step (default 128)")
    a("--device", help="device of every run (default auto)")
    a("--devices", help="'cuda:all' (one process per local GPU) or a comma list such as cuda:0,cuda:1")
    a("--n-jobs", dest="n_jobs", type=int, help="parallel runs (joblib)")
    a("--backend", help="joblib backend (loky, threading, dask, ray)")
    a("--output", "-o", "--store", dest="store", help="result store folder (default runs)")
    a("--outlier-exposure", dest="outlier_exposure",
      help="OE corpus for class protocols (a registered name or path; default tinyimagenet for cifar10 and digits, "
           "synthetic shapes for synthetic)")
    a("--oe-corpora", dest="oe_corpora", nargs="+", help="oe-ablation: corpora to compare ('none' for no OE)")
    a("--n-normal", dest="n_normal", type=int, help="normal training images per split (default all / 1000)")
    a("--n-test", dest="n_test", type=int, help="test images per split (default all / 200)")
    a("--n-outlier", dest="n_outlier", type=int, help="synthetic OE images (default 1000)")
    a("--data-seed", dest="data_seed", type=int, help="seed of data generation and subsampling (default 0)")
    a("--errors", choices=["raise", "continue"], help="on a failing run: stop (default) or go on")
    a("--quiet", action="store_true", default=None, help="no per-run lines")
    a("--save-features", dest="save_features", action="store_true", default=None,
      help="also store each new run's test features, for 'skad-transfer report --tsne'")


def _options(args: argparse.Namespace) -> dict:
    options = dict(CLI_DEFAULTS)
    if getattr(args, "config", None):
        options.update(load_config(args.config))
    for key in CLI_DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    return options


def _weights(value):
    return None if isinstance(value, str) and value.lower() == "none" else value


def build_splits(options: Mapping[str, Any]) -> list[Split]:
    """Splits of ``options["dataset"]`` under ``options["protocol"]`` (the CLI's data step)."""
    from . import protocols as P

    dataset, protocol = options["dataset"], options["protocol"]
    if protocol is None:
        protocol = default_protocol(dataset)
    if protocol not in P.PROTOCOLS:
        raise ValueError(f"protocol: unknown protocol {protocol!r}; valid names are {sorted(P.PROTOCOLS)}")
    seed = int(options["data_seed"])
    if protocol in _SYNTHETIC_ONLY:
        _check_protocol_fits_dataset(protocol, dataset)
        kwargs = dict(n_normal=options["n_normal"] or 1000, n_outlier=options["n_outlier"] or 1000,
                      n_test=options["n_test"] or 200, random_state=seed)
        if protocol == "interventions":
            return P.interventions(**kwargs)
        return P.non_semantic_shift(**kwargs)
    data = P.load_benchmark_data(dataset, options["data"], random_state=seed, download=bool(options.get("download")))
    oe = options["outlier_exposure"]
    if oe is None:
        if dataset in ("cifar10", "digits"):
            oe = "tinyimagenet"
        else:  # synthetic shapes: OE = other images of the generator (all shapes); arrays are hashed in run ids
            from ..data.synthetic import make_interventions

            oe = make_interventions(options["n_outlier"] or 1000, random_state=seed + 2, return_factors=False)
    if isinstance(oe, str) and oe.lower() == "none":
        oe = None
    classes = options["classes"] if options["classes"] is not None else list(range(len(data.class_names)))
    common = dict(n_normal=options["n_normal"], n_test=options["n_test"], class_names=data.class_names,
                  random_state=seed)
    corpora = [None if isinstance(c, str) and c.lower() == "none" else c for c in options["oe_corpora"] or []]
    if options.get("download"):
        from ..data.corpora import download_corpus

        for name in dict.fromkeys([oe, *corpora]):
            if isinstance(name, str):
                download_corpus(name, root=options["data"])
    if protocol == "leave-one-out":
        splits = [P.leave_one_out(data.X_train, data.y_train, data.X_test, data.y_test, c, outlier_exposure=oe,
                                  **common) for c in classes]
    else:
        splits = [P.one_vs_rest(data.X_train, data.y_train, data.X_test, data.y_test, c, outlier_exposure=oe,
                                **common) for c in classes]
        if protocol == "oe-ablation":
            if not corpora:
                raise ValueError("protocol 'oe-ablation' needs --oe-corpora (e.g. tinyimagenet svhn none)")
            splits = [s for base in splits for s in P.oe_ablation(base, corpora)]
    if data.source:
        # Which files the images came from is part of each run's identity (and so of its run id).
        splits = [replace(s, meta={**s.meta, "source": data.source}) for s in splits]
    return splits


def run(args: argparse.Namespace) -> int:
    """Entry point of ``skad-transfer bench``: build splits, run the grid, print the summary."""
    options = check_options(_options(args))
    if options["data"] is None:
        from .._paths import data_root

        options["data"] = str(data_root())  # $SKAD_TRANSFER_DATA, else $SKAD_TRANSFER_HOME/datasets
    devices = options["devices"]
    if isinstance(devices, str) and devices != "cuda:all":
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    splits = build_splits(options)
    settings = {"epochs": options["epochs"], "steps": options["steps"], "weights": _weights(options["weights"]), "width": options["width"],
                "lr": options["lr"], "batch_size": options["batch_size"], "device": options["device"]}
    tasks = make_tasks(options["methods"], splits, options["seeds"], protocol=options["protocol"],
                       dataset=options["dataset"], settings=settings, method_params=options["method_params"])
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
