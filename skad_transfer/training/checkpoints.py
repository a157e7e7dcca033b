"""Training checkpoints: where a run saves its state, how it is identified, read back and resumed.

A checkpoint holds the network, optimizer and scheduler state, the epoch and the history; it is
rewritten atomically, and only ever resumed by the run that wrote it (same :func:`fingerprint` and
seed). The :class:`~skad_transfer.training.callbacks.Checkpoint` callback saves and resumes with
these functions.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_write

__all__ = ["CHECKPOINT_EVERY", "CHECKPOINT_FORMAT", "Checkpointing", "check_checkpoint_path", "checkpoint_seed",
           "fingerprint", "save_checkpoint", "resume_checkpoint"]

CHECKPOINT_EVERY = 50
"""Fewest optimizer steps between two checkpoint saves (epochs shorter than this are grouped)."""

CHECKPOINT_FORMAT = "skad_transfer.checkpoint/1"
"""The ``format`` entry of every training checkpoint the package writes (fine-tuning and pretraining)."""


def fingerprint(*parts) -> str:
    """A sha256 over ``parts`` (strings, bytes, numpy arrays, tensors): what identifies a training
    run for its checkpoint, so that a checkpoint is only ever resumed by the run that wrote it."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous().numpy()
        if isinstance(part, np.ndarray):
            digest.update(repr((part.shape, str(part.dtype))).encode())
            part = np.ascontiguousarray(part).tobytes()
        digest.update(part if isinstance(part, bytes) else str(part).encode())
    return digest.hexdigest()


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


@dataclass(frozen=True)
class Checkpointing:
    """Where and how a training run saves and resumes (the :class:`~skad_transfer.training.callbacks.Checkpoint` callback).

    Parameters
    ----------
    path : path-like
        The checkpoint file, rewritten atomically (network, optimizer, scheduler, epoch, history).
    fingerprint : str
        What identifies the run (:func:`fingerprint` of its settings and data); a checkpoint with
        another fingerprint or ``seed`` is refused, never continued.
    seed : int
        The run's seed, recorded so that a run with a drawn seed resumes with the same one
        (:func:`checkpoint_seed`).
    resume : bool, default=True
        False ignores (and overwrites) an existing checkpoint.
    every : int, optional
        Fewest optimizer steps between two saves (default :data:`CHECKPOINT_EVERY`); the last epoch
        is always saved. 1 saves after every epoch.
    extra : dict
        Saved with the state for the reader (e.g. the settings); not used to resume.
    """

    path: str | os.PathLike
    fingerprint: str
    seed: int
    resume: bool = True
    every: int | None = None
    extra: dict = field(default_factory=dict)


def _read_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise OSError(f"checkpoint: could not read {path}: {type(error).__name__}: {error}; "
                      f"delete it to start afresh") from error
    # Fine-tuning checkpoints written before the format entry existed have the same keys.
    if not isinstance(state, dict) or state.get("format", CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint: {path} is not a training checkpoint of this package's version; delete it "
                         f"or choose another checkpoint path")
    return state


def checkpoint_seed(checkpoint, fingerprint: str) -> int | None:
    """The seed recorded in the ``checkpoint`` file of the run ``fingerprint``; None when there is no
    such file, or it belongs to another run (which resuming then refuses), or predates seeds.

    A fit whose seed is drawn afresh each time (``random_state=None``) resumes with this seed.
    """
    path = Path(checkpoint)
    if not path.is_file():
        return None
    state = _read_checkpoint(path)
    if state.get("fingerprint") != fingerprint or state.get("seed") is None:
        return None
    return int(state["seed"])


def save_checkpoint(spec: Checkpointing, epoch: int, network, optimizer, scheduler, history) -> None:
    """Write the state after ``epoch`` epochs to ``spec.path``, atomically (a crash leaves the last one)."""
    path = Path(spec.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {**spec.extra, "format": CHECKPOINT_FORMAT, "fingerprint": spec.fingerprint, "seed": int(spec.seed),
             "epoch": epoch, "network": network.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "history": history}
    atomic_write(path, lambda handle: torch.save(state, handle))


def resume_checkpoint(spec: Checkpointing, network, optimizer, scheduler) -> tuple[int, list[dict]]:
    """Load ``spec.path`` into the network, optimizer and scheduler; returns ``(epochs done, history)``.

    Raises ``ValueError`` when the checkpoint belongs to another run (fingerprint or seed).
    """
    path = Path(spec.path)
    state = _read_checkpoint(path)
    # A checkpoint from before seeds were recorded carries none; its fingerprint covers the seed.
    if state.get("fingerprint") != spec.fingerprint or state.get("seed", spec.seed) != spec.seed:
        raise ValueError(
            f"checkpoint: {path} belongs to a different fit (other data, parameters or seed); delete it or choose "
            f"another checkpoint path"
        )
    network.load_state_dict(state["network"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["epoch"]), [dict(entry) for entry in state["history"]]
