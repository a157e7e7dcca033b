"""Loaders for real image datasets, with an on-disk decode cache.

Every loader returns images as ``uint8`` arrays in NHWC layout
``(n_samples, height, width, 3)`` together with ``int64`` labels (and the
class names) or, for MPI3D, an ``int64`` factor matrix.

Decoding tens of thousands of JPEGs, or unpickling torchvision's archives,
is slow compared with reading a flat array, so decoded arrays are stored as
``.npy`` files under :func:`cache_dir` (override with the environment
variable ``SKAD_TRANSFER_HOME`` or the ``cache_dir`` argument of each
loader). With ``cache=True`` the image array is returned as a read-only
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
import io
import json
import math
import os
import re
import stat
import warnings
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .._io import atomic_path, atomic_write_text
from .._paths import cache_root

__all__ = [
    "IMG_EXTENSIONS",
    "MAX_COMPRESSION_RATIO",
    "MAX_IMAGE_BYTES",
    "MPI3D_BACKGROUND_COLORS",
    "MPI3D_CAMERA_HEIGHTS",
    "MPI3D_COLORS",
    "MPI3D_FACTOR_NAMES",
    "MPI3D_FACTOR_SIZES",
    "MPI3D_SHAPES",
    "MPI3D_SIZES",
    "cache_dir",
    "load_cifar10",
    "load_cifar100",
    "load_image_folder",
    "load_mpi3d",
    "load_stl10",
    "load_svhn",
    "load_tiny_imagenet",
]

#: File name endings (lower case) treated as images in image-folder trees.
IMG_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".ppm",
    ".pgm",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
)

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

# Bump when the cache layout or decoding semantics change, so old entries are
# never mistaken for new ones.
_CACHE_VERSION = 1
# Folder names that mark a train/test split rather than a class; used only to
# give a helpful error when an un-split call meets a split tree.
_SPLIT_NAMES = frozenset({"train", "test", "val", "valid", "validation", "unlabeled", "extra"})
_CHUNK = 1024
_COPY_BYTES = 1 << 24

#: Largest image file accepted in an image folder or zip (bytes; for a zip member, its uncompressed
#: size as the zip's directory states it). Checked before the file is read, so that a corrupt or
#: crafted file cannot make the loader allocate more; 64 MiB is far beyond any image of the
#: datasets this package reads (a 4,600 x 4,600 uncompressed RGB bitmap). Assign a larger value to
#: accept larger files.
MAX_IMAGE_BYTES: int = 64 << 20
#: Largest compression ratio (uncompressed / compressed size) of a zip member of more than 1 MiB.
#: Image formats are already compressed and barely shrink in a zip; only a zip bomb expands a
#: hundredfold.
MAX_COMPRESSION_RATIO: int = 100
_RATIO_CHECK_BYTES = 1 << 20


# --------------------------------------------------------------------------
# Cache helpers
# --------------------------------------------------------------------------


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
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def _file_stamp(path: Path) -> list[Any]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return [str(path), None, None]
    return [str(path), st.st_size, st.st_mtime_ns]


def _safe_name(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return keep[:40] or "data"


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
    with atomic_path(final) as tmp:
        # A path argument would make np.save append ".npy" to the temp name.
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def _atomic_save_json(final: Path, payload: dict) -> None:
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


# --------------------------------------------------------------------------
# Image-folder trees (directory or zip)
# --------------------------------------------------------------------------


def _check_size(where: str, rel: str, size: int, compressed: int | None = None) -> None:
    """Refuse a file (or zip member) before reading it if it is larger than any image should be."""
    if size > MAX_IMAGE_BYTES:
        raise ValueError(
            f"{where}: {rel} is {size:,} bytes{' uncompressed' if compressed is not None else ''}, more than "
            f"MAX_IMAGE_BYTES={MAX_IMAGE_BYTES:,} (skad_transfer.data.datasets); it is refused before "
            f"reading it so that a corrupt or crafted file cannot exhaust memory"
        )
    if compressed is not None and size > _RATIO_CHECK_BYTES and size > MAX_COMPRESSION_RATIO * max(compressed, 1):
        raise ValueError(
            f"{where}: zip member {rel} expands {size / max(compressed, 1):.0f}-fold ({compressed:,} -> {size:,} "
            f"bytes), more than MAX_COMPRESSION_RATIO={MAX_COMPRESSION_RATIO}; image files barely compress, "
            f"so this looks like a zip bomb"
        )


class _DirSource:
    def __init__(self, root: Path) -> None:
        self.root = root  # resolved by _open_path: symlink targets are compared with it
        self.where = str(root)

    def list_files(self) -> list[str]:
        files = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            prefix = "" if rel == "." else rel + "/"
            # os.walk does not descend into linked folders: one pointing inside the root is walked
            # under its real name anyway; one pointing outside would silently lose its images.
            for d in dirnames:
                if os.path.islink(os.path.join(dirpath, d)):
                    self._inside(prefix + d)
            for f in filenames:
                if _is_image(prefix + f) and os.path.islink(os.path.join(dirpath, f)):
                    self._inside(prefix + f)
            files.extend(prefix + f for f in filenames)
        return files

    def _inside(self, rel: str) -> Path:
        """``root/rel``, refusing a symbolic link whose target lies outside the root."""
        path = self.root / rel
        if path.is_symlink():
            target = Path(os.path.realpath(path))
            if target != self.root and self.root not in target.parents:
                raise ValueError(
                    f"{self.where}: {rel} is a symbolic link to {target}, outside the folder; image folders "
                    f"are read only inside their root (copy the files in, or load the folder that holds them)"
                )
        return path

    def read(self, rel: str) -> bytes:
        path = self._inside(rel)
        info = path.stat()
        if stat.S_ISREG(info.st_mode):  # a FIFO or device reports no meaningful size
            _check_size(self.where, rel, info.st_size)
        else:
            raise ValueError(f"{self.where}: {rel} is not a regular file")
        return path.read_bytes()

    def has(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def stamp(self, rels: Sequence[str]) -> list[Any]:
        # A directory's own mtime misses edits to files inside it, so stamp
        # every file that contributes to the result.
        out = []
        for rel in rels:
            st = (self.root / rel).stat()
            out.append((rel, st.st_size, st.st_mtime_ns))
        return [str(self.root), _short_hash(out)]


class _ZipSource:
    def __init__(self, path: Path, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.where = str(path)
        self._names = {i.filename for i in zf.infolist() if not i.is_dir()}

    def list_files(self) -> list[str]:
        return sorted(self._names)

    def read(self, rel: str) -> bytes:
        # The sizes come from the zip's directory; zipfile never returns more bytes than
        # file_size, so checking it bounds the memory a member can take.
        info = self.zf.getinfo(rel)
        _check_size(self.where, rel, info.file_size, info.compress_size)
        return self.zf.read(info)

    def has(self, rel: str) -> bool:
        return rel in self._names


def _is_image(rel: str) -> bool:
    parts = rel.split("/")
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return rel.lower().endswith(IMG_EXTENSIONS)


def _describe_dirs(files: Sequence[str], depth: int = 3, limit: int = 12) -> str:
    seen: list[str] = []
    for rel in files:
        parts = rel.split("/")[:-1]
        for d in range(1, min(depth, len(parts)) + 1):
            name = "/".join(parts[:d]) + "/"
            if name not in seen:
                seen.append(name)
        if len(seen) > limit:
            break
    if not seen:
        top = sorted({rel.split("/")[0] for rel in files})[:limit]
        return "files " + ", ".join(repr(t) for t in top) if top else "nothing"
    more = ", ..." if len(seen) > limit else ""
    return "folders " + ", ".join(repr(s) for s in seen[:limit]) + more


def _resolve_tree(
    files: Sequence[str], split: str | None, *, auto_root: bool, where: str
) -> tuple[str, dict[str, list[str]]]:
    """Find the ``[prefix/][split/]<class>/<file>`` level of a list of paths.

    Returns the prefix (``""`` or ending in ``"/"``, including the split
    folder) and a mapping from class folder name to its sorted image paths.
    """
    images = [f for f in files if _is_image(f)]
    expected = "<class>/<image>" if split is None else f"<...>/{split}/<class>/<image>"
    if not images:
        raise ValueError(
            f"{where}: expected an image-folder tree {expected!r} with image files "
            f"({', '.join(IMG_EXTENSIONS)}), but found no images; found {_describe_dirs(files)}"
        )
    parts_list = [rel.split("/") for rel in images]
    entries: list[tuple[str, str]] = []
    if split is not None:
        by_prefix: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        for rel, parts in zip(images, parts_list):
            for i in range(len(parts) - 2):
                if parts[i] == split:
                    by_prefix.setdefault(tuple(parts[: i + 1]), []).append((rel, parts[i + 1]))
                    break
        if not by_prefix:
            raise ValueError(
                f"{where}: expected an image-folder tree {expected!r} for split={split!r}, "
                f"but no folder named {split!r} with class folders of images was found; "
                f"found {_describe_dirs(images)}"
            )
        if len(by_prefix) > 1:
            found = ", ".join(repr("/".join(p) + "/") for p in sorted(by_prefix))
            raise ValueError(f"{where}: split={split!r} is ambiguous, it matches {found}")
        (prefix_parts, entries), = by_prefix.items()
    else:
        prefix_parts = ()
        if auto_root:
            # Strip folders shared by every image (e.g. a zip's top folder),
            # but always keep one folder level as the class.
            depth = min(len(p) for p in parts_list) - 2
            common: list[str] = []
            for d in range(max(depth, 0)):
                names = {p[d] for p in parts_list}
                if len(names) != 1:
                    break
                common.append(names.pop())
            prefix_parts = tuple(common)
        k = len(prefix_parts)
        entries = [(rel, p[k]) for rel, p in zip(images, parts_list) if len(p) >= k + 2]
        if not entries:
            raise ValueError(
                f"{where}: expected an image-folder tree {expected!r}, but the images are "
                f"not inside class folders; found {_describe_dirs(images)}"
            )
        names = {c for _, c in entries}
        if names <= _SPLIT_NAMES and all(len(rel.split("/")) >= k + 3 for rel, _ in entries):
            raise ValueError(
                f"{where}: the top-level folders {sorted(names)} look like dataset splits, "
                f"not classes; pass split= (one of {sorted(names)})"
            )
    groups: dict[str, list[str]] = {}
    for rel, cls in entries:
        groups.setdefault(cls, []).append(rel)
    for rels in groups.values():
        rels.sort()
    prefix = "/".join(prefix_parts) + "/" if prefix_parts else ""
    return prefix, dict(sorted(groups.items()))


def _decode_one(data: bytes, rel: str, where: str, image_size: int | None) -> np.ndarray:
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


def _check_image_size(image_size: int | None) -> int | None:
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
    return int(image_size)


def _open_path(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"dataset path does not exist: {str(p)!r}")
    return p.resolve()


def _load_tree(
    path: str | os.PathLike,
    *,
    kind: str,
    split: str | None,
    image_size: int | None,
    cache: bool,
    cache_dir: str | os.PathLike | None,
    progress: bool,
    n_jobs: int,
    order_classes: Callable[[_DirSource | _ZipSource, str, dict[str, list[str]]], tuple[list[str], dict[str, list[str]]]],
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    p = _open_path(path)
    image_size = _check_image_size(image_size)
    directory = _resolve_cache_dir(cache, cache_dir)
    params = [kind, _CACHE_VERSION, split, image_size]
    group = f"{kind}-{_safe_name(p.stem)}-{split or 'all'}-{image_size or 'orig'}-{_short_hash(str(p))[:8]}"
    desc = f"{p.name}" + (f" [{split}]" if split else "")

    def finish(source, prefix, groups, stamp):
        classes, groups = order_classes(source, prefix, groups)
        rels = [rel for cls in classes for rel in groups.get(cls, [])]
        labels = np.concatenate(
            [np.full(len(groups.get(cls, [])), i, dtype=np.int64) for i, cls in enumerate(classes)]
        )
        entry = None
        if directory is not None:
            entry = _CacheEntry(directory, group, _short_hash(params, stamp))
            hit = entry.load()
            if hit is not None:
                return hit[0], hit[1], list(hit[2]["classes"])
        X, y = _decode_cached(
            source, rels, labels, entry, {"classes": classes},
            image_size=image_size, progress=progress, n_jobs=n_jobs, desc=desc,
        )
        return X, y, classes

    if p.is_dir():
        source = _DirSource(p)
        prefix, groups = _resolve_tree(source.list_files(), split, auto_root=False, where=source.where)
        candidates = (prefix + "wnids.txt", _parent(prefix) + "wnids.txt", prefix + "val_annotations.txt")
        meta_files = [m for m in dict.fromkeys(candidates) if source.has(m)]
        stamp = source.stamp([r for rels in groups.values() for r in rels] + meta_files)
        return finish(source, prefix, groups, stamp)

    stamp = _file_stamp(p)
    if directory is not None:
        # Fast path: a zip's stamp is known without parsing its directory,
        # which takes noticeable time for 100k members.
        hit = _CacheEntry(directory, group, _short_hash(params, stamp)).load()
        if hit is not None:
            return hit[0], hit[1], list(hit[2]["classes"])
    try:
        zf = zipfile.ZipFile(p)
    except zipfile.BadZipFile as exc:
        raise ValueError(
            f"{str(p)!r} is neither a directory nor a readable .zip file: {exc}"
        ) from exc
    with zf:
        source = _ZipSource(p, zf)
        prefix, groups = _resolve_tree(source.list_files(), split, auto_root=True, where=source.where)
        return finish(source, prefix, groups, stamp)


def _parent(prefix: str) -> str:
    """``"a/b/"`` -> ``"a/"``; ``"a/"`` -> ``""``."""
    parts = prefix.rstrip("/").split("/")[:-1] if prefix else []
    return "/".join(parts) + "/" if parts else ""


def load_image_folder(
    path: str | os.PathLike,
    *,
    split: str | None = None,
    image_size: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    n_jobs: int = 1,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load an ImageFolder tree (``root/<class>/<image>``) from a folder or a zip.

    Parameters
    ----------
    path : str or path-like
        A directory, or a ``.zip`` file whose members form the tree (members
        are decoded straight from the archive, nothing is extracted). In a
        zip, folders shared by all images (such as the archive's top folder)
        are skipped automatically. Images may sit directly in the class
        folder or deeper below it. Hidden files and ``__MACOSX`` are ignored.
        In a directory, a symbolic link is read only if its target lies
        inside the directory (linked folders are not descended: their
        targets inside the root are read under their own names); a link
        that leads outside is an error.
    split : str, optional
        Name of a split folder, e.g. ``"train"``, ``"test"`` or ``"val"``.
        The tree ``<...>/<split>/<class>/<image>`` is located automatically,
        e.g. ``cifar10/train/airplane/0001.jpg`` in a zip. ``None`` treats
        the (stripped) top level as the class level.
    image_size : int, optional
        If given, every image is resized to ``image_size x image_size`` with
        PIL's bilinear filter. Otherwise all images must have the same size.
    cache : bool, default=True
        Store the decoded arrays under ``cache_dir`` and return the images
        as a read-only :class:`numpy.memmap`. ``False`` decodes into memory.
    cache_dir : str or path-like, optional
        Cache directory; defaults to :func:`cache_dir`.
    progress : bool, default=False
        Show a tqdm progress bar while decoding.
    n_jobs : int, default=1
        Decoding threads. Small JPEGs decode fastest in one thread (the work
        is dominated by Python overhead under the GIL); more threads help
        for large images.

    Returns
    -------
    X : ndarray of shape (n_samples, height, width, 3), dtype uint8
        Images in RGB, grouped by class in the order of ``classes`` and, in
        a class, sorted by file path. A :class:`numpy.memmap` if ``cache``.
    y : ndarray of shape (n_samples,), dtype int64
        Labels: indices into ``classes``.
    classes : list of str
        Class folder names, sorted. Only folders with at least one image
        count as classes.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If no image tree (or no ``split`` folder) is found, ``path`` is a
        file but not a readable zip, an image cannot be decoded, images
        differ in size and ``image_size`` is None, a file is larger than
        :data:`MAX_IMAGE_BYTES` (a zip member: or expands more than
        :data:`MAX_COMPRESSION_RATIO`-fold), an image has more pixels than
        PIL accepts (``PIL.Image.MAX_IMAGE_PIXELS``), or a symbolic link
        leads out of the directory. Each message names the folder or zip and
        the file.

    Examples
    --------
    >>> X, y, classes = load_image_folder("cifar10-jpg.zip", split="test")  # doctest: +SKIP
    >>> X.shape, X.dtype, classes[:2]  # doctest: +SKIP
    ((10000, 32, 32, 3), dtype('uint8'), ['airplane', 'automobile'])
    """

    def sorted_classes(source, prefix, groups):
        return list(groups), groups

    return _load_tree(
        path,
        kind="folder",
        split=split,
        image_size=image_size,
        cache=cache,
        cache_dir=cache_dir,
        progress=progress,
        n_jobs=n_jobs,
        order_classes=sorted_classes,
    )


def load_tiny_imagenet(
    path: str | os.PathLike,
    *,
    split: str = "train",
    image_size: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    n_jobs: int = 1,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load Tiny-ImageNet from a folder or zip.

    Two layouts are understood:

    * by-class splits, ``<root>/{train,val}/<wnid>/<image>`` with
      ``<root>/wnids.txt`` (e.g. the ``tiny-imagenet-32.zip`` copy);
    * the original release, ``<root>/train/<wnid>/images/<image>`` and
      ``<root>/val/images/<image>`` labelled by ``<root>/val/val_annotations.txt``.

    Parameters
    ----------
    path : str or path-like
        Directory or ``.zip`` file containing the tree.
    split : {"train", "val"}, default="train"
        Which split to load (the original test split has no labels).
    image_size : int, optional
        Resize every image to ``image_size x image_size`` (bilinear).
    cache : bool, default=True
        Cache the decoded arrays; see :func:`load_image_folder`.
    cache_dir : str or path-like, optional
        Cache directory; defaults to :func:`cache_dir`.
    progress : bool, default=False
        Show a tqdm progress bar while decoding.
    n_jobs : int, default=1
        Decoding threads; see :func:`load_image_folder`.

    Returns
    -------
    X : ndarray of shape (n_samples, height, width, 3), dtype uint8
        Images grouped by class in the order of ``classes``.
    y : ndarray of shape (n_samples,), dtype int64
        Indices into ``classes``.
    classes : list of str
        WordNet ids, in the order of ``wnids.txt`` when that file exists next
        to the split folders (so labels agree between splits even if a class
        has no image in one of them), else sorted folder names.

    Examples
    --------
    >>> X, y, wnids = load_tiny_imagenet("tiny-imagenet-32.zip", split="val")  # doctest: +SKIP
    >>> X.shape, len(wnids)  # doctest: +SKIP
    ((10000, 32, 32, 3), 200)
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")

    def wnid_classes(source, prefix, groups):
        root = _parent(prefix)
        annotations = prefix + "val_annotations.txt"
        if split == "val" and set(groups) == {"images"} and source.has(annotations):
            groups = _group_by_annotations(source, annotations, groups["images"])
        for candidate in (root + "wnids.txt", prefix + "wnids.txt"):
            if source.has(candidate):
                wnids = source.read(candidate).decode("utf-8").split()
                unknown = sorted(set(groups) - set(wnids))
                if unknown:
                    raise ValueError(
                        f"{source.where}: class folders {unknown[:5]} are not listed in {candidate}"
                    )
                return wnids, groups
        return sorted(groups), groups

    return _load_tree(
        path,
        kind="tiny",
        split=split,
        image_size=image_size,
        cache=cache,
        cache_dir=cache_dir,
        progress=progress,
        n_jobs=n_jobs,
        order_classes=wnid_classes,
    )


def _group_by_annotations(source, annotations: str, rels: list[str]) -> dict[str, list[str]]:
    wnid_of = {}
    for line in source.read(annotations).decode("utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            wnid_of[fields[0]] = fields[1]
    groups: dict[str, list[str]] = {}
    for rel in rels:
        name = PurePosixPath(rel).name
        if name not in wnid_of:
            raise ValueError(f"{source.where}: {rel} is not listed in {annotations}")
        groups.setdefault(wnid_of[name], []).append(rel)
    return groups


# --------------------------------------------------------------------------
# torchvision datasets
# --------------------------------------------------------------------------


class DownloadError(OSError):
    """A download that failed: the message names the URL, the file and where to put it by hand.

    An :class:`OSError` (the command line reports it as one line, exit status 2) but not a
    ``FileNotFoundError``: the files may well be missing, but "fetch them with download=True" is
    exactly what failed.

    Attributes
    ----------
    url : str
        What was being fetched.
    path : pathlib.Path
        Where the file belongs: put it there by hand and the loader finds it.
    """

    def __init__(self, message: str, *, url: str | None = None, path: Path | None = None) -> None:
        super().__init__(message)
        self.url, self.path = url, path


def _is_network_error(error: BaseException) -> bool:
    """Whether ``error`` says that the network, not a local file, failed the download.

    urllib wraps failures to connect (no DNS, no route, refused, TLS) in ``URLError`` and HTTP
    statuses in ``HTTPError``; a failure while reading is a ``TimeoutError``/``ConnectionError``, an
    ``ssl.SSLError`` or an ``http.client.HTTPException`` (``IncompleteRead``). A local
    ``PermissionError`` or a full disk is none of these: it keeps its own message, which names the file.
    """
    import errno
    import http.client
    import socket
    import ssl
    import urllib.error

    if isinstance(error, (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout, socket.gaierror,
                          socket.herror, ssl.SSLError, http.client.HTTPException)):
        return True
    unreachable = {getattr(errno, n) for n in ("ENETUNREACH", "EHOSTUNREACH", "ENETDOWN", "EHOSTDOWN", "ENONET")
                   if hasattr(errno, n)}
    return isinstance(error, OSError) and error.errno in unreachable


def _network_reason(error: BaseException) -> str:
    import urllib.error

    # URLError's str is "<urlopen error [Errno -2] Name or service not known>": keep the reason only.
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        reason = error.reason
        if isinstance(reason, BaseException):
            return str(reason) or type(reason).__name__
        return str(reason)
    return str(error) or type(error).__name__


def _by_hand(url: str, root: Path, archive: str, extracted: str | None) -> str:
    """How to put in place by hand the file that torchvision would have downloaded."""
    fetch = f"fetch {archive} from {url} on a machine with a network and"
    if extracted is None:
        return f"{fetch} put it into {root} (as {root / archive})"
    return (f"{fetch} put it into {root} (a rerun with download=True, the commands' --download, then checks its MD5 "
            f"and extracts it without the network), or extract it there so that {root / extracted}/ exists")


def _load_torchvision(
    name: str,
    dataset_cls: type,
    root: str | os.PathLike,
    kwargs: dict[str, Any],
    *,
    download: bool,
    cache: bool,
    cache_dir: str | os.PathLike | None,
    files: Sequence[str],
    hint: str,
    convert: Callable[[Any], tuple[np.ndarray, np.ndarray, list[str]]],
    url: str,
    archive: str,
    extracted: str | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    root_path = Path(root).expanduser()
    paths = [root_path / f for f in files]
    directory = _resolve_cache_dir(cache, cache_dir)
    params = [name, _CACHE_VERSION, kwargs]
    group = f"{name}-{'-'.join(str(v) for v in kwargs.values())}-{_short_hash(str(root_path.resolve()))[:8]}"

    def entry() -> _CacheEntry:
        return _CacheEntry(directory, group, _short_hash(params, [_file_stamp(q) for q in paths]))

    if directory is not None and all(q.is_file() for q in paths):
        hit = entry().load()
        if hit is not None:
            return hit[0], hit[1], list(hit[2]["classes"])
    try:
        dataset = dataset_cls(root=str(root_path), download=download, **kwargs)
    except Exception as exc:
        # torchvision's download (download=True only) reaches the network through urllib; its failures
        # say neither the URL nor the file ("<urlopen error [Errno -2] Name or service not known>").
        if download and _is_network_error(exc):
            raise DownloadError(
                f"{name}: could not download {url} into {root_path}: {_network_reason(exc)}. "
                f"To install it by hand, {_by_hand(url, root_path, archive, extracted)}",
                url=url, path=root_path / archive,
            ) from exc
        if not isinstance(exc, RuntimeError) or (
                "not found" not in str(exc).lower() and "corrupted" not in str(exc).lower()):
            raise
        if download:
            # After a download, torchvision's "File not found or corrupted." is its MD5 check failing
            # (a truncated or changed file); "pass download=True" would be no advice.
            raise DownloadError(
                f"{name}: the files downloaded from {url} into {root_path} fail torchvision's MD5 check ({exc}): "
                f"delete {root_path / archive} and retry, or {_by_hand(url, root_path, archive, extracted)}",
                url=url, path=root_path / archive,
            ) from exc
        raise FileNotFoundError(
            f"{name} files not found (or corrupted) under root={str(root_path)!r}: "
            f"expected {', '.join(files)}. Pass download=True to fetch them, or {hint}"
        ) from exc
    X, y, classes = convert(dataset)
    X = np.ascontiguousarray(X, dtype=np.uint8)
    y = np.asarray(y, dtype=np.int64)
    if directory is None:
        return X, y, classes
    e = entry()
    _atomic_save_npy(e.x_path, X)
    e.commit(X.shape, y, {"classes": classes})
    del X
    return np.load(e.x_path, mmap_mode="r"), y, classes


def _cifar(name, cls, root, train, download, cache, cache_dir):
    base = cls.base_folder
    files = [f"{base}/{f}" for f, _ in cls.train_list + cls.test_list] + [f"{base}/{cls.meta['filename']}"]
    return _load_torchvision(
        name,
        cls,
        root,
        {"train": bool(train)},
        download=download,
        cache=cache,
        cache_dir=cache_dir,
        files=files,
        hint=f"extract {cls.filename} ({cls.url}) into root so that root/{base}/ exists.",
        convert=lambda ds: (ds.data, ds.targets, list(ds.classes)),
        url=cls.url,
        archive=cls.filename,
        extracted=base,
    )


def load_cifar10(
    root: str | os.PathLike,
    *,
    train: bool = True,
    download: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load CIFAR-10 through :class:`torchvision.datasets.CIFAR10`.

    Parameters
    ----------
    root : str or path-like
        Directory holding (or receiving) ``cifar-10-batches-py``.
    train : bool, default=True
        Training set (50,000 images) if True, else test set (10,000).
    download : bool, default=False
        Let torchvision download and extract the archive into ``root``.
    cache : bool, default=True
        Cache the arrays as ``.npy``; later calls return a memmap without
        touching torchvision. See :func:`load_image_folder`.
    cache_dir : str or path-like, optional
        Cache directory; defaults to :func:`cache_dir`.

    Returns
    -------
    X : ndarray of shape (n_samples, 32, 32, 3), dtype uint8
    y : ndarray of shape (n_samples,), dtype int64
    classes : list of str
        ``["airplane", "automobile", ..., "truck"]``.

    Raises
    ------
    FileNotFoundError
        If the files are missing under ``root`` and ``download`` is False.

    Examples
    --------
    >>> X, y, classes = load_cifar10("~/data", train=False)  # doctest: +SKIP
    """
    from torchvision.datasets import CIFAR10

    return _cifar("cifar10", CIFAR10, root, train, download, cache, cache_dir)


def load_cifar100(
    root: str | os.PathLike,
    *,
    train: bool = True,
    download: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load CIFAR-100 (fine labels) through :class:`torchvision.datasets.CIFAR100`.

    Parameters
    ----------
    root : str or path-like
        Directory holding (or receiving) ``cifar-100-python``.
    train : bool, default=True
        Training set (50,000 images) if True, else test set (10,000).
    download : bool, default=False
        Let torchvision download and extract the archive into ``root``.
    cache : bool, default=True
        Cache the arrays as ``.npy``; see :func:`load_cifar10`.
    cache_dir : str or path-like, optional
        Cache directory; defaults to :func:`cache_dir`.

    Returns
    -------
    X : ndarray of shape (n_samples, 32, 32, 3), dtype uint8
    y : ndarray of shape (n_samples,), dtype int64
        Fine labels (0-99).
    classes : list of str
        The 100 fine class names.

    Raises
    ------
    FileNotFoundError
        If the files are missing under ``root`` and ``download`` is False.

    Examples
    --------
    >>> X, y, classes = load_cifar100("~/data")  # doctest: +SKIP
    """
    from torchvision.datasets import CIFAR100

    return _cifar("cifar100", CIFAR100, root, train, download, cache, cache_dir)


def load_svhn(
    root: str | os.PathLike,
    *,
    split: str = "train",
    download: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load SVHN (cropped digits) through :class:`torchvision.datasets.SVHN`.

    Parameters
    ----------
    root : str or path-like
        Directory holding (or receiving) ``{split}_32x32.mat``.
    split : {"train", "test", "extra"}, default="train"
    download : bool, default=False
        Let torchvision download the ``.mat`` file into ``root``.
    cache : bool, default=True
        Cache the arrays as ``.npy``; see :func:`load_cifar10`.
    cache_dir : str or path-like, optional
        Cache directory; defaults to :func:`cache_dir`.

    Returns
    -------
    X : ndarray of shape (n_samples, 32, 32, 3), dtype uint8
    y : ndarray of shape (n_samples,), dtype int64
        The digit shown (torchvision already maps SVHN's label 10 to 0).
    classes : list of str
        ``["0", ..., "9"]``.

    Raises
    ------
    FileNotFoundError
        If the file is missing under ``root`` and ``download`` is False.

    Examples
    --------
    >>> X, y, classes = load_svhn("~/data", split="test")  # doctest: +SKIP
    """
    from torchvision.datasets import SVHN

    if split not in SVHN.split_list:
        raise ValueError(f"split must be one of {sorted(SVHN.split_list)}, got {split!r}")
    url, filename, _ = SVHN.split_list[split]
    return _load_torchvision(
        "svhn",
        SVHN,
        root,
        {"split": split},
        download=download,
        cache=cache,
        cache_dir=cache_dir,
        files=[filename],
        hint=f"put {filename} ({url}) into root.",
        url=url,
        archive=filename,
        # torchvision keeps SVHN as NCHW.
        convert=lambda ds: (ds.data.transpose(0, 2, 3, 1), ds.labels, [str(d) for d in range(10)]),
    )


def load_stl10(
    root: str | os.PathLike,
    *,
    split: str = "train",
    download: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load STL-10 through :class:`torchvision.datasets.STL10`.

    Parameters
    ----------
    root : str or path-like
        Directory holding (or receiving) ``stl10_binary``.
    split : {"train", "test", "unlabeled", "train+unlabeled"}, default="train"
    download : bool, default=False
        Let torchvision download and extract the archive into ``root``.
    cache : bool, default=True
        Cache the arrays as ``.npy``; see :func:`load_cifar10`. The unlabeled
        split is 100,000 images of 96x96 (2.8 GB).
    cache_dir : str or path-like, optional
        Cache directory; defaults to :func:`cache_dir`.

    Returns
    -------
    X : ndarray of shape (n_samples, 96, 96, 3), dtype uint8
    y : ndarray of shape (n_samples,), dtype int64
        Class indices; ``-1`` for unlabeled images.
    classes : list of str
        The 10 class names (from ``class_names.txt``; empty if absent).

    Raises
    ------
    FileNotFoundError
        If the files are missing under ``root`` and ``download`` is False.

    Examples
    --------
    >>> X, y, classes = load_stl10("~/data", split="test")  # doctest: +SKIP
    """
    from torchvision.datasets import STL10

    if split not in STL10.splits:
        raise ValueError(f"split must be one of {list(STL10.splits)}, got {split!r}")
    base = STL10.base_folder
    files = [f"{base}/{f}" for f, _ in STL10.train_list + STL10.test_list]
    return _load_torchvision(
        "stl10",
        STL10,
        root,
        {"split": split},
        download=download,
        cache=cache,
        cache_dir=cache_dir,
        files=files,
        hint=f"extract {STL10.filename} ({STL10.url}) into root so that root/{base}/ exists.",
        url=STL10.url,
        archive=STL10.filename,
        extracted=base,
        # torchvision keeps STL-10 as NCHW.
        convert=lambda ds: (
            ds.data.transpose(0, 2, 3, 1),
            ds.labels,
            list(getattr(ds, "classes", [])),
        ),
    )


# --------------------------------------------------------------------------
# MPI3D
# --------------------------------------------------------------------------


def _read_npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    if version == (1, 0):
        return fmt.read_array_header_1_0(fh)
    if version == (2, 0):
        return fmt.read_array_header_2_0(fh)
    return fmt._read_array_header(fh, version)  # version 3.0 has no public reader


def _check_mpi3d(shape, dtype, factor_sizes, where) -> None:
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
    factor_sizes = tuple(int(s) for s in factor_sizes)
    if len(factor_sizes) != len(MPI3D_FACTOR_NAMES) or min(factor_sizes) < 1:
        raise ValueError(
            f"factor_sizes must be {len(MPI3D_FACTOR_NAMES)} positive ints "
            f"(for {MPI3D_FACTOR_NAMES}), got {factor_sizes}"
        )
    p = _open_path(path)
    n = math.prod(factor_sizes)
    factors = np.stack(np.unravel_index(np.arange(n), factor_sizes), axis=1).astype(np.int64)

    if p.suffix.lower() == ".npy":
        X = np.load(p, mmap_mode="r")
        _check_mpi3d(X.shape, X.dtype, factor_sizes, str(p))
        return X, factors

    directory = _resolve_cache_dir(cache, cache_dir)
    entry = None
    if directory is not None:
        group = f"mpi3d-{_safe_name(p.stem)}-{_short_hash(str(p))[:8]}"
        entry = _CacheEntry(directory, group, _short_hash(["mpi3d", _CACHE_VERSION], _file_stamp(p)))
        hit = entry.load()
        if hit is not None:
            _check_mpi3d(hit[0].shape, hit[0].dtype, factor_sizes, str(p))
            return hit[0], factors
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
                # Read exactly what the header declares: a member that holds more is not read whole.
                nbytes = math.prod(shape) * dtype.itemsize
                blob = fh.read(nbytes)
                if len(blob) != nbytes:
                    raise ValueError(f"{str(p)!r}: images array is truncated ({len(blob)} of {nbytes} bytes)")
                X = np.frombuffer(blob, dtype=dtype).reshape(shape, order="F" if fortran else "C")
                return X, factors
            _copy_npy_stream(fh, entry.x_path, shape, fortran, dtype, progress, p.name)
    entry.commit(shape, None, {})
    return np.load(entry.x_path, mmap_mode="r"), factors


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
