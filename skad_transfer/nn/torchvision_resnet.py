"""torchvision's ResNet family as a :class:`~skad_transfer.nn.backbone.Backbone`: ImageNet theta0s.

The network is torchvision's own (``torchvision.models.get_model``), its modules kept under their
torchvision names, so torchvision's state dicts (``conv1.weight``, ``layer1.0.conv1.weight``,
``fc.weight``, ...) load as they are. Feature taps: ``stem`` (after the max pool), ``stage1`` ..
``stage4`` and ``pooled`` (the head's 512- or 2048-dimensional input). ADRA puts an adapter beside
every 3x3 conv of the blocks (both convs of a BasicBlock, the middle conv of a Bottleneck): the conv
is wrapped in :class:`AdaptedConv`, whose ``conv`` is the very same module (its parameters, which
the L2-SP anchor was taken from, are unchanged). The 7x7 stem and the 1x1 convs stay frozen too.

Weights come from torchvision's weights API (:mod:`skad_transfer.weights` turns a
``WeightsEnum`` into a record: its URL, hash check, cache and transforms are torchvision's).
"""

from __future__ import annotations

from numbers import Integral
from typing import Callable, Iterable

import torch
from torch import nn

from .backbone import Backbone, default_init, register_backbone

__all__ = ["TorchvisionResNet", "AdaptedConv", "TORCHVISION_RESNETS", "MIN_INPUT_SIZE"]

TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2",
                       "wide_resnet101_2", "resnext50_32x4d", "resnext101_32x8d")
"""The torchvision builders accepted as ``backbone=``."""

#: Below 32 pixels the five stride-2 stages leave no spatial extent.
MIN_INPUT_SIZE = 32
#: Input size without weights (with weights it is theirs: 224 for torchvision's ImageNet weights).
DEFAULT_INPUT_SIZE = 224


class AdaptedConv(nn.Module):
    """``conv(x) + adapter(x)``: a torchvision block's conv with a parallel residual adapter."""

    def __init__(self, conv: nn.Conv2d, adapter: nn.Module):
        super().__init__()
        self.conv = conv
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.adapter(x)


@register_backbone
class TorchvisionResNet(Backbone):
    """A torchvision ResNet (``arch``, e.g. ``"resnet50"``) with named feature taps.

    Parameters
    ----------
    arch : str
        One of :data:`TORCHVISION_RESNETS`.
    input_size : int, default=224
        The resolution images are resized to (at least :data:`MIN_INPUT_SIZE`); recorded, it does
        not change the parameters.
    num_classes : int, default=1
        Outputs of the head ``fc``.

    Attributes
    ----------
    feature_dim : int
        Dimension of the pooled features (512 for resnet18/34, 2048 for the Bottleneck networks).
    """

    feature_layers = ("stem", "stage1", "stage2", "stage3", "stage4", "pooled")
    head_name = "fc"
    names = TORCHVISION_RESNETS

    def __init__(self, arch: str = "resnet18", input_size: int = DEFAULT_INPUT_SIZE, num_classes: int = 1):
        super().__init__()
        from torchvision.models import get_model

        if arch not in TORCHVISION_RESNETS:
            raise ValueError(f"arch must be one of {TORCHVISION_RESNETS}, got {arch!r}")
        self.check_input_size(input_size)
        network = get_model(arch, weights=None, num_classes=num_classes)
        self.arch = arch
        self.input_size = int(input_size)
        self.num_classes = num_classes
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"):
            setattr(self, name, getattr(network, name))
        self.feature_dim = int(network.fc.in_features)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """torchvision's initialisation (kaiming-normal convs, BatchNorm 1 and 0, the default
        ``Linear``), drawn from ``generator``."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
                module.reset_running_stats()
        default_init(self.fc, generator)

    def features(self, x: torch.Tensor, layers: Iterable[str] = ("pooled",)) -> dict[str, torch.Tensor]:
        """``stem`` (after the max pool), ``stage1`` .. ``stage4`` (N, C, H, W) and ``pooled`` (N, C)."""
        wanted = self.check_layers(layers)
        out: dict[str, torch.Tensor] = {}
        y = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        if "stem" in wanted:
            out["stem"] = y
        deepest = max(self.feature_layers.index(name) for name in wanted) if wanted else 0
        for index in range(1, 5):
            if deepest < index:
                return out
            y = getattr(self, f"layer{index}")(y)
            if f"stage{index}" in wanted:
                out[f"stage{index}"] = y
        if "pooled" in wanted:
            out["pooled"] = torch.flatten(self.avgpool(y), 1)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x, ("pooled",))["pooled"])

    def attach_adapters(self, make: Callable[[nn.Conv2d], nn.Module]) -> None:
        from torchvision.models.resnet import BasicBlock, Bottleneck

        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                if not isinstance(block, (BasicBlock, Bottleneck)):
                    raise TypeError(f"residual adapters: unexpected block {type(block).__name__}")
                # The 3x3 convs: both of a BasicBlock, the middle one of a Bottleneck.
                for name in ("conv1", "conv2") if isinstance(block, BasicBlock) else ("conv2",):
                    conv = getattr(block, name)
                    setattr(block, name, AdaptedConv(conv, make(conv)))

    @classmethod
    def check_input_size(cls, input_size: int) -> int:
        if isinstance(input_size, bool) or not isinstance(input_size, Integral) or input_size < MIN_INPUT_SIZE:
            raise ValueError(f"input_size must be an int >= {MIN_INPUT_SIZE} for a torchvision ResNet, "
                             f"got {input_size!r}")
        return int(input_size)

    @classmethod
    def build(cls, name: str, *, width: int | None, input_size: int | None, record, num_classes: int,
              generator: torch.Generator | None) -> "TorchvisionResNet":
        from ..weights import load_backbone_state

        if width is not None:
            raise ValueError(f"width applies to backbone='resnet26' only; {name} has torchvision's own widths")
        if record is not None and record.arch != name:
            raise ValueError(f"weights {record.name!r} are for {record.arch}, not for backbone={name!r}")
        size = input_size if input_size is not None else (record.input_size if record is not None
                                                          else DEFAULT_INPUT_SIZE)
        # Built on the meta device, where torchvision's initialisation draws nothing; then the
        # generator draws it, so that a seed gives one network whatever else the process does.
        with torch.device("meta"):
            network = cls(name, input_size=size, num_classes=num_classes)
        network.to_empty(device="cpu")
        network.reset_parameters(generator)
        if record is not None:
            load_backbone_state(network, record.load_state_dict(), source=f"weights {record.name!r}")
        return network

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, input_size={self.input_size}, num_classes={self.num_classes}"
