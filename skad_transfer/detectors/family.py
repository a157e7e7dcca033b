"""One family of deep detectors on one network and one theta0: the paper's Table 4 as a parameter grid.

A member of the family is a *recipe*: a loss, a regularizer toward theta0 and which parameters train.

=========  ==================================================================  ==================
loss       what is minimised                                                   score (normality)
=========  ==================================================================  ==================
``bce``    paper eq. (1): normal -> 0, outlier exposure (OE) -> 1              ``-logit``
``hsc``    hypersphere classifier (Ruff et al. 2020a), with OE                 ``-h(z)``
``dsvdd``  one-class Deep SVDD (Ruff et al. 2018), no OE                       ``-||f(x) - c||^2``
``doc``    DOC (Perera & Patel 2019): descriptiveness + compactness, with OE   ``-||f(x) - c||^2``
=========  ==================================================================  ==================

Regularizers: ``"l2sp"`` / ``"l2sp-ref"`` (ADIB's, see :mod:`skad_transfer.objectives`), ``"ewc"``
(Kirkpatrick et al. 2017) or ``None``. ``adapters=True`` is ADRA's parametrisation: 3x3 convolutions
frozen at theta0, parallel 1x1 adapters, BatchNorm and head trained. ADIB is ``(bce, l2sp)`` and ADRA
``(bce, None, adapters)``: :class:`~skad_transfer.ADIBDetector` and :class:`~skad_transfer.ADRADetector`
are presets of this family, as are the baselines in :mod:`skad_transfer.detectors.baselines`.

Decisions (each documented where it is made):

* ``f(x)`` for ``dsvdd`` and ``doc`` is the pooled feature vector of the ResNet26 (the head's input).
* DSVDD's centre ``c`` is the mean pooled feature of the normal images at theta0 with BatchNorm in
  train mode (batch statistics), as the training loss sees them.
* DSVDD must be free of bias terms, or the network collapses onto the centre (Ruff et al. 2018, Prop.
  2). A ResNet26 has BatchNorm, whose shift is a bias: DSVDD keeps every BatchNorm's affine
  parameters frozen at theta0 (running statistics still adapt) and drops the head, so the only way to
  a constant output (all convolutions zero) lands on ``relu(beta)`` of the last BatchNorm, a fixed
  point that is not the centre.
* DOC's reference set (ImageNet in Perera & Patel) is the OE corpus, labelled on the fly by theta0's
  own pretraining classifier (the head that comes with theta0): the descriptiveness loss keeps the
  network able to tell theta0's classes apart on OE images, which is what ImageNet labels do in
  DOC. It needs a theta0 with a classification head of two or more classes.
* EWC's Fisher is estimated once, at theta0, from per-sample gradients on up to ``batch_size`` normal
  and ``batch_size`` OE images (un-augmented, BatchNorm in eval mode), of the log-likelihood of
  theta0's pretraining classifier with labels sampled from its own predictions (the Fisher proper,
  which needs no labels). EWC is meant to protect the *pretraining* task; its data are not available
  at fit time, so normal + OE images stand in for them. A theta0 without a classification head
  (``weights=None``, a headless checkpoint) uses the network's own fresh one-logit head as a
  Bernoulli instead. Fisher entries above ``1 / (lr * ewc_lambda)`` are capped there: a stiffer
  quadratic makes SGD at that learning rate oscillate and diverge (on a Tiny-ImageNet theta0 a few
  stem and BatchNorm entries reach F ~ 10, i.e. 40x the stable limit at lr 0.01, lambda 400); capped,
  those parameters stay pinned near theta0, which is what their Fisher asks for.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ..data.augment import normalize
from ..engine import Precision, apply_batched
from ..nn.adapters import add_residual_adapters, freeze_for_adaptation
from ..nn.resnet import ResNet26
from ..objectives import (REGULARIZERS, diagonal_fisher, doc_loss, dsvdd_loss, ewc_penalty, hsc_loss, l2_sp,
                          oe_bce_objective, pseudo_huber)
from .base import TransferDetector

LOSSES = ("bce", "hsc", "dsvdd", "doc")
"""The losses of the family (see the module docstring)."""

AUTO_QUANTILE = 0.1
"""``contamination="auto"`` for the distance-based losses: the soft-boundary radius of Ruff et al.
(2018) with nu = 0.1, i.e. 10% of the training images fall outside."""


@dataclass(frozen=True)
class Recipe:
    """What a member of the family trains; built from an estimator's parameters at fit time."""

    loss: str = "bce"
    regularizer: str | None = "l2sp"
    alpha: float = 1e-2
    ewc_lambda: float = 400.0
    adapters: bool = False
    compactness_weight: float = 0.1

    @property
    def uses_outlier_exposure(self) -> bool:
        return self.loss != "dsvdd"


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


def theta0_classifier_head(record) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(weight, bias) of the classification head that came with theta0, or None if it has none
    (``weights=None``, a headless checkpoint, or a one-output head)."""
    if record is None:
        return None
    state = record.load_state_dict()
    weight = state.get("linears.weight")
    if weight is None or weight.ndim != 2 or weight.shape[0] < 2:
        return None
    return weight, state.get("linears.bias")


def _with_head(network: ResNet26, head, generator: torch.Generator) -> ResNet26:
    """``network`` with its head replaced by theta0's classifier head (in place).

    The new head's random initialisation (overwritten at once) draws from ``generator``, so that
    torch's global generator is left alone.
    """
    weight, bias = head
    if weight.shape[1] != network.feature_dim:
        raise ValueError(f"weights: the classifier head has {weight.shape[1]} inputs, the network "
                         f"{network.feature_dim}")
    network.reset_head(int(weight.shape[0]), generator)
    with torch.no_grad():
        network.linears.weight.copy_(weight)
        if bias is not None:
            network.linears.bias.copy_(bias)
        else:
            network.linears.bias.zero_()
    return network


def pooled_features(network: ResNet26, x: torch.Tensor) -> torch.Tensor:
    return network.features(x, ("pooled",))["pooled"]


def hsc_objective(network, x_normal: torch.Tensor, x_outlier: torch.Tensor) -> torch.Tensor:
    """One forward pass over normal + OE together, then :func:`~skad_transfer.objectives.hsc_loss`."""
    outputs = network(torch.cat([x_normal, x_outlier]))
    n = x_normal.shape[0]
    return hsc_loss(outputs[:n], outputs[n:])


class RecipeDetector(TransferDetector):
    """A :class:`TransferDetector` that trains a :class:`Recipe`; subclasses say which (``_recipe``).

    Adds the fitted attributes ``n_trainable_parameters_`` and, for the distance-based losses,
    ``center_``.
    """

    def _recipe(self) -> Recipe:
        raise NotImplementedError

    def _theta0_head(self):
        """theta0's classifier head: from the weights, else from a ResNet26 module backbone's own head."""
        head = theta0_classifier_head(self.weights_)
        if head is None and self.weights_ is None and isinstance(self.backbone, ResNet26):
            linears = self.backbone.linears
            if linears.out_features >= 2:
                head = (linears.weight.detach().cpu(), linears.bias.detach().cpu())
        return head

    @property
    def requires_outlier_exposure(self) -> bool:
        return self._recipe().uses_outlier_exposure

    @property
    def uses_outlier_exposure(self) -> bool:
        return self._recipe().uses_outlier_exposure

    # ------------------------------------------------------------------ training
    def _adapt(self, network, data, *, generator):
        recipe = self._recipe()
        if recipe.loss in ("dsvdd", "doc") and not isinstance(network, ResNet26):
            raise TypeError(
                f"loss {recipe.loss!r} needs the pooled features of a skad_transfer ResNet26 backbone, got "
                f"{type(network).__name__}"
            )
        teacher = None
        if recipe.loss == "doc":
            head = self._theta0_head()
            if head is None:
                raise ValueError(
                    "loss 'doc' needs a reference classification task: a theta0 (weights=) that comes with a "
                    "classification head of 2 or more classes, e.g. weights='default'; "
                    f"weights={self.weights!r} has none"
                )
            _with_head(network, head, generator)
            teacher = copy.deepcopy(network).eval().requires_grad_(False)

        # Captured before adapters exist: a regularizer covers only what theta0 provides.
        candidates = []
        if recipe.regularizer is not None:
            candidates = regularized_parameters(network, recipe.regularizer)
        fisher = None
        if recipe.regularizer == "ewc" and recipe.ewc_lambda > 0:
            fisher = self._theta0_fisher(network, data, candidates, generator)

        if recipe.adapters:
            add_residual_adapters(network)
            parameters = freeze_for_adaptation(network)
        else:
            parameters = list(network.parameters())
        if recipe.loss == "dsvdd":
            frozen = {id(p) for m in network.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
            frozen |= {id(p) for p in network.linears.parameters()}
            for p in network.parameters():
                if id(p) in frozen:
                    p.requires_grad_(False)
            parameters = [p for p in parameters if id(p) not in frozen]
        self.n_trainable_parameters_ = sum(p.numel() for p in parameters)

        if recipe.loss == "dsvdd":
            self.center_ = self._initial_center(network, data)
        self._fit_objective = self._build_objective(recipe, teacher, data.device)
        return parameters, self._build_penalty(recipe, parameters, candidates, fisher)

    def _build_penalty(self, recipe: Recipe, parameters, candidates, fisher):
        strength = recipe.ewc_lambda if recipe.regularizer == "ewc" else recipe.alpha
        if recipe.regularizer is None or strength == 0:
            return None
        trainable = {id(p) for p in parameters}
        if fisher is not None:
            pairs = [(p, f) for p, f in zip(candidates, fisher) if id(p) in trainable]
            regularized, fisher = [p for p, _ in pairs], [f for _, f in pairs]
        else:
            regularized = [p for p in candidates if id(p) in trainable]
        if not regularized:
            raise ValueError(
                f"regularizer={recipe.regularizer!r} covers no trained parameter"
                + (" (adapters=True freezes the 3x3 convolutions)" if recipe.adapters else "")
            )
        anchors = [p.detach().clone() for p in regularized]
        strength = float(strength)
        if fisher is not None:
            return lambda: ewc_penalty(regularized, anchors, fisher, strength)
        squared = recipe.regularizer == "l2sp"
        return lambda: strength * l2_sp(regularized, anchors, squared=squared)

    def _build_objective(self, recipe: Recipe, teacher, device):
        if recipe.loss == "bce":
            return oe_bce_objective
        if recipe.loss == "hsc":
            return hsc_objective
        if recipe.loss == "dsvdd":
            center = torch.as_tensor(self.center_, device=device)
            return lambda network, x_normal, x_outlier: dsvdd_loss(pooled_features(network, x_normal), center)
        weight = float(recipe.compactness_weight)

        def doc_objective(network, x_normal, x_outlier):
            features = pooled_features(network, torch.cat([x_normal, x_outlier]))
            n = x_normal.shape[0]
            with torch.no_grad():
                labels = teacher(x_outlier).argmax(dim=1)
            return doc_loss(features[:n], network.linears(features[n:]), labels, compactness_weight=weight)

        return doc_objective

    def _objective(self):
        # Built in _adapt (it needs the centre or the teacher); taken here so the fitted estimator
        # keeps no reference to the teacher network.
        return self.__dict__.pop("_fit_objective")

    def _theta0_fisher(self, network: nn.Module, data, candidates, generator: torch.Generator) -> list[torch.Tensor]:
        classifier = copy.deepcopy(network)
        head = self._theta0_head() if isinstance(network, ResNet26) else None
        if head is not None:
            _with_head(classifier, head, generator)
        classifier.eval()
        n = max(1, int(self.batch_size))
        images = [data.normal_batch(torch.randperm(data.normal.shape[0], generator=generator)[:n])]
        if data.corpus is not None:
            images.append(data.outlier_batch(torch.randperm(len(data.corpus), generator=generator)[:n]))
        inputs = torch.cat([normalize(x.to(data.device), self.mean_, self.std_) for x in images])
        names = {id(p): name for name, p in network.named_parameters()}
        fisher = diagonal_fisher(classifier, inputs, [names[id(p)] for p in candidates], generator=generator)
        # A parameter with stiffness ewc_lambda * F beyond 1 / lr makes SGD overshoot theta0 by more
        # than it corrects, and training diverges (measured: F reaches ~10 on the stem and BatchNorm of
        # a Tiny-ImageNet theta0, so 400 * 10 * 0.01 = 40). Capping F at 1 / (lr * ewc_lambda) keeps
        # those parameters pinned near theta0, as intended, without the divergence.
        cap = 1.0 / (float(self.lr) * float(self._recipe().ewc_lambda))
        return [fisher[names[id(p)]].clamp_(max=cap) for p in candidates]

    def _initial_center(self, network: nn.Module, data) -> np.ndarray:
        """DSVDD's ``c``: the mean pooled feature of the normal images at theta0, as training sees them.

        Training runs BatchNorm on normal-only batches (train mode), so ``c`` is computed the same way,
        in batches of the training's normal half, on a copy (theta0's running statistics stay as they
        are). Eval-mode features would put ``c`` on another scale whenever theta0's running statistics
        do not describe the normal data (always for a random init).
        """
        probe = copy.deepcopy(network).train()
        precision = Precision.resolve(data.device, self.precision)
        half = max(2, int(self.batch_size) // 2)
        n = data.normal.shape[0]
        total = None
        with torch.no_grad():
            for start in range(0, n, half):
                x = normalize(data.normal_batch(torch.arange(start, min(start + half, n))), self.mean_, self.std_)
                with precision.autocast(data.device):
                    features = pooled_features(probe, precision.prepare(x)).double().sum(dim=0)
                total = features if total is None else total + features
        return (total / n).float().cpu().numpy()

    # ------------------------------------------------------------------ scoring
    def _mean_features(self, network: nn.Module, data) -> np.ndarray:
        was_training = network.training
        network.eval()
        features = apply_batched(lambda x: pooled_features(network, x), data.normal, device=data.device,
                                 mean=self.mean_, std=self.std_, input_size=data.input_size,
                                 precision=self.precision)
        network.train(was_training)
        return features.double().mean(dim=0).float().numpy()

    def _finalize(self, network, data):
        if self._recipe().loss == "doc":
            # DOC scores by the distance to the trained normal features, not to the initial ones.
            self.center_ = self._mean_features(network, data)

    def _normality(self, network, x):
        loss = self._recipe().loss
        if loss == "hsc":
            return -pseudo_huber(network(x))
        if loss in ("dsvdd", "doc"):
            features = pooled_features(network, x).float()
            center = torch.as_tensor(self.center_, device=features.device)
            return -((features - center) ** 2).sum(dim=1)
        return super()._normality(network, x)

    def _auto_offset(self, X):
        loss = self._recipe().loss
        if loss == "hsc":
            # HSC's anomaly probability 1 - exp(-h) is 1/2 at h = log 2.
            return -math.log(2.0)
        if loss in ("dsvdd", "doc"):
            return float(np.percentile(self._score(X), 100.0 * AUTO_QUANTILE))
        return super()._auto_offset(X)


_REGULARIZER_CONSTRAINTS = {
    "regularizer": [StrOptions(set(REGULARIZERS)), None],
    "alpha": [Interval(Real, 0, None, closed="left")],
    "ewc_lambda": [Interval(Real, 0, None, closed="left")],
}


class DeepADDetector(RecipeDetector):
    """The paper's family of deep anomaly detectors on one network and one theta0 (Table 4).

    Every row of the paper's ablation is a parameter setting of this one estimator, so the ablation
    is a ``ParameterGrid`` (or a ``GridSearchCV``) over it. The defaults are ADIB.

    ======  ============================  =====================================================
    row     paper (Table 4)               parameters
    ======  ============================  =====================================================
    a1      eq. (1), random init          ``weights=None, loss="bce", regularizer=None``
    a2      eq. (1), pretrained           ``loss="bce", regularizer=None``
    a3      HSC + L2                      ``loss="hsc", regularizer="l2sp"``
    a4      DOC                           ``loss="doc", regularizer=None``
    a5      eq. (2) with EWC              ``loss="bce", regularizer="ewc"``
    a6      ADRA                          ``loss="bce", regularizer=None, adapters=True``
    a7      ADIB                          ``loss="bce", regularizer="l2sp"`` (the default)
    ======  ============================  =====================================================

    ``loss="dsvdd"`` (Ruff et al. 2018; no outlier exposure) and ``loss="hsc", regularizer=None``
    (SAD/HSC, Ruff et al. 2020a) are the baselines of the paper's Figure 1 and Table 3.

    Parameters
    ----------
    loss : {"bce", "hsc", "dsvdd", "doc"}, default="bce"
        ``"bce"``: binary cross-entropy of normal vs. outlier-exposure (OE) images (paper eq. 1).
        ``"hsc"``: the hypersphere classifier of Ruff et al. (2020a) on the network's output ``z``,
        normal images cost ``h(z) = sqrt(||z||^2 + 1) - 1``, OE images ``-log(1 - exp(-h(z)))``;
        score ``-h(z)``. ``"dsvdd"``: one-class Deep SVDD (Ruff et al. 2018), ``||f(x) - c||^2`` on the
        pooled features with ``c`` their mean over the normal images at theta0; no OE (a given
        corpus is ignored); BatchNorm affine parameters stay frozen and the head is unused, because
        DSVDD must have no bias terms (see :mod:`skad_transfer.detectors.family`). ``"doc"``: DOC
        (Perera & Patel 2019), cross-entropy of theta0's classifier head on OE images labelled by
        theta0's own predictions (the stand-in for ImageNet) plus ``compactness_weight`` times the
        compactness of the normal batch's pooled features; score ``-||f(x) - c||^2`` with ``c`` the
        mean trained feature of the normal images. Needs a theta0 with a classification head.
        ``"dsvdd"`` and ``"doc"`` need a ResNet26 backbone.
    regularizer : {"l2sp", "l2sp-ref", "ewc"} or None, default="l2sp"
        The pull toward theta0. ``"l2sp"``: ``alpha * ||theta - theta0||^2`` over every parameter
        theta0 provides (ADIB, paper eq. 2). ``"l2sp-ref"``: the authors' code, ``alpha * ||theta -
        theta0||`` over the 3x3 convolutions. ``"ewc"``: ``(ewc_lambda / 2) * sum_i F_i (theta_i -
        theta0_i)^2`` with the diagonal Fisher ``F`` at theta0 (see the module docs for how it is
        estimated, and why entries above ``1 / (lr * ewc_lambda)`` are capped). With
        ``adapters=True`` it covers the trained parameters theta0 provides (the BatchNorm layers);
        ``"l2sp-ref"`` then covers nothing and is an error.
    alpha : float, default=1e-2
        Strength of ``"l2sp"`` / ``"l2sp-ref"`` (the paper's 1e-2, after Li et al. 2018).
    ewc_lambda : float, default=400.0
        EWC's Fisher multiplier (the paper's 400, after Kirkpatrick et al. 2017).
    adapters : bool, default=False
        ADRA's parametrisation: freeze the 3x3 convolutions at theta0 and learn zero-initialised
        parallel 1x1 adapters beside them, with the BatchNorm layers and the head.
    compactness_weight : float, default=0.1
        DOC's lambda, the weight of the compactness loss (Perera & Patel's 0.1); used by ``"doc"`` only.
    backbone, width, input_size, weights, outlier_exposure, steps, epochs, batch_size, lr, momentum, \
weight_decay, image_shape, device, precision, checkpoint, jpeg_quality, \
match_outlier_exposure, match_histograms, random_state, verbose
        As for :class:`~skad_transfer.ADIBDetector`. ``weights=None`` is the random-init ablation.
    contamination : "auto" or float in (0, 0.5], default="auto"
        Sets ``offset_``. ``"auto"``: the model's own boundary where it has one (``"bce"``: logit 0,
        ``"hsc"``: anomaly probability 1/2, i.e. ``h = log 2``); for ``"dsvdd"`` and ``"doc"``, which
        have none, the 10% quantile of the training scores (Ruff et al.'s soft-boundary radius at
        nu = 0.1). A float: that fraction of the training images falls below the threshold.

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained network, in eval mode, on ``device_``.
    center_ : ndarray of shape (n_features,)
        ``"dsvdd"`` and ``"doc"`` only: the centre ``c`` of the pooled features.
    n_trainable_parameters_ : int
        Parameters that were trained.
    offset_, history_, weights_, input_size_, mean_, std_, jpeg_quality_, match_histograms_, intensity_separability_, image_shape_, n_features_in_, \
feature_names_in_, device_, n_iter_
        As for :class:`~skad_transfer.ADIBDetector`.

    See Also
    --------
    ADIBDetector, ADRADetector : the family's members ``(bce, l2sp)`` and ``(bce, None, adapters)``.
    DSVDDDetector, HSCDetector, DOCDetector : the baselines, as named estimators.

    Examples
    --------
    The ablation of the paper's Table 4 as a parameter grid (tiny settings; ``theta0.pth`` is any
    ResNet26 checkpoint with a classification head, e.g. from ``skad_transfer.weights.save_weights``):

    >>> import os, tempfile
    >>> import numpy as np
    >>> from sklearn.metrics import roc_auc_score
    >>> from sklearn.model_selection import ParameterGrid
    >>> from skad_transfer import DeepADDetector, resnet26
    >>> from skad_transfer.weights import save_weights
    >>> path = save_weights(resnet26(width=4, num_classes=10), os.path.join(tempfile.mkdtemp(), "t.pth")).path
    >>> rng = np.random.default_rng(0)
    >>> X_normal = rng.integers(0, 100, (64, 32, 32, 3), dtype=np.uint8)
    >>> X_outlier = rng.integers(100, 256, (64, 32, 32, 3), dtype=np.uint8)
    >>> X_test, y_test = np.concatenate([X_normal[:8], X_outlier[:8]]), np.r_[np.ones(8), -np.ones(8)]
    >>> grid = ParameterGrid([
    ...     {"weights": [None], "width": [4], "regularizer": [None]},                  # a1
    ...     {"weights": [path], "loss": ["bce"], "regularizer": [None, "ewc", "l2sp"]},  # a2, a5, a7
    ...     {"weights": [path], "loss": ["hsc"], "regularizer": ["l2sp"]},               # a3
    ...     {"weights": [path], "loss": ["doc"], "regularizer": [None]},                 # a4
    ...     {"weights": [path], "adapters": [True], "regularizer": [None]},              # a6
    ... ])
    >>> for params in grid:
    ...     det = DeepADDetector(**params, epochs=1, batch_size=32, device="cpu", random_state=0)
    ...     auc = roc_auc_score(y_test, det.fit(X_normal, X_outlier).score_samples(X_test))
    >>> len(grid)
    7
    """

    _parameter_constraints = {
        **TransferDetector._parameter_constraints,
        **_REGULARIZER_CONSTRAINTS,
        "loss": [StrOptions(set(LOSSES))],
        "adapters": ["boolean"],
        "compactness_weight": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        *,
        loss="bce",
        regularizer="l2sp",
        alpha=1e-2,
        ewc_lambda=400.0,
        adapters=False,
        compactness_weight=0.1,
        backbone="resnet26",
        width=None,
        input_size=None,
        weights="default",
        outlier_exposure=None,
        steps=1500,
        epochs=None,
        batch_size=128,
        lr=0.01,
        momentum=0.9,
        weight_decay=1e-4,
        contamination="auto",
        image_shape=None,
        device="auto",
        precision="auto",
        checkpoint=None,
        jpeg_quality=75,
        match_outlier_exposure=True,
        match_histograms="auto",
        random_state=None,
        verbose=True,
    ):
        super().__init__(
            backbone=backbone, width=width, input_size=input_size, weights=weights,
            outlier_exposure=outlier_exposure, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
            weight_decay=weight_decay, contamination=contamination, image_shape=image_shape, device=device,
            precision=precision, checkpoint=checkpoint, jpeg_quality=jpeg_quality,
            match_outlier_exposure=match_outlier_exposure, match_histograms=match_histograms, random_state=random_state, verbose=verbose,
        )
        self.loss = loss
        self.regularizer = regularizer
        self.alpha = alpha
        self.ewc_lambda = ewc_lambda
        self.adapters = adapters
        self.compactness_weight = compactness_weight

    def _recipe(self) -> Recipe:
        return Recipe(loss=self.loss, regularizer=self.regularizer, alpha=self.alpha, ewc_lambda=self.ewc_lambda,
                      adapters=bool(self.adapters), compactness_weight=self.compactness_weight)
