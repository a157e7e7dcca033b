"""Loading MPI3D (toy, realistic or real) from its published ``.npz``, with the factor matrix of each image.

The published file holds the images of the full factor grid in row-major
order, so each image's factors follow from its index. An ``.npz`` member
cannot be memory-mapped: with the cache, the ``images`` member is copied
once, in blocks, into an ``.npy`` cache entry
(:mod:`skad_transfer.data.decode_cache`) that later calls map.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._io import atomic_path
from .decode_cache import _CACHE_VERSION, _CacheEntry, _file_stamp, _open_path, _resolve_cache_dir, _safe_name, _short_hash

__all__ = [
    "MPI3D_BACKGROUND_COLORS",
    "MPI3D_CAMERA_HEIGHTS",
    "MPI3D_COLORS",
    "MPI3D_FACTOR_NAMES",
    "MPI3D_FACTOR_SIZES",
    "MPI3D_SHAPES",
    "MPI3D_SIZES",
    "load_mpi3d",
]

#: Factor names of MPI3D, in the order of the dataset's factor grid.
MPI3D_FACTOR_NAMES: tuple[str, ...] = (
    "color",
    "shape",
    "size",
    "camera_height",
    "background_color",
    "horizontal_axis",
    "vertical_axis",
)
#: Number of values of each MPI3D factor (toy, realistic and real variants).
MPI3D_FACTOR_SIZES: tuple[int, ...] = (6, 6, 2, 3, 3, 40, 40)
#: Object colours as published: value ``i`` of factor ``color`` is ``MPI3D_COLORS[i]``.
MPI3D_COLORS: tuple[str, ...] = ("white", "green", "red", "blue", "brown", "olive")
#: Object shapes as published: value ``i`` of factor ``shape`` is ``MPI3D_SHAPES[i]``.
MPI3D_SHAPES: tuple[str, ...] = ("cone", "cube", "cylinder", "hexagonal", "pyramid", "sphere")
#: Object sizes as published.
MPI3D_SIZES: tuple[str, ...] = ("small", "large")
#: Camera heights as published.
MPI3D_CAMERA_HEIGHTS: tuple[str, ...] = ("top", "center", "bottom")
#: Background colours as published.
MPI3D_BACKGROUND_COLORS: tuple[str, ...] = ("purple", "sea green", "salmon")


# Bytes copied at a time from the npz member into the cache file.
_COPY_BYTES = 1 << 24


def _read_npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from the header of an ``.npy`` stream, leaving ``fh`` at the data."""
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    if version == (1, 0):
        return fmt.read_array_header_1_0(fh)
    if version == (2, 0):
        return fmt.read_array_header_2_0(fh)
    return fmt._read_array_header(fh, version)  # version 3.0 has no public reader


def _check_mpi3d(shape, dtype, factor_sizes, where) -> None:
    """Refuse an images array that is not uint8 RGB NHWC with one image per point of the factor grid."""
    n = math.prod(factor_sizes)
    if dtype != np.uint8 or len(shape) != 4 or shape[3] != 3:
        raise ValueError(
            f"{where}: expected images of shape (n, height, width, 3) and dtype uint8, "
            f"got shape {tuple(shape)} and dtype {dtype}"
        )
    if shape[0] != n:
        raise ValueError(
            f"{where}: {shape[0]} images, but factor_sizes={tuple(factor_sizes)} "
            f"describe a grid of {n} images"
        )


def _check_factor_sizes(factor_sizes: Sequence[int]) -> tuple[int, ...]:
    """``factor_sizes`` as a tuple of ints: one positive size per name of :data:`MPI3D_FACTOR_NAMES`."""
    factor_sizes = tuple(int(s) for s in factor_sizes)
    if len(factor_sizes) != len(MPI3D_FACTOR_NAMES) or min(factor_sizes) < 1:
        raise ValueError(
            f"factor_sizes must be {len(MPI3D_FACTOR_NAMES)} positive ints "
            f"(for {MPI3D_FACTOR_NAMES}), got {factor_sizes}"
        )
    return factor_sizes


def _factor_grid(factor_sizes: tuple[int, ...]) -> np.ndarray:
    """The int64 factor values of every point of the grid, in row-major order (last factor fastest)."""
    n = math.prod(factor_sizes)
    return np.stack(np.unravel_index(np.arange(n), factor_sizes), axis=1).astype(np.int64)


def load_mpi3d(
    path: str | os.PathLike,
    *,
    factor_sizes: Sequence[int] = MPI3D_FACTOR_SIZES,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Load an MPI3D dataset (toy, realistic or real) in its published format.

    The published files (``mpi3d_toy.npz``, ``mpi3d_realistic.npz``,
    ``mpi3d_real.npz``) hold one array under the key ``images``, of shape
    ``(1036800, 64, 64, 3)`` and dtype uint8, ordered as the full factor
    grid in row-major order (the last factor, ``vertical_axis``, varies
    fastest). Factor values, as published:

    ======================  ==============================================
    ``color``               white, green, red, blue, brown, olive
                            (:data:`MPI3D_COLORS`)
    ``shape``               cone, cube, cylinder, hexagonal, pyramid,
                            sphere (:data:`MPI3D_SHAPES`)
    ``size``                small, large (:data:`MPI3D_SIZES`)
    ``camera_height``       top, center, bottom
    ``background_color``    purple, sea green, salmon
    ``horizontal_axis``     0, ..., 39 (rotation of the arm)
    ``vertical_axis``       0, ..., 39
    ======================  ==============================================

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file (key ``images``), or a plain ``.npy`` of the same
        array, which is memory-mapped directly.
    factor_sizes : sequence of 7 int, default=MPI3D_FACTOR_SIZES
        Grid sizes of the factors in :data:`MPI3D_FACTOR_NAMES` order. The
        number of images must equal their product; pass a smaller grid for
        subsets laid out the same way (or ``(4, 4, 2, 3, 3, 40, 40)`` for
        ``mpi3d_complex``).
    cache : bool, default=True
        Copy the ``images`` member once into an ``.npy`` under ``cache_dir``
        (npz members cannot be memory-mapped) and return a memmap of it.
        ``False`` reads the whole array into memory (12.7 GB for MPI3D).
    cache_dir : str or path-like, optional
        Cache directory; defaults to :func:`cache_dir`.
    progress : bool, default=False
        Show a tqdm progress bar (in bytes) while copying into the cache.

    Returns
    -------
    X : ndarray of shape (n_samples, 64, 64, 3), dtype uint8
    factors : ndarray of shape (n_samples, 7), dtype int64
        ``factors[i, j]`` is the value of factor ``MPI3D_FACTOR_NAMES[j]``
        of image ``i``.

    Examples
    --------
    >>> X, factors = load_mpi3d("mpi3d_toy.npz")  # doctest: +SKIP
    >>> red_cones = (factors[:, 0] == MPI3D_COLORS.index("red")) & (factors[:, 1] == 0)  # doctest: +SKIP
    """
    factor_sizes = _check_factor_sizes(factor_sizes)
    p = _open_path(path)
    factors = _factor_grid(factor_sizes)

    if p.suffix.lower() == ".npy":
        X = np.load(p, mmap_mode="r")
        _check_mpi3d(X.shape, X.dtype, factor_sizes, str(p))
        return X, factors

    # Resolved here, not in a helper: its warning about an unusable folder points at the caller.
    directory = _resolve_cache_dir(cache, cache_dir)
    entry = None
    if directory is not None:
        entry = _npz_cache_entry(directory, p)
        hit = entry.load()
        if hit is not None:
            _check_mpi3d(hit[0].shape, hit[0].dtype, factor_sizes, str(p))
            return hit[0], factors
    return _read_npz_images(p, factor_sizes, entry, progress), factors


def _npz_cache_entry(directory: Path, p: Path) -> _CacheEntry:
    """The cache entry of the ``images`` member of the npz ``p``, keyed on the file's path, size and time."""
    group = f"mpi3d-{_safe_name(p.stem)}-{_short_hash(str(p))[:8]}"
    return _CacheEntry(directory, group, _short_hash(["mpi3d", _CACHE_VERSION], _file_stamp(p)))


def _read_npz_images(p: Path, factor_sizes: tuple[int, ...], entry: _CacheEntry | None,
                     progress: bool) -> np.ndarray:
    """The ``images`` member of the npz ``p``: read into memory, or copied into ``entry`` and mapped.

    The member's header is checked against ``factor_sizes`` before any image is read.
    """
    try:
        zf = zipfile.ZipFile(p)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{str(p)!r} is not a readable .npz (zip) file: {exc}") from exc
    with zf:
        if "images.npy" not in zf.namelist():
            keys = [m[:-4] if m.endswith(".npy") else m for m in zf.namelist()]
            raise ValueError(f"{str(p)!r}: expected an array under key 'images', found keys {keys}")
        with zf.open("images.npy") as fh:
            shape, fortran, dtype = _read_npy_header(fh)
            _check_mpi3d(shape, dtype, factor_sizes, str(p))
            if entry is None:
                return _read_npy_payload(fh, shape, fortran, dtype, p)
            _copy_npy_stream(fh, entry.x_path, shape, fortran, dtype, progress, p.name)
    entry.commit(shape, None, {})
    return np.load(entry.x_path, mmap_mode="r")


def _read_npy_payload(fh, shape, fortran: bool, dtype: np.dtype, p: Path) -> np.ndarray:
    """The array whose header was just read from ``fh``, in memory."""
    # Read exactly what the header declares: a member that holds more is not read whole.
    nbytes = math.prod(shape) * dtype.itemsize
    blob = fh.read(nbytes)
    if len(blob) != nbytes:
        raise ValueError(f"{str(p)!r}: images array is truncated ({len(blob)} of {nbytes} bytes)")
    return np.frombuffer(blob, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _copy_npy_stream(fh, final: Path, shape, fortran: bool, dtype: np.dtype, progress: bool, desc: str) -> None:
    """Stream an npy payload into a new ``.npy`` file without holding it in memory."""
    from tqdm.auto import tqdm

    fmt = np.lib.format
    nbytes = math.prod(shape) * dtype.itemsize
    header = {"descr": fmt.dtype_to_descr(dtype), "fortran_order": fortran, "shape": tuple(shape)}
    with atomic_path(final) as tmp:
        with open(tmp, "wb") as out, tqdm(
            total=nbytes, desc=desc, unit="B", unit_scale=True, disable=not progress
        ) as bar:
            fmt.write_array_header_1_0(out, header)
            copied = 0
            while copied < nbytes:
                block = fh.read(min(_COPY_BYTES, nbytes - copied))
                if not block:
                    raise ValueError(f"{desc}: images array is truncated ({copied} of {nbytes} bytes)")
                out.write(block)
                copied += len(block)
                bar.update(len(block))
