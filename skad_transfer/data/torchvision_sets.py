"""CIFAR-10, CIFAR-100, SVHN and STL-10 through torchvision's dataset classes, with the decode cache.

torchvision reads (and with ``download=True`` fetches) the published files;
:func:`_load_torchvision` turns its dataset into uint8 NHWC images and int64
labels, stores them in a cache entry (:mod:`skad_transfer.data.decode_cache`)
and, on a later call, returns that entry without touching torchvision.
Missing files are a ``FileNotFoundError`` that says where they go; a failed
download is a :class:`~skad_transfer.data.download_errors.DownloadError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .decode_cache import _CACHE_VERSION, _atomic_save_npy, _CacheEntry, _file_stamp, _resolve_cache_dir, _short_hash
from .download_errors import DownloadError, _by_hand, _is_network_error, _network_reason

__all__ = ["load_cifar10", "load_cifar100", "load_stl10", "load_svhn"]


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
    """Load ``dataset_cls(root=root, download=download, **kwargs)`` as ``(X, y, classes)``, through the cache.

    A cache entry keyed on ``kwargs`` and on the stamps of ``files`` (relative
    to ``root``) is returned as it is when all of them exist; otherwise
    torchvision reads the files and ``convert(dataset)`` gives the images
    (NHWC), labels and class names, which are cached. ``hint`` ends the
    message of missing files; ``url``, ``archive`` and ``extracted`` (the
    folder the archive unpacks to, if any) word a failed download.
    """
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
    """Load CIFAR-10 or CIFAR-100 (torchvision class ``cls``), whose files and archive the class names."""
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
