"""Batched inference: skad_transfer.inference."""

import torch

from skad_transfer.inference import apply_batched
from skad_transfer.nn import resnet26

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_apply_batched_is_invariant_to_batch_composition():
    net = resnet26(width=4).eval()
    images = torch.randint(0, 256, (70, 3, 32, 32), dtype=torch.uint8)
    kwargs = dict(device=torch.device("cpu"), mean=MEAN, std=STD, input_size=32)
    full = apply_batched(net, images, **kwargs)
    parts = torch.cat([apply_batched(net, images[i:i + 9], **kwargs) for i in range(0, 70, 9)])
    assert torch.equal(full, parts)
