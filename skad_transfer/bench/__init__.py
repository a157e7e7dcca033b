"""Benchmarks: evaluation protocols that turn datasets into splits, and a runner with a result store.

:mod:`skad_transfer.bench.protocols` builds :class:`Split` objects (normal training images, a test
set labelled +1 normal / -1 anomaly, and an outlier-exposure corpus) for the paper's protocols;
:mod:`skad_transfer.bench.methods` names the methods and builds their estimators;
:mod:`skad_transfer.bench.tasks` makes method x split x seed grids of :class:`Task` objects, each
named by a hash of its configuration; :mod:`skad_transfer.bench.runner` runs them through
:func:`joblib.Parallel`; :mod:`skad_transfer.bench.store` is the :class:`ResultStore` that keeps one
JSON record (plus the raw scores) per finished run; :mod:`skad_transfer.bench.summary` averages the
stored runs over seeds; :mod:`skad_transfer.bench.report` reads a store and draws the paper's tables
and figures, re-creating a run's test images with :mod:`skad_transfer.bench.recreate`. The command
line front ends are ``skad-transfer bench`` (its options in :mod:`skad_transfer.bench.options`) and
``skad-transfer report``.
"""

from .methods import METHODS, make_estimator
from .protocols import (PROTOCOLS, BenchmarkData, Split, interventions, leave_one_out, load_benchmark_data,
                        non_semantic_shift, oe_ablation, one_vs_rest)
from .recreate import recreate_split
from .report import build_report
from .runner import run_grid
from .store import ResultStore
from .summary import format_summary, summarize
from .tasks import Task, make_tasks

__all__ = [
    "BenchmarkData",
    "METHODS",
    "PROTOCOLS",
    "ResultStore",
    "Split",
    "Task",
    "build_report",
    "format_summary",
    "interventions",
    "leave_one_out",
    "load_benchmark_data",
    "make_estimator",
    "make_tasks",
    "non_semantic_shift",
    "oe_ablation",
    "one_vs_rest",
    "recreate_split",
    "run_grid",
    "summarize",
]
