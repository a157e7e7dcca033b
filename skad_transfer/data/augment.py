"""Augmentation and normalisation on whole batches, on the training device.

The reference pipeline applies ``RandomCrop(32, padding=4)`` and ``RandomHorizontalFlip`` per image
in PIL; here both are one gather on the whole batch tensor, so they run on the GPU next to the
network and cost nothing on the CPU compared with the forward pass. Zero padding happens in pixel
space, before normalisation, as in the reference (PIL pads with black).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, padding: int = 4, *, flip: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Random ``padding``-pixel-padded crop back to the input size plus a random horizontal flip.

    ``images`` is NCHW of any dtype; the result has the same shape, dtype and device. Random draws
    come from ``generator`` (which must live on ``images.device``), so runs are reproducible.
    """
    n, _, height, width = images.shape
    device = images.device
    flips = torch.rand(n, device=device, generator=generator) < 0.5
    if not flip:
        flips = torch.zeros_like(flips)
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        top = torch.randint(0, 2 * padding + 1, (n, 1), device=device, generator=generator)
        left = torch.randint(0, 2 * padding + 1, (n, 1), device=device, generator=generator)
        rows = top + torch.arange(height, device=device)
        cols = left + torch.arange(width, device=device)
        # Flipping is folded into the same gather by reading the columns right to left.
        cols = torch.where(flips[:, None], cols.flip(1), cols)
        batch = torch.arange(n, device=device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2).contiguous()
    return torch.where(flips[:, None, None, None], images.flip(3), images)


def normalize(images: torch.Tensor, mean, std, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 0..255 or float 0..1 -> ``(x - mean) / std`` per channel, as ``dtype``.

    ``mean`` and ``std`` are sequences or tensors; tensors already on ``images.device`` (as the
    engine passes them) are used as they are, without a host-to-device copy per call."""
    x = images.to(dtype)
    if images.dtype == torch.uint8:
        x = x / 255.0
    mean_t = torch.as_tensor(mean, dtype=dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=dtype, device=images.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t
