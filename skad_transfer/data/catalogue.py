"""The named datasets of the package: one entry per dataset, used by every entry point.

Pretraining (``skad-transfer pretrain torchvision:NAME``, :func:`~skad_transfer.data.labelled.load_labelled_data`),
the benchmarks (:func:`~skad_transfer.bench.load_benchmark_data`) and the paper's outlier-exposure
corpora (``outlier_exposure="tinyimagenet"``, :mod:`~skad_transfer.data.corpora`) all read a named
dataset through :func:`load_dataset`. An entry says which splits the dataset has, which files hold it
under a data root, whether torchvision can download it, and which loader of
:mod:`skad_transfer.data.datasets` reads it (with the decode cache). A missing dataset is a
``FileNotFoundError`` that names the files, the folder searched and how to get them.

The data root is the ``root`` argument, else :func:`skad_transfer.data.data_root` (``$SKAD_TRANSFER_DATA``,
else ``$SKAD_TRANSFER_HOME/datasets``). Adding a dataset is one :class:`CatalogueEntry` in
:data:`CATALOGUE`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .._paths import data_root

__all__ = ["CatalogueEntry", "CATALOGUE", "load_dataset"]


@dataclass(frozen=True)
class CatalogueEntry:
    """One named dataset.

    Attributes
    ----------
    name : str
    splits : tuple of str
        Its splits; the first is the default.
    files : str
        What lies under the data root, for messages (e.g. ``"cifar-10-batches-py/"``).
    downloadable : bool
        Whether ``download=True`` fetches it (through torchvision).
    read : callable
        ``read(root, split, download, cache_dir, progress) -> (X, y, class_names)``; raises
        ``FileNotFoundError`` when the files are not there.
    """

    name: str
    splits: tuple[str, ...]
    files: str
    downloadable: bool
    read: Callable[..., tuple[np.ndarray, np.ndarray, list]]

    def missing(self, root: Path, detail: str = "") -> FileNotFoundError:
        how = (f"fetch it once with skad_transfer.data.load_dataset({self.name!r}, download=True) (the pretrain "
               f"command: --download)" if self.downloadable
               else "put it there, or point root (or $SKAD_TRANSFER_DATA) at the folder that holds it")
        detail = f" ({detail})" if detail else ""
        return FileNotFoundError(f"dataset {self.name!r}: {self.files} not found under {root}{detail}; {how}")


def _cache(cache_dir) -> dict:
    return {"cache_dir": cache_dir} if cache_dir is not None else {}


def _torchvision(loader_name: str, split_argument: Callable[[str], dict]):
    def read(root: Path, split: str, download: bool, cache_dir, progress: bool):
        from . import torchvision_sets

        loader = getattr(torchvision_sets, loader_name)
        try:
            return loader(root, download=download, **split_argument(split), **_cache(cache_dir))
        except (RuntimeError, FileNotFoundError) as error:
            # torchvision says "Dataset not found or corrupted" and suggests download=True.
            if download:
                raise
            raise FileNotFoundError(str(error)) from error

    return read


def _first_existing(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).exists()), None)


def _read_tinyimagenet(root: Path, split: str, download: bool, cache_dir, progress: bool):
    from .tiny_imagenet import load_tiny_imagenet

    found = _first_existing(root, ("tiny-imagenet-32.zip", "tiny-imagenet-32", "tiny-imagenet-200.zip",
                                   "tiny-imagenet-200"))
    if found is None:
        raise FileNotFoundError()
    return load_tiny_imagenet(found, split=split, progress=progress, **_cache(cache_dir))


def _read_cifar10_jpg(root: Path, split: str, download: bool, cache_dir, progress: bool):
    from .image_folder import load_image_folder

    found = _first_existing(root, ("cifar10-jpg.zip", "cifar10-jpg"))
    if found is None:
        raise FileNotFoundError()
    return load_image_folder(found, split=split, progress=progress, **_cache(cache_dir))


CATALOGUE: dict[str, CatalogueEntry] = {entry.name: entry for entry in (
    CatalogueEntry("cifar10", ("train", "test"), "cifar-10-batches-py/ (torchvision's CIFAR-10)", True,
                   _torchvision("load_cifar10", lambda split: {"train": split == "train"})),
    CatalogueEntry("cifar100", ("train", "test"), "cifar-100-python/ (torchvision's CIFAR-100)", True,
                   _torchvision("load_cifar100", lambda split: {"train": split == "train"})),
    CatalogueEntry("svhn", ("train", "test", "extra"), "train_32x32.mat etc. (torchvision's SVHN)", True,
                   _torchvision("load_svhn", lambda split: {"split": split})),
    CatalogueEntry("stl10", ("train", "test", "unlabeled"), "stl10_binary/ (torchvision's STL-10)", True,
                   _torchvision("load_stl10", lambda split: {"split": split})),
    CatalogueEntry("tinyimagenet", ("train", "val"),
                   "tiny-imagenet-32.zip (or tiny-imagenet-32/, tiny-imagenet-200[.zip])", False, _read_tinyimagenet),
    CatalogueEntry("cifar10-jpg", ("train", "test"),
                   "cifar10-jpg.zip (or cifar10-jpg/: an image-folder tree with train/ and test/)", False,
                   _read_cifar10_jpg),
)}
"""Every named dataset, by name."""


def load_dataset(name: str, split: str | None = None, *, root: str | os.PathLike | None = None,
                 download: bool = False, cache_dir: str | os.PathLike | None = None,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray, list]:
    """Load the named dataset's ``split`` from ``root``.

    Parameters
    ----------
    name : str
        A key of :data:`CATALOGUE`: ``cifar10``, ``cifar100``, ``svhn``, ``stl10`` (torchvision's
        files, downloadable), ``tinyimagenet``, ``cifar10-jpg`` (archives put in place by the user).
    split : str, optional
        One of the entry's splits; its first (``"train"``) by default.
    root : str or path-like, optional
        The data root; :func:`skad_transfer.data.data_root` by default.
    download : bool, default=False
        Let torchvision download missing files (downloadable entries only).
    cache_dir : str or path-like, optional
        The decode cache (:func:`skad_transfer.data.cache_root` by default).
    progress : bool, default=False
        A progress bar while decoding image archives.

    Returns
    -------
    X : ndarray (N, H, W, 3) uint8, possibly a memory map
    y : ndarray (N,) int64
    class_names : list

    Raises
    ------
    ValueError
        An unknown name or split, or ``download=True`` for a dataset torchvision cannot fetch.
    FileNotFoundError
        The files are not under ``root``; the message names them and how to get them.

    Examples
    --------
    >>> sorted(CATALOGUE)
    ['cifar10', 'cifar10-jpg', 'cifar100', 'stl10', 'svhn', 'tinyimagenet']
    >>> load_dataset("tinyimagenet", root="/nowhere")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: dataset 'tinyimagenet': tiny-imagenet-32.zip ... not found under /nowhere; put it there...
    """
    entry = CATALOGUE.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(f"dataset: unknown name {name!r}; the catalogue has {sorted(CATALOGUE)}")
    split = entry.splits[0] if split is None else split
    if split not in entry.splits:
        raise ValueError(f"split: {name} has splits {list(entry.splits)}, got {split!r}")
    if download and not entry.downloadable:
        raise ValueError(f"download: {name} cannot be downloaded; put {entry.files} under the data root")
    root = Path(root).expanduser() if root is not None else data_root()
    try:
        X, y, classes = entry.read(root, split, bool(download), cache_dir, bool(progress))
    except FileNotFoundError as error:
        raise entry.missing(root, str(error)) from error
    return X, np.asarray(y), list(classes)
