"""Loading an ImageFolder tree (``root/<class>/<image>``) from a directory or a zip, through the decode cache.

:func:`_load_tree` is the loader of every image-folder layout: it finds the
tree (:mod:`skad_transfer.data.image_tree`), lets the layout order the
classes, and decodes the images (:mod:`skad_transfer.data.image_decode`)
into a cache entry (:mod:`skad_transfer.data.decode_cache`) or returns the
entry of an earlier call. :func:`load_image_folder` reads the plain layout;
:func:`~skad_transfer.data.tiny_imagenet.load_tiny_imagenet` reads
Tiny-ImageNet's.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable

import numpy as np

from .decode_cache import (_CACHE_VERSION, _CacheEntry, _file_stamp, _open_path, _resolve_cache_dir, _safe_name,
                           _short_hash)
from .image_decode import _check_image_size, _decode_cached
from .image_tree import _DirSource, _parent, _resolve_tree, _ZipSource

__all__ = ["load_image_folder"]


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
    """Load the image-folder tree at ``path`` (a directory or zip) as ``(X, y, classes)``.

    ``order_classes(source, prefix, groups)`` returns the classes in label order
    and the images of each (a layout may regroup them, as Tiny-ImageNet's
    validation split does). ``kind`` names the layout in cache entries. A
    directory's cache stamp covers every image and Tiny-ImageNet's metadata
    files; a zip's is the file's own, so a cached zip is not even opened.
    The other arguments are those of :func:`load_image_folder`.
    """
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
