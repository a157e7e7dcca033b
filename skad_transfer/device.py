"""Where and in what precision networks run: the device, bf16 autocast, channels_last.

Shared by training (:mod:`skad_transfer.training`) and inference (:mod:`skad_transfer.inference`).
On CUDA, and on CPUs with native bf16 (AVX512-BF16/AMX), ``precision="auto"`` runs the forward and
backward under bf16 autocast; elsewhere float32. Tensors and weights are channels_last on every
device. The measurements behind both choices: ``docs/benchmarks.md``, "Training throughput".
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

__all__ = ["resolve_device", "PRECISIONS", "Precision", "cpu_has_native_bfloat16", "on_device", "placed"]


def resolve_device(device) -> torch.device:
    """``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a torch.device."""
    if isinstance(device, torch.device):
        spec = str(device)
    elif isinstance(device, str):
        spec = device.strip().lower()
    else:
        raise TypeError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, got {type(device).__name__}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available here; use device='auto' or 'cpu'")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif resolved.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return resolved


PRECISIONS = ("auto", "float32", "bfloat16")
"""What ``precision=`` accepts: ``"auto"`` resolves per device (:meth:`Precision.resolve`)."""

ONEDNN_ISAS_WITHOUT_BFLOAT16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                                          "AVX512_CORE_VNNI"})
"""Values of oneDNN's ISA cap (``ONEDNN_MAX_CPU_ISA``, formerly ``DNNL_MAX_CPU_ISA``) below its bf16 kernels."""


def cpu_has_native_bfloat16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX) and oneDNN, which runs the
    convolutions, may use it: its ISA cap (``ONEDNN_MAX_CPU_ISA``) is not below bf16. Under such a
    cap bf16 is emulated, and far slower than float32 (``docs/benchmarks.md``, "Training
    throughput")."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    if not any(getattr(torch.cpu, name, lambda: False)() for name in checks):
        return False
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    return cap not in ONEDNN_ISAS_WITHOUT_BFLOAT16


def on_device(values, device: torch.device) -> torch.Tensor:
    """``values`` (per-channel statistics: a sequence or a tensor) as a float32 tensor on ``device``,
    made once per fit or scoring pass: built from Python numbers inside a step, it would be a
    blocking host-to-device copy on a GPU, which keeps the host from queueing the next kernels
    while the GPU works."""
    return torch.as_tensor(values, dtype=torch.float32, device=device)


@dataclass(frozen=True)
class Precision:
    """How the network runs on a device: autocast dtype (or None) and memory format."""

    autocast_dtype: torch.dtype | None
    channels_last: bool

    @classmethod
    def resolve(cls, device: torch.device, precision: str = "auto") -> "Precision":
        """``"auto"``: bf16 autocast on CUDA and on CPUs with native bf16, float32 elsewhere;
        channels_last on every device (why: ``docs/benchmarks.md``, "Training throughput")."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "auto":
            native = device.type == "cuda" or cpu_has_native_bfloat16()
            precision = "bfloat16" if native else "float32"
        dtype = torch.bfloat16 if precision == "bfloat16" else None
        return cls(dtype, channels_last=True)

    @property
    def name(self) -> str:
        """``"bfloat16"`` or ``"float32"``: what ``"auto"`` resolved to."""
        return "bfloat16" if self.autocast_dtype == torch.bfloat16 else "float32"

    def autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return torch.autocast(device.type, enabled=False)
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


@contextmanager
def placed(network: nn.Module, device: torch.device, precision: Precision) -> Iterator[nn.Module]:
    """``network`` on ``device`` (channels_last where ``precision`` says) for the block; the default
    memory format again after it. Build the optimizer inside the block."""
    network.to(device)
    if precision.channels_last:
        network.to(memory_format=torch.channels_last)
    try:
        yield network
    finally:
        if precision.channels_last:
            network.to(memory_format=torch.contiguous_format)
