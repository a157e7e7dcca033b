"""Decoding the image files of a tree into one uint8 NHWC array, in memory or straight into a cache file.

Files are read in chunks of :data:`_CHUNK` from a source of
:mod:`skad_transfer.data.image_tree` and decoded with PIL, in this thread or
in a pool of threads. With a cache entry the array is a memory map of the
entry's (temporary) ``.npy`` file, so the corpus never has to fit in memory.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._io import atomic_path
from .decode_cache import _CacheEntry
from .image_tree import _DirSource, _ZipSource

__all__: list[str] = []

# Files read (and handed to a decoding thread) at a time.
_CHUNK = 1024


def _check_image_size(image_size: int | None) -> int | None:
    """``image_size`` as an int, or None; anything but a positive int or None is a ValueError."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
    return int(image_size)


def _decode_one(data: bytes, rel: str, where: str, image_size: int | None) -> np.ndarray:
    """One image file as a uint8 RGB ``(height, width, 3)`` array, resized when ``image_size`` is given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            if image_size is not None and img.size != (image_size, image_size):
                img = img.resize((image_size, image_size), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        # PIL's message names no file; past Image.MAX_IMAGE_PIXELS it refuses to decode.
        raise ValueError(
            f"image {where}/{rel} is too large to decode: {exc} (PIL.Image.MAX_IMAGE_PIXELS="
            f"{Image.MAX_IMAGE_PIXELS}; raise it only for files you trust)"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot decode image {where}/{rel}: {exc}") from exc


def _decode_into(
    out_factory: Callable[[tuple[int, ...]], np.ndarray],
    source: _DirSource | _ZipSource,
    rels: Sequence[str],
    *,
    image_size: int | None,
    progress: bool,
    n_jobs: int,
    desc: str,
) -> np.ndarray:
    """Decode ``rels`` into the array made by ``out_factory(shape)``."""
    from tqdm.auto import tqdm

    first = _decode_one(source.read(rels[0]), rels[0], source.where, image_size)
    shape = first.shape

    out = out_factory((len(rels), *shape))
    out[0] = first

    def work(start: int, blobs: list[bytes]) -> int:
        for j, blob in enumerate(blobs):
            rel = rels[start + j]
            img = _decode_one(blob, rel, source.where, image_size)
            if img.shape != shape:
                raise ValueError(
                    f"{source.where}/{rel} has size {img.shape[1]}x{img.shape[0]} but "
                    f"{rels[0]} has size {shape[1]}x{shape[0]}; pass image_size= to resize "
                    "all images to one size"
                )
            out[start + j] = img
        return len(blobs)

    starts = range(1, len(rels), _CHUNK)
    with tqdm(total=len(rels), desc=desc, unit="img", disable=not progress) as bar:
        bar.update(1)
        if n_jobs <= 1:
            for s in starts:
                # Reading stays in this thread: a ZipFile handle is not meant
                # to be shared across threads.
                bar.update(work(s, [source.read(r) for r in rels[s : s + _CHUNK]]))
        else:
            # For small JPEGs decoding is GIL-bound and threads do not help;
            # they pay off for large images, where PIL releases the GIL.
            with ThreadPoolExecutor(n_jobs) as pool:
                pending = []
                for s in starts:
                    blobs = [source.read(r) for r in rels[s : s + _CHUNK]]
                    pending.append(pool.submit(work, s, blobs))
                    while len(pending) > 2 * n_jobs:
                        bar.update(pending.pop(0).result())
                for fut in pending:
                    bar.update(fut.result())
    return out


def _decode_cached(
    source: _DirSource | _ZipSource,
    rels: Sequence[str],
    labels: np.ndarray,
    entry: _CacheEntry | None,
    extra: dict,
    *,
    image_size: int | None,
    progress: bool,
    n_jobs: int,
    desc: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``rels`` into memory (no ``entry``) or into ``entry``, committed with ``labels`` and ``extra``.

    Returns the images (a memory map of the entry's file when there is one) and ``labels``.
    """
    if entry is None:
        X = _decode_into(
            lambda shape: np.empty(shape, dtype=np.uint8),
            source,
            rels,
            image_size=image_size,
            progress=progress,
            n_jobs=n_jobs,
            desc=desc,
        )
        return X, labels
    with atomic_path(entry.x_path) as tmp:
        # Decode straight into the (temporary) cache file: the corpus never
        # has to fit in memory.
        X = _decode_into(
            lambda shape: np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape),
            source,
            rels,
            image_size=image_size,
            progress=progress,
            n_jobs=n_jobs,
            desc=desc,
        )
        X.flush()
        shape = X.shape
        del X
    entry.commit(shape, labels, extra)
    return np.load(entry.x_path, mmap_mode="r"), labels
