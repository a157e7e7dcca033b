"""Tasks of a benchmark grid: one method fitted on one split with one seed, and the run id that
names its files in the result store.

:func:`make_tasks` builds the grid ``splits x methods x seeds``. A task's identity is
:meth:`Task.config`, a JSON-serialisable dict (the device left out: where a run ran does not change
what it is); :func:`run_id` hashes it with :func:`~skad_transfer.bench.store.config_id`, so the same
run always lands in the same file of the store.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .methods import METHODS, check_method, check_settings
from .protocols import Split
from .store import ResultStore, config_id, corpus_key

__all__ = ["Task", "jsonable", "make_tasks", "run_id", "run_path"]


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
                "split_meta": jsonable(self.split.meta), "outlier_exposure": corpus_key(self.split.outlier_exposure),
                "n_normal": int(len(self.split.X_normal)), "n_test": int(len(self.split.X_test)),
                "seed": int(self.seed), "settings": jsonable(settings), "method_params": jsonable(self.method_params)}


def jsonable(value):
    """``value`` with what JSON cannot hold replaced, recursively.

    Mappings become dicts with string keys, tuples lists, numpy scalars Python scalars, paths
    strings, arrays the text ``"array<shape>"`` and any other object its ``repr``.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
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


def run_path(store, rid: str, suffix: str = ".json") -> Path:
    """``STORE/runs/<rid><suffix>``, for a ``rid`` of the form :func:`run_id` produces.

    Raises
    ------
    StoreError
        If ``rid`` is not 16 lowercase hex digits (so that no id can lead out of the store).
    """
    return ResultStore(store).path(rid, suffix)


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
    methods = [check_method(m) for m in methods]
    seeds = [int(s) for s in seeds]
    if not methods or not splits or not seeds:
        raise ValueError(f"make_tasks needs at least one method, split and seed; got {len(methods)} methods, "
                         f"{len(splits)} splits, {len(seeds)} seeds")
    method_params = dict(method_params or {})
    unknown = sorted(set(method_params) - set(METHODS))
    if unknown:
        raise ValueError(f"method_params: unknown methods {unknown}; valid methods are {sorted(METHODS)}")
    settings = check_settings(settings)
    return [Task(m, s, seed, protocol, dataset, dict(settings), dict(method_params.get(m, {})))
            for s in splits for m in methods for seed in seeds]
