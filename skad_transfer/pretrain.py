"""Pretrain theta0: a ResNet26 classifier trained on a labelled image dataset, saved as a weights record.

The paper's theta0 is a ResNet26 trained for ImageNet classification at 32x32. :func:`pretrain`
reproduces that step on whatever labelled data is at hand (Tiny-ImageNet, CIFAR, an image folder):
SGD with (Nesterov) momentum and weight decay, a per-step cosine or a step schedule, random crop
(4 px padding) + horizontal flip done batch-wise on the device, normalisation with the training
set's own per-channel mean/std, bf16 autocast where the hardware computes it natively, and
cross-entropy. The result is written with :func:`skad_transfer.weights.save_weights`, so every
``weights=`` argument of the package accepts the file.

Long runs are made safe by a checkpoint written atomically after every epoch. Every epoch's
randomness (the permutation and the augmentation draws) is a pure function of ``(random_state,
epoch)``, so no RNG state needs to be saved and a run resumed from its checkpoint ends with the same
weights as an uninterrupted one.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same function trains with DistributedDataParallel: all
ranks draw the same permutation and each takes its share of every global batch; only rank 0 prints
and writes files. The command line is ``skad-transfer pretrain`` (:func:`add_arguments`,
:func:`run`).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import shlex
import socket
import sys
import time
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._io import atomic_write
from .data.augment import normalize, random_crop_flip
from .data.images import as_image_batch, resize_images
from .engine import Precision, TrainingDivergedError, resolve_device
from .nn.resnet import SUPPORTED_INPUT_SIZES, ResNet26
from .weights import WeightsRecord, save_weights

__all__ = ["pretrain", "load_labelled_data", "add_arguments", "run", "main", "SCHEDULES", "IN_MEMORY_BYTES"]

SCHEDULES = ("cosine", "step")
STEP_MILESTONES = (0.5, 0.75)
"""Fractions of ``epochs`` at which the ``"step"`` schedule divides the learning rate by 10."""

IN_MEMORY_BYTES = 2 << 30
"""Training images up to this size (uint8, at ``input_size``) are copied once into a tensor; gathering
batches from a tensor is much faster than fancy-indexing a memory map. Larger sets stay on disk and
each batch is read by sorted index."""

_CHECKPOINT_FORMAT = "skad_transfer.pretrain/1"
_STATS_SAMPLE = 10_000
_MAX_LISTED_CLASSES = 200
_FORMATS = ("auto", "folder", "tinyimagenet", "npz", "torchvision")
_TORCHVISION = ("cifar10", "cifar100", "svhn", "stl10")


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


class _ImageSource:
    """Images (N images of one size) that hand out uint8 NCHW batches at ``input_size`` on a device.

    Small sets are validated and copied once into a tensor (on the GPU when it fits in a quarter of
    its free memory). Large 4-D uint8 arrays, typically the decode cache's memory maps, stay where
    they are: each batch reads its rows in sorted order, which turns random access into a forward
    scan of the file.
    """

    def __init__(self, X, *, name: str, input_size: int, device: torch.device,
                 in_memory_bytes: int | None = None):
        self.name = name
        self.input_size = input_size
        self.device = device
        self.array: np.ndarray | None = None
        self.tensor: torch.Tensor | None = None
        if in_memory_bytes is None:
            in_memory_bytes = IN_MEMORY_BYTES
        lazy = (isinstance(X, np.ndarray) and X.ndim == 4 and X.dtype == np.uint8
                and X.shape[0] * 3 * input_size * input_size > in_memory_bytes)
        if lazy:
            if X.shape[1] in (1, 3):
                self.channels_last = False
            elif X.shape[3] in (1, 3):
                self.channels_last = True
            else:
                raise ValueError(f"{name}: expected 1 or 3 channels in (N, H, W, C) or (N, C, H, W), got shape {X.shape}")
            if X.shape[0] == 0:
                raise ValueError(f"{name}: no images")
            self.array = X
            self.n = int(X.shape[0])
            return
        batch = as_image_batch(X, name=name).data
        if batch.dtype != torch.uint8:
            # Float input holds 0..1 intensities; uint8 halves the memory of every gather after this.
            batch = (batch.clamp(0, 1) * 255).round_().to(torch.uint8)
        batch = resize_images(batch, input_size)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if batch.numel() < 0.25 * free:
                batch = batch.to(device)
        self.tensor = batch
        self.n = int(batch.shape[0])

    def __len__(self) -> int:
        return self.n

    def take(self, rows: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """uint8 NCHW images ``rows`` (a CPU int64 tensor), in that order, on ``device``."""
        device = self.device if device is None else device
        if self.tensor is not None:
            return self.tensor[rows.to(self.tensor.device)].to(device, non_blocking=True)
        wanted = rows.numpy()
        order = np.argsort(wanted, kind="stable")
        block = np.empty((len(wanted), *self.array.shape[1:]), dtype=np.uint8)
        block[order] = self.array[wanted[order]]
        images = torch.from_numpy(block)
        if self.channels_last:
            images = images.permute(0, 3, 1, 2)
        images = images.to(device, non_blocking=True)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return resize_images(images.contiguous(), self.input_size)


def _encode_labels(y, n_images: int, classes: Sequence | None, name: str = "y") -> tuple[np.ndarray, list]:
    """Labels -> (int64 codes 0..K-1, class names).

    Non-negative integer labels are kept as they are (so a dataset's label order survives, and a
    class missing from a subset keeps its index); anything else (strings, floats) is encoded in
    sorted order.
    """
    if y is None:
        raise ValueError(f"{name}: labels are required")
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        y = np.squeeze(y)
        if y.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D array of labels, got shape {np.asarray(y).shape}")
    if len(y) != n_images:
        raise ValueError(f"{name}: {len(y)} labels for {n_images} images; X and {name} must have the same length")
    if y.dtype.kind in "iu":
        if len(y) and y.min() < 0:
            raise ValueError(
                f"{name}: labels must be >= 0, got {int(y.min())} (unlabelled images, e.g. STL-10's "
                f"-1, cannot be used for pretraining)"
            )
        n_classes = int(y.max()) + 1 if len(y) else 0
        if classes is not None:
            if len(classes) < n_classes:
                raise ValueError(f"classes: {len(classes)} names but {name} has labels up to {n_classes - 1}")
            names = list(classes)
        else:
            names = [str(i) for i in range(n_classes)]
        codes = y.astype(np.int64)
    else:
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)) and (not len(y) or y.min() >= 0):
            return _encode_labels(y.astype(np.int64), n_images, classes, name)
        names_arr, codes = np.unique(y, return_inverse=True)
        names = [v.item() if hasattr(v, "item") else v for v in names_arr]
        codes = codes.astype(np.int64)
    if len(np.unique(codes)) < 2:
        raise ValueError(f"{name}: pretraining needs at least 2 classes, got {len(np.unique(codes))}")
    return codes, names


def _stratified_holdout(codes: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, val rows), both sorted: ``round(fraction * n_c)`` (at least 1) images of each class
    with at least 2 images go to validation, drawn with ``seed``."""
    rng = np.random.default_rng([seed, 0x5EED])
    val = []
    for label in np.unique(codes):
        rows = np.flatnonzero(codes == label)
        if len(rows) < 2:
            continue
        k = min(len(rows) - 1, max(1, int(round(fraction * len(rows)))))
        val.append(rng.choice(rows, size=k, replace=False))
    val_rows = np.sort(np.concatenate(val)) if val else np.empty(0, np.int64)
    train_mask = np.ones(len(codes), bool)
    train_mask[val_rows] = False
    return np.flatnonzero(train_mask), val_rows


def _channel_stats(source: _ImageSource, rows: np.ndarray, seed: int) -> tuple[tuple, tuple]:
    """Per-channel mean/std (0..1 scale) of up to 10,000 training images drawn with ``seed``."""
    rng = np.random.default_rng([seed, 0x57A7])
    if len(rows) > _STATS_SAMPLE:
        rows = np.sort(rng.choice(rows, size=_STATS_SAMPLE, replace=False))
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    for start in range(0, len(rows), 2048):
        chunk = source.take(torch.as_tensor(rows[start:start + 2048]), device=torch.device("cpu")).double() / 255.0
        total += chunk.sum(dim=(0, 2, 3))
        squares += (chunk * chunk).sum(dim=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(1e-12).sqrt().clamp_min(1e-3)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def _digest(X, codes: np.ndarray) -> str:
    """A cheap identity of a dataset: shape, dtype, all labels and up to 32 evenly spaced images."""
    digest = hashlib.sha256()
    shape = tuple(X.shape)
    digest.update(repr((shape, str(getattr(X, "dtype", "")))).encode())
    digest.update(np.ascontiguousarray(codes).tobytes())
    if shape and shape[0]:
        picks = np.unique(np.linspace(0, shape[0] - 1, num=min(32, shape[0])).astype(np.int64))
        sample = X[torch.as_tensor(picks)] if isinstance(X, torch.Tensor) else np.asarray(X)[picks]
        if isinstance(sample, torch.Tensor):
            sample = sample.detach().cpu().numpy()
        digest.update(np.ascontiguousarray(sample).tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------
# Schedule, randomness, distributed set-up
# --------------------------------------------------------------------------


class _LRFactor:
    """Learning-rate factor of a global step, for ``LambdaLR`` (stepped once per optimiser step).

    A plain object rather than a lambda so that ``LambdaLR.state_dict`` can save it.
    """

    def __init__(self, kind: str, steps_per_epoch: int, epochs: int, warmup_epochs: float):
        self.kind = kind
        self.steps_per_epoch = int(steps_per_epoch)
        self.total_steps = int(steps_per_epoch * epochs)
        self.warmup_steps = int(round(warmup_epochs * steps_per_epoch))
        # A drop at epoch 0 (or at the end) of a short run would only rescale lr; leave those out.
        self.milestones = sorted({round(f * epochs) for f in STEP_MILESTONES if 0 < round(f * epochs) < epochs})

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "cosine":
            progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        epoch = step // self.steps_per_epoch
        return 0.1 ** sum(epoch >= m for m in self.milestones)


def _generator(seed: int, purpose: str, epoch: int, device: torch.device) -> torch.Generator:
    """A generator that depends only on (seed, purpose, epoch), so resumed epochs redraw the same."""
    generator = torch.Generator(device=device)
    key = f"pretrain/{seed}/{purpose}/{epoch}".encode()
    generator.manual_seed(int(hashlib.sha256(key).hexdigest()[:15], 16))
    return generator


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Dist:
    """Rank, world size and collectives; a no-op stand-in when not distributed."""

    def __init__(self, enabled: bool, device: torch.device):
        self.enabled = enabled
        self.rank, self.world_size, self.local_rank = 0, 1, 0
        self.owns_group = False
        self.device = device
        if not enabled:
            return
        import torch.distributed as dist

        if not dist.is_available():
            raise RuntimeError("distributed training requested but torch.distributed is not available in this build")
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            # One process per GPU: torchrun's LOCAL_RANK picks it, whatever cuda:N was asked for.
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ:
                dist.init_process_group(backend, init_method="env://")
            else:
                # distributed=True outside a launcher: a one-process group, which exercises the DDP path.
                dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
            self.owns_group = True
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(tensor)
        return tensor

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Rank 0's BatchNorm statistics everywhere: each rank's copy drifted with its own last batch."""
        if self.enabled:
            import torch.distributed as dist

            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def broadcast_object(self, obj):
        if not self.enabled:
            return obj
        import torch.distributed as dist

        holder = [obj]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = False


def _want_distributed(distributed: bool | None) -> bool:
    if distributed is None:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not isinstance(distributed, bool):
        raise TypeError(f"distributed must be None, True or False, got {distributed!r}")
    return distributed


@contextmanager
def _cudnn_benchmark(device: torch.device) -> Iterator[None]:
    # Fixed input shapes: letting cuDNN pick the fastest kernels pays off after a few steps.
    previous = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------


def _save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: torch.save(state, handle))


def _load_checkpoint(path: Path, fingerprint: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise OSError(f"checkpoint: could not read {path}: {type(error).__name__}: {error}; "
                      f"delete it to start afresh") from error
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint: {path} is not a pretraining checkpoint; choose another checkpoint path")
    if state.get("fingerprint") != fingerprint:
        raise ValueError(
            f"checkpoint: {path} belongs to a different pretraining run (other data or settings: "
            f"{state.get('settings')}); delete it, pass resume=False (--no-resume) to overwrite it, or choose another path"
        )
    return state


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def _check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_float(value, name: str, low: float, high: float, *, low_open=False, high_open=False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    bad_low = number <= low if low_open else number < low
    bad_high = number >= high if high_open else number > high
    if not math.isfinite(number) or bad_low or bad_high:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return number


@torch.no_grad()
def _evaluate(network: nn.Module, source: _ImageSource, rows: np.ndarray, labels: torch.Tensor, *,
              device: torch.device, precision: Precision, mean, std, batch_size: int, dist: _Dist) -> float | None:
    """Top-1 accuracy on ``rows`` of ``source``; each rank scores its share, counts are summed."""
    if len(rows) == 0:
        return None
    was_training = network.training
    network.eval()
    mine = torch.as_tensor(rows[dist.rank::dist.world_size])
    counts = torch.zeros(2, dtype=torch.float64, device=device)
    for start in range(0, len(mine), batch_size):
        chunk = mine[start:start + batch_size]
        x = precision.prepare(normalize(source.take(chunk, device), mean, std))
        with precision.autocast(device):
            logits = network(x)
        counts[0] += (logits.argmax(dim=1) == labels[chunk.to(labels.device)]).sum()
        counts[1] += chunk.numel()
    dist.all_reduce(counts)
    network.train(was_training)
    return float(counts[0] / counts[1])


def pretrain(
    X,
    y,
    *,
    output: str | os.PathLike,
    X_val=None,
    y_val=None,
    val_fraction: float = 0.02,
    classes: Sequence | None = None,
    width: int = 16,
    input_size: int = 32,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    warmup_epochs: float = 0.0,
    label_smoothing: float = 0.0,
    crop_padding: int = 4,
    flip: bool = True,
    precision: str = "auto",
    device="auto",
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    random_state: int = 0,
    verbose: bool = True,
    dataset_name: str | None = None,
    name: str | None = None,
    distributed: bool | None = None,
    callback: Callable[[dict], Any] | None = None,
) -> tuple[ResNet26, WeightsRecord]:
    """Train a ResNet26 classifier on labelled images and save it as a theta0 weights file.

    Parameters
    ----------
    X : array-like of images
        Training images in any form :func:`~skad_transfer.data.as_image_batch` accepts; typically
        uint8 ``(N, H, W, 3)`` as returned by the loaders of :mod:`skad_transfer.data.datasets`
        (memory maps included). Images are resized to ``input_size`` if needed. Sets larger than
        :data:`IN_MEMORY_BYTES` that are 4-D uint8 arrays are not copied: batches are read by index.
    y : array-like of shape (N,)
        Class labels. Non-negative integers are used as class indices as they are (the head has
        ``max(y) + 1`` outputs, or ``len(classes)``); other labels are encoded in sorted order.
    output : str or path-like
        Where the theta0 file is written (with :func:`skad_transfer.weights.save_weights`).
    X_val, y_val : optional
        A validation set. When omitted, a stratified ``val_fraction`` of ``X`` is held out (drawn
        with ``random_state``) and not trained on.
    val_fraction : float, default=0.02
        Fraction of each class held out when ``X_val`` is None; 0 disables validation.
    classes : sequence, optional
        Class names for integer labels (recorded in the file's metadata).
    width : int, default=16
        ResNet26 width (64 is the paper's network).
    input_size : {32, 96}, default=32
    epochs : int, default=30
    batch_size : int, default=128
        Global batch size; with ``W`` processes each takes ``batch_size // W`` images per step.
    lr : float, default=0.1
        Peak learning rate (reached after warm-up).
    momentum : float, default=0.9
    nesterov : bool, default=True
    weight_decay : float, default=5e-4
    schedule : {"cosine", "step"}, default="cosine"
        ``"cosine"`` anneals to 0 per step; ``"step"`` divides the rate by 10 at 50% and 75% of
        the epochs.
    warmup_epochs : float, default=0
        Linear warm-up of the learning rate over this many epochs (per step).
    label_smoothing : float, default=0
        Passed to :func:`torch.nn.functional.cross_entropy`.
    crop_padding : int, default=4
        Zero padding of the random crop; 0 disables cropping.
    flip : bool, default=True
        Random horizontal flips.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        See :meth:`skad_transfer.engine.Precision.resolve`: bf16 autocast on CUDA and on CPUs with
        native bf16. Use ``"float32"`` for bitwise-reproducible CPU runs.
    device : "auto", "cpu", "cuda", "cuda:N" or torch.device, default="auto"
        Under DDP on CUDA each process uses ``cuda:LOCAL_RANK`` instead of the index given.
    checkpoint : str or path-like, optional
        A file rewritten atomically after every epoch (network, optimiser, scheduler, epoch,
        history, settings fingerprint). With ``resume`` an existing checkpoint of the same run
        (same data and settings) is continued from its last finished epoch; one of another run
        raises a ValueError.
    resume : bool, default=True
        False ignores and overwrites an existing checkpoint.
    random_state : int, default=0
        Seeds the initialisation, the hold-out, the statistics sample and, per epoch, the
        permutation and the augmentations.
    verbose : bool, default=True
        A tqdm progress bar (steps, loss, running accuracy) and one line per epoch, on rank 0.
    dataset_name : str, optional
        Recorded as ``meta["dataset"]``.
    name : str, optional
        The record's name; defaults to the file stem of ``output``.
    distributed : bool, optional
        None: use DistributedDataParallel when launched with ``WORLD_SIZE`` > 1 (``torchrun``).
        True: always (a one-process group if no launcher set the environment). False: never.
    callback : callable, optional
        ``callback(entry)`` after every epoch (after its checkpoint is written), on every rank,
        with that epoch's history entry. An exception raised by it stops training; rerunning
        with the same checkpoint resumes.

    Returns
    -------
    network : ResNet26
        The trained classifier (``num_classes`` outputs) on the CPU, in eval mode.
    record : WeightsRecord
        The record of the written file: ``path``, ``sha256``, ``mean``/``std`` (the training
        set's), and ``meta`` with dataset, n_classes, classes (names, or their count when there
        are more than 200), epochs, batch_size, lr, schedule, val_top1, train_seconds, device,
        precision, world_size, torch version, the command line and ``history``: one dict per epoch
        (epoch, lr, loss, train_top1, val_top1, seconds, images_per_second). The same record is
        returned on every rank.

    Raises
    ------
    ValueError
        Invalid settings or data (each message names the argument), or a checkpoint of another run.
    TrainingDivergedError
        The loss became NaN or infinite.

    Examples
    --------
    >>> from skad_transfer.data.datasets import load_tiny_imagenet  # doctest: +SKIP
    >>> X, y, wnids = load_tiny_imagenet("tiny-imagenet-32.zip")  # doctest: +SKIP
    >>> net, record = pretrain(X, y, classes=wnids, output="theta0.pth", checkpoint="theta0.ckpt")  # doctest: +SKIP
    >>> record.meta["val_top1"], record.sha256  # doctest: +SKIP
    """
    started_wall = time.perf_counter()
    width = _check_positive_int(width, "width")
    if input_size not in SUPPORTED_INPUT_SIZES:
        raise ValueError(f"input_size must be one of {SUPPORTED_INPUT_SIZES}, got {input_size!r}")
    epochs = _check_positive_int(epochs, "epochs")
    batch_size = _check_positive_int(batch_size, "batch_size")
    lr = _check_float(lr, "lr", 0.0, math.inf, low_open=True, high_open=True)
    momentum = _check_float(momentum, "momentum", 0.0, 1.0, high_open=True)
    weight_decay = _check_float(weight_decay, "weight_decay", 0.0, math.inf, high_open=True)
    val_fraction = _check_float(val_fraction, "val_fraction", 0.0, 1.0, high_open=True)
    warmup_epochs = _check_float(warmup_epochs, "warmup_epochs", 0.0, epochs)
    label_smoothing = _check_float(label_smoothing, "label_smoothing", 0.0, 1.0, high_open=True)
    crop_padding = _check_positive_int(crop_padding, "crop_padding", minimum=0)
    random_state = _check_positive_int(random_state, "random_state", minimum=0)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True needs momentum > 0")
    if output is None:
        raise ValueError("output: a path for the theta0 file is required")
    output = Path(output)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.resolve() == output.resolve():
        raise ValueError("checkpoint must differ from output")

    dist = _Dist(_want_distributed(distributed), resolve_device(device))
    try:
        return _pretrain(**{k: v for k, v in locals().items() if k not in ("device", "distributed")})
    finally:
        dist.close()


def _pretrain(*, X, y, output: Path, X_val, y_val, val_fraction, classes, width, input_size, epochs, batch_size,
              lr, momentum, nesterov, weight_decay, schedule, warmup_epochs, label_smoothing, crop_padding, flip,
              precision, checkpoint: Path | None, resume, random_state, verbose, dataset_name, name, callback,
              dist: _Dist, started_wall: float) -> tuple[ResNet26, WeightsRecord]:
    device = dist.device
    verbose = bool(verbose) and dist.is_main
    world = dist.world_size
    if batch_size < world:
        raise ValueError(f"batch_size={batch_size} is smaller than the number of processes ({world})")
    if batch_size % world:
        warnings.warn(f"batch_size={batch_size} is not a multiple of the {world} processes; each takes "
                      f"{batch_size // world} images per step", stacklevel=3)
    global_batch = (batch_size // world) * world
    mode = Precision.resolve(device, precision)
    precision_name = "bfloat16" if mode.autocast_dtype == torch.bfloat16 else "float32"

    # ---- data -----------------------------------------------------------------------------
    source = _ImageSource(X, name="X", input_size=input_size, device=device)
    codes, class_names = _encode_labels(y, len(source), classes, "y")
    n_classes = len(class_names)
    if X_val is not None or y_val is not None:
        if X_val is None or y_val is None:
            raise ValueError("X_val and y_val must be given together")
        val_source = _ImageSource(X_val, name="X_val", input_size=input_size, device=device)
        val_codes = _encode_val_labels(y_val, len(val_source), codes, y, class_names)
        train_rows = np.arange(len(source))
        val_rows = np.arange(len(val_source))
    else:
        val_source, val_codes = source, codes
        if val_fraction > 0:
            train_rows, val_rows = _stratified_holdout(codes, val_fraction, random_state)
        else:
            train_rows, val_rows = np.arange(len(source)), np.empty(0, np.int64)
    if len(train_rows) == 0:
        raise ValueError("X: no training images left after the validation hold-out")
    mean, std = _channel_stats(source, train_rows, random_state)
    labels = torch.as_tensor(codes).to(device)
    val_labels = torch.as_tensor(val_codes).to(device) if val_source is not source else labels

    n_train = len(train_rows)
    # Every rank pads the same permutation to a multiple of the world size (as DistributedSampler
    # does), so no rank ever gets an empty share of the last batch.
    n_padded = math.ceil(n_train / world) * world
    steps = math.ceil(n_padded / global_batch)
    settings = {
        "n_train": n_train, "n_val": len(val_rows), "n_classes": n_classes, "width": width,
        "input_size": input_size, "epochs": epochs, "batch_size": global_batch, "lr": lr, "momentum": momentum,
        "nesterov": bool(nesterov), "weight_decay": weight_decay, "schedule": schedule,
        "warmup_epochs": warmup_epochs, "label_smoothing": label_smoothing, "crop_padding": crop_padding,
        "flip": bool(flip), "random_state": random_state,
    }
    fingerprint = hashlib.sha256(repr((
        _CHECKPOINT_FORMAT, sorted(settings.items()), _digest(X, codes),
        None if X_val is None else _digest(X_val, val_codes), val_rows.tobytes(),
    )).encode()).hexdigest()

    # ---- model and optimiser ----------------------------------------------------------------
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        network = ResNet26(width=width, input_size=input_size, num_classes=n_classes)
    network.to(device)
    if mode.channels_last:
        network.to(memory_format=torch.channels_last)
    # Weight decay on every parameter, BN included, as in the reference CIFAR/ImageNet recipes.
    optimizer = torch.optim.SGD(network.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                                nesterov=bool(nesterov))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _LRFactor(schedule, steps, epochs, warmup_epochs))

    history: list[dict] = []
    start_epoch = 0
    if checkpoint is not None and resume and checkpoint.is_file():
        state = _load_checkpoint(checkpoint, fingerprint)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = int(state["epoch"]), [dict(h) for h in state["history"]]
        if verbose:
            print(f"pretrain: resuming {checkpoint} after epoch {start_epoch}/{epochs}", file=sys.stderr, flush=True)

    model: nn.Module = network
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None,
                                        gradient_as_bucket_view=True)

    eval_batch = 1024 if device.type == "cuda" else 256
    from tqdm.auto import tqdm

    bar = tqdm(total=steps * epochs, initial=steps * start_epoch, disable=not verbose, unit="step",
               desc=f"pretrain {dataset_name or ''}".strip(), dynamic_ncols=True, file=sys.stderr)
    try:
        with _cudnn_benchmark(device):
            for epoch in range(start_epoch, epochs):
                entry = _train_epoch(
                    model, optimizer, scheduler, source, train_rows, labels, epoch=epoch, steps=steps,
                    n_padded=n_padded, global_batch=global_batch, device=device, mode=mode, mean=mean, std=std,
                    crop_padding=crop_padding, flip=flip, label_smoothing=label_smoothing, seed=random_state,
                    dist=dist, bar=bar, verbose=verbose, epochs=epochs,
                )
                dist.broadcast_buffers(network)
                entry["val_top1"] = _evaluate(network, val_source, val_rows, val_labels, device=device,
                                              precision=mode, mean=mean, std=std, batch_size=eval_batch, dist=dist)
                history.append(entry)
                if checkpoint is not None and dist.is_main:
                    _save_checkpoint(checkpoint, {
                        "format": _CHECKPOINT_FORMAT, "fingerprint": fingerprint, "settings": settings,
                        "epoch": epoch + 1, "network": network.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "history": history, "mean": list(mean),
                        "std": list(std),
                    })
                if verbose:
                    val = "n/a" if entry["val_top1"] is None else f"{100 * entry['val_top1']:.2f}%"
                    bar.write(f"epoch {epoch + 1}/{epochs}: loss {entry['loss']:.4f}, train top-1 "
                              f"{100 * entry['train_top1']:.2f}%, val top-1 {val}, lr {entry['lr']:.4g}, "
                              f"{entry['images_per_second']:.0f} img/s", file=sys.stderr)
                if callback is not None:
                    callback(dict(entry))
    finally:
        bar.close()

    # ---- theta0 ------------------------------------------------------------------------------
    if mode.channels_last:
        network.to(memory_format=torch.contiguous_format)
    network.eval()
    val_top1 = history[-1]["val_top1"] if history else None
    meta = {
        "dataset": dataset_name,
        "n_classes": n_classes,
        "classes": [str(c) for c in class_names] if n_classes <= _MAX_LISTED_CLASSES else n_classes,
        "n_train": n_train,
        "n_val": int(len(val_rows)),
        "epochs": epochs,
        "batch_size": global_batch,
        "lr": lr,
        "momentum": momentum,
        "nesterov": bool(nesterov),
        "weight_decay": weight_decay,
        "schedule": schedule,
        "warmup_epochs": warmup_epochs,
        "label_smoothing": label_smoothing,
        "random_state": random_state,
        "val_top1": val_top1,
        "train_top1": history[-1]["train_top1"] if history else None,
        "train_seconds": round(sum(h["seconds"] for h in history), 3),
        "device": str(device),
        "world_size": world,
        "precision": precision_name,
        "torch": str(torch.__version__),
        "command": shlex.join(sys.argv),
        "history": history,
    }
    record = None
    if dist.is_main:
        record = save_weights(network, output, name=name, mean=mean, std=std, meta=meta)
    record = dist.broadcast_object(record)
    network.to("cpu")
    if verbose:
        val = "n/a" if val_top1 is None else f"{100 * val_top1:.2f}%"
        print(f"pretrain: val top-1 {val} after {epochs} epochs, {time.perf_counter() - started_wall:.1f} s "
              f"wall; wrote {record.path} (sha256 {record.sha256})", file=sys.stderr, flush=True)
    return network, record


def _encode_val_labels(y_val, n_images: int, codes: np.ndarray, y, class_names: list) -> np.ndarray:
    """Validation labels in the training labels' coding."""
    y_train = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
    if isinstance(y_val, torch.Tensor):
        y_val = y_val.detach().cpu().numpy()
    y_val = np.asarray(y_val)
    if y_val.ndim != 1:
        raise ValueError(f"y_val: expected a 1-D array of labels, got shape {y_val.shape}")
    if len(y_val) != n_images:
        raise ValueError(f"y_val: {len(y_val)} labels for {n_images} images; X_val and y_val must have the same length")
    if y_train.dtype.kind in "iuf" and y_val.dtype.kind in "iuf" and np.array_equal(
        codes, y_train.astype(np.int64, copy=False)
    ):
        val_codes = y_val.astype(np.int64)
        bad = (val_codes < 0) | (val_codes >= len(class_names)) | (val_codes != y_val)
    else:
        lookup = {value: index for index, value in enumerate(class_names)}
        val_codes = np.array([lookup.get(v.item() if hasattr(v, "item") else v, -1) for v in y_val], dtype=np.int64)
        bad = val_codes < 0
    if bad.any():
        raise ValueError(f"y_val: labels {np.unique(y_val[bad])[:5].tolist()} do not occur among the training classes")
    return val_codes


def _train_epoch(model, optimizer, scheduler, source: _ImageSource, train_rows: np.ndarray,
                 labels: torch.Tensor, *, epoch: int, steps: int, n_padded: int, global_batch: int,
                 device: torch.device, mode: Precision, mean, std, crop_padding: int, flip: bool,
                 label_smoothing: float, seed: int, dist: _Dist, bar, verbose: bool, epochs: int) -> dict:
    model.train()
    n_train = len(train_rows)
    order = torch.randperm(n_train, generator=_generator(seed, "order", epoch, torch.device("cpu")))
    if n_padded > n_train:
        order = torch.cat([order, order[:n_padded - n_train]])
    rows_of = torch.as_tensor(train_rows)
    # Augmentation draws differ between ranks (they see different images) but not between reruns.
    augment = _generator(seed, f"augment/{dist.rank}", epoch, device)
    lr_at_start = optimizer.param_groups[0]["lr"]
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, images
    started = time.perf_counter()
    for step in range(steps):
        share = torch.tensor_split(order[step * global_batch:(step + 1) * global_batch], dist.world_size)[dist.rank]
        rows = rows_of[share]
        images = source.take(rows, device)
        target = labels[rows.to(labels.device)]
        if crop_padding or flip:
            images = random_crop_flip(images, crop_padding, flip=flip, generator=augment)
        x = mode.prepare(normalize(images, mean, std))
        with mode.autocast(device):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            totals[0] += loss.detach() * len(rows)
            totals[1] += (logits.argmax(dim=1) == target).sum()
            totals[2] += len(rows)
        # Reading the loss back synchronises a GPU, so only every 25 steps there; a one-process
        # run can stop at once, while DDP ranks must agree and so check the reduced loss below.
        if not dist.enabled and (device.type == "cpu" or step % 25 == 24) and not math.isfinite(totals[0].item()):
            raise _diverged(totals[0].item(), epoch, step, optimizer)
        bar.update(1)
        if verbose and (step % 10 == 0 or step == steps - 1):
            done = totals.tolist()
            bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{done[0] / done[2]:.4f}",
                            acc=f"{100 * done[1] / done[2]:.1f}%", refresh=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    dist.all_reduce(totals)
    loss_sum, correct, seen = totals.tolist()
    if not math.isfinite(loss_sum):
        raise _diverged(loss_sum, epoch, steps - 1, optimizer)
    return {
        "epoch": epoch + 1,
        "lr": lr_at_start,
        "loss": loss_sum / seen,
        "train_top1": correct / seen,
        "seconds": seconds,
        "images_per_second": seen / seconds if seconds > 0 else float("nan"),
    }


def _diverged(value: float, epoch: int, step: int, optimizer) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"the training loss became {value} at epoch {epoch + 1}, step {step + 1} "
        f"(lr={optimizer.param_groups[0]['lr']:g}); lower lr, add warmup_epochs, or check the inputs"
    )


# --------------------------------------------------------------------------
# Loading datasets for the command line
# --------------------------------------------------------------------------


def _tree_entries(path: Path) -> list[tuple[str, ...]]:
    """Relative paths (as parts) of a directory's entries two levels deep, or a zip's three.

    Enough to see ``wnids.txt`` and a ``train`` folder (a zip usually adds one top folder) without
    listing every image of a large directory tree.
    """
    if path.is_dir():
        depth = 2
        found = []

        def walk(folder: Path, parts: tuple[str, ...]) -> None:
            if len(parts) >= depth:
                return
            try:
                children = list(os.scandir(folder))
            except OSError:
                return
            for child in children:
                found.append(parts + (child.name,))
                if child.is_dir():
                    walk(Path(child.path), parts + (child.name,))

        walk(path, ())
        return found
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:  # zipfile's message names no file
        raise ValueError(f"DATA: {path} is neither a directory nor a readable .zip file: {error}") from error
    with archive:
        return [tuple(p for p in name.split("/") if p)[:3] for name in archive.namelist()]


def _detect_format(data: str, entries: list[tuple[str, ...]] | None) -> str:
    if data.startswith("torchvision:"):
        return "torchvision"
    if data.lower().endswith(".npz"):
        return "npz"
    if entries is not None and any(parts and parts[-1] == "wnids.txt" for parts in entries):
        return "tinyimagenet"
    return "folder"


def _limit_per_class(X, y, limit: int) -> tuple[Any, np.ndarray]:
    """The first ``limit`` images of every class, in their original order."""
    y = np.asarray(y)
    keep = np.sort(np.concatenate([np.flatnonzero(y == label)[:limit] for label in np.unique(y)]))
    return X[keep], y[keep]


def load_labelled_data(
    data: str | os.PathLike,
    *,
    format: str = "auto",
    split: str | None = None,
    root: str | os.PathLike | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> tuple[Any, np.ndarray, list, str]:
    """Load a labelled image dataset named on the command line.

    Parameters
    ----------
    data : str or path-like
        An image-folder directory or ``.zip`` (``<split>/<class>/<image>`` or ``<class>/<image>``),
        a Tiny-ImageNet tree (recognised by its ``wnids.txt``), an ``.npz`` with arrays ``X`` and
        ``y`` (plus optionally ``X_<split>``/``y_<split>`` and ``classes``), or
        ``torchvision:cifar10|cifar100|svhn|stl10``.
    format : {"auto", "folder", "tinyimagenet", "npz", "torchvision"}, default="auto"
    split : str, optional
        Which split: ``"train"`` by default where the data have one (a folder tree without split
        folders is read whole). For CIFAR ``"test"`` selects the test set.
    root : str or path-like, optional
        Directory of the torchvision files (required for ``torchvision:``).
    download : bool, default=False
        Let torchvision download missing files.
    cache_dir : str or path-like, optional
        Decode cache directory of the loaders.
    limit : int, optional
        Keep only the first ``limit`` images of every class.
    progress : bool, default=False
        Progress bar while decoding.

    Returns
    -------
    X : ndarray (N, H, W, 3) uint8, possibly a memory map
    y : ndarray (N,) int64
    classes : list
    name : str
        A short name of the dataset and split, for the weights' metadata.
    """
    from .data import datasets

    data = os.fspath(data)
    if format not in _FORMATS:
        raise ValueError(f"format must be one of {_FORMATS}, got {format!r}")
    if limit is not None:
        limit = _check_positive_int(limit, "limit")
    entries = None
    if format == "auto" and not data.startswith("torchvision:") and not data.lower().endswith(".npz"):
        path = Path(data).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"DATA: {data!r} does not exist")
        entries = _tree_entries(path)
    kind = _detect_format(data, entries) if format == "auto" else format
    cache = {"cache_dir": cache_dir} if cache_dir is not None else {}

    if kind == "torchvision":
        dataset = data.split(":", 1)[1].lower() if data.startswith("torchvision:") else data.lower()
        if dataset not in _TORCHVISION:
            raise ValueError(f"DATA: torchvision datasets are {', '.join('torchvision:' + d for d in _TORCHVISION)}; "
                             f"got {data!r}")
        if root is None:
            raise ValueError(f"--root: the directory of the {dataset} files is required for {data!r}")
        split = split or "train"
        if dataset in ("cifar10", "cifar100"):
            if split not in ("train", "test"):
                raise ValueError(f"split must be 'train' or 'test' for {dataset}, got {split!r}")
            loader = datasets.load_cifar10 if dataset == "cifar10" else datasets.load_cifar100
            X, y, classes = loader(root, train=split == "train", download=download, **cache)
        elif dataset == "svhn":
            X, y, classes = datasets.load_svhn(root, split=split, download=download, **cache)
        else:
            X, y, classes = datasets.load_stl10(root, split=split, download=download, **cache)
        name = f"{dataset}:{split}"
    elif kind == "npz":
        path = Path(data).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"DATA: {data!r} does not exist")
        with np.load(path, allow_pickle=False) as archive:
            x_key, y_key = ("X", "y") if split in (None, "train") else (f"X_{split}", f"y_{split}")
            missing = [k for k in (x_key, y_key) if k not in archive]
            if missing:
                what = "DATA" if split in (None, "train") else "--split"
                raise ValueError(f"{what}: {path.name} must hold arrays {x_key!r} and {y_key!r}; missing {missing} "
                                 f"(keys: {archive.files})")
            X, y = archive[x_key], archive[y_key]
            classes = [str(c) for c in archive["classes"]] if "classes" in archive else None
        name = path.stem + (f":{split}" if split not in (None, "train") else "")
    else:
        path = Path(data).expanduser()
        if kind == "tinyimagenet":
            split = split or "train"
            X, y, classes = datasets.load_tiny_imagenet(path, split=split, progress=progress, **cache)
        else:
            if split is None:
                if entries is None:
                    entries = _tree_entries(path)
                # A tree with a train/ folder is split; otherwise its top level is the class level.
                split = "train" if any("train" in parts[:-1] for parts in entries) else None
            X, y, classes = datasets.load_image_folder(path, split=split, progress=progress, **cache)
        name = path.stem + (f":{split}" if split else "")
    if limit is not None:
        X, y = _limit_per_class(X, y, limit)
    return X, np.asarray(y), classes, name


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``skad-transfer pretrain`` (numbers are range-checked while parsing, before DATA is read)."""
    from .cli import float_in, int_at_least

    parser.description = (
        "Pretrain a ResNet26 theta0 by classification on a labelled image dataset and write it as a "
        "weights file (usable as weights=PATH everywhere). Resumable: a checkpoint is written after "
        "every epoch. Runs under torchrun for DistributedDataParallel."
    )
    parser.add_argument("data", metavar="DATA",
                        help="image-folder directory or .zip, a Tiny-ImageNet tree (has wnids.txt), an .npz with "
                             "arrays X and y, or torchvision:cifar10|cifar100|svhn|stl10")
    parser.add_argument("--output", "-o", required=True, help="theta0 file to write (e.g. theta0.pth)")
    parser.add_argument("--format", choices=_FORMATS, default="auto", help="how to read DATA (default: detect)")
    parser.add_argument("--split", default=None, help="training split (default: train where DATA has splits)")
    parser.add_argument("--val-split", default=None,
                        help="validation split (e.g. val); default: hold out --val-fraction of the training split")
    parser.add_argument("--val-fraction", type=float_in(0, 1), default=0.02,
                        help="stratified hold-out fraction (default 0.02)")
    parser.add_argument("--root", default=None, help="directory of the torchvision dataset files")
    parser.add_argument("--download", action="store_true", help="let torchvision download missing files")
    parser.add_argument("--cache-dir", default=None, help="decode cache directory (default: $SKAD_TRANSFER_HOME/data)")
    parser.add_argument("--limit", type=int_at_least(1), default=None, metavar="N",
                        help="use only the first N training images per class (quick runs)")
    parser.add_argument("--width", type=int_at_least(1), default=16,
                        help="ResNet26 width (default 16; the paper's is 64)")
    parser.add_argument("--input-size", type=int, default=32, choices=SUPPORTED_INPUT_SIZES)
    parser.add_argument("--epochs", type=int_at_least(1), default=30)
    parser.add_argument("--batch-size", type=int_at_least(1), default=128, help="global batch size (default 128)")
    parser.add_argument("--lr", type=float_in(0, low_open=True), default=0.1)
    parser.add_argument("--momentum", type=float_in(0, 1), default=0.9)
    parser.add_argument("--no-nesterov", dest="nesterov", action="store_false", help="plain momentum")
    parser.add_argument("--weight-decay", type=float_in(0), default=5e-4)
    parser.add_argument("--schedule", choices=SCHEDULES, default="cosine")
    parser.add_argument("--warmup-epochs", type=float_in(0), default=0.0)
    parser.add_argument("--label-smoothing", type=float_in(0, 1), default=0.0)
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint file, rewritten after every epoch and resumed from (default: OUTPUT.ckpt)")
    parser.add_argument("--no-checkpoint", action="store_true", help="write no checkpoint")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="start afresh even if the checkpoint exists (it is overwritten)")
    parser.add_argument("--seed", type=int_at_least(0), default=0)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or epoch lines")


def run(args: argparse.Namespace) -> int:
    """Run ``skad-transfer pretrain``; prints the val top-1, wall time, output path and sha256 (rank 0).

    Errors in the input propagate: the ``skad-transfer`` router (:func:`skad_transfer.cli.main`,
    which :func:`main` also goes through) prints them as one line and returns 2.
    """
    started = time.perf_counter()
    rank = int(os.environ.get("RANK", "0"))
    progress = not args.quiet and rank == 0
    # What parsing cannot check, checked before DATA is read (pretrain() checks it again, after).
    if args.warmup_epochs > args.epochs:
        raise ValueError(f"--warmup-epochs {args.warmup_epochs} exceeds --epochs {args.epochs}")
    if Path(args.output).is_dir():
        raise IsADirectoryError(f"--output {args.output}: is a directory; name the theta0 file (e.g. "
                                f"{Path(args.output) / 'theta0.pth'})")
    X, y, classes, name = load_labelled_data(
        args.data, format=args.format, split=args.split, root=args.root, download=args.download,
        cache_dir=args.cache_dir, limit=args.limit, progress=progress,
    )
    X_val = y_val = None
    if args.val_split is not None:
        X_val, y_val, _, _ = load_labelled_data(
            args.data, format=args.format, split=args.val_split, root=args.root, download=args.download,
            cache_dir=args.cache_dir, progress=progress,
        )
    checkpoint = None if args.no_checkpoint else (args.checkpoint or f"{args.output}.ckpt")
    network, record = pretrain(
        X, y, X_val=X_val, y_val=y_val, val_fraction=args.val_fraction, classes=classes,
        output=args.output, width=args.width, input_size=args.input_size, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
        weight_decay=args.weight_decay, schedule=args.schedule, warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing, precision=args.precision, device=args.device,
        checkpoint=checkpoint, resume=args.resume, random_state=args.seed, verbose=not args.quiet,
        dataset_name=name,
    )
    if rank == 0:
        meta = record.meta
        val = "n/a" if meta["val_top1"] is None else f"{100 * meta['val_top1']:.2f}%"
        speed = [h["images_per_second"] for h in meta["history"]]
        print(f"val top-1: {val}")
        print(f"wall time: {time.perf_counter() - started:.1f} s (training {meta['train_seconds']:.1f} s, "
              f"{np.mean(speed) if speed else float('nan'):.0f} img/s, {meta['device']} x{meta['world_size']}, "
              f"{meta['precision']})")
        print(f"output: {record.path}")
        print(f"sha256: {record.sha256}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m skad_transfer.pretrain ...``: the subcommand alone (handy under torchrun).

    It goes through the ``skad-transfer`` router with only this subcommand built, so that errors
    are reported exactly as by ``skad-transfer pretrain``.
    """
    from .cli import main as cli_main

    return cli_main(["pretrain", *(sys.argv[1:] if argv is None else argv)], commands=("pretrain",))


if __name__ == "__main__":
    sys.exit(main())
