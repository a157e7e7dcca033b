"""``compile=``: the training step under ``torch.compile``, with errors that name the way out."""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["COMPILE_MODES", "CUDA_GRAPH_MODES", "compiled"]


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""``torch.compile`` modes a detector's ``compile=`` accepts besides True (``"default"``) and False."""

CUDA_GRAPH_MODES = frozenset({"reduce-overhead", "max-autotune"})
"""The modes among :data:`COMPILE_MODES` in which ``torch.compile`` replays CUDA graphs on a GPU."""


def compiled(function: Callable, compile: bool | str, device: torch.device | str | None = None) -> Callable:
    """``function`` itself (``compile=False``) or under ``torch.compile`` in the mode ``compile``
    names (True: ``"default"``).

    ``"reduce-overhead"`` and ``"max-autotune"`` also replay the compiled forward and backward as
    CUDA graphs on a GPU, which removes the per-kernel launch cost that bounds a step of small images
    there (``docs/benchmarks.md``, "The device suite"); on the CPU they compile as ``"default"``
    does. Each call of the returned function is then marked as a new training step, so that CUDA
    graphs may reuse the memory of the previous step's outputs, which the training loop has consumed by
    then.

    On a CPU ``device`` a missing C++ compiler (which inductor needs there) is a RuntimeError at
    once, and a failure of torch.compile itself in a call is re-raised as a RuntimeError that names
    ``compile=False`` as the way out.
    """
    if compile is False:
        return function
    mode = "default" if compile is True else compile
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be True, False or one of {COMPILE_MODES}, got {compile!r}")
    if device is not None and torch.device(device).type == "cpu":
        _check_cpu_compiler(compile)
    step = torch.compile(function, mode=mode)
    graphs = mode in CUDA_GRAPH_MODES

    def compiled_step(*args, **kwargs):
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        try:
            return step(*args, **kwargs)
        except Exception as error:  # torch.compile's own failures say nothing of compile=False
            if not type(error).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise RuntimeError(f"compile={compile!r}: torch.compile could not build the training step "
                               f"({type(error).__name__}: {first}); fit with compile=False") from error

    return compiled_step


def _check_cpu_compiler(compile) -> None:
    """On the CPU, torch.compile's inductor needs a working C++ compiler: without one the first step
    fails after seconds of tracing, deep inside torch. Ask inductor now."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # another torch layout: the wrapper above still explains a failure
        return
    try:
        get_cpp_compiler()
    except Exception as error:
        raise RuntimeError(
            f"compile={compile!r}: torch.compile on the CPU needs a working C++ compiler (g++ or clang, or $CXX), "
            f"and none was found ({error}); install one, or fit with compile=False"
        ) from error
