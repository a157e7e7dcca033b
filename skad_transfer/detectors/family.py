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

The decisions each loss needed on this network (DSVDD's bias terms and centre, DOC's reference
set) are documented with the loss, in :mod:`skad_transfer.losses`; how EWC's Fisher is estimated
and capped, in :mod:`skad_transfer.regularizers`. ``f(x)`` for ``dsvdd`` and ``doc`` is the pooled
feature vector of the backbone (the head's input).
"""

from __future__ import annotations

from numbers import Real

from sklearn.utils._param_validation import Interval, StrOptions

from ..losses import LOSSES
from ..regularizers import REGULARIZER_PARAMETER_CONSTRAINTS
from .base import Recipe, TransferDetector


class DeepADDetector(TransferDetector):
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
        DSVDD must have no bias terms (see :class:`~skad_transfer.losses.DeepSVDDLoss`). ``"doc"``: DOC
        (Perera & Patel 2019), cross-entropy of theta0's classifier head on OE images labelled by
        theta0's own predictions (the stand-in for ImageNet) plus ``compactness_weight`` times the
        compactness of the normal batch's pooled features; score ``-||f(x) - c||^2`` with ``c`` the
        mean trained feature of the normal images. Needs a theta0 with a classification head.
        ``"dsvdd"`` and ``"doc"`` need a :class:`~skad_transfer.nn.Backbone` (a backbone name or
        instance).
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
weight_decay
        As for :class:`~skad_transfer.ADIBDetector`. ``weights=None`` is the random-init ablation.
    contamination : "auto" or float in (0, 0.5], default="auto"
        Sets ``offset_``. ``"auto"``: the model's own boundary where it has one, refitted after
        training on normal and OE scores (``"bce"``: logit 0 with a refitted shift, ``"hsc"``: anomaly
        probability 1/2 with a refitted scale of ``h``; see :class:`~skad_transfer.ADIBDetector` and
        :class:`~skad_transfer.HSCDetector`); for ``"dsvdd"`` and ``"doc"``, which
        have none, the 10% quantile of the training scores (Ruff et al.'s soft-boundary radius at
        nu = 0.1). A float: that fraction of the training images falls below the threshold (of the
        held-out normal images with ``validation_fraction``, as for the quantile of ``"auto"``).
    image_shape, device, precision, compile, checkpoint, validation_fraction, early_stopping, \
n_iter_no_change, warm_start, jpeg_quality, match_outlier_exposure, match_histograms, anomaly_score, \
random_state, verbose
        As for :class:`~skad_transfer.ADIBDetector`.

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained network, in eval mode, on ``device_``.
    center_ : ndarray of shape (n_features,)
        ``"dsvdd"`` and ``"doc"`` only: the centre ``c`` of the pooled features.
    n_trainable_parameters_ : int
        Parameters that were trained.
    offset_, history_, weights_, input_size_, mean_, std_, jpeg_quality_, match_histograms_, intensity_separability_, anomaly_score_, oe_separability_, image_shape_, n_features_in_, \
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
        **REGULARIZER_PARAMETER_CONSTRAINTS,
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
        compile=False,
        checkpoint=None,
        validation_fraction=None,
        early_stopping=False,
        n_iter_no_change=5,
        warm_start=False,
        jpeg_quality=75,
        match_outlier_exposure=True,
        match_histograms="auto",
        anomaly_score="auto",
        random_state=None,
        verbose=True,
    ):
        super().__init__(
            backbone=backbone, width=width, input_size=input_size, weights=weights,
            outlier_exposure=outlier_exposure, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
            weight_decay=weight_decay, contamination=contamination, image_shape=image_shape, device=device,
            precision=precision, compile=compile, checkpoint=checkpoint, validation_fraction=validation_fraction,
            early_stopping=early_stopping, n_iter_no_change=n_iter_no_change, warm_start=warm_start, jpeg_quality=jpeg_quality,
            match_outlier_exposure=match_outlier_exposure, match_histograms=match_histograms, anomaly_score=anomaly_score, random_state=random_state, verbose=verbose,
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
