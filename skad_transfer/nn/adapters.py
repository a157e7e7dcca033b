"""Parallel 1x1 residual adapters (ADRA) and the freeze that goes with them.

ADRA constrains each layer to at most a linear change from the pretrained mapping:
``y = conv3x3_theta0(x) + V x`` with ``V`` a 1x1 convolution of the same stride, summed before the
BatchNorm (Rebuffi et al. 2018; paper eq. 3). Only the 3x3 convolutions stay frozen at theta0; the
adapters, every BatchNorm (affine parameters and running statistics) and the head train. The module
names are the reference code's (``pre_ra``, ``layerN.i.ra1``, ``layerN.i.ra2``).
"""

from __future__ import annotations

from torch import nn

from .resnet import BasicBlock, ResNet26


def _adapter_for(conv: nn.Conv2d) -> nn.Conv2d:
    # skip_init: Conv2d's own random initialisation would draw from (and advance) torch's global
    # generator, which concurrent fits in other threads may be using.
    adapter = nn.utils.skip_init(nn.Conv2d, conv.in_channels, conv.out_channels, 1, stride=conv.stride, bias=False,
                                 device=conv.weight.device, dtype=conv.weight.dtype)
    # Zero start: the adapted network computes exactly theta0's function before the first step,
    # and the gradient of a 1x1 conv does not depend on its own weights, so it still learns.
    nn.init.zeros_(adapter.weight)
    return adapter


def add_residual_adapters(network: ResNet26) -> ResNet26:
    """Attach a zero-initialised parallel 1x1 adapter beside every 3x3 conv, in place.

    Returns the same network for chaining. Raises ``TypeError`` for anything but a
    :class:`ResNet26` and ``ValueError`` if adapters are already attached.
    """
    if not isinstance(network, ResNet26):
        raise TypeError(
            f"residual adapters need a skad_transfer ResNet26 backbone, got {type(network).__name__}"
        )
    if has_residual_adapters(network):
        raise ValueError("network already has residual adapters")
    network.pre_ra = _adapter_for(network.pre_conv)
    for block in network.modules():
        if isinstance(block, BasicBlock):
            block.ra1 = _adapter_for(block.conv1)
            block.ra2 = _adapter_for(block.conv2)
    return network


def has_residual_adapters(network: nn.Module) -> bool:
    return isinstance(network, ResNet26) and network.pre_ra is not None


def freeze_for_adaptation(network: ResNet26) -> list[nn.Parameter]:
    """Freeze exactly the 3x3 convolutions; return the parameters left trainable, in order."""
    frozen = {id(p) for p in network.conv3x3_parameters()}
    trainable = []
    for parameter in network.parameters():
        parameter.requires_grad_(id(parameter) not in frozen)
        if id(parameter) not in frozen:
            trainable.append(parameter)
    return trainable


def count_trainable(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters() if p.requires_grad)
