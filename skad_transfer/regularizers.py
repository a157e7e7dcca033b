"""The pull toward theta0 that a fine-tune adds to its loss: one object per regularizer.

:class:`L2SP` (ADIB's squared L2-SP), :class:`L2SPReference` (the reference code's variant) and
:class:`EWC` each own which of theta0's parameters they cover, what they must compute at theta0
before training starts (EWC's Fisher), and the ``penalty()`` the training engine adds to every
step's loss. The penalties themselves are plain tensor functions in :mod:`skad_transfer.objectives`
(:func:`~skad_transfer.objectives.l2_sp`, :func:`~skad_transfer.objectives.ewc_penalty`). Adding a
regularizer is one subclass and one entry in :data:`REGULARIZERS`, the one list of their names.

EWC's Fisher is estimated once, at theta0, from per-sample gradients on up to ``batch_size`` normal
and ``batch_size`` OE images (un-augmented, BatchNorm in eval mode), of the log-likelihood of
theta0's pretraining classifier with labels sampled from its own predictions (the Fisher proper,
which needs no labels). EWC is meant to protect the *pretraining* task; its data are not available
at fit time, so normal + OE images stand in for them. A theta0 without a classification head
(``weights=None``, a headless checkpoint) uses the network's own fresh one-logit head as a Bernoulli
instead. Fisher entries above ``1 / (lr * ewc_lambda)`` are capped there: a stiffer quadratic makes
SGD at that learning rate oscillate and diverge (on a Tiny-ImageNet theta0 a few stem and BatchNorm
entries reach F ~ 10, i.e. 40x the stable limit at lr 0.01, lambda 400); capped, those parameters
stay pinned near theta0, which is what their Fisher asks for.
"""

from __future__ import annotations

import copy
from numbers import Real
from typing import Callable, ClassVar

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ._registry import Registry
from .data.augment import normalize
from .data.fitdata import TrainingData
from .data.sampling import permutation_prefix
from .losses import FitContext, with_classifier_head
from .nn.backbone import Backbone
from .objectives import diagonal_fisher, ewc_penalty, l2_sp

__all__ = ["REGULARIZER_PARAMETER_CONSTRAINTS", "REGULARIZERS", "REGULARIZER_CLASSES", "Regularizer", "L2SP",
           "L2SPReference", "EWC", "make_regularizer", "theta0_fisher"]

class Regularizer:
    """A pull toward theta0 of strength ``strength`` (the detector parameter :attr:`strength_parameter`).

    Used in three steps of a fit: :meth:`covered` on theta0 (before adapters are added, so only
    theta0's own parameters are covered), :meth:`prepare` on theta0 and the training data, and
    :meth:`penalty` once the trained parameters are known.
    """

    name: ClassVar[str]
    strength_parameter: ClassVar[str] = "alpha"

    def __init__(self, strength: float):
        self.strength = float(strength)
        self.covers: list[nn.Parameter] = []

    def covered(self, network: nn.Module) -> list[nn.Parameter]:
        """Every parameter that theta0 provides (all but a backbone's head)."""
        if isinstance(network, Backbone):
            return network.theta0_parameters()
        return list(network.parameters())

    def prepare(self, network: nn.Module, context: FitContext, *, lr: float) -> None:
        """Record the parameters theta0 provides; a subclass may also measure theta0 here."""
        self.covers = self.covered(network)

    def penalty(self, trained: list[nn.Parameter], *, adapters: bool = False) -> Callable[[], torch.Tensor] | None:
        """``penalty()`` over the covered parameters that are among the ``trained`` ones, anchored at
        their values now; None at strength 0. ``adapters`` only improves the error when nothing is
        covered."""
        if self.strength == 0:
            return None
        trainable = {id(p) for p in trained}
        kept = [i for i, p in enumerate(self.covers) if id(p) in trainable]
        if not kept:
            raise ValueError(
                f"regularizer={self.name!r} covers no trained parameter"
                + (" (adapters=True freezes the 3x3 convolutions)" if adapters else "")
            )
        return self._penalty(kept)

    def _penalty(self, kept: list[int]) -> Callable[[], torch.Tensor]:
        raise NotImplementedError


class L2SP(Regularizer):
    """``alpha * ||theta - theta0||^2`` over theta0's parameters (the paper's eq. 2, ADIB)."""

    name = "l2sp"
    squared: ClassVar[bool] = True

    def _penalty(self, kept: list[int]) -> Callable[[], torch.Tensor]:
        regularized = [self.covers[i] for i in kept]
        anchors = [p.detach().clone() for p in regularized]
        strength, squared = self.strength, self.squared
        return lambda: strength * l2_sp(regularized, anchors, squared=squared)


class L2SPReference(L2SP):
    """The reference code's variant: ``alpha * ||theta - theta0||`` (not squared) over the 3x3
    convolution weights only, stem included."""

    name = "l2sp-ref"
    squared = False

    def covered(self, network: nn.Module) -> list[nn.Parameter]:
        return [m.weight for m in network.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]


class EWC(Regularizer):
    """Elastic weight consolidation: the L2 pull weighted by theta0's (capped) diagonal Fisher."""

    name = "ewc"
    strength_parameter = "ewc_lambda"

    def __init__(self, strength: float):
        super().__init__(strength)
        self.fisher: list[torch.Tensor] = []

    def prepare(self, network: nn.Module, context: FitContext, *, lr: float) -> None:
        super().prepare(network, context, lr=lr)
        if self.strength > 0:
            self.fisher = theta0_fisher(network, context.data, self.covers, head=context.theta0_head,
                                        batch_size=context.batch_size, mean=context.mean, std=context.std, lr=lr,
                                        ewc_lambda=self.strength, generator=context.generator)

    def _penalty(self, kept: list[int]) -> Callable[[], torch.Tensor]:
        regularized = [self.covers[i] for i in kept]
        fisher = [self.fisher[i] for i in kept]
        anchors = [p.detach().clone() for p in regularized]
        strength = self.strength
        return lambda: ewc_penalty(regularized, anchors, fisher, strength)


REGULARIZERS = Registry("regularizer", {cls.name: cls for cls in (L2SP, L2SPReference, EWC)},
                        unknown="regularizer must be one of {choices} or None, got {name!r}")
"""The regularizers by name (a detector's ``regularizer=`` parameter). ``"l2sp"``: the paper's
``alpha * ||theta - theta0||_2^2`` over every parameter that has a theta0 (all convolutions and
BatchNorm affine parameters; the fresh head has none). ``"l2sp-ref"``: the reference code's
``alpha * ||theta - theta0||_2`` (not squared) over the 3x3 convolutions only. ``"ewc"``: elastic
weight consolidation, ``(lambda / 2) sum_i F_i (theta_i - theta0_i)^2`` over the parameters of
``"l2sp"``, with the diagonal Fisher ``F`` estimated at theta0
(:func:`~skad_transfer.objectives.ewc_penalty`)."""

REGULARIZER_CLASSES = REGULARIZERS
"""The same registry under its former name."""

REGULARIZER_PARAMETER_CONSTRAINTS = {
    "regularizer": [StrOptions(set(REGULARIZERS)), None],
    "alpha": [Interval(Real, 0, None, closed="left")],
    "ewc_lambda": [Interval(Real, 0, None, closed="left")],
}
"""scikit-learn parameter constraints of the detectors that take ``regularizer``, ``alpha`` and ``ewc_lambda``."""


def make_regularizer(name: str | None, **strengths: float) -> Regularizer | None:
    """The regularizer called ``name`` (None: none), given the detector's strength parameters
    (``alpha``, ``ewc_lambda``); each takes the one it names in ``strength_parameter``."""
    if name is None:
        return None
    cls = REGULARIZERS[name]
    return cls(strengths[cls.strength_parameter])


def theta0_fisher(network: nn.Module, data: TrainingData, candidates: list[nn.Parameter], *, head,
                  batch_size: int, mean, std, lr: float, ewc_lambda: float,
                  generator: torch.Generator) -> list[torch.Tensor]:
    """EWC's diagonal Fisher at theta0 for each of ``candidates``, capped at ``1 / (lr * ewc_lambda)``.

    ``head`` is theta0's classifier head ``(weight, bias)`` or None (see the module docstring); the
    images are drawn with ``generator``.
    """
    classifier = copy.deepcopy(network)
    if head is not None and isinstance(network, Backbone):
        with_classifier_head(classifier, head, generator)
    classifier.eval()
    n = max(1, int(batch_size))
    images = [data.normal_batch(torch.randperm(data.normal.shape[0], generator=generator)[:n])]
    if data.corpus is not None:
        images.append(data.outlier_batch(permutation_prefix(len(data.corpus), min(n, len(data.corpus)), generator)))
    inputs = torch.cat([normalize(x.to(data.device), mean, std) for x in images])
    names = {id(p): name for name, p in network.named_parameters()}
    fisher = diagonal_fisher(classifier, inputs, [names[id(p)] for p in candidates], generator=generator)
    # A parameter with stiffness ewc_lambda * F beyond 1 / lr makes SGD overshoot theta0 by more
    # than it corrects, and training diverges (measured: F reaches ~10 on the stem and BatchNorm of
    # a Tiny-ImageNet theta0, so 400 * 10 * 0.01 = 40). Capping F at 1 / (lr * ewc_lambda) keeps
    # those parameters pinned near theta0, as intended, without the divergence.
    cap = 1.0 / (float(lr) * float(ewc_lambda))
    return [fisher[names[id(p)]].clamp_(max=cap) for p in candidates]
