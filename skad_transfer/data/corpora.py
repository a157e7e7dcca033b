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

import inspect
import os
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .._paths import data_root
from .._registry import Registry
from .catalogue import CATALOGUE, load_dataset
from .images import IMAGE_FORMS, ImageBatch, as_image_batch, take_rows

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
            rows = take_rows(self._source, indices)
        else:
            rows = np.stack([self._read_item(int(i)) for i in indices])
        return as_image_batch(rows, name=self.name, image_shape=self.image_shape).data

    def _read_item(self, index: int) -> np.ndarray:
        """Item ``index`` of a dataset as an (H, W, C) array, with the corpus and the item named in
        any error: the dataset's own, and items of a size other than the first item's (one batch
        stacks them, and the training batches of a fit must all have one size)."""
        try:
            item = self._source[index]
        except Exception as error:  # the loader's own error, with where it happened
            message = (f"{self.name}: reading item {index} of {type(self._source).__name__} (len {len(self)}) "
                       f"raised {type(error).__name__}: {error}")
            try:
                wrapped = type(error)(message)
            except Exception:
                wrapped = RuntimeError(message)
            raise wrapped from error
        array = _item_to_array(item, self.name)
        first = getattr(self, "_item_shape", None)
        if first is None:
            self._item_shape = first = (index, array.shape)
        if array.shape != first[1]:
            raise ValueError(
                f"{self.name}: the dataset's items must all have one size, got {first[1]} (H, W, C) at item "
                f"{first[0]} and {array.shape} at item {index}; resize them in the dataset's transform, e.g. "
                f"torchvision.transforms.Resize(({first[1][0]}, {first[1][1]}))"
            )
        return array

    def all(self) -> ImageBatch:
        """The whole corpus as one batch (only for corpora that fit in memory)."""
        if self._is_array:
            return as_image_batch(self._source, name=self.name, image_shape=self.image_shape)
        data = self.take(np.arange(len(self)))
        return ImageBatch(data, tuple(data.shape[1:]))

    def without(self, rows) -> "OutlierCorpus":
        """This corpus without ``rows``: a view whose indices skip them (nothing is copied), e.g.
        to hold images out for validation."""
        return _Excluding(self, rows)

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


class _Excluding(OutlierCorpus):
    """:meth:`OutlierCorpus.without`: index ``i`` is the ``i``-th row of ``base`` not excluded.

    Memory is one int64 per excluded row, whatever the corpus size: the ``i``-th kept row is ``i``
    plus the number of excluded rows at or before it, found by binary search.
    """

    def __init__(self, base: OutlierCorpus, rows):
        excluded = np.unique(np.asarray(rows, dtype=np.int64))
        if len(excluded) and (excluded[0] < 0 or excluded[-1] >= len(base)):
            raise ValueError(f"{base.name}: rows to leave out must be in [0, {len(base)})")
        if len(excluded) >= len(base):
            raise ValueError(f"{base.name}: leaving out {len(excluded)} rows leaves no image")
        self.base = base
        self.name, self.path, self.image_shape = base.name, base.path, base.image_shape
        self._shifted = excluded - np.arange(len(excluded))
        self._n = len(base) - len(excluded)

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return int(self.base.nbytes * self._n / max(1, len(self.base)))

    @property
    def is_in_memory(self) -> bool:
        return self.base.is_in_memory

    @property
    def source(self):
        return self.base.source

    def take(self, indices) -> torch.Tensor:
        indices = np.asarray(indices, dtype=np.int64)
        return self.base.take(indices + np.searchsorted(self._shifted, indices, side="right"))

    def all(self) -> ImageBatch:
        data = self.take(np.arange(self._n))
        return ImageBatch(data, tuple(data.shape[1:]))

    def __getstate__(self):
        return self.__dict__.copy()

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"{self.base!r}.without({len(self.base) - self._n} rows)"


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


_REGISTRY: dict[str, Callable[[Path], OutlierCorpus]] = {}
"""The registered openers by name: the table of :data:`CORPORA`."""

CORPORA = Registry("corpus", store=lambda: _REGISTRY)
"""The corpus names ``outlier_exposure=`` accepts, each with its ``opener(root)``."""

_OPEN: dict[tuple, OutlierCorpus] = {}
_OPEN_LOCK = threading.Lock()


def register_corpus(name: str, opener: Callable[..., OutlierCorpus], *, overwrite: bool = False) -> None:
    """Make ``outlier_exposure=name`` open the corpus with ``opener`` (once per process and data root).

    Parameters
    ----------
    name : str
        The name ``outlier_exposure=`` (or ``fit``'s second argument) will take.
    opener : callable
        ``opener(root)`` gets the data root (:func:`~skad_transfer.data.data_root`, or the ``root``
        given to :func:`resolve_corpus`) and returns an :class:`OutlierCorpus`; an opener that takes
        no argument is called as ``opener()``.
    overwrite : bool, default=False
        Replace a corpus already registered under that name (else a ValueError).
    """
    takes_root = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                     for p in inspect.signature(opener).parameters.values())
    CORPORA.register(name, opener if takes_root else (lambda root: opener()), overwrite=overwrite)


def list_corpora() -> list[str]:
    """Names accepted by ``outlier_exposure=`` (besides paths, arrays and loaders)."""
    return CORPORA.names()


def resolve_corpus(spec, *, name: str = "outlier_exposure", image_shape=None,
                   root: str | os.PathLike | None = None) -> OutlierCorpus:
    """Turn any accepted corpus specification into an :class:`OutlierCorpus`.

    A registered name (:func:`list_corpora`) is opened from ``root``, by default the data root
    (:func:`~skad_transfer.data.data_root`).
    """
    if isinstance(spec, OutlierCorpus):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if isinstance(spec, str) and spec in CORPORA:
            folder = Path(root).expanduser() if root is not None else data_root()
            key = ("name", spec, str(folder.resolve()))
            with _OPEN_LOCK:
                if key not in _OPEN:
                    _OPEN[key] = CORPORA[spec](folder)
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
        from .image_folder import load_image_folder

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
# The paper's corpora, by name: datasets of the catalogue (:mod:`skad_transfer.data.catalogue`), read
# from the data root. Nothing is downloaded implicitly: a missing corpus says which file to put where,
# or which loader to call with download=True once.


def _catalogue_corpus(corpus: str, dataset: str, split: str) -> Callable[[Path], OutlierCorpus]:
    def opener(root: Path) -> OutlierCorpus:
        try:
            images, _, _ = load_dataset(dataset, split, root=root)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"outlier_exposure={corpus!r}: {error}") from error
        return OutlierCorpus(images, name=corpus)

    return opener


CATALOGUE_CORPORA: dict[str, tuple[str, str]] = {
    "tinyimagenet": ("tinyimagenet", "train"),
    "cifar100": ("cifar100", "train"),
    "svhn": ("svhn", "train"),
    "stl10-unlabeled": ("stl10", "unlabeled"),
}
"""The paper's corpora: name -> (catalogue dataset, split)."""

for _corpus, (_dataset, _split) in CATALOGUE_CORPORA.items():
    register_corpus(_corpus, _catalogue_corpus(_corpus, _dataset, _split))


def download_corpus(name: str, root=None) -> None:
    """Make sure the files of the named corpus are under ``root`` (the data root by default): fetch
    them with torchvision when they can be fetched; otherwise a ``FileNotFoundError`` says what to
    put where. Names outside :data:`CATALOGUE_CORPORA` (paths, corpora registered by the user) are
    left alone."""
    if name not in CATALOGUE_CORPORA:
        return
    from .download_errors import DownloadError

    dataset, split = CATALOGUE_CORPORA[name]
    downloadable = CATALOGUE[dataset].downloadable
    try:
        load_dataset(dataset, split, root=root, download=downloadable)
    except DownloadError as error:  # offline: the message names the URL, the file and where it goes
        raise DownloadError(f"outlier_exposure={name!r}: {error}", url=error.url, path=error.path) from error
    except FileNotFoundError as error:
        raise FileNotFoundError(f"outlier_exposure={name!r} cannot be downloaded: {error}; or choose a corpus "
                                f"that can ({', '.join(n for n, (d, _) in CATALOGUE_CORPORA.items() if CATALOGUE[d].downloadable)})") from error
