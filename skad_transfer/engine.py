"""One training loop for every detector: device, precision, schedule, batches, progress, checkpoints.

Design choices, each measured (``benchmarks/engine_speed.py``):

* Data are canonical NCHW tensors; the normal set is moved to the training device once (when it
  fits) and outlier-exposure batches are gathered by index from memory or a memory map. There is no
  DataLoader and no per-image PIL work: crop + flip + normalisation run batch-wise on the device.
* On CUDA the forward/backward runs under bf16 autocast with channels_last tensors; so it does on
  CPUs with native bf16 (AVX512-BF16/AMX), where it is several times faster than float32.
* Every epoch's randomness (the normal permutation, the OE draw, the augmentations) is a function of
  ``(seed, epoch)`` only, drawn from generators of its own (never torch's global one), so a run
  resumed from its checkpoint is identical to an uninterrupted one, and two CPU runs with one seed
  give identical weights, also when they run at the same time in two threads. Training changes no
  process-wide setting (threads, flush-denormal, backend flags, default dtype).
* A fit never ends with a broken model: a non-finite loss stops it at once, and so do parameters or
  BatchNorm statistics that became non-finite (checked after the last step and before every
  checkpoint save), with a :class:`TrainingDivergedError` that names ``lr``.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ._io import atomic_write
from .data.augment import normalize, random_crop_flip
from .data.corpora import OutlierCorpus
from .data.harmonize import jpeg_roundtrip, like_source, match_luminance, reference_indices
from .data.images import resize_images

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor]
"""``objective(network, normal_batch, outlier_batch_or_None) -> scalar loss`` on normalised batches."""


CHECKPOINT_EVERY = 50
"""Fewest optimizer steps between two checkpoint saves (epochs shorter than this are grouped)."""


class TrainingDivergedError(FloatingPointError):
    """The loss, the weights or the scores became NaN or infinite; training stopped instead of
    producing a broken model."""


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
    """The normal set and the OE corpus, placed for fast batch gathering on ``device``.

    OE images are harmonised before they meet the network (:mod:`~skad_transfer.data.harmonize`):
    brought to ``outlier_shape`` (the normal images' own resolution and channels) when it is given,
    with ``match_histograms`` given each the luminance histogram of a normal training image (a fixed
    pairing per OE item, :func:`~skad_transfer.data.harmonize.reference_indices` with
    ``pairing_seed``), then JPEG round-tripped like the normal images.
    """

    def __init__(self, normal: torch.Tensor, corpus: OutlierCorpus | None, device: torch.device, input_size: int,
                 budget_fraction: float = 0.25, jpeg_quality: int | None = None,
                 outlier_shape: tuple[int, int, int] | None = None, match_histograms: bool = False,
                 pairing_seed: int = 0):
        self.device = device
        self.input_size = input_size
        self.jpeg_quality = jpeg_quality
        self.outlier_shape = outlier_shape
        # The normal images as given (before the JPEG round trip), the references' own statistics.
        self.references = normal if match_histograms else None
        self.pairing_seed = pairing_seed
        normal = resize_images(jpeg_roundtrip(normal, jpeg_quality), input_size)
        self.normal = self._place(normal, budget_fraction)
        self.corpus = corpus
        self.outliers = None
        if corpus is not None:
            if device.type == "cuda" and corpus.nbytes and self._fits(corpus.nbytes, budget_fraction):
                self.outliers = self._upload(corpus)
            elif device.type == "cpu" and corpus.is_in_memory:
                self.outliers = resize_images(self._harmonized(corpus.all().data, torch.arange(len(corpus))),
                                              input_size)

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
            indices = torch.arange(start, min(start + chunk, len(corpus)))
            rows = self._harmonized(corpus.take(indices.numpy()), indices)
            parts.append(resize_images(rows.to(self.device, non_blocking=True), self.input_size))
        return torch.cat(parts)

    def _harmonized(self, images: torch.Tensor, indices: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        # OE images take the normal images' resolution, channels and intensities first, then the same path.
        images = like_source(images, self.outlier_shape)
        if self.references is not None:
            pairs = reference_indices(indices, self.references.shape[0], self.pairing_seed)
            images = torch.cat([match_luminance(images[i:i + chunk], self.references[pairs[i:i + chunk]])
                                for i in range(0, images.shape[0], chunk)]) if images.shape[0] else images
        return jpeg_roundtrip(images, self.jpeg_quality)

    def normal_batch(self, indices: torch.Tensor) -> torch.Tensor:
        return self.normal[indices.to(self.normal.device)].to(self.device, non_blocking=True)

    def outlier_batch(self, indices: torch.Tensor) -> torch.Tensor:
        if self.outliers is not None:
            return self.outliers[indices.to(self.outliers.device)].to(self.device, non_blocking=True)
        rows = self._harmonized(self.corpus.take(indices.numpy()), indices)
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
    normal set (the last one may stop early). With ``settings.checkpoint`` the state (and
    ``settings.seed``) is saved after every epoch and a matching checkpoint (same fingerprint and
    seed) is resumed from; the path is checked (:func:`check_checkpoint_path`) before the first step.

    Raises :class:`TrainingDivergedError` when the loss is not finite, or the network's parameters
    or buffers are not after the last step or before a checkpoint save.
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
    checkpoint = check_checkpoint_path(settings.checkpoint) if settings.checkpoint else None
    if checkpoint is not None and checkpoint.is_file():
        start_epoch, history = _resume(checkpoint, settings.fingerprint, settings.seed, network, optimizer,
                                       scheduler)
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
                            f"(lr={settings.lr:g}); lower lr, or check the inputs"
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
            last = epoch + 1 == n_epochs
            save = checkpoint is not None and (trained - saved >= CHECKPOINT_EVERY or last)
            if save or last:
                # The loss is checked before each step, so the last step's update shows only here
                # (and BatchNorm statistics never show in a train-mode loss); a diverged state is
                # never saved, so the checkpoint keeps the last sound one.
                _check_finite_state(network, epoch, settings.lr)
            if save:
                _save(checkpoint, settings.fingerprint, epoch + 1, network, optimizer, scheduler, history,
                      settings.seed)
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


def _check_finite_state(network: nn.Module, epoch: int, lr: float) -> None:
    tensors = [(name, t) for name, t in [*network.named_parameters(), *network.named_buffers()]
               if t.is_floating_point()]
    finite = torch.stack([torch.isfinite(t).all() for _, t in tensors])  # one device sync, not one per tensor
    if not bool(finite.all()):
        name = tensors[int((~finite).nonzero()[0, 0])][0]
        raise TrainingDivergedError(
            f"training diverged: {name} of the network became non-finite (nan or inf) by the end of epoch "
            f"{epoch + 1} (lr={lr:g}); lower lr (e.g. 10x), or check the inputs"
        )


def check_checkpoint_path(checkpoint) -> Path:
    """``checkpoint`` as a :class:`~pathlib.Path`, once it is known that a file can be saved there.

    Called before training, so that a bad path fails at once instead of after the first epoch. A
    missing folder is created (as saving would). Raises ``ValueError`` when the path is a folder and
    ``OSError`` when its folder cannot be created or written to; both messages name ``checkpoint``.
    """
    path = Path(checkpoint)
    if path.is_dir():
        raise ValueError(f"checkpoint: {str(path)!r} is a folder; give a file path, e.g. {str(path / 'fit.ckpt')!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Permission bits do not tell (root, read-only mounts, ACLs): create a file where saving will.
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        # strerror, not str(error): the latter names the probe file, which the caller never saw.
        raise type(error)(f"checkpoint: cannot save to {str(path)!r}: its folder cannot be created or written "
                          f"({error.strerror or error})") from error
    return path


def _read_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise OSError(f"checkpoint: could not read {path}: {error}; delete it to start afresh") from error


def checkpoint_seed(checkpoint, fingerprint: str) -> int | None:
    """The seed recorded in the ``checkpoint`` file of the fit ``fingerprint``; None when there is no
    such file, or it belongs to another fit (which :func:`train` then refuses), or predates seeds.

    A fit whose seed is drawn afresh each time (``random_state=None``) resumes with this seed.
    """
    path = Path(checkpoint)
    if not path.is_file():
        return None
    state = _read_checkpoint(path)
    if state.get("fingerprint") != fingerprint or state.get("seed") is None:
        return None
    return int(state["seed"])


def _save(path: Path, fingerprint: str, epoch: int, network, optimizer, scheduler, history, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"fingerprint": fingerprint, "seed": int(seed), "epoch": epoch, "network": network.state_dict(),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "history": history}
    atomic_write(path, lambda handle: torch.save(state, handle))


def _resume(path: Path, fingerprint: str, seed: int, network, optimizer, scheduler) -> tuple[int, list[dict]]:
    state = _read_checkpoint(path)
    # A checkpoint from before seeds were recorded carries none; its fingerprint covers the seed.
    if state.get("fingerprint") != fingerprint or state.get("seed", seed) != seed:
        raise ValueError(
            f"checkpoint: {path} belongs to a different fit (other data, parameters or seed); delete it or "
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
