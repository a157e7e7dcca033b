"""Inference: a function of the network applied to images in fixed-size batches, results on the CPU.

Scoring (``score_samples``), feature extraction (:class:`~skad_transfer.LayerFeatures`), the
fitted score's statistics and validation all go through :func:`apply_batched`, so that an image is
prepared exactly as in training (the JPEG round trip, resizing, normalisation) and its result does
not depend on the images it came with.
"""

from __future__ import annotations

from typing import Callable

import torch

from .data.augment import normalize
from .data.harmonize import jpeg_roundtrip
from .data.images import resize_images
from .device import Precision, on_device

__all__ = ["apply_batched", "SCORING_PRECISION"]

SCORING_PRECISION = "float32"
"""Scores are computed in float32 whatever ``precision`` trained the network: a bf16 logit has 8 bits
of mantissa, which ties natural images' scores in every ranking metric and threshold
(``docs/design.md``, "The score"); the ONNX export, float32 too, then reproduces the scores."""


@torch.no_grad()
def apply_batched(function: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, *, device: torch.device,
                  mean, std, input_size: int, batch_size: int | None = None,
                  precision: str = "auto", jpeg_quality: int | None = None,
                  progress: str | None = None) -> torch.Tensor:
    """``function`` on normalised, resized batches of ``images`` on ``device``; results on the CPU (float32).

    Every batch is padded to the same size, so the kernels (whose blocking depends on the batch
    size) compute each image identically however many images come with it: a sample's output is
    bitwise the same scored alone, in a subset or in another order. With ``jpeg_quality`` every
    image first makes the JPEG round trip of :func:`~skad_transfer.data.harmonize.jpeg_roundtrip`,
    as the training images did. ``images`` may be a view of a memory-mapped file: only one batch of
    it is read into memory at a time. With ``progress`` (its label), a progress bar appears once the work
    has lasted 5 seconds.
    """
    from tqdm.auto import tqdm

    precision = Precision.resolve(device, precision)
    mean, std = on_device(mean, device), on_device(std, device)
    if batch_size is None:
        batch_size = 256 if device.type == "cuda" else 64
    # One output tensor, filled batch by batch: a list of per-batch results would leave small
    # long-lived blocks all over the heap between the large transient ones, and the process grows
    # with the number of batches (measured: +420 MB over 10**6 memory-mapped images).
    result = None
    starts = range(0, images.shape[0], batch_size)
    for start in tqdm(starts, desc=progress, unit="batch", disable=progress is None, delay=5.0, leave=False,
                      dynamic_ncols=True):
        # contiguous(): a memory-mapped batch (a strided view of the file) is read here, one batch at a time.
        batch = jpeg_roundtrip(images[start:start + batch_size].contiguous(), jpeg_quality)
        n = batch.shape[0]
        if n < batch_size:
            batch = torch.cat([batch, batch.new_zeros((batch_size - n, *batch.shape[1:]))])
        batch = resize_images(batch.to(device, non_blocking=True), input_size)
        with precision.autocast(device):
            out = function(precision.prepare(normalize(batch, mean, std)))
        if result is None:
            result = torch.empty((images.shape[0], *out.shape[1:]), dtype=torch.float32)
        result[start:start + n] = out[:n]
    return result if result is not None else torch.empty((0,))
