"""The paper's ResNet26, with the reference code's parameter names and named feature taps.

The layout and the state-dict keys follow the authors' ``resnet26.pth`` (see ``docs/weights.md``):
``pre_conv``/``pre_bn`` (stem), ``layer{1,2,3}.{0..3}.conv{1,2}``/``bn{1,2}`` (three stages of four
basic blocks), ``end_bn_relu.0`` (the final BatchNorm) and ``linears`` (the head). Shortcuts carry no
parameters: a 2x2 average pool followed by zero-padding of the channels wherever the resolution or
the width changes. The same network serves 32x32 and 96x96 input: global average pooling makes the
head independent of the resolution, so ``input_size`` only fixes the preprocessing.

Its weights are declared here: the authors' checkpoint (``"transferad-resnet26"``) and the embedded
theta0 (``"default"``, :data:`DEFAULT_WEIGHTS_FILE`); a checkpoint file without a stored record is
described by its stem conv (:meth:`ResNet26.record_for_state`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..weights import WEIGHTS, WeightsRecord, record_from_file, register_weights, resolve_weights
from .backbone import Backbone, default_init, load_backbone_state, register_backbone

FEATURE_LAYERS = ("stem", "stage1", "stage2", "stage3", "pooled")
"""Names of the intermediate features that :meth:`ResNet26.features` can return."""

SUPPORTED_INPUT_SIZES = (32, 96)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a parameter-free shortcut, then ReLU.

    ``ra1``/``ra2`` are the optional parallel 1x1 residual adapters of ADRA (see
    :mod:`skad_transfer.nn.adapters`); they are ``None`` in a plain network, so a plain network's
    state dict has exactly the reference keys.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.ra1: nn.Module | None = None
        self.ra2: nn.Module | None = None
        self.stride = stride
        self.pad_channels = out_channels - in_channels
        if self.pad_channels < 0:
            raise ValueError(
                f"BasicBlock: out_channels must be >= in_channels for a zero-padding shortcut, "
                f"got {in_channels} -> {out_channels}"
            )

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = F.avg_pool2d(x, self.stride)
        if self.pad_channels:
            # Zero channels appended after the input's: the reference's cat([x, 0 * x]) for 2x width.
            x = F.pad(x, (0, 0, 0, 0, 0, self.pad_channels))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        if self.ra1 is not None:
            y = y + self.ra1(x)
        y = F.relu(self.bn1(y))
        z = self.conv2(y)
        if self.ra2 is not None:
            z = z + self.ra2(y)
        z = self.bn2(z)
        return F.relu(z + self.shortcut(x))


@register_backbone
class ResNet26(Backbone):
    """ResNet26 of Deecke et al. (2021): a 3x3 stem and three stages of four basic blocks.

    Parameters
    ----------
    width : int, default=64
        Channels of the stem and first stage; the stages have ``width``, ``2 * width`` and
        ``4 * width`` channels. 64 is the paper's network.
    input_size : {32, 96}, default=32
        The image resolution the network is meant for (CIFAR-like 32 or STL-10's 96). It does not
        change the parameters; it is recorded so that inputs can be resized to it.
    num_classes : int, default=1
        Outputs of the linear head: 1 for an anomaly logit, 1000 for ImageNet pretraining.

    Attributes
    ----------
    feature_dim : int
        Dimension of the pooled features that feed the head (``4 * width``).
    """

    feature_layers = FEATURE_LAYERS
    head_name = "linears"
    names = ("resnet26",)

    def __init__(self, width: int = 64, input_size: int = 32, num_classes: int = 1):
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive int, got {width!r}")
        if input_size not in SUPPORTED_INPUT_SIZES:
            raise ValueError(f"input_size must be one of {SUPPORTED_INPUT_SIZES}, got {input_size!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.width = width
        self.input_size = input_size
        self.num_classes = num_classes
        self.pre_conv = conv3x3(3, width)
        self.pre_bn = nn.BatchNorm2d(width)
        self.pre_ra: nn.Module | None = None
        channels = width
        for index, (out_channels, stride) in enumerate(((width, 1), (2 * width, 2), (4 * width, 2))):
            blocks = []
            for block in range(4):
                blocks.append(BasicBlock(channels, out_channels, stride if block == 0 else 1))
                channels = out_channels
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.end_bn_relu = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.feature_dim = channels
        self.linears = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """The reference initialisation: convs ~ N(0, sqrt(2 / (k*k*out))), BN weight 1 and bias 0,
        fresh BN running statistics, and PyTorch's default ``Linear`` initialisation of the head.

        Random draws come from ``generator`` (torch's global generator when None): a fit seeds its
        own generator, so that concurrent fits in threads cannot reseed each other's draws.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out), generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
                module.reset_running_stats()
        default_init(self.linears, generator)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pre_conv(x)
        if self.pre_ra is not None:
            y = y + self.pre_ra(x)
        return F.relu(self.pre_bn(y))

    def features(self, x: torch.Tensor, layers: Iterable[str] = ("pooled",)) -> dict[str, torch.Tensor]:
        """Intermediate activations by name (see :data:`FEATURE_LAYERS`).

        ``stem``, ``stage1``, ``stage2`` and ``stage3`` are feature maps (N, C, H, W); ``stage3`` is
        taken after the final BN-ReLU; ``pooled`` is its global average, the input of the head.
        """
        wanted = self.check_layers(layers)
        out: dict[str, torch.Tensor] = {}
        y = self._stem(x)
        if "stem" in wanted:
            out["stem"] = y
        y = self.layer1(y)
        if "stage1" in wanted:
            out["stage1"] = y
        y = self.layer2(y)
        if "stage2" in wanted:
            out["stage2"] = y
        if not {"stage3", "pooled"} & set(wanted):
            return out
        y = self.end_bn_relu(self.layer3(y))
        if "stage3" in wanted:
            out["stage3"] = y
        if "pooled" in wanted:
            out["pooled"] = y.mean(dim=(2, 3))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.end_bn_relu(self.layer3(self.layer2(self.layer1(self._stem(x)))))
        return self.linears(y.mean(dim=(2, 3)))

    def conv3x3_parameters(self) -> list[nn.Parameter]:
        """The 3x3 convolution weights (stem included): what ADRA freezes and L2-SP-ref regularizes."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]

    def attach_adapters(self, make: Callable[[nn.Conv2d], nn.Module]) -> None:
        """Adapters beside the stem and both convs of every block, under the reference code's names
        (``pre_ra``, ``layerN.i.ra1``, ``layerN.i.ra2``)."""
        self.pre_ra = make(self.pre_conv)
        for block in self.modules():
            if isinstance(block, BasicBlock):
                block.ra1 = make(block.conv1)
                block.ra2 = make(block.conv2)

    def has_adapters(self) -> bool:
        return self.pre_ra is not None

    @classmethod
    def check_input_size(cls, input_size: int) -> int:
        if input_size not in SUPPORTED_INPUT_SIZES:
            raise ValueError(f"input_size must be one of {SUPPORTED_INPUT_SIZES} for backbone='resnet26', "
                             f"got {input_size!r}")
        return int(input_size)

    @classmethod
    def record_for_state(cls, name: str, path, state: Mapping[str, torch.Tensor]) -> WeightsRecord:
        """A bare ResNet26 state dict (the authors' ``resnet26.pth``): its width is its stem conv's."""
        if "pre_conv.weight" not in state:
            raise ValueError(
                f"weights: {path} is not a ResNet26 checkpoint (no 'pre_conv.weight'; first keys: "
                f"{list(state)[:5]})"
            )
        return WeightsRecord(name=str(path), width=int(state["pre_conv.weight"].shape[0]), path=str(path),
                             meta={"source": str(path)})

    @classmethod
    def check_stored_record(cls, record: WeightsRecord, path, state: Mapping[str, torch.Tensor]) -> None:
        """The stored width must be the stem conv's."""
        stem = state.get("pre_conv.weight")
        if stem is not None and stem.ndim == 4 and int(stem.shape[0]) != record.width:
            raise ValueError(f"weights: {path} stores width={record.width} in its record but its weights have "
                             f"width {int(stem.shape[0])}")

    @classmethod
    def build(cls, name: str, *, width: int | None, input_size: int | None, record, num_classes: int,
              generator: torch.Generator | None) -> "ResNet26":
        if input_size is not None:
            cls.check_input_size(input_size)
        return resnet26(width=width, input_size=input_size, weights=record, num_classes=num_classes,
                        generator=generator)

    def extra_repr(self) -> str:
        return f"width={self.width}, input_size={self.input_size}, num_classes={self.num_classes}"


def resnet26(
    width: int | None = None,
    input_size: int | None = None,
    weights=None,
    *,
    num_classes: int = 1,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> ResNet26:
    """Build the paper's ResNet26, optionally loaded with theta0 weights.

    Parameters
    ----------
    width : int, optional
        Stem/first-stage channels. Defaults to the weights' width, else 64 (the paper's).
    input_size : {32, 96}, optional
        Defaults to the weights' input size, else 32.
    weights : None, str, path-like or WeightsRecord, default=None
        ``None`` keeps a random initialisation (as in torchvision). Otherwise anything
        :func:`skad_transfer.weights.resolve_weights` accepts: a registered name such as
        ``"default"``, a checkpoint path or a :class:`~skad_transfer.weights.WeightsRecord`.
        The backbone must match exactly (missing or unexpected keys raise a ValueError that lists
        them); the head is loaded only when its shape equals ``num_classes``, else it stays fresh.
    num_classes : int, default=1
        Outputs of the head (1 = anomaly logit).
    progress : bool, default=False
        Show a progress bar if the weights must be downloaded.
    generator : torch.Generator, optional
        Draw the random initialisation from this CPU generator instead of torch's global one, which
        is then neither read nor advanced (what a thread-safe, reproducible fit needs). A generator
        seeded with ``s`` gives the network that ``torch.manual_seed(s)`` does without it.

    Returns
    -------
    ResNet26

    Examples
    --------
    >>> from skad_transfer import resnet26
    >>> net = resnet26(width=8)
    >>> sorted(net.features(torch.zeros(2, 3, 32, 32), ["stem", "pooled"]))
    ['pooled', 'stem']
    """
    record = resolve_weights(weights) if weights is not None else None
    if record is not None:
        if width is not None and width != record.width:
            raise ValueError(f"width={width} does not match the weights {record.name!r} (width {record.width})")
        if input_size is not None and input_size != record.input_size:
            raise ValueError(
                f"input_size={input_size} does not match the weights {record.name!r} "
                f"(input size {record.input_size})"
            )
        width, input_size = record.width, record.input_size
    arguments = dict(width=64 if width is None else width, input_size=32 if input_size is None else input_size,
                     num_classes=num_classes)
    if generator is None:
        network = ResNet26(**arguments)
    else:
        # Built on the meta device, where the layers' own initialisations draw nothing; then the
        # generator makes the draws that torch.manual_seed(seed) and ResNet26(...) make, in order
        # (the layers' default initialisations, overwritten by the reference one), so that a seed
        # gives the same network as it always did.
        with torch.device("meta"):
            network = ResNet26(**arguments)
        network.to_empty(device="cpu")
        for layer in network.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                default_init(layer, generator)
        network.reset_parameters(generator)
    if record is not None:
        load_backbone_state(network, record.load_state_dict(progress=progress), source=record.name)
    return network


# ---------------------------------------------------------------------------- ResNet26's weights
register_weights(WeightsRecord(
    name="transferad-resnet26",
    width=64,
    input_size=32,
    filename="resnet26.pth",
    meta={
        "source": "the authors of Deecke et al. (2021), Google Drive file id 1uRmyJfs5OW2s0USoue6WbPdr_04MNOFI "
                  "(linked from github.com/VICO-UoE/TransferAD)",
        "dataset": "ImageNet at 32x32",
        "paper": "Transfer-Based Semantic Anomaly Detection, ICML 2021",
    },
))


DEFAULT_WEIGHTS_FILE = Path(__file__).parent.parent / "assets" / "resnet26-w16-tinyimagenet32.pth"
DEFAULT_WEIGHTS_SHA256 = "b984c5e63cca1b01f1944b0aab5411ab011f32074672c96c458bfeccc00e315e"


def _default_record() -> WeightsRecord:
    """The embedded theta0: ResNet26 width 16, pretrained by ``skad-transfer pretrain`` on
    Tiny-ImageNet-32 (``docs/weights.md`` has the command, its wall time and val top-1)."""
    record = record_from_file(DEFAULT_WEIGHTS_FILE)
    return replace(record, name="default", filename=DEFAULT_WEIGHTS_FILE.name, sha256=DEFAULT_WEIGHTS_SHA256)


if DEFAULT_WEIGHTS_FILE.is_file():
    WEIGHTS.register_lazy("default", _default_record, overwrite=True)
