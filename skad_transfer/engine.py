"""One training loop for every detector: device, precision, schedule, batches, progress, checkpoints.

Design choices, each measured (``benchmarks/engine_speed.py``):

* Data are canonical NCHW tensors; the normal set is moved to the training device once (when it
  fits) and outlier-exposure batches are gathered by index from memory or a memory map. There is no
  DataLoader and no per-image PIL work: crop + flip + normalisation run batch-wise on the device.
* On CUDA the forward/backward runs under bf16 autocast with channels_last tensors; so it does on
  CPUs with native bf16 (AVX512-BF16/AMX), where it is several times faster than float32.
* Every epoch's randomness (the normal permutation, the OE draw, the augmentations) is a function of
  ``(seed, epoch)`` only, so a run resumed from its checkpoint is identical to an uninterrupted one,
  and two CPU runs with one seed give identical weights.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .data.augment import normalize, random_crop_flip
from .data.corpora import OutlierCorpus
from .data.harmonize import jpeg_roundtrip
from .data.images import resize_images

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor]
"""``objective(network, normal_batch, outlier_batch_or_None) -> scalar loss`` on normalised batches."""


CHECKPOINT_EVERY = 50
"""Fewest optimizer steps between two checkpoint saves (epochs shorter than this are grouped)."""


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; training stopped instead of producing a broken model."""


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


def cpu_has_native_bfloat16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


@dataclass(frozen=True)
class Precision:
    """How the network runs on a device: autocast dtype (or None) and memory format."""

    autocast_dtype: torch.dtype | None
    channels_last: bool

    @classmethod
    def resolve(cls, device: torch.device, precision: str = "auto") -> "Precision":
        """``"auto"``: bf16 autocast on CUDA (with channels_last) and on CPUs with native bf16
        (6-7x faster than float32 there, ``benchmarks/engine_speed.py``); float32 elsewhere."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "auto":
            native = device.type == "cuda" or cpu_has_native_bfloat16()
            precision = "bfloat16" if native else "float32"
        dtype = torch.bfloat16 if precision == "bfloat16" else None
        return cls(dtype, device.type == "cuda")

    def autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return torch.autocast(device.type, enabled=False)
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


@dataclass
class TrainSettings:
    """Knobs of :func:`train`; the detectors fill these from their constructor parameters."""

    epochs: int | None = None
    steps: int = 1500
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: Sequence[float] = (0.6, 0.8)
    gamma: float = 0.1
    crop_padding: int = 4
    flip: bool = True
    seed: int = 0
    precision: str = "auto"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    verbose: bool = False
    checkpoint: str | os.PathLike | None = None
    fingerprint: str = ""
    description: str = "fit"
    progress_delay: float = 5.0

    def total_steps(self, steps_per_epoch: int) -> int:
        """``epochs`` passes over the normal set when ``epochs`` is set, else ``steps``."""
        return self.epochs * steps_per_epoch if self.epochs is not None else self.steps

    def milestone_steps(self, total: int) -> list[int]:
        """The paper's lr drops (epochs 60 and 80 of 100) as fractions of the ``total`` steps."""
        return sorted({round(f * total) for f in self.milestones if 0 < round(f * total) < total})


class TrainingData:
    """The normal set and the OE corpus, placed for fast batch gathering on ``device``."""

    def __init__(self, normal: torch.Tensor, corpus: OutlierCorpus | None, device: torch.device, input_size: int,
                 budget_fraction: float = 0.25, jpeg_quality: int | None = None):
        self.device = device
        self.input_size = input_size
        self.jpeg_quality = jpeg_quality
        normal = resize_images(jpeg_roundtrip(normal, jpeg_quality), input_size)
        self.normal = self._place(normal, budget_fraction)
        self.corpus = corpus
        self.outliers = None
        if corpus is not None:
            if device.type == "cuda" and corpus.nbytes and self._fits(corpus.nbytes, budget_fraction):
                self.outliers = self._upload(corpus)
            elif device.type == "cpu" and corpus.is_in_memory:
                self.outliers = resize_images(self._harmonized(corpus.all().data), input_size)

    def _fits(self, nbytes: int, fraction: float) -> bool:
        if self.device.type != "cuda":
            return True
        free, _ = torch.cuda.mem_get_info(self.device)
        return nbytes < fraction * free

    def _place(self, images: torch.Tensor, fraction: float) -> torch.Tensor:
        if self.device.type == "cuda" and self._fits(images.numel() * images.element_size(), fraction):
            return images.to(self.device, non_blocking=True)
        return images

    def _upload(self, corpus: OutlierCorpus, chunk: int = 8192) -> torch.Tensor:
        parts = []
        for start in range(0, len(corpus), chunk):
            rows = self._harmonized(corpus.take(np.arange(start, min(start + chunk, len(corpus)))))
            parts.append(resize_images(rows.to(self.device, non_blocking=True), self.input_size))
        return torch.cat(parts)

    def _harmonized(self, images: torch.Tensor) -> torch.Tensor:
        return jpeg_roundtrip(images, self.jpeg_quality)

    def normal_batch(self, indices: torch.Tensor) -> torch.Tensor:
        return self.normal[indices.to(self.normal.device)].to(self.device, non_blocking=True)

    def outlier_batch(self, indices: torch.Tensor) -> torch.Tensor:
        if self.outliers is not None:
            return self.outliers[indices.to(self.outliers.device)].to(self.device, non_blocking=True)
        rows = self._harmonized(self.corpus.take(indices.numpy()))
        return resize_images(rows.to(self.device, non_blocking=True), self.input_size)


def _epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(int(hashlib.sha256(f"{seed}/{epoch}".encode()).hexdigest()[:15], 16))
    return generator


def _epoch_plan(n_normal: int, n_outlier: int, half: int, seed: int, epoch: int):
    """Per-step index batches of one epoch: a permutation of the normal set, and fresh OE draws."""
    generator = _epoch_generator(seed, epoch, torch.device("cpu"))
    order = torch.randperm(n_normal, generator=generator)
    steps = math.ceil(n_normal / half)
    normal_batches = [order[i * half:(i + 1) * half] for i in range(steps)]
    outlier_batches = None
    if n_outlier:
        needed = sum(len(b) for b in normal_batches)
        draws = torch.cat([torch.randperm(n_outlier, generator=generator)
                           for _ in range(math.ceil(needed / n_outlier))])[:needed]
        outlier_batches = list(torch.split(draws, [len(b) for b in normal_batches]))
    return normal_batches, outlier_batches


def train(
    network: nn.Module,
    data: TrainingData,
    objective: Objective,
    parameters: Sequence[nn.Parameter],
    settings: TrainSettings,
    *,
    mean,
    std,
    penalty: Callable[[], torch.Tensor] | None = None,
) -> list[dict]:
    """Train ``network`` in place; returns the per-epoch history.

    Each step takes ``batch_size // 2`` normal images and as many OE images (none without a corpus),
    augments them with crop + flip, normalises them and minimises ``objective + penalty()`` with SGD
    (momentum, weight decay). Training lasts ``settings.steps`` steps, or ``settings.epochs`` passes
    over the normal set when that is set; the learning rate drops by ``gamma`` at the ``milestones``
    fractions of the steps (the paper's epochs 60 and 80 of 100). An epoch is one pass over the
    normal set (the last one may stop early). With ``settings.checkpoint`` the state is saved after
    every epoch and a matching checkpoint (same fingerprint) is resumed from.
    """
    device = settings.device
    precision = Precision.resolve(device, settings.precision)
    network.to(device)
    if precision.channels_last:
        network.to(memory_format=torch.channels_last)
    half = max(1, settings.batch_size // 2)
    n_normal = data.normal.shape[0]
    n_outlier = len(data.corpus) if data.corpus is not None else 0
    steps_per_epoch = math.ceil(n_normal / half)
    total_steps = settings.total_steps(steps_per_epoch)
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    optimizer = torch.optim.SGD(parameters, lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    # Stepped once per optimizer step, so that the schedule is the same whatever the epoch length.
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, settings.milestone_steps(total_steps), settings.gamma)
    history: list[dict] = []
    start_epoch = 0
    checkpoint = Path(settings.checkpoint) if settings.checkpoint else None
    if checkpoint is not None and checkpoint.is_file():
        start_epoch, history = _resume(checkpoint, settings.fingerprint, network, optimizer, scheduler)
    from tqdm.auto import tqdm

    done = saved = min(total_steps, start_epoch * steps_per_epoch)
    bar = tqdm(total=total_steps, initial=done, disable=not settings.verbose, desc=settings.description,
               unit="step", dynamic_ncols=True, delay=settings.progress_delay)
    try:
        for epoch in range(start_epoch, n_epochs):
            network.train()
            normal_idx, outlier_idx = _epoch_plan(n_normal, n_outlier, half, settings.seed, epoch)
            normal_idx = normal_idx[:total_steps - epoch * steps_per_epoch]
            augment_rng = _epoch_generator(settings.seed, -1 - epoch, device)
            started = time.perf_counter()
            total = torch.zeros((), device=device)
            penalty_total = torch.zeros((), device=device)
            seen = 0
            for step, idx in enumerate(normal_idx):
                x_normal = _augment(data.normal_batch(idx), settings, augment_rng, mean, std, precision)
                x_outlier = None
                if outlier_idx is not None:
                    x_outlier = _augment(data.outlier_batch(outlier_idx[step]), settings, augment_rng, mean, std,
                                         precision)
                with precision.autocast(device):
                    loss = objective(network, x_normal, x_outlier).float()
                if penalty is not None:
                    reg = penalty()
                    penalty_total += reg.detach()
                    loss = loss + reg
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step_lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                total += loss.detach()
                seen += x_normal.shape[0] + (0 if x_outlier is None else x_outlier.shape[0])
                if device.type == "cpu" or step % 25 == 24 or step == len(normal_idx) - 1:
                    if not torch.isfinite(total):
                        raise TrainingDivergedError(
                            f"the training loss became {total.item()} at epoch {epoch + 1}, step {step + 1} "
                            f"(lr={optimizer.param_groups[0]['lr']:g}); lower lr, or check the inputs"
                        )
                bar.update(1)
                if settings.verbose and step % 10 == 0:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}", refresh=False)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - started
            history.append({
                "epoch": epoch + 1,
                "steps": len(normal_idx),
                "loss": total.item() / len(normal_idx),
                "penalty": penalty_total.item() / len(normal_idx),
                "lr": step_lr,  # of the epoch's last step
                "seconds": seconds,
                "images_per_second": seen / seconds if seconds > 0 else float("nan"),
            })
            # A small normal set makes many short epochs under a step budget: save at most every
            # CHECKPOINT_EVERY steps (and at the end); a resumed run replays from the last save.
            trained = epoch * steps_per_epoch + len(normal_idx)
            if checkpoint is not None and (trained - saved >= CHECKPOINT_EVERY or epoch + 1 == n_epochs):
                _save(checkpoint, settings.fingerprint, epoch + 1, network, optimizer, scheduler, history)
                saved = trained
    finally:
        bar.close()
    if precision.channels_last:
        network.to(memory_format=torch.contiguous_format)
    return history


def _augment(images, settings: TrainSettings, generator, mean, std, precision: Precision) -> torch.Tensor:
    if settings.crop_padding or settings.flip:
        images = random_crop_flip(images, settings.crop_padding, flip=settings.flip, generator=generator)
    return precision.prepare(normalize(images, mean, std))


def _save(path: Path, fingerprint: str, epoch: int, network, optimizer, scheduler, history) -> None:
    from .weights import _atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"fingerprint": fingerprint, "epoch": epoch, "network": network.state_dict(),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "history": history}
    _atomic_write(path, lambda handle: torch.save(state, handle))


def _resume(path: Path, fingerprint: str, network, optimizer, scheduler) -> tuple[int, list[dict]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise OSError(f"checkpoint: could not read {path}: {error}; delete it to start afresh") from error
    if state.get("fingerprint") != fingerprint:
        raise ValueError(
            f"checkpoint: {path} belongs to a different fit (other data or parameters); delete it or "
            f"choose another checkpoint path"
        )
    network.load_state_dict(state["network"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["epoch"]), list(state["history"])


@torch.no_grad()
def apply_batched(function: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, *, device: torch.device,
                  mean, std, input_size: int, batch_size: int | None = None,
                  precision: str = "auto", jpeg_quality: int | None = None) -> torch.Tensor:
    """``function`` on normalised, resized batches of ``images`` on ``device``; results on the CPU (float32).

    Every batch is padded to the same size, so the kernels (whose blocking depends on the batch
    size) compute each image identically however many images come with it: a sample's output is
    bitwise the same scored alone, in a subset or in another order. With ``jpeg_quality`` every
    image first makes the JPEG round trip of :func:`~skad_transfer.data.harmonize.jpeg_roundtrip`,
    as the training images did.
    """
    precision = Precision.resolve(device, precision)
    if batch_size is None:
        batch_size = 256 if device.type == "cuda" else 64
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        batch = jpeg_roundtrip(images[start:start + batch_size], jpeg_quality)
        n = batch.shape[0]
        if n < batch_size:
            batch = torch.cat([batch, batch.new_zeros((batch_size - n, *batch.shape[1:]))])
        batch = resize_images(batch.to(device, non_blocking=True), input_size)
        with precision.autocast(device):
            out = function(precision.prepare(normalize(batch, mean, std)))
        outputs.append(out[:n].float().cpu())
    return torch.cat(outputs)
