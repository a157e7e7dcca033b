"""Low-level harmonisation: one JPEG round trip for every image a detector's network sees.

A classifier of normal images against an outlier-exposure (OE) corpus learns whatever separates
the two most easily. When the corpus was made by another pipeline than the normal data (another
compression quality, another resampling), that is the pipeline's signature, not the images'
meaning: the network then scores every image that went through the normal data's pipeline as
normal, the anomalies included (the CIFAR-10 copy here is JPEG quality 75, the Tiny-ImageNet-32
corpus JPEG quality 90; what that costs: ``docs/design.md``, "Training defaults").

:func:`jpeg_roundtrip` is applied to the normal training images, to the OE images and to every
image scored afterwards, so all of them carry the same, freshly made compression signature and
the one they came with is mostly overwritten. Re-encoding an image that is already JPEG at the same
quality changes it little; an uncompressed image loses some fine detail, the same for every image.

:func:`like_source` does the same for resolution and colour: the OE images are first brought to the
normal images' own size (when those are smaller) and channel count, before both take the same path
(JPEG round trip, resize to the network's input size). On a development stand-in for a small
grayscale dataset (CIFAR-10 training images at 8x8 in luma) it lifted ADIB from 0.62 to 0.81 mean
AUC over three classes, where kNN on the frozen features scored 0.69 (``docs/design.md``). For
CIFAR-10 with Tiny-ImageNet-32 (both 32x32 RGB) it changes nothing.
:func:`match_luminance` goes one step further when the normal images' intensity statistics alone
give them away (white strokes on an exactly black background, a few grey levels, against
photographs): each OE image takes the luminance histogram of a normal training image, keeping its
content and colour. Whether that is the case is measured (:func:`intensity_separability`), since on
natural photographs brightness carries meaning and matching it away costs (``docs/design.md``).
"""

from __future__ import annotations

import io
from numbers import Integral

import numpy as np
import torch

from .images import intensity_range_problem, resize_images

#: ITU-R BT.601 luma weights (PIL's "L" conversion), for making colour OE images grayscale.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def check_jpeg_quality(quality, name: str = "jpeg_quality") -> int | None:
    """``None`` or an int in 1..100, else a ValueError/TypeError naming ``name``."""
    if quality is None:
        return None
    if isinstance(quality, bool) or not isinstance(quality, Integral):
        raise TypeError(f"{name} must be None or an int in 1..100, got {type(quality).__name__} {quality!r}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"{name} must be None or an int in 1..100, got {quality!r}")
    return int(quality)


def jpeg_roundtrip(images: torch.Tensor, quality: int | None, *, name: str = "jpeg_quality") -> torch.Tensor:
    """Encode every image of an NCHW batch as JPEG at ``quality`` and decode it again.

    Parameters
    ----------
    images : torch.Tensor of shape (N, C, H, W), C in {1, 3}
        uint8 0..255, or float 0..1 (quantised to uint8 first; values outside [0, 1] beyond
        :data:`~skad_transfer.data.images.INTENSITY_TOLERANCE` are an error, since clipping them
        would change the images silently).
    quality : int in 1..100 or None
        ``None`` returns ``images`` unchanged.
    name : str
        The parameter named in errors.

    Returns
    -------
    images : torch.Tensor, uint8, same shape and device
        Deterministic: the same image always comes back the same (libjpeg-turbo through Pillow on
        the CPU, one image at a time, whatever the batch; baseline JPEG, 4:2:0 chroma subsampling,
        the standard quantisation tables scaled to ``quality``).
    """
    quality = check_jpeg_quality(quality, name)
    if quality is None or images.shape[0] == 0:
        return images
    device = images.device
    batch = images.detach().cpu()
    if batch.dtype != torch.uint8:
        if batch.is_floating_point():
            problem = intensity_range_problem(batch)  # the rule every float image is validated by
            if problem is not None:
                raise ValueError(
                    f"{name}={quality} re-encodes images as JPEG, which needs uint8 0..255 or float 0..1 "
                    f"intensities; {problem}. Scale them to 0..1, or set {name}=None"
                )
            # The clamp only takes in the rounding tolerance the rule allows (it maps onto 0 or 255).
            batch = (batch * 255.0).round_().clamp_(0, 255).to(torch.uint8)
        else:
            batch = batch.clamp(0, 255).to(torch.uint8)
    pixels = batch.permute(0, 2, 3, 1).numpy()  # NHWC, as Pillow takes images
    decoded = np.stack([_jpeg_roundtrip_one(image, quality) for image in pixels])
    return torch.from_numpy(decoded).permute(0, 3, 1, 2).contiguous().to(device)


def jpeg_roundtrip_nhwc(images: np.ndarray, quality: int) -> np.ndarray:
    """:func:`jpeg_roundtrip` for a uint8 numpy batch in NHWC layout (what an exported ONNX model
    takes; :func:`skad_transfer.export.onnx_inputs` checks such a batch first): the same pixels,
    without torch."""
    quality = check_jpeg_quality(quality, "quality")
    if (not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4
            or images.shape[-1] not in (1, 3)):
        raise ValueError(f"images: expected a uint8 numpy array of shape (N, H, W, C) with C in {{1, 3}}, got "
                         f"{type(images).__name__} {getattr(images, 'dtype', '')} {getattr(images, 'shape', '')}")
    if quality is None or len(images) == 0:
        return np.ascontiguousarray(images)
    return np.stack([_jpeg_roundtrip_one(image, quality) for image in images])


def _jpeg_roundtrip_one(image: np.ndarray, quality: int) -> np.ndarray:
    """One (H, W, C) uint8 image, C in {1, 3}, through a JPEG file in memory and back.

    Pillow, which torchvision already depends on, rather than torchvision's ``encode_jpeg`` /
    ``decode_jpeg`` (deprecated since torchvision 0.29): both wrap libjpeg-turbo with the same
    settings, and the round trips are bitwise equal (``docs/design.md``, "The codec"), so every stored
    result and pinned score stands. TorchCodec, torchvision's suggested successor, makes the same
    pixels but pins torch versions without declaring them; simplejpeg decodes differently.
    """
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="JPEG", quality=quality)
    with Image.open(buffer) as decoded:
        pixels = np.asarray(decoded)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def luminance(images: torch.Tensor) -> torch.Tensor:
    """The (N, 1, H, W) float luma (:data:`LUMA_WEIGHTS`) of an (N, 3, H, W) batch, on its own scale."""
    weights = torch.tensor(LUMA_WEIGHTS, device=images.device).view(1, 3, 1, 1)
    return (images.float() * weights).sum(1, keepdim=True)


def like_source(images: torch.Tensor, source_shape: tuple[int, int, int] | None) -> torch.Tensor:
    """Bring an NCHW batch (3 channels) to the resolution and channel count of ``source_shape``.

    Parameters
    ----------
    images : torch.Tensor of shape (N, 3, H, W)
        uint8 0..255 or float 0..1 (OE images as :class:`~skad_transfer.data.images.ImageBatch`
        holds them).
    source_shape : (C, H', W') or None
        The normal images' own shape (``image_shape_`` of a fitted detector). Images larger than
        it in a dimension are resized down to it (bilinear, antialiased; never up, which would
        only blur); with ``C == 1`` they are converted to luma (:data:`LUMA_WEIGHTS`), replicated
        to 3 channels as grayscale inputs are. ``None`` returns ``images`` unchanged.

    Returns
    -------
    images : torch.Tensor of shape (N, 3, min(H, H'), min(W, W')), same dtype and device
    """
    if source_shape is None or images.shape[0] == 0:
        return images
    channels, height, width = (int(v) for v in source_shape)
    size = (min(images.shape[-2], height), min(images.shape[-1], width))
    out = resize_images(images, size)
    if channels == 1:
        luma = luminance(out)
        if out.dtype == torch.uint8:
            luma = luma.round_().clamp_(0, 255)
        out = luma.to(out.dtype).expand(-1, 3, -1, -1).contiguous()
    return out


#: Multiplier of the fixed OE-item -> reference pairing in :func:`reference_indices` (Knuth's
#: multiplicative-hash constant): no table, so it scales to any corpus size and any batch order.
_PAIRING_MULTIPLIER = 2654435761


def reference_indices(indices: torch.Tensor, n_references: int, seed: int = 0) -> torch.Tensor:
    """The reference image (an index into ``n_references``) that each OE item is paired with.

    A fixed function of ``(item index, seed)``, so an item meets the same reference however the
    corpus is read (whole, in chunks or per batch) and a resumed fit pairs as the first did.
    """
    if n_references < 1:
        raise ValueError(f"n_references must be >= 1, got {n_references}")
    offset = int(seed) % n_references
    return (indices.to(torch.int64) * _PAIRING_MULTIPLIER + offset) % n_references


def match_histograms(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Give every image, channel by channel, the intensity histogram of its reference image.

    Each pixel keeps its rank within its image and channel and takes the reference's value at the
    same quantile (the classical monotone histogram matching, as ``skimage.exposure.
    match_histograms``; a run of equal values takes the quantile at the run's middle): pixels of
    equal value stay equal, so flat regions stay flat. The images keep their content (edges,
    shapes, layout) while their intensity statistics (brightness, contrast, background level,
    grey levels) become those of the references. The detectors use it through
    :func:`match_luminance`, on the luma only.

    Parameters
    ----------
    images : torch.Tensor of shape (N, C, H, W)
        uint8 0..255 or float 0..1.
    references : torch.Tensor of shape (N, C, H', W')
        One reference per image (uint8 0..255 or float 0..1); the size may differ from the images'.

    Returns
    -------
    images : torch.Tensor, same shape, dtype and device as ``images``
    """
    if images.ndim != 4 or references.ndim != 4 or images.shape[:2] != references.shape[:2]:
        raise ValueError(
            f"match_histograms needs (N, C, H, W) images and one (C, H', W') reference per image, got "
            f"images of shape {tuple(images.shape)} and references of shape {tuple(references.shape)}"
        )
    if images.shape[0] == 0:
        return images
    # Not skimage.exposure.match_histograms: scikit-image is not a dependency, and it matches one
    # image to one reference in numpy on the CPU, where this matches a whole batch of OE images,
    # each to its own reference, in one sort on the device the batch is on (the GPU in training),
    # and puts a run of equal values at the run's middle quantile (skimage puts it at the run's end,
    # its cumulative count, so a flat image takes the reference's maximum).
    n, c = images.shape[:2]
    values = images.reshape(n, c, -1).float()
    target = references.to(images.device).reshape(n, c, -1).float()
    if images.dtype == torch.uint8 and references.dtype != torch.uint8:
        target = target * 255.0
    elif images.dtype != torch.uint8 and references.dtype == torch.uint8:
        target = target / 255.0
    target = target.sort(dim=-1).values
    pixels, reference_pixels = values.shape[-1], target.shape[-1]
    # A value's quantile is the middle of its run in the sorted image (a flat image takes the
    # reference's median, not its maximum); the reference's value at that quantile replaces it.
    ordered = values.sort(dim=-1).values.contiguous()
    below = torch.searchsorted(ordered, values.contiguous(), right=False)
    at_most = torch.searchsorted(ordered, values.contiguous(), right=True)
    position = ((below + at_most) * reference_pixels) // (2 * pixels)
    matched = target.gather(-1, position.clamp_(0, reference_pixels - 1))
    if images.dtype == torch.uint8:
        matched = matched.round_().clamp_(0, 255)
    return matched.to(images.dtype).reshape(images.shape)


def match_luminance(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Give every RGB image the luminance histogram of its reference image, keeping its colour.

    The luma of each image (:func:`luminance`) is matched to its reference's luma
    (:func:`match_histograms`) and each channel moves by the same amount as the luma, so hue and
    saturation (what often carries meaning in colour images: red against blue) stay, while
    brightness, contrast, background level and grey levels become the reference's. For grayscale
    images (three equal channels) this is :func:`match_histograms` exactly. This is what
    ``match_histograms=True`` does to OE images, with normal training images as references.

    Parameters
    ----------
    images : torch.Tensor of shape (N, 3, H, W)
        uint8 0..255 or float 0..1.
    references : torch.Tensor of shape (N, 3, H', W')
        One reference per image (uint8 0..255 or float 0..1).

    Returns
    -------
    images : torch.Tensor, same shape, dtype and device as ``images``, clipped to the intensity range
    """
    if images.ndim != 4 or references.ndim != 4 or images.shape[:2] != references.shape[:2] or images.shape[1] != 3:
        raise ValueError(
            f"match_luminance needs (N, 3, H, W) images and one (3, H', W') reference per image, got images "
            f"of shape {tuple(images.shape)} and references of shape {tuple(references.shape)}"
        )
    if images.shape[0] == 0:
        return images
    luma = luminance(images)
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    reference_scale = 255.0 if references.dtype == torch.uint8 else 1.0
    target = luminance(references.to(images.device)) * (scale / reference_scale)
    shift = match_histograms(luma, target) - luma
    out = images.float() + shift
    if images.dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out.clamp_(0.0, 1.0).to(images.dtype)


#: ``match_histograms="auto"`` matches when luminance statistics alone tell normal from OE images
#: at least this well (cross-validated AUC, :func:`intensity_separability`). Set from the
#: development protocols (``docs/design.md``, ``benchmarks/studies/intensity_separability.py``): CIFAR-10
#: classes against Tiny-ImageNet scored 0.59-0.79 in colour and 0.57-0.73 as 8x8 luma (where
#: forcing the matching on cost 4-8 AUC points: brightness carries meaning there, sky, sea), the demo's
#: synthetic renders 0.94, rendered 8x8 characters 1.00 (where matching gained 13 points).
INTENSITY_SEPARABILITY_THRESHOLD = 0.95


def intensity_quantiles(images: torch.Tensor, n_quantiles: int = 9) -> torch.Tensor:
    """Per image, ``n_quantiles`` evenly spaced intensity quantiles per channel, (N, C * n_quantiles),
    on a 0..1 scale: what an image's histogram says, without where anything is."""
    values = images.reshape(images.shape[0], images.shape[1], -1).float()
    if images.dtype == torch.uint8:
        values = values / 255.0
    ordered = values.sort(dim=-1).values
    positions = torch.linspace(0, ordered.shape[-1] - 1, n_quantiles, device=ordered.device).round().long()
    return ordered[..., positions].reshape(images.shape[0], -1)


def intensity_separability(normal: torch.Tensor, outliers: torch.Tensor, random_state: int = 0) -> float:
    """How well intensity statistics alone separate ``normal`` from ``outliers`` images.

    The 3-fold cross-validated ROC AUC of a logistic regression on :func:`intensity_quantiles` of
    the images' luminance (normal as the positive class; stratified folds, seeded by
    ``random_state``): brightness, contrast and grey levels, not colour, as :func:`match_luminance`
    matches. Near 1 means a normal-vs-OE classifier has a shortcut that ignores the images' content
    (a black background, a fixed set of grey levels); natural photographs against natural
    photographs score far lower. ``nan`` when either set has fewer than 2 images (nothing to
    cross-validate).

    Parameters
    ----------
    normal, outliers : torch.Tensor of shape (N, C, H, W), C in {1, 3}
        uint8 0..255 or float 0..1; the sizes may differ. Pass the OE images as the network would
        see them (after :func:`like_source`), at most a few thousand of each.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_normal, n_outliers = int(normal.shape[0]), int(outliers.shape[0])
    if min(n_normal, n_outliers) < 2:
        return float("nan")
    features = torch.cat([intensity_quantiles(_luma_of(normal)), intensity_quantiles(_luma_of(outliers))])
    features = features.cpu().double().numpy()
    labels = [1] * n_normal + [0] * n_outliers
    folds = StratifiedKFold(min(3, n_normal, n_outliers), shuffle=True, random_state=random_state)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(cross_val_score(model, features, labels, cv=folds, scoring="roc_auc").mean())


def sampled_intensity_separability(normal: torch.Tensor, corpus, outlier_shape: tuple[int, int, int] | None,
                                   seed: int, sample_size: int = 2000) -> float:
    """:func:`intensity_separability` of up to ``sample_size`` normal images against as many OE images.

    What ``match_histograms="auto"`` measures in ``fit``: normal images drawn without replacement,
    OE items drawn with replacement (so a corpus of any size costs the same) and brought to
    ``outlier_shape`` first (:func:`like_source`), all from ``numpy.random.default_rng(seed)``.

    Parameters
    ----------
    normal : torch.Tensor of shape (N, C, H, W)
    corpus : OutlierCorpus
        Or anything with ``len`` and ``take(indices)`` returning an NCHW tensor.
    outlier_shape : (C, H, W) or None
    seed : int
    sample_size : int, default=2000
    """
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(normal.shape[0], min(normal.shape[0], sample_size), replace=False))
    drawn = np.sort(rng.integers(0, len(corpus), min(len(corpus), sample_size)))
    outliers = like_source(corpus.take(drawn), outlier_shape)
    return intensity_separability(normal[torch.from_numpy(chosen)], outliers, random_state=seed % (2**32))


def _luma_of(images: torch.Tensor) -> torch.Tensor:
    """Luma on the 0..1 scale for 3-channel images; 1-channel images as they are."""
    if images.shape[1] == 1:
        return images
    return luminance(images) / (255.0 if images.dtype == torch.uint8 else 1.0)
