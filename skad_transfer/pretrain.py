"""Pretrain theta0: a ResNet26 classifier trained on a labelled image dataset, saved as a weights record.

The paper's theta0 is a ResNet26 trained for ImageNet classification at 32x32. :func:`pretrain`
reproduces that step on whatever labelled data is at hand (Tiny-ImageNet, CIFAR, an image folder):
SGD with (Nesterov) momentum and weight decay, a per-step cosine or a step schedule, random crop
(4 px padding) + horizontal flip done batch-wise on the device, normalisation with the training
set's own per-channel mean/std, bf16 autocast where the hardware computes it natively, and
cross-entropy. The result is written with :func:`skad_transfer.weights.save_weights`, so every
``weights=`` argument of the package accepts the file.

This module is the recipe and its command line; the training itself is the package's one loop,
:func:`skad_transfer.training.run_epochs`, which the detectors' fine-tuning uses too, with its
callbacks: checkpoints (written atomically after every epoch), the divergence guard, the progress
bar, DDP synchronisation; and its per-``(seed, epoch)`` randomness (a run resumed from its
checkpoint ends with the same weights as an uninterrupted one). Reading labelled data is :mod:`skad_transfer.data.labelled`.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same function trains with DistributedDataParallel: all
ranks draw the same permutation and each takes its share of every global batch; only rank 0 prints
and writes files. The command line is ``skad-transfer pretrain`` (:func:`add_arguments`,
:func:`run`).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.augment import normalize, random_crop_flip
from .data.labelled import (FORMATS, ImageSource, channel_stats, encode_labels, encode_val_labels,
                            load_labelled_data, stratified_holdout)
from .device import Precision, on_device, placed, resolve_device
from .training import (Checkpoint, Checkpointing, Distributed, DistributedSync, DivergenceGuard, EpochEnd, EpochScores,
                       ProgressBar, Step, fingerprint, run_epochs, seeded_generator)
from .nn.resnet import SUPPORTED_INPUT_SIZES, ResNet26
from .weights import WeightsRecord, save_weights

__all__ = ["pretrain", "load_labelled_data", "add_arguments", "run", "main", "SCHEDULES"]

SCHEDULES = ("cosine", "step")
STEP_MILESTONES = (0.5, 0.75)
"""Fractions of ``epochs`` at which the ``"step"`` schedule divides the learning rate by 10."""

_RUN_FORMAT = "skad_transfer.pretrain/2"
"""Part of every pretraining run's fingerprint: checkpoints of an older recipe are not resumed."""
_MAX_LISTED_CLASSES = 200


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


def _check_int(value, name: str, minimum: int = 1) -> int:
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


@dataclass(frozen=True)
class _Recipe:
    """The checked hyperparameters of one pretraining run (recorded in its fingerprint and metadata)."""

    width: int
    input_size: int
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    schedule: str
    warmup_epochs: float
    label_smoothing: float
    crop_padding: int
    flip: bool
    random_state: int

    @classmethod
    def checked(cls, *, width, input_size, epochs, batch_size, lr, momentum, nesterov, weight_decay, schedule,
                warmup_epochs, label_smoothing, crop_padding, flip, random_state) -> "_Recipe":
        if input_size not in SUPPORTED_INPUT_SIZES:
            raise ValueError(f"input_size must be one of {SUPPORTED_INPUT_SIZES}, got {input_size!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        epochs = _check_int(epochs, "epochs")
        momentum = _check_float(momentum, "momentum", 0.0, 1.0, high_open=True)
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        return cls(
            width=_check_int(width, "width"), input_size=int(input_size), epochs=epochs,
            batch_size=_check_int(batch_size, "batch_size"),
            lr=_check_float(lr, "lr", 0.0, math.inf, low_open=True, high_open=True), momentum=momentum,
            nesterov=bool(nesterov),
            weight_decay=_check_float(weight_decay, "weight_decay", 0.0, math.inf, high_open=True),
            schedule=schedule, warmup_epochs=_check_float(warmup_epochs, "warmup_epochs", 0.0, epochs),
            label_smoothing=_check_float(label_smoothing, "label_smoothing", 0.0, 1.0, high_open=True),
            crop_padding=_check_int(crop_padding, "crop_padding", minimum=0), flip=bool(flip),
            random_state=_check_int(random_state, "random_state", minimum=0),
        )


def _data_identity(X, codes: np.ndarray) -> tuple:
    """A cheap identity of a dataset for the run's fingerprint: shape, dtype, all labels and up to 32
    evenly spaced images (hashing every image of a large memory map would take longer than an epoch)."""
    shape = tuple(X.shape)
    parts: tuple = (repr((shape, str(getattr(X, "dtype", "")))), np.asarray(codes))
    if shape and shape[0]:
        picks = np.unique(np.linspace(0, shape[0] - 1, num=min(32, shape[0])).astype(np.int64))
        sample = X[torch.as_tensor(picks)] if isinstance(X, torch.Tensor) else np.asarray(X)[picks]
        parts += (sample,)
    return parts


@torch.no_grad()
def _evaluate(network: nn.Module, source: ImageSource, rows: np.ndarray, labels: torch.Tensor, *,
              device: torch.device, precision: Precision, mean, std, batch_size: int, dist: Distributed) -> float | None:
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
        counts[0] += (logits.argmax(dim=1) == labels[chunk.to(labels.device, non_blocking=True)]).sum()
        counts[1] += chunk.numel()
    dist.all_reduce(counts)
    network.train(was_training)
    return float(counts[0] / counts[1])


def pretrain(X, y, *, output: str | os.PathLike, X_val=None, y_val=None, val_fraction: float = 0.02,
             classes: Sequence | None = None, width: int = 16, input_size: int = 32, epochs: int = 30,
             batch_size: int = 128, lr: float = 0.1, momentum: float = 0.9, nesterov: bool = True,
             weight_decay: float = 5e-4, schedule: str = "cosine", warmup_epochs: float = 0.0,
             label_smoothing: float = 0.0, crop_padding: int = 4, flip: bool = True, precision: str = "auto",
             device="auto", checkpoint: str | os.PathLike | None = None, resume: bool = True, random_state: int = 0,
             verbose: bool = True, dataset_name: str | None = None, name: str | None = None,
             distributed: bool | None = None, callback: Callable[[dict], Any] | None = None,
             ) -> tuple[ResNet26, WeightsRecord]:
    """Train a ResNet26 classifier on labelled images and save it as a theta0 weights file.

    Parameters
    ----------
    X : array-like of images
        Any form :func:`~skad_transfer.data.as_image_batch` accepts, typically uint8 ``(N, H, W, 3)``
        from :mod:`skad_transfer.data.datasets`' loaders, resized to ``input_size`` if needed; 4-D uint8
        arrays (memory maps) over :data:`~skad_transfer.data.labelled.IN_MEMORY_BYTES` are read by index.
    y : array-like of shape (N,)
        Class labels: non-negative integers are class indices (``max(y) + 1`` outputs, or
        ``len(classes)``), other labels are encoded in sorted order.
    output : str or path-like
        The theta0 file to write (:func:`skad_transfer.weights.save_weights`).
    X_val, y_val : optional
        A validation set; without it a stratified ``val_fraction`` of ``X`` is held out.
    val_fraction : float, default=0.02
        Fraction of each class held out when ``X_val`` is None; 0 disables validation.
    classes : sequence, optional
        Class names for integer labels (recorded in the file's metadata).
    width, input_size, epochs : int, {32, 96}, int, default=16, 32, 30
        ResNet26 width (64 is the paper's network), network input size, passes over ``X``.
    batch_size : int, default=128
        Global batch size; with ``W`` processes each takes ``batch_size // W`` images per step.
    lr, momentum, nesterov, weight_decay : float, float, bool, float, default=0.1, 0.9, True, 5e-4
        SGD's peak learning rate (reached after warm-up), momentum, Nesterov momentum and weight decay.
    schedule : {"cosine", "step"}, default="cosine"
        Annealed to 0 per step, or divided by 10 at 50% and 75% of the epochs.
    warmup_epochs, label_smoothing : float, default=0
        Linear warm-up of the learning rate over this many epochs; the cross-entropy's smoothing.
    crop_padding, flip : int, bool, default=4, True
        Zero padding of the random crop (0: no cropping); random horizontal flips.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        :meth:`skad_transfer.device.Precision.resolve`; ``"float32"`` for bitwise-reproducible CPU runs.
    device : "auto", "cpu", "cuda", "cuda:N" or torch.device, default="auto"
        Under DDP on CUDA each process uses ``cuda:LOCAL_RANK`` instead of the index given.
    checkpoint : str or path-like, optional
        Rewritten atomically after every epoch (:mod:`skad_transfer.training.checkpoints`); with
        ``resume``, the same run's (same data and settings) is continued, another run's refused.
    resume : bool, default=True
        False ignores (and overwrites) an existing checkpoint.
    random_state : int, default=0
        Seeds the initialisation, the hold-out, the statistics sample and each epoch's draws.
    verbose : bool, default=True
        A progress bar (steps, loss, running accuracy) and a line per epoch, on rank 0.
    dataset_name, name : str, optional
        Recorded as ``meta["dataset"]``; the record's name (default: the file stem of ``output``).
    distributed : bool, optional
        DDP when launched with ``WORLD_SIZE`` > 1 (``torchrun``, None), always (True), never (False).
    callback : callable, optional
        ``callback(entry)`` with each epoch's history entry, after its checkpoint is written, on
        every rank. Returning True stops training there (the entry records ``"stopped_early"``);
        an exception stops it too, and rerunning with the same checkpoint resumes.

    Returns
    -------
    network : ResNet26
        The trained classifier (``num_classes`` outputs) on the CPU, in eval mode.
    record : WeightsRecord
        The written file's (the same on every rank): ``path``, ``sha256``, ``mean``/``std`` (the
        training set's), and ``meta``: the data (dataset, classes), the settings, ``val_top1``,
        ``train_seconds``, device, precision, the command line and the per-epoch ``history``.

    Raises
    ------
    ValueError
        Invalid settings or data (each message names the argument), or a checkpoint of another run.
    TrainingDivergedError
        The loss, the weights or the BatchNorm statistics became NaN or infinite.

    Examples
    --------
    >>> from skad_transfer.data.datasets import load_tiny_imagenet  # doctest: +SKIP
    >>> X, y, wnids = load_tiny_imagenet("tiny-imagenet-32.zip")  # doctest: +SKIP
    >>> net, record = pretrain(X, y, classes=wnids, output="theta0.pth", checkpoint="theta0.ckpt")  # doctest: +SKIP
    >>> record.meta["val_top1"], record.sha256  # doctest: +SKIP
    """
    started_wall = time.perf_counter()
    recipe = _Recipe.checked(
        width=width, input_size=input_size, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
        nesterov=nesterov, weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing, crop_padding=crop_padding, flip=flip, random_state=random_state,
    )
    val_fraction = _check_float(val_fraction, "val_fraction", 0.0, 1.0, high_open=True)
    output, checkpoint = _checked_paths(output, checkpoint)
    dist = Distributed(distributed, resolve_device(device))
    try:
        return _pretrain(X, y, X_val, y_val, recipe, val_fraction=val_fraction, classes=classes, output=output,
                         precision=precision, checkpoint=checkpoint, resume=resume, verbose=verbose,
                         dataset_name=dataset_name, name=name, callback=callback, dist=dist, started_wall=started_wall)
    finally:
        dist.close()


def _checked_paths(output, checkpoint) -> tuple[Path, Path | None]:
    if output is None:
        raise ValueError("output: a path for the theta0 file is required")
    output = Path(output)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.resolve() == output.resolve():
        raise ValueError("checkpoint must differ from output")
    return output, checkpoint


@dataclass
class _LabelledSplit:
    """A pretraining run's images and labels, split into training and validation rows."""

    source: ImageSource
    codes: np.ndarray
    class_names: list
    val_source: ImageSource
    val_codes: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray


def _split_labelled(X, y, X_val, y_val, classes, recipe: _Recipe, val_fraction: float,
                    device: torch.device) -> _LabelledSplit:
    """Read and encode the labels; the validation rows are ``X_val``'s, or a stratified
    ``val_fraction`` of ``X`` held out with the recipe's seed."""
    source = ImageSource(X, name="X", input_size=recipe.input_size, device=device)
    codes, class_names = encode_labels(y, len(source), classes, "y")
    if X_val is not None or y_val is not None:
        if X_val is None or y_val is None:
            raise ValueError("X_val and y_val must be given together")
        val_source = ImageSource(X_val, name="X_val", input_size=recipe.input_size, device=device)
        val_codes = encode_val_labels(y_val, len(val_source), codes, y, class_names)
        train_rows, val_rows = np.arange(len(source)), np.arange(len(val_source))
    else:
        val_source, val_codes = source, codes
        if val_fraction > 0:
            train_rows, val_rows = stratified_holdout(codes, val_fraction, recipe.random_state)
        else:
            train_rows, val_rows = np.arange(len(source)), np.empty(0, np.int64)
    if len(train_rows) == 0:
        raise ValueError("X: no training images left after the validation hold-out")
    return _LabelledSplit(source, codes, class_names, val_source, val_codes, train_rows, val_rows)


def _global_batch(batch_size: int, world: int) -> int:
    """The images of one step on all ranks: ``batch_size`` rounded down to a multiple of the ranks."""
    if batch_size < world:
        raise ValueError(f"batch_size={batch_size} is smaller than the number of processes ({world})")
    if batch_size % world:
        warnings.warn(f"batch_size={batch_size} is not a multiple of the {world} processes; each takes "
                      f"{batch_size // world} images per step", stacklevel=4)
    return (batch_size // world) * world


def _classification_steps(split: _LabelledSplit, labels: torch.Tensor, recipe: _Recipe, mode: Precision, *,
                          mean_t: torch.Tensor, std_t: torch.Tensor, global_batch: int, steps: int, n_padded: int,
                          dist: Distributed):
    """``epoch_steps(model, epoch)`` for :func:`run_epochs`: this rank's share of each global batch of
    a seeded permutation, augmented on the device, through the cross-entropy."""
    device, world, n_train = dist.device, dist.world_size, len(split.train_rows)
    rows_of = torch.as_tensor(split.train_rows)

    def epoch_steps(model: nn.Module, epoch: int) -> Iterator[Step]:
        order = torch.randperm(n_train, generator=seeded_generator("pretrain", recipe.random_state, "order", epoch))
        if n_padded > n_train:
            order = torch.cat([order, order[:n_padded - n_train]])
        # Augmentation draws differ between ranks (they see different images) but not between reruns.
        augment = seeded_generator("pretrain", recipe.random_state, f"augment/{dist.rank}", epoch, device=device)
        for step in range(steps):
            share = torch.tensor_split(order[step * global_batch:(step + 1) * global_batch], world)[dist.rank]
            rows = rows_of[share]
            images = split.source.take(rows, device)
            target = labels[rows.to(labels.device, non_blocking=True)]
            if recipe.crop_padding or recipe.flip:
                images = random_crop_flip(images, recipe.crop_padding, flip=recipe.flip, generator=augment)
            x = mode.prepare(normalize(images, mean_t, std_t))
            with mode.autocast(device):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), target, label_smoothing=recipe.label_smoothing)
            yield Step(loss, len(rows), {"train_top1": (logits.argmax(dim=1) == target).sum()})

    return epoch_steps


def _epoch_line(recipe: _Recipe, verbose: bool, callback: Callable[[dict], Any] | None):
    """The end-of-epoch function: one printed line per epoch (``verbose``), then the user's ``callback``."""
    def after_epoch(entry: dict):
        if verbose:
            val = "n/a" if entry["val_top1"] is None else f"{100 * entry['val_top1']:.2f}%"
            from tqdm.auto import tqdm

            tqdm.write(f"epoch {entry['epoch']}/{recipe.epochs}: loss {entry['loss']:.4f}, train top-1 "
                       f"{100 * entry['train_top1']:.2f}%, val top-1 {val}, lr {entry['lr']:.4g}, "
                       f"{entry['images_per_second']:.0f} img/s", file=sys.stderr)
        return callback(entry) if callback is not None else None

    return after_epoch


def _theta0_meta(split: _LabelledSplit, recipe: _Recipe, history: list[dict], *, dataset_name, global_batch: int,
                 device: torch.device, world: int, mode: Precision) -> dict:
    """What the theta0 file records of its run (``record.meta``)."""
    n_classes = len(split.class_names)
    return {
        "dataset": dataset_name,
        "n_classes": n_classes,
        "classes": [str(c) for c in split.class_names] if n_classes <= _MAX_LISTED_CLASSES else n_classes,
        "n_train": len(split.train_rows),
        "n_val": int(len(split.val_rows)),
        **{k: v for k, v in asdict(recipe).items() if k not in ("width", "input_size", "crop_padding", "flip")},
        "batch_size": global_batch,
        "val_top1": history[-1]["val_top1"] if history else None,
        "train_top1": history[-1]["train_top1"] if history else None,
        "train_seconds": round(sum(h["seconds"] for h in history), 3),
        "device": str(device),
        "world_size": world,
        "precision": mode.name,
        "torch": str(torch.__version__),
        "command": shlex.join(sys.argv),
        "history": history,
    }


def _pretrain(X, y, X_val, y_val, recipe: _Recipe, *, val_fraction: float, classes, output: Path, precision: str,
              checkpoint: Path | None, resume: bool, verbose: bool, dataset_name: str | None, name: str | None,
              callback: Callable[[dict], Any] | None, dist: Distributed,
              started_wall: float) -> tuple[ResNet26, WeightsRecord]:
    device, world = dist.device, dist.world_size
    verbose = bool(verbose) and dist.is_main
    global_batch = _global_batch(recipe.batch_size, world)
    mode = Precision.resolve(device, precision)
    split = _split_labelled(X, y, X_val, y_val, classes, recipe, val_fraction, device)
    mean, std = channel_stats(split.source, split.train_rows, recipe.random_state)
    labels = torch.as_tensor(split.codes).to(device)
    val_labels = torch.as_tensor(split.val_codes).to(device) if split.val_source is not split.source else labels
    n_train = len(split.train_rows)
    # Every rank pads the same permutation to a multiple of the world size (as DistributedSampler
    # does), so no rank ever gets an empty share of the last batch.
    n_padded = math.ceil(n_train / world) * world
    steps = math.ceil(n_padded / global_batch)
    settings = {"n_train": n_train, "n_val": len(split.val_rows), "n_classes": len(split.class_names),
                **asdict(recipe), "batch_size": global_batch}
    run_id = fingerprint(_RUN_FORMAT, sorted(settings.items()), *_data_identity(X, split.codes),
                         *(() if X_val is None else _data_identity(X_val, split.val_codes)), split.val_rows)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.random_state)
        network = ResNet26(width=recipe.width, input_size=recipe.input_size, num_classes=len(split.class_names))
    mean_t, std_t = on_device(mean, device), on_device(std, device)
    epoch_steps = _classification_steps(split, labels, recipe, mode, mean_t=mean_t, std_t=std_t,
                                        global_batch=global_batch, steps=steps, n_padded=n_padded, dist=dist)

    def evaluate(trained: nn.Module) -> dict:
        return {"val_top1": _evaluate(trained, split.val_source, split.val_rows, val_labels, device=device,
                                      precision=mode, mean=mean_t, std=std_t,
                                      batch_size=1024 if device.type == "cuda" else 256, dist=dist)}

    checkpointing = None
    if checkpoint is not None:
        checkpointing = Checkpointing(checkpoint, run_id, recipe.random_state, resume=bool(resume), every=1,
                                      extra={"settings": settings, "mean": list(mean), "std": list(std)})
    with placed(network, device, mode):
        # Weight decay on every parameter, BN included, as in the reference CIFAR/ImageNet recipes.
        optimizer = torch.optim.SGD(network.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _LRFactor(recipe.schedule, steps, recipe.epochs, recipe.warmup_epochs))
        callbacks = [DivergenceGuard("lower lr, add warmup_epochs, or check the inputs"), DistributedSync(),
                     EpochScores(evaluate), *([Checkpoint(checkpointing)] if checkpointing is not None else []),
                     ProgressBar(verbose, f"pretrain {dataset_name or ''}".strip(), delay=0.0),
                     EpochEnd(_epoch_line(recipe, verbose, callback))]
        history = run_epochs(network, optimizer, scheduler, epoch_steps, epochs=recipe.epochs, steps_per_epoch=steps,
                             device=device, callbacks=callbacks, distributed=dist, cudnn_benchmark=True)

    network.eval()
    meta = _theta0_meta(split, recipe, history, dataset_name=dataset_name, global_batch=global_batch, device=device,
                        world=world, mode=mode)
    record = save_weights(network, output, name=name, mean=mean, std=std, meta=meta) if dist.is_main else None
    record = dist.broadcast_object(record)
    dist.finish()
    network.to("cpu")
    if verbose:
        val = "n/a" if meta["val_top1"] is None else f"{100 * meta['val_top1']:.2f}%"
        print(f"pretrain: val top-1 {val} after {len(history)} epochs, {time.perf_counter() - started_wall:.1f} s "
              f"wall; wrote {record.path} (sha256 {record.sha256})", file=sys.stderr, flush=True)
    return network, record


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
    parser.add_argument("--format", choices=FORMATS, default="auto", help="how to read DATA (default: detect)")
    parser.add_argument("--split", default=None, help="training split (default: train where DATA has splits)")
    parser.add_argument("--val-split", default=None,
                        help="validation split (e.g. val); default: hold out --val-fraction of the training split")
    parser.add_argument("--val-fraction", type=float_in(0, 1), default=0.02,
                        help="stratified hold-out fraction (default 0.02)")
    parser.add_argument("--root", default=None,
                        help="directory of the torchvision dataset files (default: $SKAD_TRANSFER_DATA, else "
                             "$SKAD_TRANSFER_HOME/datasets)")
    parser.add_argument("--download", action="store_true", help="let torchvision download missing files")
    parser.add_argument("--cache-dir", default=None, help="decode cache directory (default: $SKAD_TRANSFER_HOME/data)")
    parser.add_argument("--limit", type=int_at_least(1), default=None, metavar="N",
                        help="use only the first N training images per class (quick runs)")
    parser.add_argument("--width", type=int_at_least(1), default=16,
                        help="ResNet26 width (default 16; the paper's is 64)")
    parser.add_argument("--input-size", type=int, default=32, choices=SUPPORTED_INPUT_SIZES,
                        help="network input size; images are resized to it")
    parser.add_argument("--epochs", type=int_at_least(1), default=30, help="passes over the training images")
    parser.add_argument("--batch-size", type=int_at_least(1), default=128, help="global batch size (default 128)")
    parser.add_argument("--lr", type=float_in(0, low_open=True), default=0.1, help="peak learning rate")
    parser.add_argument("--momentum", type=float_in(0, 1), default=0.9, help="SGD momentum (Nesterov unless --no-nesterov)")
    parser.add_argument("--no-nesterov", dest="nesterov", action="store_false", help="plain momentum")
    parser.add_argument("--weight-decay", type=float_in(0), default=5e-4, help="SGD weight decay, on every parameter")
    parser.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                        help="cosine: annealed to 0 per step; step: lr / 10 at 50%% and 75%% of the epochs")
    parser.add_argument("--warmup-epochs", type=float_in(0), default=0.0, help="linear lr warm-up, in epochs")
    parser.add_argument("--label-smoothing", type=float_in(0, 1), default=0.0, help="of the cross-entropy")
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="auto: bf16 autocast on CUDA and on CPUs with native bf16, else float32")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint file, rewritten after every epoch and resumed from (default: OUTPUT.ckpt)")
    parser.add_argument("--no-checkpoint", action="store_true", help="write no checkpoint")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="start afresh even if the checkpoint exists (it is overwritten)")
    parser.add_argument("--seed", type=int_at_least(0), default=0,
                        help="seeds the initialisation, the hold-out and every epoch's draws")
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
