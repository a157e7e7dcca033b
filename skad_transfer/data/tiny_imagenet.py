"""Loading Tiny-ImageNet from a directory or a zip, in its original layout or split by class.

The tree is read by :func:`~skad_transfer.data.image_folder._load_tree` (with
its decode cache); what is Tiny-ImageNet's own is the order of the classes
(``wnids.txt``) and the labels of the original validation split
(``val_annotations.txt``).
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath

import numpy as np

from .image_folder import _load_tree
from .image_tree import _parent

__all__ = ["load_tiny_imagenet"]


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
    """Group the original validation images ``rels`` by the wnid ``annotations`` gives each file name."""
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
