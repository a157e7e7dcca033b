"""Outlier-exposure corpora named by string, path or loader object, read lazily.

``outlier_exposure=`` (and ``fit``'s ``X_outlier``) accepts

* a registered corpus name (:func:`list_corpora`), e.g. ``"tinyimagenet"``;
* a path: ``.npy`` (memory-mapped), ``.npz`` (key ``X``, ``images``, ``x`` or ``data``, or its only
  array), an image-folder directory or a ``.zip`` of one (decoded once into the cache as ``.npy``,
  then memory-mapped);
* an image array or tensor in any form :mod:`skad_transfer.data.images` accepts;
* a loader object: anything indexable by an integer array that returns images (``np.memmap``,
  h5py/zarr arrays), or a map-style dataset whose items are images or ``(image, label)`` pairs;
* an :class:`OutlierCorpus`.

Corpora are views: a grid search that names one corpus in the estimator's parameters shares one
memory map between all candidates (``clone`` keeps the same object, pickling keeps only the path), and
only the rows of each batch are read.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .images import IMAGE_FORMS, ImageBatch, as_image_batch, to_numpy

_NPZ_KEYS = ("X", "images", "x", "data")


class OutlierCorpus:
    """A lazily read image corpus.

    Parameters
    ----------
    source : array-like or map-style dataset
        Images (any accepted layout) or a dataset whose items are images / ``(image, label)``.
    name : str, default="outlier_exposure"
        Used in error messages and reprs.
    path : str, optional
        Where ``source`` was opened from; pickles keep only this path and reopen it.
    image_shape : tuple, optional
        (C, H, W) for flattened rows.
    """

    def __init__(self, source, *, name: str = "outlier_exposure", path: str | None = None, image_shape=None):
        self.name = name
        self.path = path
        self.image_shape = image_shape
        self._source = source
        self._is_array = hasattr(source, "shape") and hasattr(source, "dtype") and len(getattr(source, "shape")) >= 2
        if not self._is_array and not (hasattr(source, "__getitem__") and hasattr(source, "__len__")):
            raise TypeError(
                f"{name}: expected an image array, a path, a registered corpus name or an indexable "
                f"dataset, got {type(source).__name__}"
            )
        if len(self) == 0:
            raise ValueError(f"{name}: the outlier-exposure corpus is empty")
        self.take(np.arange(min(2, len(self))))  # fail now, not in the middle of training

    def __len__(self) -> int:
        return int(self._source.shape[0]) if self._is_array else len(self._source)

    @property
    def nbytes(self) -> int:
        return int(getattr(self._source, "nbytes", 0))

    @property
    def is_in_memory(self) -> bool:
        """True for plain in-memory arrays; False for memory maps and loaders."""
        return isinstance(self._source, (np.ndarray, torch.Tensor)) and not isinstance(self._source, np.memmap)

    def take(self, indices) -> torch.Tensor:
        """The images at ``indices`` as a canonical NCHW, 3-channel CPU tensor (uint8 or float32)."""
        indices = np.asarray(indices, dtype=np.int64)
        if self._is_array:
            # Sorted reads are sequential on a memory map; the original order is restored after.
            order = np.argsort(indices, kind="stable")
            rows = to_numpy(self._source[torch.as_tensor(indices[order]) if isinstance(self._source, torch.Tensor)
                                         else indices[order]], self.name)
            rows = np.asarray(rows)[np.argsort(order, kind="stable")]
        else:
            rows = np.stack([_item_to_array(self._source[int(i)], self.name) for i in indices])
        return as_image_batch(rows, name=self.name, image_shape=self.image_shape).data

    def all(self) -> ImageBatch:
        """The whole corpus as one batch (only for corpora that fit in memory)."""
        if self._is_array:
            return as_image_batch(self._source, name=self.name, image_shape=self.image_shape)
        data = self.take(np.arange(len(self)))
        return ImageBatch(data, tuple(data.shape[1:]))

    def __deepcopy__(self, memo):
        return self  # immutable view: sklearn.clone must not copy the data per grid candidate

    def __getstate__(self):
        state = self.__dict__.copy()
        memmap_file = getattr(self._source, "filename", None) if isinstance(self._source, np.memmap) else None
        if self.path is not None:
            state["_source"] = None
        elif memmap_file is not None and str(memmap_file).endswith(".npy"):
            # A decode-cache memmap travels as its file name, not as its (possibly huge) contents.
            state["_source"], state["_memmap_file"] = None, str(memmap_file)
        return state

    def __setstate__(self, state):
        memmap_file = state.pop("_memmap_file", None)
        self.__dict__.update(state)
        if self._source is None:
            self._source = np.load(memmap_file, mmap_mode="r") if memmap_file else _open_path(Path(self.path)).source

    @property
    def source(self):
        return self._source

    def __repr__(self) -> str:
        where = f", path={self.path!r}" if self.path else ""
        return f"OutlierCorpus(name={self.name!r}, n={len(self)}{where})"


def _item_to_array(item, name: str) -> np.ndarray:
    if isinstance(item, (tuple, list)):
        item = item[0]
    if isinstance(item, torch.Tensor):
        array = item.detach().cpu().numpy()
    else:
        array = np.asarray(item)  # PIL images convert to HWC uint8
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"{name}: dataset items must be single images (H, W, C), got shape {array.shape}")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


_REGISTRY: dict[str, Callable[[], OutlierCorpus]] = {}
_OPEN: dict[tuple, OutlierCorpus] = {}
_OPEN_LOCK = threading.Lock()


def register_corpus(name: str, opener: Callable[[], OutlierCorpus], *, overwrite: bool = False) -> None:
    """Make ``outlier_exposure=name`` call ``opener()`` (once per process) to open the corpus."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"corpus {name!r} is already registered; pass overwrite=True")
    _REGISTRY[name] = opener


def list_corpora() -> list[str]:
    """Names accepted by ``outlier_exposure=`` (besides paths, arrays and loaders)."""
    return sorted(_REGISTRY)


def resolve_corpus(spec, *, name: str = "outlier_exposure", image_shape=None) -> OutlierCorpus:
    """Turn any accepted corpus specification into an :class:`OutlierCorpus`."""
    if isinstance(spec, OutlierCorpus):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if isinstance(spec, str) and spec in _REGISTRY:
            key = ("name", spec)
            with _OPEN_LOCK:
                if key not in _OPEN:
                    _OPEN[key] = _REGISTRY[spec]()
                return _OPEN[key]
        path = Path(text).expanduser()
        if not path.exists():
            if isinstance(spec, str) and os.sep not in text and not path.suffix:
                raise ValueError(
                    f"{name}: unknown corpus name {text!r}; registered corpora are {list_corpora()}, "
                    f"or pass a path to .npy/.npz/an image folder/a .zip of one, or an array"
                )
            raise FileNotFoundError(f"{name}: no such file or directory: {path}")
        stat = path.stat()
        key = ("path", str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        with _OPEN_LOCK:
            if key not in _OPEN:
                _OPEN[key] = _open_path(path, name=name)
            return _OPEN[key]
    if spec is None:
        raise ValueError(f"{name}: no outlier-exposure corpus given")
    if isinstance(spec, torch.Tensor) or isinstance(spec, (list, tuple)):
        spec = as_image_batch(spec, name=name, image_shape=image_shape).data
    return OutlierCorpus(spec, name=name, image_shape=image_shape)


def _open_path(path: Path, name: str = "outlier_exposure") -> OutlierCorpus:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as error:
            raise OSError(f"{name}: could not read {path}: {error}") from error
        return _file_corpus(array, path, name)
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                key = next((k for k in _NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
                array = None if key is None else archive[key]
        except Exception as error:  # a bad zip, a truncated member, a pickled (object) array, ...
            raise OSError(f"{name}: could not read {path}: {error}") from error
        if array is None:
            raise ValueError(f"{name}: {path} holds arrays {keys}; expected one of {list(_NPZ_KEYS)} or a single array")
        return _file_corpus(array, path, name)
    if path.is_dir() or suffix == ".zip":
        from .datasets import load_image_folder

        try:
            images, _, _ = load_image_folder(path)
        except ValueError as error:
            if "look like dataset splits" not in str(error):
                raise
            images, _, _ = load_image_folder(path, split="train")  # an OE corpus is training data
        return OutlierCorpus(images, name=name, path=str(path))
    raise ValueError(
        f"{name}: cannot read {path}: expected .npy, .npz, an image-folder directory or a .zip of one "
        f"({IMAGE_FORMS} inside arrays)"
    )


def _file_corpus(array: np.ndarray, path: Path, name: str) -> OutlierCorpus:
    """The corpus of an array read from ``path``; a wrong array is an error naming the file."""
    if array.ndim < 2:
        raise ValueError(f"{name}: {path} holds an array of shape {array.shape}, not images ({IMAGE_FORMS})")
    try:
        return OutlierCorpus(array, name=name, path=str(path))
    except (TypeError, ValueError) as error:
        message = str(error)
        message = message[len(name) + 2:] if message.startswith(f"{name}: ") else message
        raise ValueError(f"{name}: {path}: {message}") from error


# ---------------------------------------------------------------------------------------------------
# The paper's corpora, by name. They are read from the data root (``$SKAD_TRANSFER_DATA``, else
# ``$SKAD_TRANSFER_HOME/datasets``); nothing is downloaded implicitly: a missing corpus says which file
# to put where, or which loader to call with download=True once.


def _missing(name: str, wanted: str, loader: str) -> FileNotFoundError:
    from .._paths import DATA_ENV, data_root

    return FileNotFoundError(
        f"outlier_exposure={name!r}: {wanted} not found under {data_root()} (set ${DATA_ENV} to the folder "
        f"that holds it, or fetch it once with skad_transfer.data.datasets.{loader})"
    )


def _open_tinyimagenet() -> OutlierCorpus:
    from .._paths import data_root
    from .datasets import load_tiny_imagenet

    root = data_root()
    for candidate in (root / "tiny-imagenet-32.zip", root / "tiny-imagenet-32", root / "tiny-imagenet-200.zip",
                      root / "tiny-imagenet-200"):
        if candidate.exists():
            images, _, _ = load_tiny_imagenet(candidate, split="train")
            return OutlierCorpus(images, name="tinyimagenet", path=None)
    raise _missing("tinyimagenet", "tiny-imagenet-32.zip (or tiny-imagenet-200[.zip])",
                   "load_tiny_imagenet(path)")


def _torchvision_opener(name: str, loader_name: str, **kwargs):
    def opener() -> OutlierCorpus:
        from .._paths import data_root
        from . import datasets

        try:
            images, _, _ = getattr(datasets, loader_name)(data_root(), download=False, **kwargs)
        except (FileNotFoundError, RuntimeError, OSError) as error:
            raise _missing(name, f"the {loader_name[5:].upper()} files ({error})",
                           f"{loader_name}(root, download=True)") from error
        return OutlierCorpus(images, name=name)

    return opener


register_corpus("tinyimagenet", _open_tinyimagenet)
register_corpus("cifar100", _torchvision_opener("cifar100", "load_cifar100", train=True))
register_corpus("svhn", _torchvision_opener("svhn", "load_svhn", split="train"))
register_corpus("stl10-unlabeled", _torchvision_opener("stl10-unlabeled", "load_stl10", split="unlabeled"))
