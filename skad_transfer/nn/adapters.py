"""Parallel 1x1 residual adapters (ADRA) and the freeze that goes with them.

ADRA constrains each layer to at most a linear change from the pretrained mapping:
``y = conv_theta0(x) + V x`` with ``V`` a 1x1 convolution of the same stride
(:class:`~skad_transfer.nn.backbone.ResidualAdapter`), summed before the BatchNorm (Rebuffi et al.
2018; paper eq. 3). Every pretrained convolution stays frozen at theta0; the adapters, every
BatchNorm (affine parameters and running statistics) and the head train. Where adapters go is the
backbone's to say (:meth:`~skad_transfer.nn.backbone.Backbone.attach_adapters`): beside every 3x3
conv of the paper's ResNet26 (under the reference code's names ``pre_ra``, ``layerN.i.ra1``,
``layerN.i.ra2``) and of torchvision's BasicBlock and Bottleneck.
"""

from __future__ import annotations

from torch import nn

from .backbone import Backbone, ResidualAdapter


def add_residual_adapters(network: Backbone) -> Backbone:
    """Attach a zero-initialised parallel 1x1 adapter beside every conv the backbone adapts, in place.

    Returns the same network for chaining. Raises ``TypeError`` for a module that is not a
    :class:`~skad_transfer.nn.backbone.Backbone` and ``ValueError`` if adapters are already attached.
    """
    if not isinstance(network, Backbone):
        raise TypeError(
            f"residual adapters need a skad_transfer backbone (ResNet26 or a torchvision ResNet by name), got "
            f"{type(network).__name__}"
        )
    if network.has_adapters():
        raise ValueError("network already has residual adapters")
    network.attach_adapters(ResidualAdapter.beside)
    return network


def has_residual_adapters(network: nn.Module) -> bool:
    """Whether ``network`` is a backbone with residual adapters attached."""
    return isinstance(network, Backbone) and network.has_adapters()


def freeze_for_adaptation(network: Backbone) -> list[nn.Parameter]:
    """Freeze exactly theta0's convolutions; return the parameters left trainable, in order."""
    frozen = {id(p) for p in network.pretrained_conv_weights()}
    trainable = []
    for parameter in network.parameters():
        parameter.requires_grad_(id(parameter) not in frozen)
        if id(parameter) not in frozen:
            trainable.append(parameter)
    return trainable


def count_trainable(network: nn.Module) -> int:
    """Number of parameter values that will be trained (``requires_grad``)."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)
