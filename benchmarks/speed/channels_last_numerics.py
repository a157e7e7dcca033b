"""What channels_last costs in float32 accuracy on the CPU, against a float64 reference.

    python benchmarks/speed/channels_last_numerics.py

Two tables, NCHW beside channels_last (the engine's layout on every device since issue 13):

1. Training-mode BatchNorm of a (16, 16, 32, 32) batch whose channels have mean ``shift`` and
   standard deviation 1: the largest absolute error of the normalised output. PyTorch's CPU
   channels_last kernel gathers the batch statistics in another order than the NCHW kernel.
2. One forward + backward pass of a randomly initialised ResNet26 (batch 16, BCE on one logit):
   the relative error of all parameter gradients together (median and largest over 8 seeds). A ReLU after a BatchNorm turns an
   output error near zero into a flipped gate, so narrow networks show larger gradient errors than
   the BatchNorm error alone.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import print_provenance  # noqa: E402

from skad_transfer.nn import resnet26  # noqa: E402

CHANNELS_LAST = torch.channels_last
SEEDS = 8


def batchnorm_error(shift: float, channels_last: bool) -> float:
    x = torch.randn(16, 16, 32, 32, generator=torch.Generator().manual_seed(0)) + shift
    reference = F.batch_norm(x.double(), None, None, training=True)
    if channels_last:
        x = x.contiguous(memory_format=CHANNELS_LAST)
    return (F.batch_norm(x, None, None, training=True).double() - reference).abs().max().item()


def gradient_error(width: int, seed: int, channels_last: bool) -> float:
    torch.manual_seed(seed)
    network = resnet26(width=width)
    x = torch.randn(16, 3, 32, 32)
    y = (torch.arange(16) % 2).float()

    def gradients(net, images):
        loss = F.binary_cross_entropy_with_logits(net(images).squeeze(1), y.to(images.dtype))
        loss.backward()
        return torch.cat([p.grad.flatten().double() for p in net.parameters()])

    reference = gradients(copy.deepcopy(network).double(), x.double())
    net = copy.deepcopy(network)
    if channels_last:
        net, x = net.to(memory_format=CHANNELS_LAST), x.contiguous(memory_format=CHANNELS_LAST)
    return ((gradients(net, x) - reference).norm() / reference.norm()).item()


def main() -> None:
    print_provenance("cpu", "float32")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32 against float64")
    print("\n| BatchNorm input mean/std | NCHW max error | channels_last max error |\n|---:|---:|---:|")
    for shift in (0.0, 1.0, 10.0, 100.0):
        print(f"| {shift:g} | {batchnorm_error(shift, False):.1e} | {batchnorm_error(shift, True):.1e} |")
    print(f"\n| ResNet26 width | NCHW gradient error: median / max over seeds 0-{SEEDS - 1} | "
          "channels_last: median / max |\n|---:|---:|---:|")
    for width in (4, 16):
        cells = []
        for channels_last in (False, True):
            errors = torch.tensor([gradient_error(width, seed, channels_last) for seed in range(SEEDS)])
            cells.append(f"{errors.median().item():.1e} / {errors.max().item():.1e}")
        print(f"| {width} | {cells[0]} | {cells[1]} |")

if __name__ == "__main__":
    main()
