"""What happens around the training loop's steps: callbacks it notifies at named points.

:func:`~skad_transfer.training.loop.run_epochs` calls, on each callback that has them and in list
order: ``on_train_begin(run)``, ``on_epoch_begin(run)``, ``on_step_end(run, step)``,
``on_epoch_end(run, entry)`` (``entry`` is the epoch's history dict, already in ``run.history``),
``on_early_stop(run, entry)`` (after an epoch in which a callback called ``run.request_stop()``),
``on_train_end(run)`` (after a run that did not raise) and ``on_close(run)`` (always, last).
``run`` is the :class:`~skad_transfer.training.loop.TrainingRun`.

The package's own features are callbacks: :class:`DivergenceGuard`, :class:`ProgressBar`,
:class:`Checkpoint`, :class:`DistributedSync`, :class:`EpochScores` (validation),
:class:`EarlyStopping` (with the best weights restored) and :class:`EpochEnd` (a function after
each epoch). The detectors build their list from their parameters and append the user's own
(``callbacks=``); a user's callback subclasses :class:`Callback` and overrides what it needs.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .checkpoints import (CHECKPOINT_EVERY, Checkpointing, check_checkpoint_path, resume_checkpoint,
                          save_checkpoint)
from .loop import TrainingDivergedError

__all__ = ["Callback", "DivergenceGuard", "ProgressBar", "Checkpoint", "DistributedSync", "EpochScores",
           "EarlyStopping", "EpochEnd", "check_finite_state", "EARLY_STOPPING_TOL"]


class Callback:
    """Base class: every hook does nothing. Override the ones you need; ``run`` is the
    :class:`~skad_transfer.training.loop.TrainingRun` (the network, optimizer, history, ...)."""

    def on_train_begin(self, run) -> None:
        """Before the first epoch (and before the network is wrapped for DDP)."""

    def on_epoch_begin(self, run) -> None:
        """Before the first step of epoch ``run.epoch`` (0-based)."""

    def on_step_end(self, run, step: int) -> None:
        """After optimizer step ``step`` (0-based, within the epoch) and its scheduler step."""

    def on_epoch_end(self, run, entry: dict) -> None:
        """After the epoch; ``entry`` (also ``run.history[-1]``) may be added to."""

    def on_early_stop(self, run, entry: dict) -> None:
        """After an epoch that a ``run.request_stop()`` ended early (``entry["stopped_early"]``)."""

    def on_train_end(self, run) -> None:
        """After the last epoch of a run that did not raise."""

    def on_close(self, run) -> None:
        """Always, last, also when the run raised."""


def _diverged(value: float, epoch: int, step: int, lr: float, advice: str) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"the training loss became {value} at epoch {epoch + 1}, step {step + 1} (lr={lr:g}); {advice}"
    )


def check_finite_state(network: nn.Module, epoch: int, lr: float) -> None:
    """Raise :class:`TrainingDivergedError` when a parameter or buffer of ``network`` is not finite."""
    tensors = [(name, t) for name, t in [*network.named_parameters(), *network.named_buffers()]
               if t.is_floating_point()]
    finite = torch.stack([torch.isfinite(t).all() for _, t in tensors])  # one device sync, not one per tensor
    if not bool(finite.all()):
        name = tensors[int((~finite).nonzero()[0, 0])][0]
        raise TrainingDivergedError(
            f"training diverged: {name} of the network became non-finite (nan or inf) by the end of epoch "
            f"{epoch + 1} (lr={lr:g}); lower lr (e.g. 10x), or check the inputs"
        )


class DivergenceGuard(Callback):
    """A fit never ends with a broken model: a non-finite loss stops it at once (checked every
    ``run.readback_every`` steps; under DDP on the epoch's reduced loss, which all ranks agree on),
    and so do parameters or BatchNorm statistics that became non-finite by the last step (the loss
    is checked before each step, so the last update shows only there, and BatchNorm statistics never
    show in a train-mode loss). :class:`Checkpoint` checks the state before every save too.

    Parameters
    ----------
    advice : str
        What the :class:`TrainingDivergedError` for a non-finite loss suggests.
    """

    def __init__(self, advice: str = "lower lr, or check the inputs"):
        self.advice = advice

    def on_step_end(self, run, step: int) -> None:
        # DDP ranks must agree to stop, so they check the reduced loss after the epoch.
        if not run.distributed.enabled and (step + 1) % run.readback_every == 0:
            value = run.loss_sum.item()
            if not math.isfinite(value):
                raise _diverged(value, run.epoch, step, run.lr, self.advice)

    def on_epoch_end(self, run, entry: dict) -> None:
        if not math.isfinite(entry["loss"]):
            raise _diverged(entry["loss"], run.epoch, run.steps - 1, run.lr, self.advice)
        if run.is_last_epoch:
            check_finite_state(run.network, run.epoch, run.lr)

    def on_early_stop(self, run, entry: dict) -> None:
        check_finite_state(run.network, run.epoch, run.lr)


class DistributedSync(Callback):
    """Under DDP, rank 0's BatchNorm statistics are broadcast to every rank after each epoch: each
    rank's copy drifted with its own last batch. (The loop wraps the model and reduces the sums.)"""

    def on_epoch_end(self, run, entry: dict) -> None:
        run.distributed.broadcast_buffers(run.network)


class EpochScores(Callback):
    """``evaluate(network) -> dict`` after every epoch (on every rank), merged into the epoch's entry."""

    def __init__(self, evaluate: Callable[[nn.Module], dict]):
        self.evaluate = evaluate

    def on_epoch_end(self, run, entry: dict) -> None:
        entry.update(self.evaluate(run.network))


class EpochEnd(Callback):
    """``function(entry)`` with a copy of each epoch's entry; returning True stops training there
    (as ``run.request_stop()``). Placed after :class:`Checkpoint`, the epoch is saved before the
    function runs, so a function that raises leaves a run that resumes after that epoch."""

    def __init__(self, function: Callable[[dict], object]):
        self.function = function

    def on_epoch_end(self, run, entry: dict) -> None:
        if self.function(dict(entry)) is True:
            run.request_stop()


EARLY_STOPPING_TOL = 1e-4
"""An epoch improves on the best when its monitored value is lower by more than this."""


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without a lower ``monitor`` (an entry key an earlier callback
    fills, e.g. :class:`EpochScores`), and give the network the best epoch's weights at the end.

    Attributes
    ----------
    best_epoch : int
        The 1-based epoch of the lowest ``monitor`` (0 before any epoch).
    best_state : dict or None
        That epoch's ``state_dict``, copied to the CPU.
    """

    def __init__(self, patience: int = 5, monitor: str = "val_loss", tol: float = EARLY_STOPPING_TOL,
                 restore_best: bool = True):
        self.patience, self.monitor, self.tol, self.restore_best = patience, monitor, tol, restore_best
        self.best_value, self.best_epoch, self.best_state, self.since_best = math.inf, 0, None, 0

    def on_epoch_end(self, run, entry: dict) -> None:
        if entry[self.monitor] < self.best_value - self.tol:
            self.best_value, self.best_epoch, self.since_best = entry[self.monitor], entry["epoch"], 0
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in run.network.state_dict().items()}
            return
        self.since_best += 1
        if self.since_best >= self.patience:
            run.request_stop()

    def on_train_end(self, run) -> None:
        if self.restore_best and self.best_state is not None:
            run.network.load_state_dict(self.best_state)  # the best epoch's weights, not the last's


class ProgressBar(Callback):
    """The progress bar (tqdm, on stderr): shown when ``verbose`` on the main rank, and only once a
    run has lasted ``delay`` seconds; the running loss, the steps' sums and what validation adds.
    Place it after :class:`Checkpoint`, so that a resumed run's bar starts where it resumed."""

    def __init__(self, verbose: bool = False, description: str = "fit", delay: float = 5.0):
        self.verbose, self.description, self.delay = verbose, description, delay
        self.bar = None

    def on_train_begin(self, run) -> None:
        from tqdm.auto import tqdm

        self.shown = self.verbose and run.distributed.is_main
        done = min(run.total_steps, run.start_epoch * run.steps_per_epoch)
        self.bar = tqdm(total=run.total_steps, initial=done, disable=not self.shown, desc=self.description,
                        unit="step", dynamic_ncols=True, delay=self.delay, file=sys.stderr)
        if run.resumed_from is not None and self.shown:
            self.bar.write(f"{self.description}: resuming {run.resumed_from} after epoch {run.start_epoch}/{run.epochs}",
                           file=sys.stderr)

    def on_step_end(self, run, step: int) -> None:
        self.bar.update(1)
        if self.shown and (step + 1) % max(run.readback_every, 10) == 0:
            seen = run.seen
            self.bar.set_postfix(epoch=f"{run.epoch + 1}/{run.epochs}", loss=f"{run.loss_sum.item() / seen:.4f}",
                                 **{k: f"{float(v) / seen:.4g}" for k, v in run.sums.items()}, refresh=False)

    def on_epoch_end(self, run, entry: dict) -> None:
        added = {k: v for k, v in entry.items() if k.startswith("val_")}
        if self.shown and added:
            self.bar.set_postfix(epoch=f"{run.epoch + 1}/{run.epochs}", loss=f"{entry['loss']:.4f}",
                                 **{k: "n/a" if v is None else f"{v:.4g}" for k, v in added.items()})

    def on_close(self, run) -> None:
        if self.bar is not None:
            self.bar.close()


class Checkpoint(Callback):
    """Save the run and resume from it (:mod:`~skad_transfer.training.checkpoints`).

    The path is checked before the first step. A matching checkpoint (same fingerprint and seed)
    is resumed from; one that ended early ends the rerun there too. The state is saved at most every
    ``spec.every`` optimizer steps (:data:`~skad_transfer.training.checkpoints.CHECKPOINT_EVERY` by
    default: a small data set makes many short epochs), after the last epoch and after an early
    stop, only on the main rank, and never in a non-finite state. Place it after the callbacks that
    add to the entry (validation), so the saved history has what they added.
    """

    def __init__(self, spec: Checkpointing):
        self.spec = spec
        self.saved = 0

    def on_train_begin(self, run) -> None:
        check_checkpoint_path(self.spec.path)
        if self.spec.resume and Path(self.spec.path).is_file():
            run.start_epoch, run.history = resume_checkpoint(self.spec, run.network, run.optimizer, run.scheduler)
            if run.history and run.history[-1].get("stopped_early"):
                run.start_epoch = run.epochs
            if run.start_epoch:
                run.resumed_from = self.spec.path
        self.saved = min(run.total_steps, run.start_epoch * run.steps_per_epoch)

    def on_epoch_end(self, run, entry: dict) -> None:
        every = CHECKPOINT_EVERY if self.spec.every is None else self.spec.every
        trained = run.trained_steps
        if trained - self.saved >= every or run.is_last_epoch:
            self._save(run)
            self.saved = trained

    def on_early_stop(self, run, entry: dict) -> None:
        self._save(run)

    def _save(self, run) -> None:
        check_finite_state(run.network, run.epoch, run.lr)  # a diverged state is never saved
        if run.distributed.is_main:
            save_checkpoint(self.spec, run.epoch + 1, run.network, run.optimizer, run.scheduler, run.history)
