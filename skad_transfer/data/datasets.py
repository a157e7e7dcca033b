"""Loaders for real image datasets, with an on-disk decode cache.

Every loader returns images as ``uint8`` arrays in NHWC layout
``(n_samples, height, width, 3)`` together with ``int64`` labels (and the
class names) or, for MPI3D, an ``int64`` factor matrix. With ``cache=True``
decoded arrays are stored as ``.npy`` files under :func:`cache_dir` and the
images are returned as a read-only :class:`numpy.memmap` of them.

This module gathers the loaders under one name; each idea lives in a module
of its own, and every name here is the one defined there:

* :mod:`~skad_transfer.data.decode_cache`: :func:`cache_dir`, and how cache
  entries are keyed and written;
* :mod:`~skad_transfer.data.image_tree`: :data:`IMG_EXTENSIONS`,
  :data:`MAX_IMAGE_BYTES`, :data:`MAX_COMPRESSION_RATIO`, reading the files
  of an image-folder tree in a directory or zip and finding its classes;
* :mod:`~skad_transfer.data.image_decode`: decoding those files into one
  array, in memory or into the cache;
* :mod:`~skad_transfer.data.image_folder`: :func:`load_image_folder`;
* :mod:`~skad_transfer.data.tiny_imagenet`: :func:`load_tiny_imagenet`;
* :mod:`~skad_transfer.data.torchvision_sets`: :func:`load_cifar10`,
  :func:`load_cifar100`, :func:`load_svhn`, :func:`load_stl10`;
* :mod:`~skad_transfer.data.download_errors`: :class:`DownloadError`;
* :mod:`~skad_transfer.data.mpi3d`: :func:`load_mpi3d` and the ``MPI3D_*``
  factor names and values.

:data:`MAX_IMAGE_BYTES` and :data:`MAX_COMPRESSION_RATIO` are read from
:mod:`~skad_transfer.data.image_tree` at every access, and assigning either
here assigns it there, so ``datasets.MAX_IMAGE_BYTES = n`` still changes the
limit the loaders apply.
"""

from __future__ import annotations

import sys
import types

from . import image_tree as _image_tree
from .decode_cache import cache_dir
from .download_errors import DownloadError  # noqa: F401 - public (callers catch it), never in __all__
from .image_folder import load_image_folder
from .image_tree import IMG_EXTENSIONS
from .mpi3d import (MPI3D_BACKGROUND_COLORS, MPI3D_CAMERA_HEIGHTS, MPI3D_COLORS, MPI3D_FACTOR_NAMES,
                    MPI3D_FACTOR_SIZES, MPI3D_SHAPES, MPI3D_SIZES, load_mpi3d)
from .tiny_imagenet import load_tiny_imagenet
from .torchvision_sets import load_cifar10, load_cifar100, load_stl10, load_svhn

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

# The size limits are settings a user assigns; a copy bound here would take an assignment
# without the loaders (which read image_tree's) ever seeing it. So this module's class gives
# them properties that read and assign image_tree's. Properties (data descriptors), not a
# module __getattr__ and __setattr__: pytest's monkeypatch undoes an assignment through a
# descriptor by assigning the old value, but one to a name missing from __dict__ by deleting it.
_FORWARDED = ("MAX_IMAGE_BYTES", "MAX_COMPRESSION_RATIO")


def _forwarded(name: str) -> property:
    """A property that reads and assigns ``skad_transfer.data.image_tree.<name>``."""

    def get(module: types.ModuleType):
        return getattr(_image_tree, name)

    def set_(module: types.ModuleType, value) -> None:
        setattr(_image_tree, name, value)

    return property(get, set_, doc=f"``skad_transfer.data.image_tree.{name}``, read and assigned there.")


class _ForwardingModule(types.ModuleType):
    """This module's class: its size limits are image_tree's."""

    MAX_IMAGE_BYTES = _forwarded("MAX_IMAGE_BYTES")
    MAX_COMPRESSION_RATIO = _forwarded("MAX_COMPRESSION_RATIO")


def __dir__() -> list[str]:
    """The module's names, the forwarded limits included."""
    return sorted(set(globals()) | set(_FORWARDED))


sys.modules[__name__].__class__ = _ForwardingModule
