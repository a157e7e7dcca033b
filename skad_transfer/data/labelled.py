"""Labelled image sets for pretraining: loading one by name, labels, a stratified hold-out, statistics.

:func:`load_labelled_data` reads what ``skad-transfer pretrain DATA`` names (an image-folder tree or
``.zip``, a Tiny-ImageNet tree, an ``.npz``, or a torchvision dataset through the loaders of
:mod:`skad_transfer.data.datasets`). :class:`ImageSource` hands out uint8 batches of such a set on
the training device, keeping large memory maps on disk.
"""

from __future__ import annotations

import numbers
import os
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.utils import check_scalar

from .catalogue import CATALOGUE, load_dataset
from .images import as_image_batch, resize_images, take_rows

__all__ = ["ImageSource", "IN_MEMORY_BYTES", "FORMATS", "load_labelled_data", "encode_labels", "encode_val_labels",
           "stratified_holdout", "channel_stats"]

IN_MEMORY_BYTES = 2 << 30
"""Training images up to this size (uint8, at ``input_size``) are copied once into a tensor; gathering
batches from a tensor is much faster than fancy-indexing a memory map. Larger sets stay on disk and
each batch is read by sorted index."""

FORMATS = ("auto", "folder", "tinyimagenet", "npz", "torchvision")
"""How :func:`load_labelled_data` can read its ``data``."""

_TORCHVISION = tuple(name for name, entry in CATALOGUE.items() if entry.downloadable)
_STATS_SAMPLE = 10_000


class ImageSource:
    """Images (N images of one size) that hand out uint8 NCHW batches at ``input_size`` on a device.

    Small sets are validated and copied once into a tensor (on the GPU when it fits in a quarter of
    its free memory). Large 4-D uint8 arrays, typically the decode cache's memory maps, stay where
    they are: each batch reads its rows in sorted order, which turns random access into a forward
    scan of the file.
    """

    def __init__(self, X, *, name: str, input_size: int, device: torch.device,
                 in_memory_bytes: int | None = None):
        self.name = name
        self.input_size = input_size
        self.device = device
        self.array: np.ndarray | None = None
        self.tensor: torch.Tensor | None = None
        if in_memory_bytes is None:
            in_memory_bytes = IN_MEMORY_BYTES
        lazy = (isinstance(X, np.ndarray) and X.ndim == 4 and X.dtype == np.uint8
                and X.shape[0] * 3 * input_size * input_size > in_memory_bytes)
        if lazy:
            if X.shape[1] in (1, 3):
                self.channels_last = False
            elif X.shape[3] in (1, 3):
                self.channels_last = True
            else:
                raise ValueError(f"{name}: expected 1 or 3 channels in (N, H, W, C) or (N, C, H, W), got shape {X.shape}")
            if X.shape[0] == 0:
                raise ValueError(f"{name}: no images")
            self.array = X
            self.n = int(X.shape[0])
            return
        batch = as_image_batch(X, name=name).data
        if batch.dtype != torch.uint8:
            # Float input holds 0..1 intensities; uint8 halves the memory of every gather after this.
            batch = (batch.clamp(0, 1) * 255).round_().to(torch.uint8)
        batch = resize_images(batch, input_size)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if batch.numel() < 0.25 * free:
                batch = batch.to(device)
        self.tensor = batch
        self.n = int(batch.shape[0])

    def __len__(self) -> int:
        return self.n

    def take(self, rows: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """uint8 NCHW images ``rows`` (a CPU int64 tensor), in that order, on ``device``."""
        device = self.device if device is None else device
        if self.tensor is not None:
            # non_blocking: no stream synchronisation per batch when the set lives on the GPU.
            return self.tensor[rows.to(self.tensor.device, non_blocking=True)].to(device, non_blocking=True)
        images = torch.from_numpy(take_rows(self.array, rows.numpy()))
        if self.channels_last:
            images = images.permute(0, 3, 1, 2)
        images = images.to(device, non_blocking=True)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return resize_images(images.contiguous(), self.input_size)


def encode_labels(y, n_images: int, classes: Sequence | None, name: str = "y") -> tuple[np.ndarray, list]:
    """Labels -> (int64 codes 0..K-1, class names).

    Non-negative integer labels are kept as they are (so a dataset's label order survives, and a
    class missing from a subset keeps its index); anything else (strings, floats) is encoded in
    sorted order.
    """
    if y is None:
        raise ValueError(f"{name}: labels are required")
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        y = np.squeeze(y)
        if y.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D array of labels, got shape {np.asarray(y).shape}")
    if len(y) != n_images:
        raise ValueError(f"{name}: {len(y)} labels for {n_images} images; X and {name} must have the same length")
    if y.dtype.kind in "iu":
        if len(y) and y.min() < 0:
            raise ValueError(
                f"{name}: labels must be >= 0, got {int(y.min())} (unlabelled images, e.g. STL-10's "
                f"-1, cannot be used for pretraining)"
            )
        n_classes = int(y.max()) + 1 if len(y) else 0
        if classes is not None:
            if len(classes) < n_classes:
                raise ValueError(f"classes: {len(classes)} names but {name} has labels up to {n_classes - 1}")
            names = list(classes)
        else:
            names = [str(i) for i in range(n_classes)]
        codes = y.astype(np.int64)
    else:
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)) and (not len(y) or y.min() >= 0):
            return encode_labels(y.astype(np.int64), n_images, classes, name)
        names_arr, codes = np.unique(y, return_inverse=True)
        names = [v.item() if hasattr(v, "item") else v for v in names_arr]
        codes = codes.astype(np.int64)
    if len(np.unique(codes)) < 2:
        raise ValueError(f"{name}: pretraining needs at least 2 classes, got {len(np.unique(codes))}")
    return codes, names


def stratified_holdout(codes: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, val rows), both sorted: ``round(fraction * n_c)`` (at least 1) images of each class
    with at least 2 images go to validation, drawn with ``seed``."""
    rng = np.random.default_rng([seed, 0x5EED])
    val = []
    for label in np.unique(codes):
        rows = np.flatnonzero(codes == label)
        if len(rows) < 2:
            continue
        k = min(len(rows) - 1, max(1, int(round(fraction * len(rows)))))
        val.append(rng.choice(rows, size=k, replace=False))
    val_rows = np.sort(np.concatenate(val)) if val else np.empty(0, np.int64)
    train_mask = np.ones(len(codes), bool)
    train_mask[val_rows] = False
    return np.flatnonzero(train_mask), val_rows


def channel_stats(source: ImageSource, rows: np.ndarray, seed: int) -> tuple[tuple, tuple]:
    """Per-channel mean/std (0..1 scale) of up to 10,000 training images drawn with ``seed``."""
    rng = np.random.default_rng([seed, 0x57A7])
    if len(rows) > _STATS_SAMPLE:
        rows = np.sort(rng.choice(rows, size=_STATS_SAMPLE, replace=False))
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    for start in range(0, len(rows), 2048):
        chunk = source.take(torch.as_tensor(rows[start:start + 2048]), device=torch.device("cpu")).double() / 255.0
        total += chunk.sum(dim=(0, 2, 3))
        squares += (chunk * chunk).sum(dim=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(1e-12).sqrt().clamp_min(1e-3)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def encode_val_labels(y_val, n_images: int, codes: np.ndarray, y, class_names: list) -> np.ndarray:
    """Validation labels in the training labels' coding."""
    y_train = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
    if isinstance(y_val, torch.Tensor):
        y_val = y_val.detach().cpu().numpy()
    y_val = np.asarray(y_val)
    if y_val.ndim != 1:
        raise ValueError(f"y_val: expected a 1-D array of labels, got shape {y_val.shape}")
    if len(y_val) != n_images:
        raise ValueError(f"y_val: {len(y_val)} labels for {n_images} images; X_val and y_val must have the same length")
    if y_train.dtype.kind in "iuf" and y_val.dtype.kind in "iuf" and np.array_equal(
        codes, y_train.astype(np.int64, copy=False)
    ):
        val_codes = y_val.astype(np.int64)
        bad = (val_codes < 0) | (val_codes >= len(class_names)) | (val_codes != y_val)
    else:
        lookup = {value: index for index, value in enumerate(class_names)}
        val_codes = np.array([lookup.get(v.item() if hasattr(v, "item") else v, -1) for v in y_val], dtype=np.int64)
        bad = val_codes < 0
    if bad.any():
        raise ValueError(f"y_val: labels {np.unique(y_val[bad])[:5].tolist()} do not occur among the training classes")
    return val_codes


def _tree_entries(path: Path) -> list[tuple[str, ...]]:
    """Relative paths (as parts) of a directory's entries two levels deep, or a zip's three.

    Enough to see ``wnids.txt`` and a ``train`` folder (a zip usually adds one top folder) without
    listing every image of a large directory tree.
    """
    if path.is_dir():
        depth = 2
        found = []

        def walk(folder: Path, parts: tuple[str, ...]) -> None:
            if len(parts) >= depth:
                return
            try:
                children = list(os.scandir(folder))
            except OSError:
                return
            for child in children:
                found.append(parts + (child.name,))
                if child.is_dir():
                    walk(Path(child.path), parts + (child.name,))

        walk(path, ())
        return found
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:  # zipfile's message names no file
        raise ValueError(f"DATA: {path} is neither a directory nor a readable .zip file: {error}") from error
    with archive:
        return [tuple(p for p in name.split("/") if p)[:3] for name in archive.namelist()]


def _detect_format(data: str, entries: list[tuple[str, ...]] | None) -> str:
    if data.startswith("torchvision:"):
        return "torchvision"
    if data.lower().endswith(".npz"):
        return "npz"
    if entries is not None and any(parts and parts[-1] == "wnids.txt" for parts in entries):
        return "tinyimagenet"
    return "folder"


def _limit_per_class(X, y, limit: int) -> tuple[Any, np.ndarray]:
    """The first ``limit`` images of every class, in their original order."""
    y = np.asarray(y)
    keep = np.sort(np.concatenate([np.flatnonzero(y == label)[:limit] for label in np.unique(y)]))
    return X[keep], y[keep]


def load_labelled_data(
    data: str | os.PathLike,
    *,
    format: str = "auto",
    split: str | None = None,
    root: str | os.PathLike | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> tuple[Any, np.ndarray, list, str]:
    """Load a labelled image dataset named on the command line.

    Parameters
    ----------
    data : str or path-like
        An image-folder directory or ``.zip`` (``<split>/<class>/<image>`` or ``<class>/<image>``),
        a Tiny-ImageNet tree (recognised by its ``wnids.txt``), an ``.npz`` with arrays ``X`` and
        ``y`` (plus optionally ``X_<split>``/``y_<split>`` and ``classes``), or
        ``torchvision:cifar10|cifar100|svhn|stl10``.
    format : {"auto", "folder", "tinyimagenet", "npz", "torchvision"}, default="auto"
    split : str, optional
        Which split: ``"train"`` by default where the data have one (a folder tree without split
        folders is read whole). For CIFAR ``"test"`` selects the test set.
    root : str or path-like, optional
        Directory of the torchvision files (for ``torchvision:``); the data root
        (:func:`skad_transfer.data.data_root`) by default.
    download : bool, default=False
        Let torchvision download missing files.
    cache_dir : str or path-like, optional
        Decode cache directory of the loaders.
    limit : int, optional
        Keep only the first ``limit`` images of every class.
    progress : bool, default=False
        Progress bar while decoding.

    Returns
    -------
    X : ndarray (N, H, W, 3) uint8, possibly a memory map
    y : ndarray (N,) int64
    classes : list
    name : str
        A short name of the dataset and split, for the weights' metadata.
    """
    from .image_folder import load_image_folder
    from .tiny_imagenet import load_tiny_imagenet

    data = os.fspath(data)
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if limit is not None:
        limit = check_scalar(limit, "limit", numbers.Integral, min_val=1)
    entries = None
    if format == "auto" and not data.startswith("torchvision:") and not data.lower().endswith(".npz"):
        path = Path(data).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"DATA: {data!r} does not exist")
        entries = _tree_entries(path)
    kind = _detect_format(data, entries) if format == "auto" else format
    cache = {"cache_dir": cache_dir} if cache_dir is not None else {}

    if kind == "torchvision":
        dataset = data.split(":", 1)[1].lower() if data.startswith("torchvision:") else data.lower()
        if dataset not in _TORCHVISION:
            raise ValueError(f"DATA: torchvision datasets are {', '.join('torchvision:' + d for d in _TORCHVISION)}; "
                             f"got {data!r}")
        split = split or "train"
        X, y, classes = load_dataset(dataset, split, root=root, download=download, cache_dir=cache_dir)
        name = f"{dataset}:{split}"
    elif kind == "npz":
        path = Path(data).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"DATA: {data!r} does not exist")
        with np.load(path, allow_pickle=False) as archive:
            x_key, y_key = ("X", "y") if split in (None, "train") else (f"X_{split}", f"y_{split}")
            missing = [k for k in (x_key, y_key) if k not in archive]
            if missing:
                what = "DATA" if split in (None, "train") else "--split"
                raise ValueError(f"{what}: {path.name} must hold arrays {x_key!r} and {y_key!r}; missing {missing} "
                                 f"(keys: {archive.files})")
            X, y = archive[x_key], archive[y_key]
            classes = [str(c) for c in archive["classes"]] if "classes" in archive else None
        name = path.stem + (f":{split}" if split not in (None, "train") else "")
    else:
        path = Path(data).expanduser()
        if kind == "tinyimagenet":
            split = split or "train"
            X, y, classes = load_tiny_imagenet(path, split=split, progress=progress, **cache)
        else:
            if split is None:
                if entries is None:
                    entries = _tree_entries(path)
                # A tree with a train/ folder is split; otherwise its top level is the class level.
                split = "train" if any("train" in parts[:-1] for parts in entries) else None
            X, y, classes = load_image_folder(path, split=split, progress=progress, **cache)
        name = path.stem + (f":{split}" if split else "")
    if limit is not None:
        X, y = _limit_per_class(X, y, limit)
    return X, np.asarray(y), classes, name


