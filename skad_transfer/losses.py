"""The losses of the deep-detector family, one object each (the paper's Table 4 and its baselines).

A :class:`Loss` owns everything that depends on what is minimised: whether it uses outlier exposure
(OE), which network it needs, how it prepares theta0 for training (a centre, a teacher), the
training objective, what it computes after training, the normality score and the
``contamination="auto"`` threshold. The tensor arithmetic itself lives in
:mod:`skad_transfer.objectives`; the detectors (:mod:`skad_transfer.detectors`) compose a loss with
a regularizer (:mod:`skad_transfer.regularizers`) and the training engine.

=================================  =======================================================  ==================
loss                               what is minimised                                        score (normality)
=================================  =======================================================  ==================
:class:`OutlierExposureBCE` bce    paper eq. (1): normal -> 0, OE -> 1                      ``-logit``
:class:`HypersphereLoss` hsc       hypersphere classifier (Ruff et al. 2020a), with OE      ``-h(z)``
:class:`DeepSVDDLoss` dsvdd        one-class Deep SVDD (Ruff et al. 2018), no OE            ``-||f(x) - c||^2``
:class:`DOCLoss` doc               DOC (Perera & Patel 2019), with OE                       ``-||f(x) - c||^2``
=================================  =======================================================  ==================

A loss object is made per fit (:func:`make_loss`); the state a fit leaves behind for scoring (the
centre ``c``) is a fitted attribute of the detector (``center_``), which scoring passes back in.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np
import torch
from scipy import optimize, special
from torch import nn

from ._registry import Registry
from .data.augment import normalize
from .data.fitdata import TrainingData
from .device import Precision
from .inference import apply_batched
from .nn.backbone import Backbone, backbone_class
from .objectives import doc_loss, dsvdd_loss, hsc_loss, oe_bce_objective, pseudo_huber
from .training.finetune import Objective  # the contract: what a loss hands to training

__all__ = ["AUTO_QUANTILE", "LOSSES", "DOCLoss", "DeepSVDDLoss", "FitContext", "HypersphereLoss", "Loss",
           "OutlierExposureBCE", "make_loss", "pooled_features", "theta0_classifier_head", "with_classifier_head"]

AUTO_QUANTILE = 0.1
"""``contamination="auto"`` for the distance-based losses: the soft-boundary radius of Ruff et al.
(2018) with nu = 0.1, i.e. 10% of the training images fall outside."""


@dataclass(frozen=True)
class FitContext:
    """What a loss may use to prepare theta0 and to finish a fit.

    ``generator`` (a CPU generator seeded by the fit) is the source of any random draw: torch's
    global generator is shared by every thread. ``find_theta0_head()`` returns the classification
    head theta0 came with, ``(weight, bias)``, or None (:func:`theta0_classifier_head`); it is called
    once, by the first part of the fit that asks for :attr:`theta0_head`. ``weights`` is the
    detector's parameter, for error messages.
    """

    data: TrainingData
    mean: tuple
    std: tuple
    precision: str
    batch_size: int
    generator: torch.Generator
    find_theta0_head: Callable[[], tuple | None] = lambda: None
    weights: object = None

    @functools.cached_property
    def theta0_head(self) -> tuple | None:
        return self.find_theta0_head()


def pooled_features(network: Backbone, x: torch.Tensor) -> torch.Tensor:
    """The backbone's pooled feature vector (the head's input) of a normalised batch."""
    return network.features(x, ("pooled",))["pooled"]


def theta0_classifier_head(record) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(weight, bias) of the classification head that came with theta0, or None if it has none
    (``weights=None``, a headless checkpoint, or a one-output head)."""
    if record is None:
        return None
    state = record.load_state_dict()
    head = backbone_class(record.arch).head_name
    weight = state.get(f"{head}.weight")
    if weight is None or weight.ndim != 2 or weight.shape[0] < 2:
        return None
    return weight, state.get(f"{head}.bias")


def with_classifier_head(network: Backbone, head, generator: torch.Generator) -> Backbone:
    """``network`` with its head replaced by the classifier ``head = (weight, bias)`` (in place).

    The new head's random initialisation (overwritten at once) draws from ``generator``, so that
    torch's global generator is left alone.
    """
    weight, bias = head
    if weight.shape[1] != network.feature_dim:
        raise ValueError(f"weights: the classifier head has {weight.shape[1]} inputs, the network "
                         f"{network.feature_dim}")
    network.reset_head(int(weight.shape[0]), generator)
    with torch.no_grad():
        network.head.weight.copy_(weight)
        if bias is not None:
            network.head.bias.copy_(bias)
        else:
            network.head.bias.zero_()
    return network


class Loss:
    """A loss of the family. Subclasses set :attr:`name` and override what differs from eq. (1).

    Parameters
    ----------
    center : array-like of shape (n_features,), optional
        The centre ``c`` of a distance-based loss, when scoring a fitted detector.
    """

    #: The name a detector's ``loss=`` parameter gives.
    name: ClassVar[str] = ""
    #: Whether an OE corpus is used at all (one-class losses ignore a given one).
    uses_outlier_exposure: ClassVar[bool] = True
    #: Whether the loss needs the pooled features of a :class:`~skad_transfer.nn.Backbone`.
    needs_backbone: ClassVar[bool] = False
    #: The keyword settings its constructor takes besides ``center`` (detector parameters of that name).
    settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, center=None):
        self.center = None if center is None else np.asarray(center, dtype=np.float32)

    def check_network(self, network: nn.Module) -> None:
        if self.needs_backbone and not isinstance(network, Backbone):
            raise TypeError(f"loss {self.name!r} needs the pooled features of a skad_transfer backbone (ResNet26 or "
                            f"a torchvision ResNet by name), "
                            f"got {type(network).__name__}")

    def prepare(self, network: nn.Module, context: FitContext) -> Objective:
        """Make ``network`` (theta0, on the training device) ready for this loss; return the objective."""
        return oe_bce_objective

    def trainable(self, network: nn.Module, parameters: list[nn.Parameter]) -> list[nn.Parameter]:
        """The subset of ``parameters`` this loss lets train (the others get ``requires_grad=False``)."""
        return parameters

    def finish(self, network: nn.Module, context: FitContext) -> None:
        """After training, with ``network`` in eval mode (e.g. the centre of the trained features)."""

    def normality(self, network: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Per-image normality score of a normalised batch (higher = more normal): the negated logit."""
        return -network(x).reshape(len(x), -1)[:, 0]

    def normality_of_pooled(self, network: Backbone, pooled: torch.Tensor) -> torch.Tensor:
        """:meth:`normality` from the backbone's pooled features (the head's input), so that a score
        that also needs those features runs the network once."""
        return -network.head(pooled).reshape(len(pooled), -1)[:, 0]

    def auto_offset(self, normal_scores: Callable[[], np.ndarray],
                    outlier_scores: Callable[[], np.ndarray] | None) -> float:
        """``offset_`` for ``contamination="auto"``.

        ``normal_scores()`` scores normal images (the held-out ones with ``validation_fraction``,
        else the training images), ``outlier_scores()`` as many OE images (None without OE).

        The logit's own boundary, sigmoid(logit) = 1/2, with the logit's shift refitted: the shift
        ``b`` that minimises eq. (1) over these scores (normal and OE weighted equally, as in a
        training batch), and ``offset_ = -b``. Once training has converged, the head's bias already
        minimises eq. (1) and ``b`` is ~0; after a short fit it is not, and logit 0 could call every
        image anomalous. Without OE images there is nothing to refit against: logit 0.
        """
        if outlier_scores is None:
            return 0.0
        return -_refitted_logit_shift(-normal_scores(), -outlier_scores())


class OutlierExposureBCE(Loss):
    """Paper eq. (1): binary cross-entropy of normal (0) vs. OE (1) images; score ``-logit``."""

    name = "bce"


class HypersphereLoss(Loss):
    """The hypersphere classifier (HSC, Ruff et al. 2020a) on the network's output ``z``, with OE.

    Normal images cost ``h(z) = sqrt(||z||^2 + 1) - 1``, OE images ``-log(1 - exp(-h(z)))``; score
    ``-h(z)``; ``"auto"`` threshold at anomaly probability ``1 - exp(-h) = 1/2``, i.e. ``h = log 2``.
    """

    name = "hsc"

    def prepare(self, network, context):
        return hsc_objective

    def normality(self, network, x):
        return -pseudo_huber(network(x))

    def normality_of_pooled(self, network, pooled):
        return -pseudo_huber(network.head(pooled))

    def auto_offset(self, normal_scores, outlier_scores):
        # Anomaly probability 1/2 (h = log 2) on h rescaled by the scale that minimises the HSC loss
        # over these scores: the same refit as eq. (1)'s shift (see Loss.auto_offset).
        if outlier_scores is None:
            return -math.log(2.0)
        return -math.log(2.0) / _refitted_distance_scale(-normal_scores(), -outlier_scores())


def _refitted_logit_shift(normal_logits: np.ndarray, outlier_logits: np.ndarray) -> float:
    """The shift ``b`` minimising eq. (1) of ``logits - b`` (normal -> 0, OE -> 1, the two sets
    weighted equally): the root of its derivative in ``b``, which increases from -1 to 1."""
    def derivative(b):
        return special.expit(b - outlier_logits).mean() - special.expit(normal_logits - b).mean()

    every = np.concatenate([normal_logits, outlier_logits])
    return float(optimize.brentq(derivative, every.min() - 50.0, every.max() + 50.0, xtol=1e-9))


def _refitted_distance_scale(normal_h: np.ndarray, outlier_h: np.ndarray) -> float:
    """The scale ``u > 0`` minimising the HSC loss of ``u * h``: ``u * mean(normal h)`` plus
    ``mean(-log(1 - exp(-u * outlier h)))``, convex in ``u``; its derivative
    ``mean(normal h) - mean(outlier h / expm1(u * outlier h))`` increases from -inf (``u -> 0``) to
    ``mean(normal h)``. 1 (no refit) when that is 0: every normal image at the centre."""
    normal_mean = float(normal_h.mean())
    if not normal_mean > 0.0:
        return 1.0

    def derivative(log_u):
        u = math.exp(log_u)
        with np.errstate(over="ignore"):  # expm1 -> inf far from the centre: h / inf = 0, as it should
            ratio = np.divide(outlier_h, np.expm1(u * outlier_h), out=np.full_like(outlier_h, 1.0 / u),
                              where=outlier_h > 0)  # h / expm1(u h) -> 1 / u as h -> 0
        return normal_mean - float(ratio.mean())

    low, high = -60.0, 60.0
    if derivative(high) <= 0.0:  # only with OE images at the centre itself: no scale separates them
        return 1.0
    return math.exp(optimize.brentq(derivative, low, high, xtol=1e-9))


def hsc_objective(network, x_normal: torch.Tensor, x_outlier: torch.Tensor) -> torch.Tensor:
    """One forward pass over normal + OE together, then :func:`~skad_transfer.objectives.hsc_loss`."""
    outputs = network(torch.cat([x_normal, x_outlier]))
    n = x_normal.shape[0]
    return hsc_loss(outputs[:n], outputs[n:])


class _DistanceLoss(Loss):
    """A loss scored by the squared distance of the pooled features to a centre ``c``."""

    needs_backbone = True

    def normality(self, network, x):
        return self.normality_of_pooled(network, pooled_features(network, x))

    def normality_of_pooled(self, network, pooled):
        features = pooled.float()
        center = torch.as_tensor(self.center, device=features.device)
        return -((features - center) ** 2).sum(dim=1)

    def auto_offset(self, normal_scores, outlier_scores):
        # No boundary of its own: Ruff et al.'s soft-boundary radius at nu = AUTO_QUANTILE.
        return float(np.percentile(normal_scores(), 100.0 * AUTO_QUANTILE))


class DeepSVDDLoss(_DistanceLoss):
    """One-class Deep SVDD (Ruff et al. 2018): ``mean ||f(x) - c||^2`` over the normal images; no OE.

    ``c`` is the mean pooled feature of the normal images at theta0, with BatchNorm in train mode
    (batch statistics), as the training loss sees them. DSVDD must be free of bias terms, or the
    network collapses onto the centre (Ruff et al. 2018, Prop. 2); a backbone's BatchNorm shift is a
    bias, so every BatchNorm's affine parameters stay frozen at theta0 (running statistics still
    adapt) and the head is dropped: the only way to a constant output (all convolutions zero) lands
    on ``relu(beta)`` of the last BatchNorm, a fixed point that is not the centre.
    """

    name = "dsvdd"
    uses_outlier_exposure = False

    def prepare(self, network, context):
        self.center = initial_center(network, context)
        center = torch.as_tensor(self.center, device=context.data.device)
        return lambda network, x_normal, x_outlier: dsvdd_loss(pooled_features(network, x_normal), center)

    def trainable(self, network, parameters):
        frozen = {id(p) for m in network.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
        frozen |= {id(p) for p in network.head.parameters()}
        for p in network.parameters():
            if id(p) in frozen:
                p.requires_grad_(False)
        return [p for p in parameters if id(p) not in frozen]


class DOCLoss(_DistanceLoss):
    """DOC (Perera & Patel 2019): descriptiveness + ``compactness_weight`` x compactness, with OE.

    DOC's reference set (ImageNet in Perera & Patel) is the OE corpus, labelled on the fly by
    theta0's own pretraining classifier (the head that comes with theta0, taken over by the trained
    network): the descriptiveness loss keeps the network able to tell theta0's classes apart on OE
    images, which is what ImageNet labels do in DOC. It needs a theta0 with a classification head
    of two or more classes. The score is the distance to ``c``, the mean pooled feature of the normal
    training images *after* training.

    Parameters
    ----------
    compactness_weight : float, default=0.1
        DOC's lambda (Perera & Patel's 0.1).
    center : array-like, optional
        As for :class:`Loss`.
    """

    name = "doc"
    settings = ("compactness_weight",)

    def __init__(self, compactness_weight: float = 0.1, *, center=None):
        super().__init__(center=center)
        self.compactness_weight = float(compactness_weight)

    def prepare(self, network, context):
        if context.theta0_head is None:
            raise ValueError(
                "loss 'doc' needs a reference classification task: a theta0 (weights=) that comes with a "
                "classification head of 2 or more classes, e.g. weights='default'; "
                f"weights={context.weights!r} has none"
            )
        with_classifier_head(network, context.theta0_head, context.generator)
        teacher = copy.deepcopy(network).eval().requires_grad_(False)
        weight = self.compactness_weight

        def doc_objective(network, x_normal, x_outlier):
            features = pooled_features(network, torch.cat([x_normal, x_outlier]))
            n = x_normal.shape[0]
            with torch.no_grad():
                labels = teacher(x_outlier).argmax(dim=1)
            return doc_loss(features[:n], network.head(features[n:]), labels, compactness_weight=weight)

        return doc_objective

    def finish(self, network, context):
        self.center = mean_features(network, context)


def initial_center(network: Backbone, context: FitContext) -> np.ndarray:
    """DSVDD's ``c``: the mean pooled feature of the normal images at theta0, as training sees them.

    Training runs BatchNorm on normal-only batches (train mode), so ``c`` is computed the same way,
    in batches of the training's normal half, on a copy (theta0's running statistics stay as they
    are). Eval-mode features would put ``c`` on another scale whenever theta0's running statistics
    do not describe the normal data (always for a random init).
    """
    data = context.data
    probe = copy.deepcopy(network).train()
    precision = Precision.resolve(data.device, context.precision)
    half = max(2, int(context.batch_size) // 2)
    n = data.normal.shape[0]
    total = None
    with torch.no_grad():
        for start in range(0, n, half):
            x = normalize(data.normal_batch(torch.arange(start, min(start + half, n))), context.mean, context.std)
            with precision.autocast(data.device):
                features = pooled_features(probe, precision.prepare(x)).double().sum(dim=0)
            total = features if total is None else total + features
    return (total / n).float().cpu().numpy()


def mean_features(network: Backbone, context: FitContext) -> np.ndarray:
    """The mean pooled feature of the normal training images under ``network`` in eval mode."""
    data = context.data
    was_training = network.training
    network.eval()
    features = apply_batched(lambda x: pooled_features(network, x), data.normal, device=data.device,
                             mean=context.mean, std=context.std, input_size=data.input_size,
                             precision=context.precision)
    network.train(was_training)
    return features.double().mean(dim=0).float().numpy()


LOSSES = Registry("loss", {cls.name: cls for cls in (OutlierExposureBCE, HypersphereLoss, DeepSVDDLoss, DOCLoss)},
                  unknown="loss must be one of {choices}, got {name!r}")
"""The losses by name (a detector's ``loss=`` parameter)."""


def make_loss(name: str, *, center=None, **settings) -> Loss:
    """The loss called ``name`` (a key of :data:`LOSSES`) with the ``settings`` it takes (others are
    ignored, so that every member of a family can be given the family's parameters) and, when
    scoring a fitted detector, its centre."""
    cls = LOSSES[name]
    return cls(center=center, **{key: settings[key] for key in cls.settings if key in settings})
