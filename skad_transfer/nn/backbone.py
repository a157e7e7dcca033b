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
  sizes it takes.

The paper's ResNet26 (:mod:`.resnet`) and torchvision's ResNet family (:mod:`.torchvision_resnet`)
provide it; :data:`BACKBONES` maps each accepted ``backbone=`` name to its class, so adding a family
is one module that subclasses :class:`Backbone` and lists its names in :func:`register_backbone`.
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar, Iterable

import torch
from torch import nn

__all__ = ["Backbone", "ResidualAdapter", "BACKBONES", "register_backbone", "backbone_class", "build_backbone",
           "default_init"]


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


BACKBONES: dict[str, type[Backbone]] = {}
"""The ``backbone=`` names and the :class:`Backbone` class that builds each."""


def register_backbone(cls: type[Backbone]) -> type[Backbone]:
    """Make ``cls``'s :attr:`~Backbone.names` accepted as ``backbone=`` (usable as a class decorator)."""
    for name in cls.names:
        BACKBONES[name] = cls
    return cls


def backbone_class(name: str) -> type[Backbone]:
    """The :class:`Backbone` class that builds ``name``; a ValueError listing the names otherwise."""
    try:
        return BACKBONES[name]
    except (KeyError, TypeError):
        raise ValueError(f"backbone: unknown name {name!r}; expected one of {sorted(BACKBONES)} or a "
                         f"torch.nn.Module") from None


def build_backbone(name: str, *, width: int | None = None, input_size: int | None = None, record=None,
                   num_classes: int = 1, generator: torch.Generator | None = None) -> Backbone:
    """:meth:`Backbone.build` of the class registered for ``name``."""
    return backbone_class(name).build(name, width=width, input_size=input_size, record=record,
                                      num_classes=num_classes, generator=generator)
