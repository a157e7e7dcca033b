"""The on-disk decode cache of the dataset loaders: where it lives, how entries are keyed and written.

Decoding tens of thousands of JPEGs, or unpickling torchvision's archives,
is slow compared with reading a flat array, so the loaders of
:mod:`skad_transfer.data.datasets` store decoded arrays as ``.npy`` files
under :func:`cache_dir` (override with the environment variable
``SKAD_TRANSFER_HOME`` or the ``cache_dir`` argument of each loader). With
``cache=True`` the image array is returned as a read-only
:class:`numpy.memmap` of that file, both on the first call (after decoding)
and on every later call, so a large corpus is paged in lazily rather than
copied into memory. Cache entries are keyed on the source path, size and
modification time (and on the loader arguments), so editing or replacing a
source file triggers a fresh decode; every file is written to a temporary
name and moved into place with :func:`os.replace`, so an interrupted decode
never leaves a truncated entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path, atomic_write_text
from .._paths import cache_root

__all__ = ["cache_dir"]

# Bump when the cache layout or decoding semantics change, so old entries are
# never mistaken for new ones.
_CACHE_VERSION = 1


def cache_dir() -> Path:
    """Return the default directory of the decode cache (:func:`skad_transfer.data.cache_root`).

    Returns
    -------
    path : pathlib.Path
        ``$SKAD_TRANSFER_HOME/data``, where ``SKAD_TRANSFER_HOME`` defaults to
        ``~/.cache/skad_transfer``. The directory is not created here.

    Examples
    --------
    >>> cache_dir().name
    'data'
    """
    return cache_root()


def _short_hash(*parts: Any) -> str:
    """A 16-hex-digit digest of ``parts`` (JSON-encoded), for cache keys and entry names."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def _file_stamp(path: Path) -> list[Any]:
    """Path, size and modification time of a source file (``None``s when it is missing)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return [str(path), None, None]
    return [str(path), st.st_size, st.st_mtime_ns]


def _safe_name(text: str) -> str:
    """``text`` shortened to characters that are safe in a file name."""
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return keep[:40] or "data"


def _open_path(path: str | os.PathLike) -> Path:
    """The resolved path of a dataset source (the path cache keys are made of); it must exist."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"dataset path does not exist: {str(p)!r}")
    return p.resolve()


def _resolve_cache_dir(cache: bool, directory: str | os.PathLike | None) -> Path | None:
    """Return a usable cache directory or ``None`` (no caching)."""
    if not cache:
        return None
    path = Path(directory).expanduser() if directory is not None else cache_root()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # A read-only home must not make the data unusable; decoding still works.
        warnings.warn(
            f"cannot create cache directory {path} ({exc}); decoding without a cache",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return path


def _atomic_save_npy(final: Path, array: np.ndarray) -> None:
    """Write ``array`` to the ``.npy`` file ``final`` under a temporary name, then move it into place."""
    with atomic_path(final) as tmp:
        # A path argument would make np.save append ".npy" to the temp name.
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def _atomic_save_json(final: Path, payload: dict) -> None:
    """Write ``payload`` as JSON to ``final`` under a temporary name, then move it into place."""
    atomic_write_text(final, json.dumps(payload))


class _CacheEntry:
    """One cache entry: ``<stem>.X.npy``, optional ``<stem>.y.npy``, ``<stem>.json``.

    The JSON manifest is written last and acts as the commit marker: an entry
    without it is incomplete and ignored.
    """

    def __init__(self, directory: Path, group: str, key: str) -> None:
        self.directory = directory
        self.group = group
        self.stem = f"{group}-{key}"
        self.x_path = directory / f"{self.stem}.X.npy"
        self.y_path = directory / f"{self.stem}.y.npy"
        self.meta_path = directory / f"{self.stem}.json"

    def load(self) -> tuple[np.ndarray, np.ndarray | None, dict] | None:
        """The committed entry as ``(X memmap, y or None, manifest)``, or ``None`` if absent or inconsistent."""
        if not self.meta_path.is_file():
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
            X = np.load(self.x_path, mmap_mode="r")
            y = np.load(self.y_path) if meta.get("has_y") else None
        except (OSError, ValueError):
            return None
        if list(X.shape) != meta.get("x_shape") or (y is not None and len(y) != len(X)):
            return None
        return X, y, meta

    def commit(self, X_shape: Sequence[int], y: np.ndarray | None, extra: dict) -> None:
        """Write ``y`` and the manifest (``X`` is already in place), then drop older entries of the group."""
        if y is not None:
            _atomic_save_npy(self.y_path, np.asarray(y, dtype=np.int64))
        meta = dict(extra, x_shape=list(X_shape), has_y=y is not None, version=_CACHE_VERSION)
        _atomic_save_json(self.meta_path, meta)
        self._evict_stale()

    def _evict_stale(self) -> None:
        # Entries of the same source path with an older stamp would otherwise
        # pile up (each can be hundreds of MB). Open memmaps survive unlinking.
        # Only files named exactly "<group>-<16 hex>.<X.npy|y.npy|json>" belong to
        # this group: a prefix match would also hit the group of another source
        # whose name starts with this one's (folder "a" vs. folder "a-b-...").
        own = re.compile(re.escape(self.group) + r"-([0-9a-f]{16})\.(?:X\.npy|y\.npy|json)")
        for path in self.directory.glob(f"{self.group}-*"):
            match = own.fullmatch(path.name)
            if match is None or path.name.startswith(self.stem + "."):
                continue
            try:
                path.unlink()
            except OSError:
                pass
