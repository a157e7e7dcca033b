"""Where skad-transfer keeps downloaded weights and decoded data."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "SKAD_TRANSFER_HOME"


def home_dir() -> Path:
    """``$SKAD_TRANSFER_HOME`` if set, else ``~/.cache/skad_transfer``."""
    return Path(os.environ.get(HOME_ENV, "~/.cache/skad_transfer")).expanduser()


def weights_dir() -> Path:
    return home_dir() / "weights"


DATA_ENV = "SKAD_TRANSFER_DATA"


def data_root() -> Path:
    """Where registered datasets and corpora are looked up: ``$SKAD_TRANSFER_DATA``, else
    ``$SKAD_TRANSFER_HOME/datasets``."""
    return Path(os.environ.get(DATA_ENV) or home_dir() / "datasets").expanduser()
