"""Low-level harmonisation: one JPEG round trip for every image a detector's network sees.

A classifier of normal images against an outlier-exposure (OE) corpus learns whatever separates
the two most easily. When the corpus was made by another pipeline than the normal data (another
compression quality, another resampling), that is the pipeline's signature, not the images'
meaning: the network then scores every image that went through the normal data's pipeline as
normal, the anomalies included. Measured on the development protocol (``docs/design.md``): the
normal set is CIFAR-10 stored as JPEG quality 75, the OE corpus Tiny-ImageNet-32 stored as JPEG
quality 90, and an ADIB fit spends its capacity on that difference (dev AUC 0.74 on five classes);
after re-encoding the corpus at quality 75 the same fit reaches 0.93.

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
"""

from __future__ import annotations

from numbers import Integral

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
        Deterministic: the same image always comes back the same (libjpeg-turbo on the CPU, one
        image at a time, whatever the batch).
    """
    quality = check_jpeg_quality(quality, name)
    if quality is None or images.shape[0] == 0:
        return images
    from torchvision.io import decode_jpeg, encode_jpeg  # batched (list) calls: torchvision >= 0.19

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
    decoded = decode_jpeg(encode_jpeg(list(batch.contiguous()), quality=quality))
    return torch.stack(decoded).to(device)


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
        weights = torch.tensor(LUMA_WEIGHTS, device=out.device).view(1, 3, 1, 1)
        luma = (out.float() * weights).sum(1, keepdim=True)
        if out.dtype == torch.uint8:
            luma = luma.round_().clamp_(0, 255)
        out = luma.to(out.dtype).expand(-1, 3, -1, -1).contiguous()
    return out
