"""Benchmarks: evaluation protocols that turn datasets into splits, and a runner with a result store.

:mod:`skad_transfer.bench.protocols` builds :class:`Split` objects (normal training images, a test
set labelled +1 normal / -1 anomaly, and an outlier-exposure corpus) for the paper's protocols;
:mod:`skad_transfer.bench.runner` runs method x split x seed grids through :func:`joblib.Parallel`
and summarises them over seeds; :mod:`skad_transfer.bench.store` is the :class:`ResultStore` that
keeps one JSON record (plus the raw scores) per finished run, named by a hash of its configuration;
:mod:`skad_transfer.bench.report` reads a store and draws the paper's tables and figures. The command
line front ends are ``skad-transfer bench`` and ``skad-transfer report``.
"""

from .protocols import (PROTOCOLS, BenchmarkData, Split, interventions, leave_one_out, load_benchmark_data,
                        non_semantic_shift, oe_ablation, one_vs_rest)
from .report import build_report, recreate_split
from .runner import METHODS, Task, format_summary, make_estimator, make_tasks, run_grid, summarize
from .store import ResultStore

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
