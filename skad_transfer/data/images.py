"""Every accepted form of an image batch -> one canonical batch (NCHW, 3 channels), with the errors.

Accepted forms (numpy arrays, anything array-like, or torch tensors):

* ``(N, H, W, C)`` or ``(N, C, H, W)`` with ``C`` in {1, 3}; a channel count of 1 is replicated;
* ``(N, H, W)``: grayscale;
* ``(N, F)``: flattened images. Rows are read channel-major (``C, H, W``, the order of CIFAR's
  raw arrays and of ``x.reshape(len(x), -1)`` on an NCHW batch). The shape is ``image_shape`` when
  given (one entry may be ``-1``, as in ``reshape``: ``(1, 1, -1)`` reads any row as a one-pixel-high
  strip), else inferred: ``3 * s * s`` features -> ``(3, s, s)``, ``s * s`` -> ``(1, s, s)``.

Intensities: integer arrays hold 0..255 (stored as uint8); float arrays hold intensities whose
nominal range is 0..1 (stored as float32, not clipped).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch
import torch.nn.functional as F
from sklearn.utils import check_array

IMAGE_FORMS = "(N, H, W, C), (N, C, H, W) with C in {1, 3}, (N, H, W) grayscale, or (N, C*H*W) flattened"


def to_numpy(X, name: str = "X"):
    """Torch tensors -> numpy (on the CPU); everything else passes through for check_array."""
    if X is None:
        raise TypeError(f"{name}: expected an image batch ({IMAGE_FORMS}), got None")
    if scipy.sparse.issparse(X):
        raise TypeError(f"{name}: sparse input is not supported; images must be dense ({IMAGE_FORMS})")
    if isinstance(X, (str, bytes, dict)):
        raise TypeError(f"{name}: expected an image batch ({IMAGE_FORMS}), got {type(X).__name__}")
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu()
        if X.dtype in (torch.bfloat16, torch.float16):
            X = X.float()
        return X.numpy()
    return X


@contextmanager
def naming_errors(name: str):
    """Prefix ValueErrors (e.g. numpy's "could not convert string to float") with the argument's name."""
    try:
        yield
    except ValueError as error:
        if name in str(error):
            raise
        raise ValueError(f"{name}: {error}") from error


def resolve_image_shape(n_features: int, image_shape=None, name: str = "X") -> tuple[int, int, int]:
    """The (C, H, W) that a flattened row of ``n_features`` values holds."""
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or shape[0] not in (1, 3, -1) or shape.count(-1) > 1 or any(
            s == 0 or s < -1 for s in shape
        ):
            raise ValueError(
                f"image_shape must be (C, H, W) with C in {{1, 3}} and at most one -1, got {image_shape!r}"
            )
        known = math.prod(s for s in shape if s != -1)
        if -1 in shape:
            if n_features % known:
                raise ValueError(
                    f"{name} has {n_features} features per row, not a multiple of {known} "
                    f"as image_shape={image_shape!r} requires"
                )
            shape = tuple(n_features // known if s == -1 else s for s in shape)
        if math.prod(shape) != n_features:
            raise ValueError(
                f"{name} has {n_features} features per row but image_shape={image_shape!r} "
                f"holds {math.prod(shape)}"
            )
        if shape[0] not in (1, 3):
            raise ValueError(f"image_shape must have 1 or 3 channels, got {shape}")
        return shape
    for channels in (3, 1):
        side = math.isqrt(n_features // channels)
        if n_features % channels == 0 and side * side * channels == n_features and side > 0:
            return (channels, side, side)
    raise ValueError(
        f"{name} has {n_features} features per row, which is not a flattened square image "
        f"(3*s*s or s*s); pass image_shape=(C, H, W), e.g. image_shape=(1, 1, -1) to read each "
        f"row as a one-pixel-high strip"
    )


@dataclass(frozen=True)
class ImageBatch:
    """A canonical batch: ``data`` is NCHW with 3 channels, uint8 (0..255) or float32 (0..1).

    ``source_shape`` is the (C, H, W) of one input image before channel replication and resizing.
    """

    data: torch.Tensor
    source_shape: tuple[int, int, int]


def as_image_batch(X, *, name: str = "X", image_shape=None, validated: bool = False) -> ImageBatch:
    """Validate ``X`` and convert it to an :class:`ImageBatch` (CPU tensor, no copy where possible).

    Raises ``TypeError`` for non-array input and ``ValueError`` for empty, non-finite, non-numeric,
    wrongly shaped input or integers outside 0..255; every message names ``name``.
    """
    if not validated:
        with naming_errors(name):
            X = check_array(
                to_numpy(X, name), accept_sparse=False, dtype="numeric", ensure_all_finite=True,
                allow_nd=True, ensure_min_samples=1, input_name=name,
            )
    X = np.asarray(X)
    if X.ndim == 2:
        shape = resolve_image_shape(X.shape[1], image_shape, name)
        X = X.reshape((X.shape[0], *shape))
        channels_last = False
    elif X.ndim == 3:
        X = X[:, None]
        channels_last = False
    elif X.ndim == 4:
        if X.shape[1] in (1, 3):
            channels_last = False
        elif X.shape[3] in (1, 3):
            channels_last = True
        else:
            raise ValueError(
                f"{name}: expected 1 or 3 channels in (N, H, W, C) or (N, C, H, W), got shape {X.shape}"
            )
    else:
        raise ValueError(f"{name}: expected {IMAGE_FORMS}; got an array of shape {X.shape}")
    if min(X.shape[1:]) == 0:
        raise ValueError(f"{name}: images must not be empty, got shape {X.shape}")

    if X.dtype.kind in "iub":
        if X.dtype != np.uint8 and X.size:
            low, high = X.min(), X.max()
            if low < 0 or high > 255:
                raise ValueError(f"{name}: integer images must hold values in 0..255, got range [{low}, {high}]")
        X = X.astype(np.uint8, copy=False)
    elif X.dtype.kind == "f":
        X = X.astype(np.float32, copy=False)
    else:
        raise TypeError(f"{name}: expected a numeric image array, got dtype {X.dtype}")

    tensor = torch.from_numpy(np.ascontiguousarray(X)) if X.flags.writeable else torch.from_numpy(X.copy())
    if channels_last:
        tensor = tensor.permute(0, 3, 1, 2)
    source_shape = tuple(tensor.shape[1:])
    if tensor.shape[1] == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    return ImageBatch(tensor.contiguous(), source_shape)


def resize_images(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Resize an NCHW batch to ``size`` x ``size`` (bilinear, antialiased), keeping its dtype."""
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=images.dtype, device=images.device)
    for start in range(0, images.shape[0], chunk):
        part = images[start:start + chunk].float()
        part = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if images.dtype == torch.uint8:
            part = part.round_().clamp_(0, 255)
        out[start:start + chunk] = part.to(images.dtype)
    return out
