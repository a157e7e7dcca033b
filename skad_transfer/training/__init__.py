"""Training: the loop, its callbacks, checkpoints, DDP and the detectors' fine-tuning.

- :mod:`~skad_transfer.training.loop`: :func:`run_epochs`, :class:`Step`, :class:`TrainingRun`,
  :func:`seeded_generator`, :class:`TrainingDivergedError`.
- :mod:`~skad_transfer.training.callbacks`: :class:`Callback` and the features built on it
  (divergence guard, progress bar, checkpoint, validation scores, early stopping, DDP sync).
- :mod:`~skad_transfer.training.checkpoints`: saving, identifying and resuming runs.
- :mod:`~skad_transfer.training.distributed`: :class:`Distributed` (DDP).
- :mod:`~skad_transfer.training.compile`: ``compile=`` (``torch.compile`` of the training step).
- :mod:`~skad_transfer.training.finetune`: :func:`train` and :class:`TrainSettings`, what the
  detectors' ``fit`` runs.

Where networks run (device, precision) is :mod:`skad_transfer.device`; batched inference is
:mod:`skad_transfer.inference`; a fit's images are :mod:`skad_transfer.data.fitdata`.
"""

from .callbacks import (Callback, Checkpoint, DistributedSync, DivergenceGuard, EarlyStopping, EpochEnd, EpochScores,
                        ProgressBar)
from .checkpoints import CHECKPOINT_EVERY, CHECKPOINT_FORMAT, Checkpointing, checkpoint_seed, fingerprint
from .compile import COMPILE_MODES, CUDA_GRAPH_MODES, compiled
from .distributed import Distributed
from .finetune import TrainSettings, train
from .loop import Step, TrainingDivergedError, TrainingRun, run_epochs, seeded_generator

__all__ = ["Callback", "Checkpoint", "DistributedSync", "DivergenceGuard", "EarlyStopping", "EpochEnd", "EpochScores",
           "ProgressBar", "CHECKPOINT_EVERY", "CHECKPOINT_FORMAT", "Checkpointing", "checkpoint_seed", "fingerprint",
           "COMPILE_MODES", "CUDA_GRAPH_MODES", "compiled", "Distributed", "TrainSettings", "train", "Step",
           "TrainingDivergedError", "TrainingRun", "run_epochs", "seeded_generator"]
