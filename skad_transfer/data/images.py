"""Every accepted form of an image batch -> one canonical batch (NCHW, 3 channels), with the errors.

Accepted forms (numpy arrays, anything array-like, lists of images, or torch tensors):

* ``(N, H, W, C)`` or ``(N, C, H, W)`` with ``C`` in {1, 3}; a channel count of 1 is replicated. The
  layout is where the channel axis can be. When both axis 1 and axis 3 hold 1 or 3 (e.g.
  ``(N, 3, 32, 3)``, ``(N, 1, 64, 3)``) both readings are possible and the batch is an error unless
  ``image_shape=(C, H, W)`` matches exactly one of them (only ``(N, 1, 1, 1)``, where both readings
  are the same image, needs nothing);
* ``(N, H, W)``: grayscale. A last axis of 1 or 3 is an error (``(32, 32, 3)`` is more likely one
  colour image without its batch axis than 32 grayscale images 3 pixels wide) unless
  ``image_shape=(1, H, W)`` says grayscale;
* ``(N, F)``: flattened images. Rows are read channel-major (``C, H, W``, the order of CIFAR's
  raw arrays and of ``x.reshape(len(x), -1)`` on an NCHW batch). The shape is ``image_shape`` when
  given (one entry may be ``-1``, as in ``reshape``: ``(1, 1, -1)`` reads any row as a one-pixel-high
  strip), else inferred: ``s * s`` features -> ``(1, s, s)``. A row of ``3 * s * s`` features with
  ``s > 1`` and no ``image_shape`` is an error: it reads as channel-major ``(3, s, s)`` or as a
  flattened NHWC image ``(s, s, 3)``, two different images (reshape an NHWC batch to
  ``(N, s, s, 3)``, or pass ``image_shape=(3, s, s)`` for channel-major rows);
* one axis only (``(F,)``) is an error: one flattened image is ``X[None]``.

Intensities: integers hold 0..255 (stored as uint8); floats hold intensities in [0, 1] up to
:data:`INTENSITY_TOLERANCE` (stored as float32, not clipped; :func:`intensity_range_problem` is the
rule, shared with :func:`~skad_transfer.data.harmonize.jpeg_roundtrip`). Booleans and complex
numbers are errors: neither says which intensity a value is. NaN and infinity are errors.

Memory maps (``np.load(path, mmap_mode="r")``, ``np.memmap``) of uint8 or float32 images are not
copied: the canonical batch is a view of the file (an NHWC file a strided view), which scoring reads
one batch at a time, so scoring a file far larger than memory takes the memory of one batch.
"""

from __future__ import annotations

import math
import mmap
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import scipy.sparse
import torch
import torch.nn.functional as F
from sklearn.utils import check_array
from sklearn.utils.validation import validate_data

IMAGE_FORMS = "(N, H, W, C), (N, C, H, W) with C in {1, 3}, (N, H, W) grayscale, or (N, C*H*W) flattened"

INTENSITY_TOLERANCE = 1e-3
"""How far float intensities may leave [0, 1] (rounding in the caller's arithmetic, e.g. ``x / 255``
computed in another precision). Below half a uint8 step (0.5 / 255), so quantising such a value
gives 0 or 255 exactly."""


class IntensityRangeWarning(UserWarning):
    """Float values outside [0, 1] fed to a network as they are (no JPEG round trip to refuse them).

    Tabular data read as one-pixel strips (``image_shape=(1, 1, -1)``, as scikit-learn's estimator
    checks do) are the intended case; for images it means the scale is wrong (0..255 data, or images
    already normalised), so the warning is a ``UserWarning`` that can be filtered by this class.
    """


def to_numpy(X, name: str = "X"):
    """Torch tensors and lists -> numpy (on the CPU); other array-likes pass through for check_array.

    Objects that are not array-like (datasets, loaders, iterators) are a ``TypeError``: ``np.asarray``
    would walk them item by item (a map-style dataset of 100,000 images is read whole, one without an
    ``IndexError`` never ends) or fail deep inside numpy.
    """
    if X is None:
        raise TypeError(f"{name}: expected an image batch ({IMAGE_FORMS}), got None")
    if scipy.sparse.issparse(X):
        raise TypeError(f"{name}: sparse input is not supported; images must be dense ({IMAGE_FORMS})")
    if isinstance(X, (str, bytes, dict)):
        raise TypeError(f"{name}: expected an image batch ({IMAGE_FORMS}), got {type(X).__name__}")
    if isinstance(X, torch.Tensor):
        return _tensor_to_numpy(X, name)
    if isinstance(X, np.ndarray) and X.dtype == object:
        # As nested lists numpy infers the values' own dtype (check_array would make uint8 values
        # floats 0..255), and an object array of images gets the list's one-shape check.
        X = X.tolist()
    if isinstance(X, (list, tuple)):
        if X and all(isinstance(x, torch.Tensor) for x in X):
            _check_one_shape([tuple(x.shape) for x in X], name)
            return _tensor_to_numpy(torch.stack([x.detach().cpu() for x in X]), name)
        with naming_errors(name):
            _check_one_shape([np.shape(x) for x in X], name)
            X = np.asarray(X)
    elif not (isinstance(X, np.ndarray) or hasattr(X, "__array__") or hasattr(X, "__array_interface__")):
        if hasattr(X, "__getitem__") and hasattr(X, "__len__"):
            hint = ("; a map-style dataset is accepted as the outlier-exposure corpus (X_outlier= or "
                    "outlier_exposure=), else stack its images with np.stack")
        else:
            hint = "; stack the images into one array first, e.g. np.stack(list(images))"
        raise TypeError(f"{name}: expected an image batch ({IMAGE_FORMS}) as an array, tensor or list of "
                        f"images, got {type(X).__name__}{hint}")
    if isinstance(getattr(X, "dtype", None), np.dtype) and X.dtype.kind == "c":
        # check_array says so too (in the words scikit-learn's check_complex_data expects), but
        # prints the whole array in its message.
        raise ValueError(f"{name}: Complex data not supported, got dtype {X.dtype}")
    return X


def _tensor_to_numpy(X: torch.Tensor, name: str) -> np.ndarray:
    if X.layout != torch.strided:
        raise TypeError(f"{name}: sparse tensors are not supported; images must be dense (X.to_dense())")
    if X.device.type == "meta":
        raise ValueError(f"{name}: a tensor on the 'meta' device has a shape but no values; pass one with data")
    X = X.detach().cpu()
    if X.dtype in (torch.bfloat16, torch.float16):
        X = X.float()
    try:
        return X.numpy()
    except TypeError as error:  # quantized and other dtypes numpy has no counterpart for
        raise TypeError(f"{name}: a tensor of dtype {X.dtype} is not an image batch: {error}") from None


def _check_one_shape(shapes: list[tuple], name: str) -> None:
    """A list of images is one batch only if every image has one shape (else numpy's "inhomogeneous" error)."""
    for index, shape in enumerate(shapes):
        if shape != shapes[0]:
            raise ValueError(
                f"{name}: a list of images must hold images of one shape, got {shapes[0]} at index 0 and "
                f"{shape} at index {index}; resize or crop them to one size first"
            )


@contextmanager
def naming_errors(name: str):
    """Prefix ValueErrors (e.g. numpy's "could not convert string to float") with the argument's name."""
    try:
        yield
    except ValueError as error:
        if name in str(error):
            raise
        raise ValueError(f"{name}: {error}") from error


def _parse_image_shape(image_shape) -> tuple[int, int, int]:
    """``image_shape`` as given, checked: (C, H, W) of ints, C in {1, 3} or -1, at most one -1."""
    shape = tuple(image_shape)
    if (len(shape) != 3 or any(isinstance(s, bool) or not isinstance(s, Integral) for s in shape)
            or shape[0] not in (1, 3, -1) or shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape)):
        raise ValueError(
            f"image_shape must be (C, H, W) of ints with C in {{1, 3}} and at most one -1, got {image_shape!r}"
        )
    return tuple(int(s) for s in shape)


def resolve_image_shape(n_features: int, image_shape=None, name: str = "X") -> tuple[int, int, int]:
    """The (C, H, W) that a flattened row of ``n_features`` values holds."""
    if image_shape is not None:
        shape = _parse_image_shape(image_shape)
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
    side = math.isqrt(n_features)
    if side * side == n_features and side > 0:
        return (1, side, side)
    side = math.isqrt(n_features // 3)
    if n_features % 3 == 0 and side * side * 3 == n_features and side > 0:
        if side > 1:
            raise ValueError(
                f"{name} has {n_features} = 3*{side}*{side} features per row, which reads two ways: as channel-major "
                f"(3, {side}, {side}) images (CIFAR's raw arrays, X.reshape(len(X), -1) of an NCHW batch) or as "
                f"flattened NHWC ({side}, {side}, 3) images, and the two give different images. Pass "
                f"image_shape=(3, {side}, {side}) for channel-major rows, or X.reshape(-1, {side}, {side}, 3) for NHWC rows"
            )
        return (3, side, side)  # one pixel: both readings are the same image
    raise ValueError(
        f"{name} has {n_features} features per row, which is not a flattened square image "
        f"(3*s*s or s*s); pass image_shape=(C, H, W), e.g. image_shape=(1, 1, -1) to read each "
        f"row as a one-pixel-high strip"
    )


def _matches(image_shape: tuple[int, int, int], shape: tuple[int, ...]) -> bool:
    return all(s == -1 or s == t for s, t in zip(image_shape, shape))


def _is_channels_last(shape: tuple[int, ...], image_shape, name: str) -> bool:
    """Whether a 4-D batch of ``shape`` is NHWC (else NCHW); an error where that is not unambiguous."""
    first, last = shape[1] in (1, 3), shape[3] in (1, 3)
    if first != last:
        return last
    if not first:
        hint = "; drop an alpha channel with X[..., :3]" if shape[3] == 4 else ""
        raise ValueError(f"{name}: expected 1 or 3 channels in (N, H, W, C) or (N, C, H, W), got shape {shape}{hint}")
    nchw, nhwc = tuple(shape[1:]), (shape[3], shape[1], shape[2])
    if nchw == nhwc == (1, 1, 1):
        return False  # one pixel: both readings are the same image
    if image_shape is not None:
        hint = _parse_image_shape(image_shape)
        fits = [_matches(hint, nchw), _matches(hint, nhwc)]
        if fits.count(True) == 1:
            return fits[1]
        if nchw == nhwc:
            raise ValueError(
                f"{name}: shape {shape} is NCHW or NHWC of {nchw} images, and image_shape={image_shape!r} cannot "
                f"tell them apart; flatten an NCHW batch, X.reshape(len(X), -1), whose rows are read channel-major"
            )
        said = f"; image_shape={image_shape!r} matches {'both' if all(fits) else 'neither'}"
    else:
        said = ""
    raise ValueError(
        f"{name}: shape {shape} is ambiguous: as NCHW it holds {nchw[0]}-channel {nchw[1]}x{nchw[2]} images, as "
        f"NHWC {nhwc[0]}-channel {nhwc[1]}x{nhwc[2]} images{said}. Pass image_shape=(C, H, W) to say which: "
        f"image_shape={nchw} for NCHW, image_shape={nhwc} for NHWC"
    )


def _check_grayscale(shape: tuple[int, ...], image_shape, name: str) -> None:
    """A 3-D batch is grayscale; one whose last axis could be channels must be said to be."""
    if shape[2] not in (1, 3) or (image_shape is not None and _matches(_parse_image_shape(image_shape),
                                                                        (1, *shape[1:]))):
        return
    raise ValueError(
        f"{name}: shape {shape} is ambiguous: {shape[0]} grayscale {shape[1]}x{shape[2]} images, or one "
        f"{shape[0]}x{shape[1]} image with {shape[2]} channel(s) and no batch axis. Pass X[None] for one "
        f"image, or image_shape=(1, {shape[1]}, {shape[2]}) for grayscale images"
    )


def intensity_range_problem(images) -> str | None:
    """What is wrong with a float batch as intensities in [0, 1], or None when nothing is.

    The one rule for float intensities, used where images are validated (:func:`as_image_batch`)
    and where they are quantised (:func:`~skad_transfer.data.harmonize.jpeg_roundtrip`): values
    may leave [0, 1] by :data:`INTENSITY_TOLERANCE`. ``images`` is a numpy array or a tensor; integer
    and empty batches are not checked here.

    Returns
    -------
    problem : str or None
        E.g. ``"got floats in [0, 255] (0..255 data? divide by 255, or pass uint8)"``.
    """
    floating = images.is_floating_point() if isinstance(images, torch.Tensor) else np.dtype(images.dtype).kind == "f"
    if not floating or math.prod(images.shape) == 0:
        return None
    low, high = float(images.min()), float(images.max())
    if low >= -INTENSITY_TOLERANCE and high <= 1.0 + INTENSITY_TOLERANCE:
        return None
    hint = " (0..255 data? divide by 255, or pass uint8)" if low >= -INTENSITY_TOLERANCE and 2 < high <= 255.5 else ""
    return f"got floats in [{low:g}, {high:g}]{hint}"


@dataclass(frozen=True)
class ImageBatch:
    """A canonical batch: ``data`` is NCHW with 3 channels, uint8 (0..255) or float32 (0..1);
    contiguous, except a view of a memory-mapped file (see the module docstring).

    ``source_shape`` is the (C, H, W) of one input image before channel replication and resizing.
    """

    data: torch.Tensor
    source_shape: tuple[int, int, int]


def as_image_batch(X, *, name: str = "X", image_shape=None, validated: bool = False,
                   out_of_range: str = "raise", range_hint: str = "") -> ImageBatch:
    """Validate ``X`` and convert it to an :class:`ImageBatch` (CPU tensor, no copy where possible).

    Parameters
    ----------
    X : array-like, list of images or tensor
        Any form in the module docstring.
    name : str, default="X"
        The argument named in errors.
    image_shape : tuple (C, H, W), optional
        How to read flattened rows, and which layout an ambiguous 3-D or 4-D batch has.
    validated : bool, default=False
        ``X`` already went through ``check_array`` (numeric, finite, at least one row).
    out_of_range : {"raise", "warn"}, default="raise"
        What float values outside [0, 1] (beyond :data:`INTENSITY_TOLERANCE`) are: a ``ValueError``,
        or an :class:`IntensityRangeWarning` for callers that feed them to a network as they are.
    range_hint : str, default=""
        Appended to that error's message: what needs intensities, and how to do without.

    Returns
    -------
    batch : ImageBatch

    Raises
    ------
    TypeError
        For input that is not an array, tensor or list of images.
    ValueError
        For empty, non-finite, non-numeric, boolean, complex or ambiguously or wrongly shaped input,
        integers outside 0..255 and (with ``out_of_range="raise"``) floats outside [0, 1]. Every
        message names ``name``.
    """
    if not validated:
        X = _checked_array(X, name)
    X, channels_last = _as_four_axes(np.asarray(X), image_shape, name)
    X = _canonical_dtype(X, name, out_of_range, range_hint)
    return _to_image_batch(X, channels_last)


def _checked_array(X, name: str):
    """``X`` through ``check_array``: numeric, finite, at least one row; one axis only is an error."""
    X = to_numpy(X, name)
    if getattr(X, "ndim", None) == 1:  # before check_array, whose advice, reshape(-1, 1), is wrong for images
        raise ValueError(
            f"{name}: expected a batch of images, {IMAGE_FORMS}; got one axis, shape {tuple(X.shape)}. "
            f"Reshape your data: one flattened image is X[None] (with image_shape=(C, H, W) when it is "
            f"not square)"
        )
    with naming_errors(name):
        return check_array(
            X, accept_sparse=False, dtype="numeric", ensure_all_finite=True,
            allow_nd=True, ensure_min_samples=1, input_name=name,
        )


def _as_four_axes(X: np.ndarray, image_shape, name: str) -> tuple[np.ndarray, bool]:
    """A 2-, 3- or 4-D batch as 4-D, and whether that is NHWC (else NCHW); errors for other shapes."""
    if X.ndim in (3, 4) and min(X.shape[1:]) == 0:
        raise ValueError(f"{name}: images must not be empty, got shape {X.shape}")
    if X.ndim == 2:
        shape = resolve_image_shape(X.shape[1], image_shape, name)
        return X.reshape((X.shape[0], *shape)), False
    if X.ndim == 3:
        _check_grayscale(X.shape, image_shape, name)
        return X[:, None], False
    if X.ndim == 4:
        return X, _is_channels_last(X.shape, image_shape, name)
    raise ValueError(f"{name}: expected {IMAGE_FORMS}; got an array of shape {X.shape}")


def _canonical_dtype(X: np.ndarray, name: str, out_of_range: str, range_hint: str) -> np.ndarray:
    """Integer images as uint8 (values 0..255), float images as float32 with their range checked."""
    if X.dtype.kind == "b":
        raise ValueError(
            f"{name}: boolean images are ambiguous (is True intensity 1 or white?); convert them, e.g. "
            f"X.astype(np.uint8) * 255 for black and white"
        )
    if X.dtype.kind in "iu":
        if X.dtype != np.uint8 and X.size:
            low, high = X.min(), X.max()
            if low < 0 or high > 255:
                raise ValueError(f"{name}: integer images must hold values in 0..255, got range [{low}, {high}]")
        return X.astype(np.uint8, copy=False)
    if X.dtype.kind == "f":
        X = X.astype(np.float32, copy=False)
        problem = intensity_range_problem(X)
        if problem is not None:
            message = f"{name}: float images must hold intensities in [0, 1] (integers: 0..255); {problem}"
            if out_of_range == "raise":
                raise ValueError(message + range_hint)
            # stacklevel=4 passes over this helper, as_image_batch and its caller (validate_images, say),
            # so the warning names the line that asked for the images to be checked.
            warnings.warn(f"{message}. They are fed to the network as they are", IntensityRangeWarning,
                          stacklevel=4)
        return X
    raise TypeError(f"{name}: expected a numeric image array, got dtype {X.dtype}")


def _to_image_batch(X: np.ndarray, channels_last: bool) -> ImageBatch:
    """The :class:`ImageBatch` of a 4-D uint8 or float32 batch: NCHW, 3 channels, no copy of a memory map."""
    memory_mapped = is_memory_mapped(X)
    if memory_mapped:
        # A view of the file, read batch by batch where it is used. Nothing in the package writes
        # into its inputs, so sharing a read-only map is as safe as sharing a writeable array.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            tensor = torch.from_numpy(X)
    else:
        tensor = torch.from_numpy(np.ascontiguousarray(X)) if X.flags.writeable else torch.from_numpy(X.copy())
    if channels_last:
        tensor = tensor.permute(0, 3, 1, 2)
    source_shape = tuple(tensor.shape[1:])
    if tensor.shape[1] == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    return ImageBatch(tensor if memory_mapped else tensor.contiguous(), source_shape)


def is_memory_mapped(array) -> bool:
    """Whether ``array`` (or an array it is a view of) lives in a memory-mapped file."""
    while array is not None:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = getattr(array, "base", None)
    return False


def take_rows(array, rows) -> np.ndarray:
    """``array[rows]`` as a numpy array, in the order of ``rows``, read in sorted order.

    On a memory map sorted reads are a forward scan of the file instead of random seeks; the rows
    are put back in the requested order afterwards. ``array`` may be a numpy array (memory maps
    included) or a tensor, whose rows come back as numpy.
    """
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    wanted = rows[order]
    block = array[torch.as_tensor(wanted)] if isinstance(array, torch.Tensor) else array[wanted]
    block = block.numpy() if isinstance(block, torch.Tensor) else np.asarray(block)
    out = np.empty_like(block)
    out[order] = block
    return out


def resize_images(images: torch.Tensor, size: int | tuple[int, int], chunk: int = 2048) -> torch.Tensor:
    """Resize an NCHW batch to ``size`` x ``size`` (or ``(height, width)``; bilinear, antialiased),
    keeping its dtype."""
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(images.shape[-2:]) == (height, width):
        return images
    out = torch.empty((images.shape[0], images.shape[1], height, width), dtype=images.dtype, device=images.device)
    for start in range(0, images.shape[0], chunk):
        part = images[start:start + chunk].float()
        part = F.interpolate(part, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        if images.dtype == torch.uint8:
            part = part.round_().clamp_(0, 255)
        out[start:start + chunk] = part.to(images.dtype)
    return out


def validate_images(estimator, X, *, reset: bool) -> torch.Tensor:
    """The canonical image batch of ``X`` for an estimator with an ``image_shape`` parameter.

    Shared by the detectors and :class:`~skad_transfer.features.LayerFeatures`, so that every
    estimator of the package accepts the same inputs with the same errors. With ``reset=True`` (in
    ``fit``) it records ``n_features_in_``, ``image_shape_`` and, for DataFrames, ``feature_names_in_``
    on ``estimator``; afterwards flattened input is checked against them.

    The ``image_shape`` parameter (when it is None after fit, the fitted ``image_shape_``) also says
    which layout a batch has that reads both as NCHW and as NHWC. Float values outside [0, 1] are an
    error when the images will make a JPEG round trip (``jpeg_quality``; ``jpeg_quality_`` after fit),
    which needs intensities; without one the network gets them as they are, with an
    :class:`~skad_transfer.data.images.IntensityRangeWarning`, since scikit-learn's checks (and
    tabular uses, ``image_shape=(1, 1, -1)``) pass features of any range.
    """
    X = to_numpy(X, "X")
    jpeg_quality = getattr(estimator, "jpeg_quality" if reset else "jpeg_quality_", None)
    out_of_range = "warn" if jpeg_quality is None else "raise"
    range_hint = (f". The JPEG round trip (jpeg_quality={jpeg_quality}) needs intensities; a detector fitted "
                  f"with jpeg_quality=None takes other values as they are")
    if hasattr(X, "columns") or np.asarray(X).ndim == 2:
        with naming_errors("X"):
            X = validate_data(estimator, X, reset=reset, dtype="numeric", ensure_all_finite=True,
                              ensure_min_samples=1)
        shape = estimator.image_shape
        if shape is None and not reset and getattr(estimator, "image_shape_", (3,))[0] == 1:
            # Grayscale rows read one way only; colour rows fitted from a 4-D batch do not (NCHW or
            # NHWC flattened), so for them only the image_shape parameter says which.
            shape = estimator.image_shape_
        if reset:
            estimator.image_shape_ = resolve_image_shape(X.shape[1], estimator.image_shape, "X")
        batch = as_image_batch(X, name="X", image_shape=shape, validated=True, out_of_range=out_of_range,
                               range_hint=range_hint)
    else:
        layout = estimator.image_shape
        if layout is None and not reset:
            layout = getattr(estimator, "image_shape_", None)
        batch = as_image_batch(X, name="X", image_shape=layout, out_of_range=out_of_range, range_hint=range_hint)
        if reset:
            estimator.n_features_in_ = int(np.prod(batch.source_shape))
            estimator.image_shape_ = batch.source_shape
            if hasattr(estimator, "feature_names_in_"):
                del estimator.feature_names_in_
    if not reset:
        _check_fitted_image_shape(estimator, batch.source_shape)
    return batch.data


def _check_fitted_image_shape(estimator, shape: tuple[int, int, int]) -> None:
    """Images scored after fit have the fitted images' channels and size, as scikit-learn requires
    the fitted number of features: a detector of 32x32 colour images has learnt nothing about 28x28
    grayscale ones, whatever the resize to the network's input would make of them."""
    fitted = getattr(estimator, "image_shape_", None)
    if fitted is None or tuple(shape) == tuple(fitted):
        return
    (c, h, w), (fc, fh, fw) = shape, fitted
    raise ValueError(
        f"X holds {c}-channel {h}x{w} images (image_shape {tuple(shape)}), but {type(estimator).__name__} was "
        f"fitted on {fc}-channel {fh}x{fw} images (image_shape_={tuple(fitted)}). Bring them to the fitted "
        f"size and channels (e.g. torch.nn.functional.interpolate; colour from grayscale by repeating the "
        f"channel), or fit on images like these"
    )
