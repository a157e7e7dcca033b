"""Re-creating the test data of a stored run from its configuration.

The result store keeps a run's scores and labels, not its images. :func:`recreate_split` rebuilds
the run's :class:`~skad_transfer.bench.protocols.Split` with the protocol functions, finding it by
the fields of the run's split metadata (``config["split_meta"]``): exactly for the synthetic
generators and scikit-learn's digits, by reloading ``cifar10-jpg.zip`` from a data folder for
CIFAR-10. The report draws its top-anomalies grid (Fig. 4) and the class colours of its t-SNE
(Fig. 3) from what this module re-creates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .store import corpus_label

__all__ = ["recreate_split", "recreate_test_classes", "split_meta"]


def split_meta(record: Mapping[str, Any], key: str):
    """A field of a run's split metadata (``record["config"]["split_meta"][key]``).

    Raises
    ------
    LookupError
        When the run's split metadata lacks ``key``; the message names the run and the fields it has.
    """
    meta = record["config"].get("split_meta") or {}
    if key not in meta:
        raise LookupError(f"run {record.get('run_id')}: its split metadata has no {key!r} (fields: {sorted(meta)})")
    return meta[key]


# Figs. 3 and 4 of a run, and the class lookup of Fig. 3, each need the run's dataset (for CIFAR-10
# a decode of every JPEG): it is loaded once per (dataset, folder, seed) and kept for the process.
_DATA_CACHE: dict = {}


def _benchmark_data(dataset: str, data, random_state: int):
    from .protocols import load_benchmark_data

    key = (dataset, str(data), random_state)
    if key not in _DATA_CACHE:
        if dataset in ("synthetic", "digits"):
            _DATA_CACHE[key] = load_benchmark_data(dataset, random_state=random_state)
        elif dataset == "cifar10":
            if data is None:
                raise LookupError("dataset 'cifar10': pass --data (the folder holding cifar10-jpg.zip) to reload "
                                  "the images")
            _DATA_CACHE[key] = load_benchmark_data("cifar10", data)
        else:
            raise LookupError(f"dataset {dataset!r}: re-creating its images is not supported")
    return _DATA_CACHE[key]


def recreate_split(record: Mapping[str, Any], data=None):
    """Re-create the :class:`~skad_transfer.bench.protocols.Split` of a stored run.

    The split is found by the fields of the run's split metadata (``config["split_meta"]``): the
    class index and name for the class protocols, the intervened factor and its value, or the
    number of colours.

    Parameters
    ----------
    record : dict
        A stored run record (``STORE/runs/<run_id>.json``).
    data : str or path-like, optional
        Folder holding ``cifar10-jpg.zip`` (CIFAR-10 runs only).

    Returns
    -------
    split : Split
        The split the run was scored on, under its stored name. Its ``outlier_exposure`` is the
        stored corpus name or path, or None for an array corpus of a class protocol (the store
        keeps a digest of its images, not the images); the synthetic protocols re-create theirs.

    Raises
    ------
    LookupError
        When the images cannot be re-created (MPI3D, an unknown dataset, CIFAR-10 without
        ``data``, a configuration the protocol functions do not reproduce, or split metadata
        without a field this needs).
    """
    from dataclasses import replace

    from ..data.synthetic import COLOR_NAMES
    from . import protocols as P

    config = record["config"]
    meta = config.get("split_meta") or {}
    protocol, dataset, name = record["protocol"], record["dataset"], record["split"]
    rs = meta.get("random_state")
    if protocol in ("interventions", "non-semantic-shift"):
        if meta.get("source") != "synthetic":
            raise LookupError(f"run {record.get('run_id')}: {protocol} on {meta.get('source', dataset)!r} data "
                              f"cannot be re-created from the store (only the synthetic generator can)")
        common = dict(n_normal=split_meta(record, "n_normal"), n_outlier=split_meta(record, "n_outlier"),
                      n_test=split_meta(record, "n_test"), image_size=meta.get("image_size", 32), random_state=rs)
        if protocol == "interventions":
            splits = P.interventions(normal=meta.get("normal"), **common)
            wanted = {"factor": split_meta(record, "factor"), "value": split_meta(record, "value")}
        else:
            colors = list(meta.get("normal_colors") or [])
            if colors != list(COLOR_NAMES[:len(colors)]):
                raise LookupError(f"run {record.get('run_id')}: custom colour order {colors} cannot be re-created")
            splits = P.non_semantic_shift(normal_shape=meta.get("normal_shape"),
                                          anomaly_shape=meta.get("anomaly_shape"), **common)
            wanted = {"step": split_meta(record, "step")}
        split = next((s for s in splits if all(s.meta.get(k) == v for k, v in wanted.items())), None)
        if split is None:
            raise LookupError(f"run {record.get('run_id')}: split {name!r} is not produced by the default "
                              f"{protocol} settings")
    elif protocol in ("one-vs-rest", "leave-one-out", "oe-ablation"):
        loaded = _benchmark_data(dataset, data, rs if isinstance(rs, int) else 0)
        if "normal_class" in meta:
            fn, cls = P.one_vs_rest, meta["normal_class"]
        else:
            fn, cls = P.leave_one_out, split_meta(record, "anomaly_class")
        # The class is named after loaded.class_names when the run was given them, else by its
        # index: passing them or not gives the stored class_name (and the split's own meta).
        named = [str(n) for n in loaded.class_names]
        given = (isinstance(cls, int) and 0 <= cls < len(named)
                 and named[cls] == str(split_meta(record, "class_name")))
        key = config.get("outlier_exposure")
        oe = key if corpus_label(key) == key else None   # an array corpus: only its digest is stored
        split = fn(loaded.X_train, loaded.y_train, loaded.X_test, loaded.y_test, cls, outlier_exposure=oe,
                   n_normal=meta.get("n_normal"), n_test=meta.get("n_test"),
                   class_names=loaded.class_names if given else None, random_state=rs)
        split = replace(split, name=name)
    else:
        raise LookupError(f"run {record.get('run_id')}: unknown protocol {protocol!r}")
    return split


def recreate_test_classes(record: Mapping[str, Any], labels, data=None) -> np.ndarray | None:
    """Class names of the test images of a class-protocol run, found by content in the reloaded dataset.

    Parameters
    ----------
    record : dict
        A stored run record.
    labels : ndarray
        The run's stored test labels; the re-created split must have the same ones.
    data : str or path-like, optional
        Folder holding ``cifar10-jpg.zip`` (CIFAR-10 runs only).

    Returns
    -------
    classes : ndarray of str or None
        One class name per test image; None for another protocol, or when the images cannot be
        re-created or matched.
    """
    if record["protocol"] not in ("one-vs-rest", "leave-one-out", "oe-ablation"):
        return None
    try:
        split = recreate_split(record, data)
    except LookupError:   # images out of reach (CIFAR-10 without --data): no class colours
        return None
    if not np.array_equal(split.y_test, labels):
        return None
    rs = record["config"].get("split_meta", {}).get("random_state")
    loaded = _benchmark_data(record["dataset"], data, rs if isinstance(rs, int) else 0)
    lookup = {np.asarray(x).tobytes(): int(y) for x, y in zip(loaded.X_test, loaded.y_test)}
    classes = [lookup.get(np.asarray(x).tobytes()) for x in split.X_test]
    if any(c is None for c in classes):
        return None
    return np.array([str(loaded.class_names[c]) for c in classes])

