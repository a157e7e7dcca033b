"""The package's folders: downloaded weights, the datasets it reads by name, and its decode cache.

All three live under one home, ``$SKAD_TRANSFER_HOME`` (default ``~/.cache/skad_transfer``), unless
``$SKAD_TRANSFER_DATA`` names the folder of the datasets (a shared data disk, say):

* :func:`weights_dir`: weights fetched by URL (``home/weights``);
* :func:`data_root`: where named datasets and OE corpora are looked up, and where torchvision's
  ``download=True`` puts them (``$SKAD_TRANSFER_DATA``, else ``home/datasets``); user-supplied data;
* :func:`cache_root`: the decode cache, arrays decoded from image archives (``home/data``); derived
  data that can always be rebuilt, kept apart so that it can be deleted without losing a dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "SKAD_TRANSFER_HOME"
DATA_ENV = "SKAD_TRANSFER_DATA"


def home_dir() -> Path:
    """``$SKAD_TRANSFER_HOME`` if set, else ``~/.cache/skad_transfer``."""
    return Path(os.environ.get(HOME_ENV, "~/.cache/skad_transfer")).expanduser()


def weights_dir() -> Path:
    """Where weights fetched by URL are kept: ``$SKAD_TRANSFER_HOME/weights``."""
    return home_dir() / "weights"


def data_root() -> Path:
    """Where named datasets and corpora are looked up: ``$SKAD_TRANSFER_DATA``, else
    ``$SKAD_TRANSFER_HOME/datasets``."""
    return Path(os.environ.get(DATA_ENV) or home_dir() / "datasets").expanduser()


def cache_root() -> Path:
    """The decode cache's folder: ``$SKAD_TRANSFER_HOME/data`` (not created here)."""
    return home_dir() / "data"
