"""What every detector, feature extractor and regularizer needs of a network: :class:`Backbone`.

A backbone is a network with

* named feature taps (:attr:`Backbone.feature_layers`, the last one ``"pooled"``, the head's input)
  returned by :meth:`Backbone.features`;
* a replaceable linear head (:attr:`Backbone.head_name`, :meth:`Backbone.reset_head`): one logit
  for the anomaly detectors, the pretraining task's classes for DOC and EWC;
* the convolutions residual adapters attach beside (:meth:`Backbone.attach_adapters`) and those
  ADRA freezes (:meth:`Backbone.pretrained_conv_weights`);
* the parameters theta0 provides, which L2-SP and EWC cover (:meth:`Backbone.theta0_parameters`);
* how it is built from a name, a weights record and a seed (:meth:`Backbone.build`), and which input
  sizes it takes;
* which weights records it accepts and how it reads them (:meth:`Backbone.find_weights`,
  :meth:`Backbone.record_for_state`, :meth:`Backbone.check_stored_record`, :meth:`Backbone.read_weights`):
  :mod:`skad_transfer.weights`, which imports no network, asks the backbone registered for a record's
  ``arch`` (:data:`skad_transfer.weights.ARCHS`).

The paper's ResNet26 (:mod:`.resnet`) and torchvision's ResNet family (:mod:`.torchvision_resnet`)
provide it; :data:`BACKBONES` maps each accepted ``backbone=`` name to its class, so adding a family
is one module that subclasses :class:`Backbone` and lists its names in :func:`register_backbone`.
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar, Iterable, Mapping

import torch
from torch import nn

from .._registry import Registry
from ..weights import ARCHS

__all__ = ["Backbone", "ResidualAdapter", "BACKBONES", "register_backbone", "backbone_class", "build_backbone",
           "default_init", "load_backbone_state"]


def default_init(layer: nn.Linear | nn.Conv2d, generator: torch.Generator | None = None) -> None:
    """PyTorch's own initialisation of a ``Linear`` or ``Conv2d`` (its ``reset_parameters``), drawn
    from ``generator``: from a generator seeded like torch's global one, the same values."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    if layer.bias is not None:
        fan_in = math.prod(layer.weight.shape[1:])
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


class ResidualAdapter(nn.Conv2d):
    """A parallel 1x1 residual adapter (ADRA): a bias-free 1x1 conv with the stride of the conv it
    sits beside, starting at zero, so that the adapted network computes theta0's function exactly
    before the first step (the gradient of a 1x1 conv does not depend on its own weights, so it
    still learns)."""

    @classmethod
    def beside(cls, conv: nn.Conv2d) -> "ResidualAdapter":
        # skip_init: Conv2d's own random initialisation would draw from (and advance) torch's
        # global generator, which concurrent fits in other threads may be using.
        adapter = nn.utils.skip_init(cls, conv.in_channels, conv.out_channels, 1, stride=conv.stride, bias=False,
                                     device=conv.weight.device, dtype=conv.weight.dtype)
        nn.init.zeros_(adapter.weight)
        return adapter


class Backbone(nn.Module):
    """Base class of the networks the detectors fine-tune (see the module docstring).

    Subclasses set :attr:`feature_layers`, :attr:`head_name` and :attr:`names`, keep
    ``feature_dim``, ``input_size`` and ``num_classes`` attributes, and implement :meth:`features`,
    :meth:`forward`, :meth:`attach_adapters`, :meth:`has_adapters`, :meth:`build` and
    :meth:`check_input_size`.
    """

    #: The feature taps :meth:`features` returns, in forward order; the last is ``"pooled"``.
    feature_layers: ClassVar[tuple[str, ...]] = ()
    #: The attribute (and state-dict prefix) of the linear head.
    head_name: ClassVar[str] = "fc"
    #: The ``backbone=`` names this class builds.
    names: ClassVar[tuple[str, ...]] = ()

    feature_dim: int
    input_size: int
    num_classes: int

    @property
    def head(self) -> nn.Linear:
        return getattr(self, self.head_name)

    def reset_head(self, num_classes: int = 1, generator: torch.Generator | None = None) -> None:
        """Replace the head by a fresh ``Linear(feature_dim, num_classes)`` on the same device,
        initialised from ``generator`` (torch's global generator when None)."""
        reference = self.head.weight
        # skip_init: the Linear's own initialisation would draw from the global generator.
        head = nn.utils.skip_init(nn.Linear, self.feature_dim, num_classes, device=reference.device,
                                  dtype=reference.dtype)
        default_init(head, generator)
        setattr(self, self.head_name, head)
        self.num_classes = num_classes

    def check_layers(self, layers: Iterable[str]) -> tuple[str, ...]:
        wanted = tuple(layers)
        unknown = [name for name in wanted if name not in self.feature_layers]
        if unknown:
            raise ValueError(f"layers must be among {self.feature_layers} for {type(self).__name__}, "
                             f"got unknown {unknown}")
        return wanted

    def features(self, x: torch.Tensor, layers: Iterable[str] = ("pooled",)) -> dict[str, torch.Tensor]:
        """Intermediate activations by name (see :attr:`feature_layers`)."""
        raise NotImplementedError

    def theta0_parameters(self) -> list[nn.Parameter]:
        """Every parameter theta0 provides: all but the head's (and, once attached, the adapters')."""
        prefix = self.head_name + "."
        adapters = {id(p) for m in self.modules() if isinstance(m, ResidualAdapter) for p in m.parameters()}
        return [p for name, p in self.named_parameters() if not name.startswith(prefix) and id(p) not in adapters]

    def pretrained_conv_weights(self) -> list[nn.Parameter]:
        """The convolution weights theta0 provides: what ADRA freezes (every conv but the adapters)."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Conv2d) and not isinstance(m, ResidualAdapter)]

    def attach_adapters(self, make: Callable[[nn.Conv2d], nn.Module]) -> None:
        """Put ``make(conv)`` beside every conv that takes an adapter, in place."""
        raise NotImplementedError

    def has_adapters(self) -> bool:
        return any(isinstance(m, ResidualAdapter) for m in self.modules())

    @classmethod
    def check_input_size(cls, input_size: int) -> int:
        """``input_size`` if this backbone takes it, else a ValueError naming what it takes."""
        raise NotImplementedError

    @classmethod
    def build(cls, name: str, *, width: int | None, input_size: int | None, record, num_classes: int,
              generator: torch.Generator | None) -> "Backbone":
        """The network ``name`` with theta0 from ``record`` (a WeightsRecord, or None for a random
        initialisation drawn from ``generator``) and a ``num_classes`` head."""
        raise NotImplementedError

    # ---------------------------------------------------------- its weights records (asked by skad_transfer.weights)
    @classmethod
    def find_weights(cls, name: str, weights):
        """The record of the weights that ``weights`` (anything but a path) names among backbone
        ``name``'s own (torchvision's entries for a torchvision ResNet), or None when it names none
        of them (then it is a registered name or a file). A name of the family for another of its
        networks is a ValueError."""
        return None

    @classmethod
    def record_for_state(cls, name: str, path, state: Mapping[str, torch.Tensor]):
        """The record of a checkpoint file for backbone ``name`` that stores none: what its state dict
        ``state`` says (a ValueError if it is not this network's)."""
        raise ValueError(f"weights: {path} stores no record, and a {cls.__name__} ({name}) cannot be described "
                         f"from its state dict alone; save it with skad_transfer.weights.save_weights")

    @classmethod
    def check_stored_record(cls, record, path, state: Mapping[str, torch.Tensor]) -> None:
        """A ValueError if the record stored in the file ``path`` contradicts its weights ``state``."""

    @classmethod
    def read_weights(cls, record, progress: bool = False) -> dict[str, torch.Tensor] | None:
        """The state dict of a record whose source this family reads itself (torchvision's entries),
        or None: then it is read from the record's file."""
        return None


BACKBONES = Registry("backbone", unknown="backbone: unknown name {name!r}; expected one of {choices} or a "
                                         "torch.nn.Module")
"""The ``backbone=`` names and the :class:`Backbone` class that builds each."""


def register_backbone(cls: type[Backbone]) -> type[Backbone]:
    """Make ``cls``'s :attr:`~Backbone.names` accepted as ``backbone=`` (usable as a class decorator),
    and ``cls`` what checks and reads the weights records of those names
    (:data:`skad_transfer.weights.ARCHS`)."""
    for name in cls.names:
        BACKBONES.register(name, cls, overwrite=True)
        ARCHS.register(name, cls, overwrite=True)
    return cls


def backbone_class(name: str) -> type[Backbone]:
    """The :class:`Backbone` class that builds ``name``; a ValueError listing the names otherwise."""
    try:
        return BACKBONES[name]
    except TypeError:  # an unhashable name
        raise BACKBONES.error(name) from None


def build_backbone(name: str, *, width: int | None = None, input_size: int | None = None, record=None,
                   num_classes: int = 1, generator: torch.Generator | None = None) -> Backbone:
    """:meth:`Backbone.build` of the class registered for ``name``."""
    return backbone_class(name).build(name, width=width, input_size=input_size, record=record,
                                      num_classes=num_classes, generator=generator)


def load_backbone_state(network: nn.Module, state: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    """Load theta0 into ``network``: every backbone key must match; the head only if shapes agree.

    Raises ``ValueError`` listing missing keys, unexpected keys and shape mismatches.
    """
    own = network.state_dict()
    head = getattr(network, "head_name", "linears") + "."
    head_fits = all(k in state and state[k].shape == own[k].shape for k in own if k.startswith(head))
    wanted = {k for k in own if head_fits or not k.startswith(head)}
    given = {k for k in state if head_fits or not k.startswith(head)}
    # Checkpoints from before BatchNorm counted its batches lack num_batches_tracked; it is unused.
    missing = sorted(k for k in wanted - given if not k.endswith("num_batches_tracked"))
    unexpected = sorted(given - wanted)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(own[k].shape)}"
        for k in wanted & given if state[k].shape != own[k].shape
    )
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if keys:
            shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise ValueError(f"{source} do not fit this {type(network).__name__}: " + "; ".join(problems))
    network.load_state_dict({k: state[k] for k in wanted & given}, strict=False)
