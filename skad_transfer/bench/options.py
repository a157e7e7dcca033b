"""The options of ``skad-transfer bench``: their defaults, config files, the parser, their checks,
and the splits they select.

Options come from three layers, each overriding the one before: :data:`CLI_DEFAULTS`, a JSON or TOML
config file (:func:`load_config`) and the command line flags (:func:`add_arguments`);
:func:`merge_options` stacks them. :func:`check_options` then checks everything that can be checked
without reading data, so that a wrong value fails before a dataset is decoded, and
:func:`build_splits` turns the checked options into the splits of the grid.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .methods import METHODS
from .protocols import Split

__all__ = ["CLI_DEFAULTS", "DEFAULT_PROTOCOLS", "add_arguments", "build_splits", "check_options", "default_protocol",
           "load_config", "merge_options", "task_settings"]

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
    o = dict(options)
    # The order of the checks is the order in which errors are reported: names first, then numbers,
    # then what needs the file system.
    _check_names(o)
    _check_seeds(o)
    _check_classes(o)
    _check_numbers(o)
    _check_places(o)
    _check_weights(o)
    _check_corpora(o)
    return o


def _check_names(o: dict) -> None:
    """Check the dataset, protocol, error policy, methods and method parameters of ``o`` in place;
    a missing protocol becomes the dataset's default."""
    from .protocols import PROTOCOLS

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


def _check_seeds(o: dict) -> None:
    """Make ``o["seeds"]`` a list of distinct ints in [0, 2**32 - 1] (one int is a list of one)."""
    seeds = o["seeds"]
    seeds = [seeds] if _is_int(seeds) else seeds
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise ValueError(f"--seeds: expected a non-empty list of ints, got {seeds!r}")
    o["seeds"] = [_int_option({"seeds": s}, "seeds", 0, optional=False, maximum=2**32 - 1) for s in seeds]
    if len(set(o["seeds"])) != len(o["seeds"]):
        raise ValueError(f"--seeds: {o['seeds']} repeats a seed")


def _check_classes(o: dict) -> None:
    """Make ``o["classes"]``, when given, a list of distinct class indices of the dataset."""
    from ..data.synthetic import SHAPE_NAMES

    classes = o["classes"]
    if classes is None:
        return
    classes = [classes] if _is_int(classes) else classes
    n = _N_CLASSES[o["dataset"]] or len(SHAPE_NAMES)
    if not isinstance(classes, (list, tuple)) or not classes \
            or not all(_is_int(c) and 0 <= c < n for c in classes):
        raise ValueError(f"--classes: expected class indices in [0, {n - 1}] for dataset {o['dataset']!r}, "
                         f"got {classes!r}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"--classes: {list(classes)} repeats a class")
    o["classes"] = [int(c) for c in classes]


def _check_numbers(o: dict) -> None:
    """Check the training lengths, sizes, batch size, data seed, job count and learning rate of ``o``."""
    for key in ("epochs", "steps", "width", "n_normal", "n_test", "n_outlier"):
        o[key] = _int_option(o, key, 1)
    o["batch_size"] = _int_option(o, "batch_size", 2, optional=False)
    o["data_seed"] = _int_option(o, "data_seed", 0, optional=False, maximum=2**32 - 1)
    if not _is_int(o["n_jobs"]) or o["n_jobs"] == 0:
        raise ValueError(f"--n-jobs: expected a non-zero int (joblib: -1 for all cores), got {o['n_jobs']!r}")
    lr = o["lr"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"--lr: expected a finite number > 0, got {lr!r}")


def _check_places(o: dict) -> None:
    """Check the devices, joblib backend, data folder and store of ``o`` (the store must not be a file)."""
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


def _check_weights(o: dict) -> None:
    """Check that the weights of ``o`` resolve to a file that exists, and that ``--width`` fits them."""
    from ..weights import resolve_weights

    weights = _weights(o["weights"])
    if weights is not None and not isinstance(weights, str):
        raise ValueError(f"--weights: expected a registered name, a checkpoint path or 'none', got {weights!r}")
    record = resolve_weights(weights)
    if record is not None:
        record.locate()   # a missing checkpoint fails now, not in every run after the data is loaded
        if o["width"] is not None and o["width"] != record.width:
            raise ValueError(f"--width {o['width']}: the weights {record.name!r} have width {record.width}; "
                             f"--width is for --weights none")


def _check_corpora(o: dict) -> None:
    """Check that every OE corpus of ``o`` is a registered name, 'none' or an existing path."""
    from ..data.corpora import list_corpora

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


def merge_options(args: argparse.Namespace) -> dict:
    """The ``bench`` options of parsed arguments: :data:`CLI_DEFAULTS`, overridden by the config file
    that ``args.config`` names (if any), overridden by every flag given (not None).

    The result is not checked yet: :func:`check_options` does that.
    """
    options = dict(CLI_DEFAULTS)
    if getattr(args, "config", None):
        options.update(load_config(args.config))
    for key in CLI_DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    return options


def _weights(value):
    """``--weights none`` (any case) means random initialisation: None."""
    return None if isinstance(value, str) and value.lower() == "none" else value


def task_settings(options: Mapping[str, Any]) -> dict:
    """The shared settings (:data:`~skad_transfer.bench.methods.DEFAULT_SETTINGS` keys) of checked options."""
    return {"epochs": options["epochs"], "steps": options["steps"], "weights": _weights(options["weights"]),
            "width": options["width"], "lr": options["lr"], "batch_size": options["batch_size"],
            "device": options["device"]}


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
