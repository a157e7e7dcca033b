"""The pull toward theta0 that a fine-tune adds to its loss: L2-SP (ADIB), the reference code's variant, EWC.

The penalties themselves are plain tensor functions in :mod:`skad_transfer.objectives`
(:func:`~skad_transfer.objectives.l2_sp`, :func:`~skad_transfer.objectives.ewc_penalty`); this
module decides which parameters they cover, estimates EWC's Fisher at theta0 and builds the
``penalty()`` callable the training engine adds to every step's loss.

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
from typing import Callable

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from .data.augment import normalize
from .engine import TrainingData
from .losses import with_classifier_head
from .nn.resnet import ResNet26
from .objectives import REGULARIZERS, diagonal_fisher, ewc_penalty, l2_sp

__all__ = ["REGULARIZER_PARAMETER_CONSTRAINTS", "build_penalty", "regularized_parameters", "theta0_fisher"]

REGULARIZER_PARAMETER_CONSTRAINTS = {
    "regularizer": [StrOptions(set(REGULARIZERS)), None],
    "alpha": [Interval(Real, 0, None, closed="left")],
    "ewc_lambda": [Interval(Real, 0, None, closed="left")],
}
"""scikit-learn parameter constraints of the detectors that take ``regularizer``, ``alpha`` and ``ewc_lambda``."""


def regularized_parameters(network: nn.Module, regularizer: str) -> list[nn.Parameter]:
    """The parameters an L2-SP variant (or EWC) pulls toward theta0.

    ``"l2sp"`` and ``"ewc"``: every parameter that theta0 provides (all but a ResNet26's head).
    ``"l2sp-ref"``: the 3x3 convolution weights only, stem included (the reference code).
    """
    if regularizer == "l2sp-ref":
        return [m.weight for m in network.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    if isinstance(network, ResNet26):
        return [p for name, p in network.named_parameters() if not name.startswith("linears.")]
    return list(network.parameters())


def theta0_fisher(network: nn.Module, data: TrainingData, candidates: list[nn.Parameter], *, head,
                  batch_size: int, mean, std, lr: float, ewc_lambda: float,
                  generator: torch.Generator) -> list[torch.Tensor]:
    """EWC's diagonal Fisher at theta0 for each of ``candidates``, capped at ``1 / (lr * ewc_lambda)``.

    ``head`` is theta0's classifier head ``(weight, bias)`` or None (see the module docstring); the
    images are drawn with ``generator``.
    """
    classifier = copy.deepcopy(network)
    if head is not None and isinstance(network, ResNet26):
        with_classifier_head(classifier, head, generator)
    classifier.eval()
    n = max(1, int(batch_size))
    images = [data.normal_batch(torch.randperm(data.normal.shape[0], generator=generator)[:n])]
    if data.corpus is not None:
        images.append(data.outlier_batch(torch.randperm(len(data.corpus), generator=generator)[:n]))
    inputs = torch.cat([normalize(x.to(data.device), mean, std) for x in images])
    names = {id(p): name for name, p in network.named_parameters()}
    fisher = diagonal_fisher(classifier, inputs, [names[id(p)] for p in candidates], generator=generator)
    # A parameter with stiffness ewc_lambda * F beyond 1 / lr makes SGD overshoot theta0 by more
    # than it corrects, and training diverges (measured: F reaches ~10 on the stem and BatchNorm of
    # a Tiny-ImageNet theta0, so 400 * 10 * 0.01 = 40). Capping F at 1 / (lr * ewc_lambda) keeps
    # those parameters pinned near theta0, as intended, without the divergence.
    cap = 1.0 / (float(lr) * float(ewc_lambda))
    return [fisher[names[id(p)]].clamp_(max=cap) for p in candidates]


def build_penalty(regularizer: str | None, strength: float, trained: list[nn.Parameter],
                  candidates: list[nn.Parameter], fisher: list[torch.Tensor] | None = None, *,
                  adapters: bool = False) -> Callable[[], torch.Tensor] | None:
    """``penalty()`` over the ``candidates`` (theta0's parameters, see :func:`regularized_parameters`)
    that are among the ``trained`` ones, anchored at their values now; None without a regularizer or
    at strength 0.

    ``strength`` is ``alpha`` for the L2-SP variants and ``ewc_lambda`` for ``"ewc"`` (with ``fisher``
    aligned with ``candidates``). ``adapters`` only improves the error when nothing is covered.
    """
    if regularizer is None or strength == 0:
        return None
    trainable = {id(p) for p in trained}
    if fisher is not None:
        pairs = [(p, f) for p, f in zip(candidates, fisher) if id(p) in trainable]
        regularized, fisher = [p for p, _ in pairs], [f for _, f in pairs]
    else:
        regularized = [p for p in candidates if id(p) in trainable]
    if not regularized:
        raise ValueError(
            f"regularizer={regularizer!r} covers no trained parameter"
            + (" (adapters=True freezes the 3x3 convolutions)" if adapters else "")
        )
    anchors = [p.detach().clone() for p in regularized]
    strength = float(strength)
    if fisher is not None:
        return lambda: ewc_penalty(regularized, anchors, fisher, strength)
    squared = regularizer == "l2sp"
    return lambda: strength * l2_sp(regularized, anchors, squared=squared)
