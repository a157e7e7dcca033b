"""The result store of ``skad-transfer bench``: its folder layout, run ids, and reading and writing runs.

A store is a folder ``STORE`` with one pair of files per finished run::

    STORE/runs/<run_id>.json   the run record: method, protocol, dataset, split, seed, config
                               (which names the run), params, metrics, timing, versions
    STORE/runs/<run_id>.npz    scores (score_samples on X_test) and labels (y_test), plus the
                               test images' features when the run was asked to keep them

``run_id`` is :func:`config_id` of the run's configuration: 16 hex digits of a SHA-1 of its JSON
with sorted keys, so the same run always lands in the same file and a rerun finds it. Both files
are written atomically (:mod:`skad_transfer._io`), the ``.npz`` first: a JSON file exists only for
a complete run. Everything read from a store is checked; a file that is not what this module
writes raises :class:`StoreError` naming it (``docs/design.md``, "What is trusted").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write
from .protocols import describe_corpus

__all__ = ["ResultStore", "StoreError", "config_id", "corpus_key", "corpus_label", "read_record", "variant_id"]

#: What :func:`config_id` produces: the run's files are named by it, so nothing else may be joined to
#: the store's path (a ``run_id`` read from a file could otherwise be ``../../x``).
_RUN_ID = re.compile(r"[0-9a-f]{16}")
#: Keys every stored record has (what :func:`~skad_transfer.bench.runner.summarize` and the report read).
_RECORD_KEYS = ("run_id", "method", "protocol", "dataset", "split", "seed", "config", "metrics", "timing")
#: A corpus key of an array: its label (:func:`~skad_transfer.bench.protocols.describe_corpus`) and
#: the first 12 hex digits of a SHA-1 of its bytes (:func:`corpus_key`).
_ARRAY_KEY = re.compile(r"(array\([0-9, ]*\)):[0-9a-f]{12}")


class StoreError(ValueError):
    """A file of a result store is not a run record: corrupt, truncated, or not written by this module.

    The message names the file. Records are written atomically, so a damaged one was damaged after
    the fact (a full disk, a hand edit, a copy that was cut short); deleting the run's two files
    makes the next sweep redo that run.
    """


# ----------------------------------------------------------------------------- identities
def config_id(config: Mapping[str, Any]) -> str:
    """The 16-hex-digit id of a JSON-serialisable configuration (a run's ``run_id``).

    The SHA-1 of ``json.dumps(config, sort_keys=True)``: independent of key order, and the same in
    every version of the package, since stores on disk are named by it.
    """
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


_ARRAY_DIGESTS: dict[int, tuple[Any, str]] = {}


def corpus_key(spec) -> str | None:
    """How a run's configuration names its OE corpus.

    Names and paths are kept verbatim and ``None`` stays ``None``; an array becomes its label and a
    digest of its contents, ``"array(n, h, w, c):<12 hex digits>"``, so that runs on different
    arrays of one shape get different run ids. Digests are cached per array object (hashing a
    corpus for every run of a grid would cost more than small runs).
    """
    label = describe_corpus(spec)
    if spec is None or isinstance(spec, (str, os.PathLike)) or not hasattr(spec, "shape"):
        return label
    cached = _ARRAY_DIGESTS.get(id(spec))
    if cached is None or cached[0]() is not spec:
        digest = hashlib.sha1(np.ascontiguousarray(spec).view(np.uint8).ravel()).hexdigest()[:12]
        try:
            ref = weakref.ref(spec)
        except TypeError:  # not weak-referenceable: do not cache
            return f"{label}:{digest}"
        cached = (ref, digest)
        _ARRAY_DIGESTS[id(spec)] = cached
    return f"{label}:{cached[1]}"


def corpus_label(key: str | None) -> str | None:
    """A :func:`corpus_key` without the content digest of an array (names and paths unchanged).

    Arrays generated per split (the synthetic protocols' OE images) differ from split to split,
    so their digests identify data, not a setting; tables group runs by the label alone.
    """
    match = _ARRAY_KEY.fullmatch(key) if isinstance(key, str) else None
    return match.group(1) if match else key


def variant_id(config: Mapping[str, Any], *, outlier_exposure: str | None = "key") -> str:
    """8 hex digits naming a run's settings: shared settings, method parameters and OE corpus.

    Runs of one method and split with different variants are never averaged together
    (:func:`~skad_transfer.bench.runner.summarize`).

    Parameters
    ----------
    config : dict
        A run's configuration (``record["config"]``).
    outlier_exposure : {"key", "label"} or None, default="key"
        How the OE corpus counts: its full :func:`corpus_key` (``summarize``'s variants), its
        :func:`corpus_label` (a table row across splits that generate their own OE arrays), or not
        at all (a table whose columns are the corpora).
    """
    if outlier_exposure not in ("key", "label", None):
        raise ValueError(f"outlier_exposure must be 'key', 'label' or None, got {outlier_exposure!r}")
    oe = config.get("outlier_exposure") if outlier_exposure else None
    if outlier_exposure == "label":
        oe = corpus_label(oe)
    return config_id({"settings": config.get("settings"), "method_params": config.get("method_params"),
                      "oe": oe})[:8]


# ----------------------------------------------------------------------------- records
def read_record(path) -> dict:
    """One stored run record (``STORE/runs/<run_id>.json``), checked.

    Raises
    ------
    StoreError
        If the file is not valid JSON (e.g. truncated), not an object, lacks a key of a run record,
        or holds a ``run_id`` other than its file name.
    """
    path = Path(path)
    hint = f"delete it (and {path.stem}.npz) and rerun the sweep to redo that run"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StoreError(f"{path}: not a valid run record (corrupt or truncated JSON: {error}); {hint}") from error
    if not isinstance(record, dict):
        raise StoreError(f"{path}: not a run record (a JSON {type(record).__name__}, not an object); {hint}")
    missing = [k for k in _RECORD_KEYS if k not in record]
    if missing:
        raise StoreError(f"{path}: not a run record (missing keys {missing}); {hint}")
    if record["run_id"] != path.stem:
        raise StoreError(f"{path}: holds run_id {record['run_id']!r}, not its file name {path.stem!r}; {hint}")
    for key, inner in (("metrics", ("auc", "ap")), ("timing", ("fit_seconds",))):
        if not isinstance(record[key], dict) or any(k not in record[key] for k in inner):
            raise StoreError(f"{path}: not a run record ({key!r} lacks {list(inner)}); {hint}")
    return record


class ResultStore:
    """A folder of finished runs, as ``skad-transfer bench`` writes it and ``report`` reads it.

    Parameters
    ----------
    root : str or path-like
        The store's folder (``STORE``); created on the first write. A ``ResultStore`` is itself
        path-like, so it can be passed wherever a store folder is expected.

    Attributes
    ----------
    root : Path
        The store's folder.
    runs_dir : Path
        ``STORE/runs``, where the runs' files are.

    Examples
    --------
    >>> from skad_transfer.bench import ResultStore
    >>> store = ResultStore("results")
    >>> store.path("0123456789abcdef").as_posix()
    'results/runs/0123456789abcdef.json'
    >>> "0123456789abcdef" in store, store.records()
    (False, [])

    A sweep's runs are then read back by id (``store.read(run_id)``, ``store.read_scores(run_id)``)
    or all at once (``store.records()``).
    """

    def __init__(self, root):
        self.root = Path(root)

    def __fspath__(self) -> str:
        return os.fspath(self.root)

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    @property
    def runs_dir(self) -> Path:
        """``STORE/runs``, the folder holding the runs' files."""
        return self.root / "runs"

    def path(self, run_id: str, suffix: str = ".json") -> Path:
        """``STORE/runs/<run_id><suffix>``, for a ``run_id`` of the form :func:`config_id` produces.

        Raises
        ------
        StoreError
            If ``run_id`` is not 16 lowercase hex digits (so that no id can lead out of the store).
        """
        if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
            raise StoreError(f"result store {self.root}: run id {run_id!r} is not a run id (16 hex digits, as "
                             f"written by skad-transfer bench); the store's records are damaged or were not "
                             f"written by it")
        return self.runs_dir / f"{run_id}{suffix}"

    def __contains__(self, run_id: str) -> bool:
        """Whether the run is finished (its JSON record exists)."""
        return self.path(run_id).is_file()

    def read(self, run_id: str) -> dict:
        """The record of one run (:func:`read_record`)."""
        return read_record(self.path(run_id))

    def records(self) -> list[dict]:
        """Every stored record, sorted by file name.

        Raises
        ------
        StoreError
            If one of the files is not a run record (see :func:`read_record`): a damaged record is
            an error, not skipped, so that no summary silently averages over fewer runs than were
            made.
        """
        if not self.runs_dir.is_dir():
            return []
        # Temporary files of writes in progress start with a dot (skad_transfer._io).
        return [read_record(p) for p in sorted(self.runs_dir.glob("*.json")) if not p.name.startswith(".")]

    def read_scores(self, run_id: str) -> dict[str, np.ndarray]:
        """The arrays stored with a run: ``scores`` and ``labels``, and ``features`` if kept.

        Returns
        -------
        arrays : dict of str to ndarray
            ``scores`` (n_test,) float64, ``score_samples`` of the test images (higher = more
            normal); ``labels`` (n_test,) int64, +1 normal / -1 anomaly; ``features``
            (n_test, n_features), present when the run kept the test images' features.

        Raises
        ------
        FileNotFoundError
            If the run has no scores file.
        StoreError
            If the file does not load, lacks ``scores`` or ``labels``, or its arrays do not give one
            score (and one feature row) per label.
        """
        path = self.path(run_id, ".npz")
        if not path.is_file():
            raise FileNotFoundError(f"run {run_id}: no scores file {path}")
        hint = f"delete it and {path.stem}.json and rerun the sweep to redo that run"
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {key: stored[key] for key in stored.files}
            scores, labels = arrays["scores"], arrays["labels"]
        except Exception as error:  # a truncated zip, a missing key, a foreign file: numpy raises many types
            raise StoreError(f"{path}: not a readable scores file ({type(error).__name__}: {error}); "
                             f"{hint}") from error
        if scores.shape != labels.shape or scores.ndim != 1:
            raise StoreError(f"{path}: scores {scores.shape} and labels {labels.shape} are not one score per label")
        features = arrays.get("features")
        if features is not None and (features.ndim != 2 or len(features) != len(labels)):
            raise StoreError(f"{path}: features {features.shape} are not one row per label {labels.shape}")
        return arrays

    def write(self, record: Mapping[str, Any], *, scores, labels, features=None) -> Path:
        """Store a finished run: its arrays, then its record; returns the record's path.

        Parameters
        ----------
        record : dict
            The run record; ``record["run_id"]`` names the files.
        scores, labels : array-like of shape (n_test,)
            ``score_samples`` of the test images and their labels.
        features : array-like of shape (n_test, n_features), optional
            The test images' features, kept for figures drawn later (t-SNE).
        """
        path = self.path(record["run_id"])
        arrays = {"scores": scores, "labels": labels}
        if features is not None:
            arrays["features"] = features

        def write_npz(handle):
            np.savez(handle, **arrays)

        path.parent.mkdir(parents=True, exist_ok=True)
        # fsync: a record that exists must survive a crash of the machine, since reruns skip it.
        atomic_write(path.with_suffix(".npz"), write_npz, "wb", fsync=True)
        atomic_write(path, lambda handle: handle.write(json.dumps(record, indent=1, sort_keys=True) + "\n"), "w",
                     fsync=True)
        return path
