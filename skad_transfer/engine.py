"""The old home of the training core, kept so that ``skad_transfer.engine.<name>`` still imports.

Its contents moved: the loop, its callbacks, checkpoints, DDP and fine-tuning to
:mod:`skad_transfer.training`; device and precision to :mod:`skad_transfer.device`; batched
inference to :mod:`skad_transfer.inference`; a fit's images (``TrainingData``) to
:mod:`skad_transfer.data.fitdata`. Each name read from here warns (``FutureWarning``) with its new
home; this module goes in a later release.
"""

from __future__ import annotations

import importlib
import warnings

_NEW_HOMES = {
    **dict.fromkeys(("resolve_device", "PRECISIONS", "Precision", "cpu_has_native_bfloat16", "on_device", "placed"),
                    "skad_transfer.device"),
    "apply_batched": "skad_transfer.inference",
    "TrainingData": "skad_transfer.data.fitdata",
    **dict.fromkeys(("run_epochs", "Step", "TrainingRun", "TrainingDivergedError", "seeded_generator"),
                    "skad_transfer.training.loop"),
    **dict.fromkeys(("Checkpointing", "check_checkpoint_path", "checkpoint_seed", "fingerprint", "CHECKPOINT_EVERY",
                     "CHECKPOINT_FORMAT"), "skad_transfer.training.checkpoints"),
    "Distributed": "skad_transfer.training.distributed",
    **dict.fromkeys(("compiled", "COMPILE_MODES", "CUDA_GRAPH_MODES"), "skad_transfer.training.compile"),
    **dict.fromkeys(("train", "TrainSettings", "Objective"), "skad_transfer.training.finetune"),
}


def __getattr__(name: str):
    home = _NEW_HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'skad_transfer.engine' has no attribute {name!r} (the training core is "
                             f"skad_transfer.training now; device and precision: skad_transfer.device)")
    warnings.warn(f"skad_transfer.engine.{name} moved to {home}.{name}; import it from there (skad_transfer.engine "
                  f"goes in a later release)", FutureWarning, stacklevel=2)
    return getattr(importlib.import_module(home), name)

