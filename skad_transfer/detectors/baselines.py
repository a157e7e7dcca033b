"""The paper's baselines: DSVDD, HSC (SAD), DOC on the shared network and engine, and kNN-AD on features.

:class:`DSVDDDetector`, :class:`HSCDetector` and :class:`DOCDetector` are named members of
:class:`~skad_transfer.DeepADDetector` (``loss="dsvdd"``, ``"hsc"``, ``"doc"``): same ResNet26, same
theta0, same training engine as ADIB and ADRA, as the paper requires for a fair comparison. The
decisions each one needed on this network (DSVDD's bias terms, DOC's reference set) are documented
with its loss, in :mod:`skad_transfer.losses`.

:class:`KNNDetector` is kNN-AD (Bergman et al. 2020) on feature vectors;
``make_pipeline(LayerFeatures(), KNNDetector())`` is the paper's kNN baseline on frozen theta0 features.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.neighbors import NearestNeighbors
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ..losses import AUTO_QUANTILE
from ..regularizers import REGULARIZER_PARAMETER_CONSTRAINTS
from .base import Recipe, TransferDetector
from .labels import check_novelty_labels

# A baseline's Parameters: _SHARED_DOC, its own contamination entry, then _SHARED_TAIL (the order of
# the signature, which tests/test_docstring_parameters.py checks).
_SHARED_DOC = """
    regularizer : {"l2sp", "l2sp-ref", "ewc"} or None, default=None
        A pull toward theta0, as in :class:`~skad_transfer.DeepADDetector` (the paper's baselines
        have none; ``HSCDetector(regularizer="l2sp")`` is the ablation's a3).
    alpha : float, default=1e-2
        Strength of ``"l2sp"`` / ``"l2sp-ref"``.
    ewc_lambda : float, default=400.0
        EWC's Fisher multiplier.
    backbone, width, input_size, weights, outlier_exposure, steps, epochs, batch_size, lr, momentum, \
weight_decay
        As for :class:`~skad_transfer.ADIBDetector`; ``weights=None`` trains from a random init."""

_SHARED_TAIL = """
    image_shape, device, precision, compile, checkpoint, validation_fraction, early_stopping, \
n_iter_no_change, warm_start, jpeg_quality, match_outlier_exposure, match_histograms
        As for :class:`~skad_transfer.ADIBDetector`.
    anomaly_score : {"auto", "loss", "loss+knn", "knn"}, default="auto"
        ``"auto"`` is the method's own score here (``"loss"``: the paper's baseline); the others as
        for :class:`~skad_transfer.ADIBDetector`.
    random_state, verbose
        As for :class:`~skad_transfer.ADIBDetector`."""


class _Baseline(TransferDetector):
    """A member of the family with a fixed loss and no adapters (constructor boilerplate lives here)."""

    _loss = ""
    _parameter_constraints = {**TransferDetector._parameter_constraints, **REGULARIZER_PARAMETER_CONSTRAINTS}

    def __init__(
        self,
        *,
        regularizer=None,
        alpha=1e-2,
        ewc_lambda=400.0,
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
        self.regularizer = regularizer
        self.alpha = alpha
        self.ewc_lambda = ewc_lambda

    def _recipe(self) -> Recipe:
        return Recipe(loss=self._loss, regularizer=self.regularizer, alpha=self.alpha, ewc_lambda=self.ewc_lambda)


class DSVDDDetector(_Baseline):
    __doc__ = """One-class Deep SVDD (Ruff et al., ICML 2018) on the shared ResNet26 and theta0.

    Minimises ``mean ||f(x) - c||^2`` over the normal images, with ``f`` the pooled features and ``c``
    their mean over the normal images at theta0 (BatchNorm on batches of normal images, as in
    training), fixed before training.
    Score: ``-||f(x) - c||^2``. One-class: no outlier exposure; a corpus passed to ``fit`` or set as
    ``outlier_exposure`` is ignored, so that a grid over detectors can share one.

    DSVDD needs a network without bias terms, or it can map everything onto ``c``. The ResNet26's
    BatchNorm shifts are biases, so they (and the BatchNorm scales) stay frozen at theta0 while the
    convolutions train; the running statistics still adapt, and the head is not used. The network
    can then reach a constant output only at ``relu(beta)`` of its last BatchNorm, which is not ``c``.
    It is the member ``loss="dsvdd"`` of :class:`~skad_transfer.DeepADDetector`.

    Parameters
    ----------""" + _SHARED_DOC + """
    contamination : "auto" or float in (0, 0.5], default="auto"
        Sets ``offset_``: that fraction of the training images (of the held-out normal images with
        ``validation_fraction``) falls below the threshold; ``"auto"``
        is 0.1, the soft-boundary radius of Ruff et al. at nu = 0.1.""" + _SHARED_TAIL + """

    Attributes
    ----------
    center_ : ndarray of shape (n_features,)
        The centre ``c``.
    n_trainable_parameters_ : int
        Parameters trained (the convolutions).
    network_, offset_, history_, weights_, input_size_, mean_, std_, jpeg_quality_, match_histograms_, intensity_separability_, anomaly_score_, oe_separability_, image_shape_, n_features_in_, \
feature_names_in_, device_, n_iter_
        As for :class:`~skad_transfer.ADIBDetector`.

    Examples
    --------
    >>> import numpy as np
    >>> from skad_transfer import DSVDDDetector
    >>> X_normal = np.random.default_rng(0).integers(0, 100, (64, 32, 32, 3), dtype=np.uint8)
    >>> det = DSVDDDetector(weights=None, width=4, epochs=1, device="cpu", random_state=0).fit(X_normal)
    >>> det.score_samples(X_normal[:3]).shape, det.center_.shape
    ((3,), (16,))
    """

    _loss = "dsvdd"


class HSCDetector(_Baseline):
    __doc__ = """Hypersphere classifier (HSC, the SAD of Ruff et al. 2020a/b) with outlier exposure.

    With ``z`` the network's output and ``h(z) = sqrt(||z||^2 + 1) - 1``, normal images cost ``h(z)``
    and outlier-exposure images ``-log(1 - exp(-h(z)))``: a radial classifier whose anomaly
    probability is ``1 - exp(-h(z))``. Score: ``-h(z)``. The paper's HSC baseline starts from the
    pretrained theta0 without a regularizer (Tables 3, 5, 6); ``regularizer="l2sp"`` is the ablation's
    a3. It is the member ``loss="hsc"`` of :class:`~skad_transfer.DeepADDetector`.

    Parameters
    ----------""" + _SHARED_DOC + """
    contamination : "auto" or float in (0, 0.5], default="auto"
        Sets ``offset_``. ``"auto"``: where the anomaly probability ``1 - exp(-u h)`` is 1/2, with the
        scale ``u`` of ``h`` refitted after training to minimise the HSC loss over normal and OE
        images (as for :class:`~skad_transfer.ADIBDetector`'s shift): ``-log(2) / u``. A float: that
        fraction of the training images (of the held-out normal images with ``validation_fraction``)
        falls below the threshold.""" + _SHARED_TAIL + """

    Attributes
    ----------
    n_trainable_parameters_ : int
    network_, offset_, history_, weights_, input_size_, mean_, std_, jpeg_quality_, match_histograms_, intensity_separability_, anomaly_score_, oe_separability_, image_shape_, n_features_in_, \
feature_names_in_, device_, n_iter_
        As for :class:`~skad_transfer.ADIBDetector`.

    Examples
    --------
    >>> import numpy as np
    >>> from skad_transfer import HSCDetector
    >>> rng = np.random.default_rng(0)
    >>> X_normal = rng.integers(0, 100, (64, 32, 32, 3), dtype=np.uint8)
    >>> X_outlier = rng.integers(100, 256, (64, 32, 32, 3), dtype=np.uint8)
    >>> det = HSCDetector(weights=None, width=4, epochs=1, device="cpu", random_state=0).fit(X_normal, X_outlier)
    >>> bool((det.score_samples(X_normal[:3]) <= 0).all())
    True
    """

    _loss = "hsc"


class DOCDetector(_Baseline):
    __doc__ = """Deep one-class classification with DOC's losses (Perera & Patel, IEEE TIP 2019).

    DOC trains a feature extractor with a *descriptiveness* loss (cross-entropy on a labelled
    reference dataset, ImageNet in the original) plus ``compactness_weight`` times a *compactness*
    loss (the normal batch's variance around the leave-one-out mean). Here the reference set is the
    outlier-exposure corpus, labelled on the fly by theta0's own pretraining classifier: the head that
    came with theta0 is trained on, against the labels the frozen theta0 predicts for the same
    (augmented) images. So DOC needs a theta0 with a classification head (e.g. ``weights="default"``
    or the authors' ImageNet checkpoint); ``weights=None`` is an error. The compactness loss acts on
    the pooled features, and the score is ``-||f(x) - c||^2`` with ``c`` the mean pooled feature of
    the normal training images after training (DOC's template distance with one template: the mean).
    It is the member ``loss="doc"`` of :class:`~skad_transfer.DeepADDetector`.

    Parameters
    ----------
    compactness_weight : float, default=0.1
        DOC's lambda (Perera & Patel's 0.1).""" + _SHARED_DOC + """
    contamination : "auto" or float in (0, 0.5], default="auto"
        Sets ``offset_``: that fraction of the training images (of the held-out normal images with
        ``validation_fraction``) falls below the threshold; ``"auto"``
        is 0.1 (no probabilistic boundary exists for a distance).""" + _SHARED_TAIL + """

    Attributes
    ----------
    center_ : ndarray of shape (n_features,)
        Mean pooled feature of the normal training images, after training.
    n_trainable_parameters_ : int
    network_, offset_, history_, weights_, input_size_, mean_, std_, jpeg_quality_, match_histograms_, intensity_separability_, anomaly_score_, oe_separability_, image_shape_, n_features_in_, \
feature_names_in_, device_, n_iter_
        As for :class:`~skad_transfer.ADIBDetector`; ``network_``'s head is the trained reference
        classifier.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skad_transfer import DOCDetector, resnet26
    >>> from skad_transfer.weights import save_weights
    >>> theta0 = save_weights(resnet26(width=4, num_classes=10), os.path.join(tempfile.mkdtemp(), "t.pth"))
    >>> rng = np.random.default_rng(0)
    >>> X_normal = rng.integers(0, 100, (64, 32, 32, 3), dtype=np.uint8)
    >>> X_outlier = rng.integers(100, 256, (64, 32, 32, 3), dtype=np.uint8)
    >>> det = DOCDetector(weights=theta0.path, epochs=1, device="cpu", random_state=0).fit(X_normal, X_outlier)
    >>> det.network_.linears.out_features
    10
    """

    _loss = "doc"
    _parameter_constraints = {**_Baseline._parameter_constraints,
                              "compactness_weight": [Interval(Real, 0, None, closed="left")]}

    def __init__(
        self,
        *,
        compactness_weight=0.1,
        regularizer=None,
        alpha=1e-2,
        ewc_lambda=400.0,
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
            regularizer=regularizer, alpha=alpha, ewc_lambda=ewc_lambda, backbone=backbone, width=width,
            input_size=input_size, weights=weights, outlier_exposure=outlier_exposure, steps=steps, epochs=epochs,
            batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay, contamination=contamination,
            image_shape=image_shape, device=device, precision=precision, compile=compile, checkpoint=checkpoint, validation_fraction=validation_fraction,
            early_stopping=early_stopping, n_iter_no_change=n_iter_no_change, warm_start=warm_start, jpeg_quality=jpeg_quality,
            match_outlier_exposure=match_outlier_exposure, match_histograms=match_histograms, anomaly_score=anomaly_score,
            random_state=random_state, verbose=verbose,
        )
        self.compactness_weight = compactness_weight

    def _recipe(self) -> Recipe:
        return Recipe(loss="doc", regularizer=self.regularizer, alpha=self.alpha, ewc_lambda=self.ewc_lambda,
                      compactness_weight=self.compactness_weight)


class KNNDetector(OutlierMixin, BaseEstimator):
    """kNN-AD (Bergman, Cohen & Hoshen 2020): distance to the nearest normal training features.

    An outlier detector on feature vectors: ``score_samples(X)`` is minus the mean distance of each
    row to its ``n_neighbors`` nearest training rows (higher = more normal). On images, put a
    feature extractor in front: ``make_pipeline(LayerFeatures(), KNNDetector())`` is the paper's
    kNN baseline on frozen theta0 features.

    A row is always scored as a new query, so a training row scored again finds itself at distance
    0 among its neighbours. Leaving a point out of its own neighbours is only possible when it is
    known to be a training point, and deciding that from the values would make a row's score depend
    on whatever else is in the batch; scores here depend on the row alone (order- and subset-
    invariant), and ``offset_`` is computed from these same scores of the training set, so that
    ``contamination`` is the fraction of the training set ``predict`` calls outliers.

    Parameters
    ----------
    n_neighbors : int, default=2
        Neighbours averaged over (Bergman et al. use 2). More than the training set has is capped,
        with a warning.
    metric : str or callable, default="euclidean"
        Any metric :class:`sklearn.neighbors.NearestNeighbors` accepts.
    contamination : "auto" or float in (0, 0.5], default="auto"
        Sets ``offset_`` to that quantile of the training scores; ``"auto"`` is 0.1 (distances have no
        natural boundary).
    n_jobs : int, optional
        Parallel jobs of the neighbour search.

    Attributes
    ----------
    nearest_neighbors_ : sklearn.neighbors.NearestNeighbors
        The index over the training features.
    n_neighbors_ : int
        Neighbours actually used.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame with string columns.

    Examples
    --------
    >>> import numpy as np
    >>> from skad_transfer import KNNDetector
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    >>> det = KNNDetector(n_neighbors=2).fit(X)
    >>> det.score_samples([[0.0, 0.0], [5.0, 5.0]]).round(3)
    array([-0.5 , -6.03])
    """

    _parameter_constraints = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "metric": [str, callable],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "n_jobs": [Integral, None],
    }

    def __init__(self, n_neighbors=2, *, metric="euclidean", contamination="auto", n_jobs=None):
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.contamination = contamination
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Index the training features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features of normal training samples.
        y : array-like of shape (n_samples,), optional
            Labels (+1 normal, -1 anomaly): only the normal rows are indexed, as for the deep
            detectors, so ``GridSearchCV(..., scoring="roc_auc")`` can run the novelty protocol.

        Returns
        -------
        self : object
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        if y is not None:
            normal = check_novelty_labels(y, X.shape[0])
            X = X[normal]
        self.n_neighbors_ = min(self.n_neighbors, X.shape[0])
        if self.n_neighbors_ < self.n_neighbors:
            warnings.warn(f"n_neighbors={self.n_neighbors} is more than the {X.shape[0]} training samples; "
                          f"using {self.n_neighbors_}", UserWarning, stacklevel=2)
        self.nearest_neighbors_ = NearestNeighbors(n_neighbors=self.n_neighbors_, metric=self.metric,
                                                   n_jobs=self.n_jobs).fit(X)
        quantile = AUTO_QUANTILE if self.contamination == "auto" else self.contamination
        self.offset_ = float(np.percentile(self._score(X), 100.0 * quantile))
        return self

    def _score(self, X) -> np.ndarray:
        distances, _ = self.nearest_neighbors_.kneighbors(X, n_neighbors=self.n_neighbors_)
        return -distances.mean(axis=1)

    def score_samples(self, X):
        """Minus the mean distance to the ``n_neighbors_`` nearest training rows (higher = more normal).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self._score(validate_data(self, X, reset=False, dtype=[np.float64, np.float32]))

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features, e.g. :class:`~skad_transfer.LayerFeatures` output.

        Returns
        -------
        decision : ndarray of shape (n_samples,)
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """-1 for outliers and +1 for inliers, agreeing with ``decision_function(X) >= 0``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features, e.g. :class:`~skad_transfer.LayerFeatures` output.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
