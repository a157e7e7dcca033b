"""The engine's training throughput and the reference loop's, as ``speed/engine_speed.py`` and
``speed/device_suite.py`` measure them (moved here from ``engine_speed.py`` unchanged).

:func:`engine_images_per_second` trains a ResNet26 of a given width with the library's training
engine on 64 normal + 64 OE random 32x32 images per step (BCE, SGD) and returns the images per second
after the warm-up steps, with the CPU the run got (:class:`EngineRun`);
:func:`refloop_images_per_second` runs a reference-style training script (``python REFLOOP WIDTH
STEPS DEVICE`` printing ``<number> img/s``) and reads its throughput.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from skad_transfer.data.corpora import OutlierCorpus
from skad_transfer.data.fitdata import TrainingData
from skad_transfer.training import TrainSettings, train
from skad_transfer.nn import resnet26
from skad_transfer.objectives import oe_bce_objective

__all__ = ["EngineRun", "engine_images_per_second", "refloop_images_per_second"]


@dataclass
class EngineRun:
    """One timed engine run and the CPU it got."""

    images_per_second: float
    warmup_seconds: float
    kernel_share: float
    """System CPU time as a fraction of user CPU time (page faults of the allocator, thread wake-ups)."""
    busy_share: float
    """CPU time as a fraction of wall time x torch threads: well below 1, something else ran on its
    cores (or its threads waited)."""
    steal_share: float | None
    """The machine's steal time (``/proc/stat``; None off Linux) as a fraction of wall time x CPUs:
    time the hypervisor gave to other guests."""

    def conditions(self) -> str:
        steal = "n/a" if self.steal_share is None else f"{100 * self.steal_share:.1f}%"
        return (f"CPU busy {100 * self.busy_share:.0f}% of threads x wall, steal {steal}, "
                f"kernel time {100 * self.kernel_share:.0f}% of user time")


def engine_images_per_second(width: int, steps: int, precision: str, device: torch.device,
                             compiled: bool = False) -> EngineRun:
    """Training img/s after the warm-up steps (2; 5 with ``torch.compile``, which compiles in the
    first ones), the seconds those warm-up steps took, and the CPU the run got."""
    warmup = 5 if compiled else 2
    rng = np.random.default_rng(0)
    normal = torch.from_numpy(rng.integers(0, 256, (64 * (steps + warmup), 3, 32, 32), dtype=np.uint8))
    corpus = OutlierCorpus(rng.integers(0, 256, (5000, 32, 32, 3), dtype=np.uint8))
    network = resnet26(width=width)
    data = TrainingData(normal, corpus, device, 32)
    timestamps = []
    normal_batch = data.normal_batch

    def timed_normal_batch(rows):
        # Each step starts by gathering its normal batch, outside the (possibly compiled) objective.
        # The GPU is synchronised only where timing starts: a sync on every step would keep the host
        # from queueing the next step's kernels while the GPU runs this one, which the training loop
        # itself never does.
        if device.type == "cuda" and len(timestamps) == warmup:
            torch.cuda.synchronize(device)
        timestamps.append(time.perf_counter())
        return normal_batch(rows)

    data.normal_batch = timed_normal_batch
    settings = TrainSettings(epochs=1, batch_size=128, lr=0.1, precision=precision, compile=compiled, device=device)
    before, steal_before, wall_before = resource.getrusage(resource.RUSAGE_SELF), _steal_seconds(), time.perf_counter()
    train(network, data, oe_bce_objective, list(network.parameters()), settings, mean=(0.49, 0.48, 0.45),
          std=(0.25, 0.24, 0.26))
    after, steal_after, wall = resource.getrusage(resource.RUSAGE_SELF), _steal_seconds(), time.perf_counter() - wall_before
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    end = time.perf_counter()
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    # Steps warmup+1.. start at timestamps[warmup:]; the last one ends at `end`.
    return EngineRun(
        images_per_second=128 * steps / (end - timestamps[warmup]),
        warmup_seconds=timestamps[warmup] - timestamps[0],
        kernel_share=system / max(user, 1e-9),
        busy_share=(user + system) / (wall * torch.get_num_threads()),
        steal_share=None if steal_before is None else (steal_after - steal_before) / (wall * (os.cpu_count() or 1)),
    )


def _steal_seconds() -> float | None:
    """Seconds of steal time of all CPUs since boot (Linux; None elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def refloop_images_per_second(path: str, width: int, steps: int, device: torch.device) -> float:
    out = subprocess.run([sys.executable, path, str(width), str(steps), str(device)], capture_output=True,
                         text=True, check=True).stdout
    return float(re.search(r"([\d.]+) img/s", out).group(1))
