"""Fine-tuning a detector's network: normal + outlier-exposure batches through the training loop.

:func:`train` turns a fit's :class:`~skad_transfer.data.fitdata.TrainingData`, its objective and
its :class:`TrainSettings` into the steps of :func:`~skad_transfer.training.loop.run_epochs`, with
the SGD optimizer and step schedule of the paper, and the callbacks every fit has (the divergence
guard, the checkpoint, the progress bar) around those the caller adds (validation, early stopping,
the user's own).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from ..data.augment import normalize, random_crop_flip
from ..data.fitdata import TrainingData
from ..data.sampling import permutation_prefix
from ..device import Precision, on_device, placed
from .callbacks import Callback, Checkpoint, DivergenceGuard, ProgressBar
from .checkpoints import Checkpointing
from .compile import compiled
from .loop import Step, run_epochs, seeded_generator

__all__ = ["Objective", "TrainSettings", "train"]

Objective = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
"""``objective(network, normal_batch, outlier_batch_or_None) -> scalar loss`` on normalised batches."""


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
    compile: bool | str = False
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


def _epoch_plan(n_normal: int, n_outlier: int, half: int, seed: int, epoch: int):
    """Per-step index batches of one epoch: a permutation of the normal set, and fresh OE draws
    (without replacement until the corpus is used up; see :mod:`~skad_transfer.data.sampling`)."""
    generator = seeded_generator(seed, epoch)
    order = torch.randperm(n_normal, generator=generator)
    steps = math.ceil(n_normal / half)
    normal_batches = [order[i * half:(i + 1) * half] for i in range(steps)]
    outlier_batches = None
    if n_outlier:
        # Successive permutations of the corpus, of which only the needed prefix is ever built, so
        # that memory and time per epoch do not grow with the corpus (10**9 items cost what 10**4 do).
        needed = sum(len(b) for b in normal_batches)
        draws = torch.cat([permutation_prefix(n_outlier, min(n_outlier, needed - start), generator)
                           for start in range(0, needed, n_outlier)])
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
    callbacks: Sequence[Callback] = (),
) -> list[dict]:
    """Fine-tune ``network`` in place with :func:`~skad_transfer.training.loop.run_epochs`; returns
    the per-epoch history.

    Each step takes ``batch_size // 2`` normal images and as many OE images (none without a corpus),
    augments them with crop + flip, normalises them and minimises ``objective + penalty()`` with SGD
    (momentum, weight decay). Training lasts ``settings.steps`` steps, or ``settings.epochs`` passes
    over the normal set when that is set; the learning rate drops by ``gamma`` at the ``milestones``
    fractions of the steps (the paper's epochs 60 and 80 of 100). An epoch is one pass over the
    normal set (the last one may stop early). The history's ``penalty`` is the mean of ``penalty()``
    per image (0 without one).

    The loop's callbacks, in order: a :class:`~skad_transfer.training.callbacks.DivergenceGuard`,
    the caller's ``callbacks`` (validation, early stopping, a user's own: what they add to an
    epoch's entry is saved with it), with ``settings.checkpoint`` a
    :class:`~skad_transfer.training.callbacks.Checkpoint` (the state and ``settings.seed`` saved,
    and a matching checkpoint resumed from), and the
    :class:`~skad_transfer.training.callbacks.ProgressBar`. With ``settings.compile`` (True or a
    mode, :func:`~skad_transfer.training.compile.compiled`) the training steps call ``objective``
    through ``torch.compile``; validation calls it as it is.

    Raises :class:`~skad_transfer.training.loop.TrainingDivergedError` when the loss is not finite,
    or the network's parameters or buffers are not after the last step or before a checkpoint save.
    """
    device = settings.device
    precision = Precision.resolve(device, settings.precision)
    half = max(1, settings.batch_size // 2)
    n_normal = data.normal.shape[0]
    steps_per_epoch = math.ceil(n_normal / half)
    total_steps = settings.total_steps(steps_per_epoch)
    epoch_steps = _fine_tuning_steps(data, objective, settings, precision, penalty, mean=mean, std=std,
                                     total_steps=total_steps)
    every_fit = [DivergenceGuard(), *callbacks]
    if settings.checkpoint:
        every_fit.append(Checkpoint(Checkpointing(settings.checkpoint, settings.fingerprint, settings.seed)))
    every_fit.append(ProgressBar(bool(settings.verbose), settings.description, settings.progress_delay))
    with placed(network, device, precision):
        optimizer = torch.optim.SGD(parameters, lr=settings.lr, momentum=settings.momentum,
                                    weight_decay=settings.weight_decay)
        # Stepped once per optimizer step, so that the schedule is the same whatever the epoch length.
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, settings.milestone_steps(total_steps),
                                                         settings.gamma)
        return run_epochs(network, optimizer, scheduler, epoch_steps, epochs=math.ceil(total_steps / steps_per_epoch),
                          steps_per_epoch=steps_per_epoch, total_steps=total_steps, device=device,
                          callbacks=every_fit)


def _fine_tuning_steps(data: TrainingData, objective: Objective, settings: TrainSettings, precision: Precision,
                       penalty: Callable[[], torch.Tensor] | None, *, mean, std, total_steps: int):
    """``epoch_steps(model, epoch)`` for :func:`run_epochs`: the epoch's normal and OE batches,
    augmented and normalised on the device, through the (compiled) objective."""
    device = settings.device
    half = max(1, settings.batch_size // 2)
    n_normal = data.normal.shape[0]
    n_outlier = len(data.corpus) if data.corpus is not None else 0
    steps_per_epoch = math.ceil(n_normal / half)
    mean, std = on_device(mean, device), on_device(std, device)
    step_objective = compiled(objective, settings.compile, settings.device)

    def augmented(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if settings.crop_padding or settings.flip:
            images = random_crop_flip(images, settings.crop_padding, flip=settings.flip, generator=generator)
        return precision.prepare(normalize(images, mean, std))

    def epoch_steps(model: nn.Module, epoch: int) -> Iterator[Step]:
        normal_idx, outlier_idx = _epoch_plan(n_normal, n_outlier, half, settings.seed, epoch)
        augment_rng = seeded_generator(settings.seed, -1 - epoch, device=device)
        for step, idx in enumerate(normal_idx[:total_steps - epoch * steps_per_epoch]):
            x_normal = augmented(data.normal_batch(idx), augment_rng)
            x_outlier = None if outlier_idx is None else augmented(data.outlier_batch(outlier_idx[step]), augment_rng)
            with precision.autocast(device):
                loss = step_objective(model, x_normal, x_outlier).float()
            images = x_normal.shape[0] + (0 if x_outlier is None else x_outlier.shape[0])
            reg = penalty() if penalty is not None else torch.zeros((), device=device)
            yield Step(loss + reg if penalty is not None else loss, images, {"penalty": reg.detach() * images})

    return epoch_steps
