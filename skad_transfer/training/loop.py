"""The training loop: one optimizer step per :class:`Step` its caller yields, callbacks around it.

One loop (:func:`run_epochs`) trains every network of the package: the detectors' fine-tuning
(:func:`~skad_transfer.training.finetune.train`, which feeds it normal and outlier-exposure
batches) and theta0 pretraining (:mod:`skad_transfer.pretrain`, which feeds it labelled batches).
The caller builds the network, optimizer and per-step learning-rate schedule and yields one
:class:`Step` (a loss and how many images it covers) per optimizer step. The loop does the
backward pass and the update and keeps the epoch's sums; everything else (the divergence guard,
the progress bar, checkpoints and resuming, validation, early stopping, DDP synchronisation) is a
:class:`~skad_transfer.training.callbacks.Callback` it notifies at named points, in the manner of
skorch: ``on_train_begin``, ``on_epoch_begin``, ``on_step_end``, ``on_epoch_end``,
``on_early_stop`` and ``on_train_end``.

Every epoch's randomness must be a function of ``(seed, epoch)`` only, drawn from generators of its
own (:func:`seeded_generator`, never torch's global one), so that a run resumed from its checkpoint
is identical to an uninterrupted one, and two CPU runs with one seed give identical weights, also
when they run at the same time in two threads. Training changes no process-wide setting (threads,
flush-denormal, default dtype); the one backend flag a caller may ask for (``cudnn_benchmark``) is
restored when the loop ends.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from .distributed import Distributed

__all__ = ["Step", "TrainingRun", "TrainingDivergedError", "run_epochs", "seeded_generator"]


class TrainingDivergedError(FloatingPointError):
    """The loss, the weights or the scores became NaN or infinite; training stopped instead of
    producing a broken model."""


@dataclass
class Step:
    """One optimizer step's forward pass, as the caller of :func:`run_epochs` yields it.

    ``loss`` (a scalar with its graph) is minimised; it averages over ``images`` images, which
    weight it in the epoch's mean. ``sums`` are detached per-step sums of statistics over those
    images (e.g. correct predictions); the history reports each as its mean per image.
    """

    loss: torch.Tensor
    images: int
    sums: dict[str, torch.Tensor] = field(default_factory=dict)


def seeded_generator(*key, device: torch.device = torch.device("cpu")) -> torch.Generator:
    """A generator on ``device`` that depends only on ``key`` (e.g. ``(seed, epoch)``).

    Every random draw of a training epoch comes from such a generator, so an epoch replayed after a
    resume draws exactly what it drew the first time, and no draw touches torch's global generator.
    """
    generator = torch.Generator(device=device)
    digest = hashlib.sha256("/".join(str(part) for part in key).encode()).hexdigest()
    generator.manual_seed(int(digest[:15], 16))
    return generator


class TrainingRun:
    """The state of one run of :func:`run_epochs`, which every callback receives.

    Attributes a callback reads: ``network`` (the trained module) and ``model`` (what forward
    passes run through: ``network`` or its DDP wrapper), ``optimizer``, ``scheduler``, ``device``,
    ``distributed``, ``epochs``, ``steps_per_epoch``, ``total_steps``, ``history`` (one dict per
    finished epoch), ``epoch`` and ``lr`` (of the current epoch's first step), the running sums of
    the current epoch (``loss_sum``, a float64 tensor; ``sums``; ``seen`` images; ``steps``) and
    ``readback_every`` (how often a loss may be read back to the host without stalling the device).
    What a callback may set: ``start_epoch``, ``history`` and ``resumed_from`` (in ``on_train_begin``,
    when resuming), and :meth:`request_stop` (to end training after the current epoch).
    """

    def __init__(self, network: nn.Module, optimizer, scheduler, *, device: torch.device, distributed: Distributed,
                 epochs: int, steps_per_epoch: int, total_steps: int):
        self.network, self.optimizer, self.scheduler = network, optimizer, scheduler
        self.device, self.distributed = device, distributed
        self.epochs, self.steps_per_epoch, self.total_steps = epochs, steps_per_epoch, total_steps
        self.model = network
        self.history: list[dict] = []
        self.start_epoch = 0
        self.resumed_from = None
        self.epoch = 0
        self.lr = float("nan")
        self.stop_requested = False
        # Reading the loss back (the divergence check, the progress bar's loss) synchronises a GPU,
        # whose steps are bound by kernel launches: there only every 25 steps.
        self.readback_every = 25 if device.type == "cuda" else 1
        self._begin_sums()

    def _begin_sums(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.sums: dict[str, torch.Tensor] = {}
        self.seen = 0
        self.steps = 0
        self._started = time.perf_counter()

    def request_stop(self) -> None:
        """End training after the current epoch (early stopping); a later epoch never starts."""
        self.stop_requested = True

    @property
    def is_last_epoch(self) -> bool:
        return self.epoch + 1 == self.epochs

    @property
    def trained_steps(self) -> int:
        """Optimizer steps of the whole run up to now, the epochs before a resume included."""
        return self.epoch * self.steps_per_epoch + self.steps

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.model.train()
        self.lr = self.optimizer.param_groups[0]["lr"]
        self._begin_sums()

    def add_step(self, out: Step) -> None:
        self.loss_sum += out.loss.detach() * out.images
        for name, value in out.sums.items():
            self.sums[name] = self.sums.get(name, 0) + value.detach()
        self.seen += out.images
        self.steps += 1

    def end_epoch(self) -> dict:
        """The epoch's history entry, its sums reduced over the DDP ranks; appended to ``history``."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - self._started
        names = list(self.sums)
        totals = torch.stack([self.loss_sum, torch.tensor(float(self.seen), dtype=torch.float64, device=self.device),
                              *(torch.as_tensor(self.sums[k], device=self.device).double() for k in names)])
        reduced = self.distributed.all_reduce(totals).tolist()
        total_loss, total_seen = reduced[0], reduced[1]
        entry = {"epoch": self.epoch + 1, "steps": self.steps, "lr": self.lr, "loss": total_loss / total_seen,
                 **{k: v / total_seen for k, v in zip(names, reduced[2:])},
                 "seconds": seconds, "images_per_second": total_seen / seconds if seconds > 0 else float("nan")}
        self.history.append(entry)
        return entry


def notify(callbacks: Sequence, hook: str, *args) -> None:
    """Call ``hook`` on every callback that has it, in order."""
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(*args)


@contextmanager
def _cudnn_benchmark(enabled: bool) -> Iterator[None]:
    previous = torch.backends.cudnn.benchmark
    if enabled:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def run_epochs(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epoch_steps: Callable[[nn.Module, int], Iterable[Step]],
    *,
    epochs: int,
    steps_per_epoch: int,
    total_steps: int | None = None,
    device: torch.device,
    callbacks: Sequence = (),
    distributed: Distributed | None = None,
    cudnn_benchmark: bool = False,
) -> list[dict]:
    """Train ``network`` in place for ``epochs`` epochs; returns the history, one dict per epoch.

    Parameters
    ----------
    network : nn.Module
        Already on ``device`` (:func:`~skad_transfer.device.placed`); ``optimizer`` holds its
        trained parameters and ``scheduler`` is stepped once per optimizer step.
    epoch_steps : callable
        ``epoch_steps(model, epoch)`` yields one :class:`Step` per optimizer step of that epoch,
        computed with ``model`` (``network`` or its DDP wrapper). Its randomness must depend only on
        ``epoch`` (:func:`seeded_generator`) for resumed runs to equal uninterrupted ones.
    epochs, steps_per_epoch : int
        The number of epochs, and the steps of a full one (to place a resumed run).
    total_steps : int, optional
        All steps of the run (a step budget may cut the last epoch); ``epochs * steps_per_epoch``
        by default.
    device : torch.device
    callbacks : sequence of Callback
        Notified in order at each point (:mod:`skad_transfer.training.callbacks`); the history's
        entry of an epoch is in ``run.history`` when ``on_epoch_end`` is called, and callbacks may
        add to it. After an epoch in which one of them called ``run.request_stop()`` (and that was
        not the last), the entry gets ``"stopped_early": True``, ``on_early_stop`` is called and
        training ends.
    distributed : Distributed, optional
        DDP: the model is wrapped and the epoch's sums are all-reduced (the callbacks do the rest:
        :class:`~skad_transfer.training.callbacks.DistributedSync`).
    cudnn_benchmark : bool, default=False
        Let cuDNN pick kernels by timing them (fixed shapes pay off after a few steps); restored after.

    Returns
    -------
    history : list of dict
        Per epoch: ``epoch``, ``steps``, ``lr`` (of the epoch's first step), ``loss`` (mean per
        image), the mean per image of each of the steps' ``sums``, ``seconds``,
        ``images_per_second`` (all ranks together), and what the callbacks added.
    """
    run = TrainingRun(network, optimizer, scheduler, device=device,
                      distributed=distributed if distributed is not None else Distributed(False, device),
                      epochs=epochs, steps_per_epoch=steps_per_epoch,
                      total_steps=epochs * steps_per_epoch if total_steps is None else total_steps)
    try:
        notify(callbacks, "on_train_begin", run)
        run.model = run.distributed.wrap(network)
        with _cudnn_benchmark(cudnn_benchmark and device.type == "cuda"):
            for epoch in range(run.start_epoch, epochs):
                run.begin_epoch(epoch)
                notify(callbacks, "on_epoch_begin", run)
                for step, out in enumerate(epoch_steps(run.model, epoch)):
                    optimizer.zero_grad(set_to_none=True)
                    out.loss.backward()
                    optimizer.step()
                    scheduler.step()
                    run.add_step(out)
                    notify(callbacks, "on_step_end", run, step)
                entry = run.end_epoch()
                notify(callbacks, "on_epoch_end", run, entry)
                if run.stop_requested and not run.is_last_epoch:
                    # Recorded (and saved by a checkpoint callback), so that a rerun stops here too.
                    entry["stopped_early"] = True
                    notify(callbacks, "on_early_stop", run, entry)
                    break
        notify(callbacks, "on_train_end", run)
    finally:
        notify(callbacks, "on_close", run)
    return run.history
