"""Helpers shared by the benchmark scripts: the provenance record every results file carries.

Scripts reach this package by the two-line bootstrap at their top (``benchmarks/README.md``,
"Running and importing")::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common`
    from common import provenance  # noqa: E402

Modules: this one (:func:`provenance` and the functions that put it into results files),
:mod:`common.throughput` (the engine's training throughput and the reference loop's, shared by
``speed/engine_speed.py`` and ``speed/device_suite.py``) and :mod:`common.devsplit` (the development
protocol's CIFAR-10 split, low-resolution and glyph stand-ins, shared by ``studies/dev_defaults.py``
and ``studies/intensity_separability.py``).

The record (:func:`provenance`)::

    {"commit": "19a5e73+dirty", "dirty": true,
     "versions": {"skad_transfer": ..., "torch": ..., "torchvision": ..., "numpy": ...,
                  "scikit-learn": ..., "python": ...},
     "device": "cpu", "cpu": "AMD EPYC 9R14 96-Core Processor", "gpu": null,
     "precision": "bfloat16", "auto_precision": "bfloat16", "threads": 2, "omp_num_threads": null,
     "platform": "Linux-...", "date": "2026-12-08T10:00:00+0000"}

``commit``, ``device``, ``threads`` and the versions come from the library's own record of a
``skad-transfer bench`` run (``skad_transfer.bench.runner._versions``, which every stored run
carries), so a script's results and the store's runs name them alike.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

__all__ = ["provenance", "print_provenance", "is_provenance", "with_provenance", "PROVENANCE_KEY"]

PROVENANCE_KEY = "provenance"
"""The key under which results files hold the record: a JSON object's top-level key, or a JSON
Lines file's line ``{"provenance": {...}}`` (written at the start of each invocation)."""


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``lscpu``, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def _library_record(device) -> dict:
    """The library's record of a bench run (python, torch, sklearn, numpy, skad_transfer, commit,
    device, threads, platform, gpu on CUDA). Should the library's helper move, the same fields are
    read here instead, and the record says so."""
    try:
        from skad_transfer.bench.runner import _versions
    except ImportError as error:
        import numpy
        import sklearn
        import torch

        import skad_transfer

        try:
            head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                  cwd=Path(skad_transfer.__file__).parent, timeout=10)
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                   text=True, cwd=Path(skad_transfer.__file__).parent, timeout=10).stdout.strip()
            commit = head.stdout.strip() + ("+dirty" if dirty else "") if head.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            commit = None
        record = {"python": platform.python_version(), "torch": torch.__version__, "sklearn": sklearn.__version__,
                  "numpy": numpy.__version__, "skad_transfer": skad_transfer.__version__, "commit": commit,
                  "device": str(device), "threads": torch.get_num_threads(), "platform": platform.platform(),
                  "note": f"skad_transfer.bench.runner._versions not importable ({error}); read here"}
        if str(device).startswith("cuda") and torch.cuda.is_available():
            record["gpu"] = torch.cuda.get_device_name(torch.device(str(device)))
        return record
    return _versions(str(device))


def _resolved_precision(device: str, precision) -> str | list | None:
    """What ``precision`` (a name, a list of names, or None) resolves to on ``device``."""
    if precision is None:
        return None
    try:
        from skad_transfer.device import Precision, resolve_device
    except ImportError:  # before the device module (commit 19a5e73 and earlier)
        from skad_transfer.device import Precision, resolve_device
    resolved = resolve_device(device)
    if isinstance(precision, (list, tuple)):
        return [Precision.resolve(resolved, p).name for p in precision]
    return Precision.resolve(resolved, precision).name


def provenance(device="auto", precision=None, *, threads: int | None = None, **extra) -> dict:
    """The record a results file carries: what ran, where, in what precision, on how many threads.

    Parameters
    ----------
    device : str or torch.device, default "auto"
        The device the measurements ran on (resolved: ``"auto"`` becomes ``"cuda"`` or ``"cpu"``).
    precision : str, list of str or None
        The training/inference precision(s) the script ran (``"auto"``, ``"float32"``, ``"bfloat16"``),
        recorded as what they resolve to on ``device``; None where nothing runs a network or each row
        states its own precision. ``auto_precision`` (what ``"auto"`` means on ``device``) is always
        recorded.
    threads : int, optional
        The torch thread count of the measurements when it differs from this process's (e.g. a
        script whose measurements run in child processes with one thread); default
        ``torch.get_num_threads()`` here.
    **extra
        More fields for the record (e.g. ``OMP_NUM_THREADS``, the script's arguments).

    Returns
    -------
    dict
        ``commit`` (short hash, ``+dirty`` with uncommitted changes to tracked files; None outside a
        git checkout), ``dirty``, ``versions`` (skad_transfer, torch, torchvision, numpy,
        scikit-learn, python), ``device``, ``cpu`` (model name), ``gpu`` (name on CUDA, else None),
        ``precision``, ``auto_precision``, ``threads``, ``omp_num_threads`` (the variable, None when
        unset), ``platform``, ``date`` and ``extra``'s fields.
    """
    library = _library_record(device)
    try:
        torchvision = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        torchvision = None
    commit = library.get("commit")
    record = {
        "commit": commit,
        "dirty": None if commit is None else commit.endswith("+dirty"),
        "versions": {"skad_transfer": library.get("skad_transfer"), "torch": library.get("torch"),
                     "torchvision": torchvision, "numpy": library.get("numpy"),
                     "scikit-learn": library.get("sklearn"), "python": library.get("python")},
        "device": library.get("device"),
        "cpu": _cpu_model(),
        "gpu": library.get("gpu"),
        "precision": _resolved_precision(library.get("device"), precision),
        "auto_precision": _resolved_precision(library.get("device"), "auto"),
        "threads": library.get("threads") if threads is None else threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "platform": library.get("platform"),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if "note" in library:
        record["note"] = library["note"]
    record.update(extra)
    return record


def with_provenance(payload, record: dict) -> dict:
    """A JSON results object with the record under ``"provenance"``: a dict gains the key; any other
    payload (a list of rows) becomes ``{"provenance": record, "rows": payload}``."""
    if isinstance(payload, dict):
        return {PROVENANCE_KEY: record, **payload}
    return {PROVENANCE_KEY: record, "rows": payload}


def print_provenance(*args, **kwargs) -> dict:
    """Print the record as one line ``provenance: {...}`` (the first line of a script whose printed
    output is what gets stored) and return it; arguments as for :func:`provenance`."""
    record = provenance(*args, **kwargs)
    print(f"{PROVENANCE_KEY}: {json.dumps(record)}", flush=True)
    return record


def is_provenance(line: dict) -> bool:
    """Whether a JSON Lines row is a provenance line rather than a result (also the ``"environment"``
    lines of results files written before this module)."""
    return PROVENANCE_KEY in line or bool(line.get("environment"))
