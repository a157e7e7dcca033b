"""torchvision's ResNet family as a :class:`~skad_transfer.nn.backbone.Backbone`: ImageNet theta0s.

The network is torchvision's own (``torchvision.models.get_model``), its modules kept under their
torchvision names, so torchvision's state dicts (``conv1.weight``, ``layer1.0.conv1.weight``,
``fc.weight``, ...) load as they are. Feature taps: ``stem`` (after the max pool), ``stage1`` ..
``stage4`` and ``pooled`` (the head's 512- or 2048-dimensional input). ADRA puts an adapter beside
every 3x3 conv of the blocks (both convs of a BasicBlock, the middle conv of a Bottleneck): the conv
is wrapped in :class:`AdaptedConv`, whose ``conv`` is the very same module (its parameters, which
the L2-SP anchor was taken from, are unchanged). The 7x7 stem and the 1x1 convs stay frozen too.

Weights come from torchvision's weights API: this module turns a ``WeightsEnum`` entry into a
:class:`~skad_transfer.weights.WeightsRecord` (:func:`torchvision_record`: its URL, hash check, cache
and transforms are torchvision's), finds the entry a name means for a network
(:meth:`TorchvisionResNet.find_weights`) and reads it through torchvision
(:meth:`TorchvisionResNet.read_weights`).
"""

from __future__ import annotations

import os
from numbers import Integral
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from .. import weights as _weights  # its _reachable is looked up at each call (tests replace it)
from ..weights import WeightsRecord
from .backbone import Backbone, default_init, load_backbone_state, register_backbone

__all__ = ["TorchvisionResNet", "AdaptedConv", "TORCHVISION_RESNETS", "MIN_INPUT_SIZE", "TORCHVISION_HUB_TIMEOUT",
           "torchvision_record", "torchvision_cache_file"]

TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2",
                       "wide_resnet101_2", "resnext50_32x4d", "resnext101_32x8d")
"""The torchvision builders accepted as ``backbone=``."""

#: Below 32 pixels the five stride-2 stages leave no spatial extent.
MIN_INPUT_SIZE = 32
#: Input size without weights (with weights it is theirs: 224 for torchvision's ImageNet weights).
DEFAULT_INPUT_SIZE = 224
TORCHVISION_HUB_TIMEOUT = 5.0
"""Seconds to wait for torchvision's download server before saying which file to put where."""


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
    def find_weights(cls, name: str, weights) -> WeightsRecord | None:
        """The record of the torchvision entry ``weights`` names for ``name``: an entry, its name
        (``"IMAGENET1K_V1"``, ``"DEFAULT"``, ``"default"``) or its full name
        (``"ResNet50_Weights.IMAGENET1K_V2"``); None if it names none. An entry of another network is
        a ValueError."""
        entry = _torchvision_entry(weights, name)
        return None if entry is None else torchvision_record(entry)

    @classmethod
    def record_for_state(cls, name: str, path, state: Mapping[str, torch.Tensor]) -> WeightsRecord:
        """A local torchvision state dict, preprocessed like ``name``'s ``DEFAULT`` weights (ImageNet)."""
        from torchvision.models import get_model_weights

        if "conv1.weight" not in state:
            raise ValueError(f"weights: {path} is not a torchvision {name} state dict (no 'conv1.weight'; "
                             f"first keys: {list(state)[:5]})")
        default = torchvision_record(get_model_weights(name).DEFAULT)
        return WeightsRecord(name=str(path), arch=name, width=64, input_size=default.input_size, mean=default.mean,
                             std=default.std, path=str(path), meta={"source": str(path)})

    @classmethod
    def read_weights(cls, record: WeightsRecord, progress: bool = False) -> dict[str, torch.Tensor] | None:
        """A torchvision entry's state dict, through torchvision (None for a local file)."""
        return None if record.torchvision is None else _torchvision_state_dict(record, progress)

    @classmethod
    def build(cls, name: str, *, width: int | None, input_size: int | None, record, num_classes: int,
              generator: torch.Generator | None) -> "TorchvisionResNet":
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


# ---------------------------------------------------------------------------- torchvision's weights
def _torchvision_entry(weights, arch: str):
    """The torchvision weights entry that ``weights`` names for ``arch``, or None if it names none."""
    from torchvision.models import WeightsEnum, get_model_weights, get_weight

    enum = get_model_weights(arch)
    if isinstance(weights, WeightsEnum):
        if weights not in list(enum):
            raise ValueError(f"weights: {weights} are not weights for backbone={arch!r} (those are "
                             f"{[str(e) for e in enum]})")
        return weights
    if not isinstance(weights, str):
        return None
    if weights in ("default", "DEFAULT"):
        return enum.DEFAULT
    if weights in enum.__members__:
        return enum[weights]
    if "." in weights and weights.split(".", 1)[0].endswith("_Weights"):
        try:
            entry = get_weight(weights)
        except (ValueError, KeyError, AttributeError):
            raise ValueError(f"weights: torchvision has no weights {weights!r}; for {arch} it has "
                             f"{[str(e) for e in enum]}") from None
        return _torchvision_entry(entry, arch)
    return None


def torchvision_record(entry) -> WeightsRecord:
    """The record of a torchvision weights entry (e.g. ``ResNet50_Weights.IMAGENET1K_V2``).

    Source and preprocessing are torchvision's: the URL and the file name in torch hub's cache; the
    input size (the transforms' crop) and mean/std of ``entry.transforms()``. ``meta`` keeps the
    entry's ImageNet top-1 and recipe. Reading it (:meth:`WeightsRecord.load_state_dict`) goes
    through ``entry.get_state_dict`` (a download into the cache with torchvision's hash check).
    """
    arch = _torchvision_arch(entry)
    transforms = entry.transforms()
    metrics = entry.meta.get("_metrics", {}).get("ImageNet-1K", {})
    full_name = f"{type(entry).__name__}.{entry.name}"
    # width=64: the record field's default, which a torchvision network does not have (it is kept in
    # the record, and so in its hash and its checkpoints, as it always was).
    return WeightsRecord(
        name=full_name, arch=arch, width=64, input_size=int(transforms.crop_size[0]), mean=tuple(transforms.mean),
        std=tuple(transforms.std), filename=os.path.basename(entry.url), url=entry.url, torchvision=full_name,
        meta={"source": "torchvision", "dataset": "ImageNet-1K", "recipe": entry.meta.get("recipe"),
              "acc@1": metrics.get("acc@1"), "resize_size": int(transforms.resize_size[0])},
    )


def _torchvision_arch(entry) -> str:
    from torchvision.models import get_model_weights

    for arch in TORCHVISION_RESNETS:
        if type(entry) is get_model_weights(arch):
            return arch
    raise ValueError(f"weights: {entry} are not for a torchvision ResNet ({TORCHVISION_RESNETS})")


def torchvision_cache_file(record: WeightsRecord) -> Path:
    """Where torchvision keeps (and looks for) a torchvision record's file: torch hub's cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / record.filename


def _torchvision_state_dict(record: WeightsRecord, progress: bool) -> dict[str, torch.Tensor]:
    from torchvision.models import get_weight

    cached = torchvision_cache_file(record)
    if not cached.is_file() and not _weights._reachable(record.url, TORCHVISION_HUB_TIMEOUT):
        # torch.hub would wait on the network for minutes; say at once what to do instead.
        raise FileNotFoundError(
            f"weights {record.name!r} are not in torch hub's cache and {record.url} cannot be reached: "
            f"download that file and put it at {cached} (the cache folder follows $TORCH_HOME), or pass "
            f"the path of a local copy as weights=..."
        )
    try:
        return dict(get_weight(record.torchvision).get_state_dict(progress=progress, check_hash=True))
    except RuntimeError as error:  # torch.hub's hash check
        raise OSError(f"weights {record.name!r}: {cached}: {error}; delete the file and retry") from error
