"""The shared scikit-learn outlier detector behind ADIB, ADRA and the deep baselines.

A subclass says three things: how to turn theta0 into the network it trains
(:meth:`TransferDetector._adapt`), which loss it minimises (:meth:`TransferDetector._objective`)
and whether it needs (``requires_outlier_exposure``) or uses (``uses_outlier_exposure``) an
outlier-exposure corpus; optionally how it scores (``_normality``), what it computes after training
(``_finalize``) and its ``contamination="auto"`` threshold (``_auto_offset``). Everything else lives
here: parameter validation, input validation, theta0 resolution, the OE corpus, the training engine,
scores, ``offset_`` and pickling.

Scores follow scikit-learn: ``score_samples`` is higher for more normal samples (the negated anomaly
logit), ``decision_function = score_samples - offset_`` is negative for outliers and ``predict``
returns -1 (outlier) / +1 (inlier).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ..data.corpora import OutlierCorpus, resolve_corpus
from ..data.harmonize import check_jpeg_quality
from ..data.images import as_image_batch, naming_errors, resolve_image_shape, to_numpy
from ..engine import PRECISIONS, TrainingData, TrainSettings, apply_batched, resolve_device, train
from ..nn.resnet import SUPPORTED_INPUT_SIZES, ResNet26
from ..weights import CIFAR_MEAN, CIFAR_STD, WeightsRecord, load_backbone_state, resolve_weights

BACKBONES = ("resnet26",)


def validate_images(estimator, X, *, reset: bool) -> torch.Tensor:
    """The canonical image batch of ``X`` for an estimator with an ``image_shape`` parameter.

    Shared by the detectors and :class:`~skad_transfer.features.LayerFeatures`, so that every
    estimator of the package accepts the same inputs with the same errors. With ``reset=True`` (in
    ``fit``) it records ``n_features_in_``, ``image_shape_`` and, for DataFrames, ``feature_names_in_``
    on ``estimator``; afterwards flattened input is checked against them.
    """
    X = to_numpy(X, "X")
    if hasattr(X, "columns") or np.asarray(X).ndim == 2:
        with naming_errors("X"):
            X = validate_data(estimator, X, reset=reset, dtype="numeric", ensure_all_finite=True,
                              ensure_min_samples=1)
        shape = estimator.image_shape if reset else getattr(estimator, "image_shape_", None)
        if reset:
            estimator.image_shape_ = resolve_image_shape(X.shape[1], estimator.image_shape, "X")
        batch = as_image_batch(X, name="X", image_shape=shape, validated=True)
    else:
        batch = as_image_batch(X, name="X")
        if reset:
            estimator.n_features_in_ = int(np.prod(batch.source_shape))
            estimator.image_shape_ = batch.source_shape
            if hasattr(estimator, "feature_names_in_"):
                del estimator.feature_names_in_
    return batch.data


class TransferDetector(OutlierMixin, BaseEstimator):
    """Base class of the transfer-based detectors; not meant to be used directly.

    See :class:`~skad_transfer.ADIBDetector` for the parameters.
    """

    _parameter_constraints: dict = {
        "backbone": [StrOptions(set(BACKBONES)), nn.Module],
        "width": [Interval(Integral, 1, None, closed="left"), None],
        "input_size": [Interval(Integral, 1, None, closed="left"), None],
        "weights": [str, os.PathLike, WeightsRecord, None],
        "outlier_exposure": "no_validation",
        "epochs": [Interval(Integral, 1, None, closed="left"), None],
        "steps": [Interval(Integral, 1, None, closed="left")],
        "jpeg_quality": [Interval(Integral, 1, 100, closed="both"), None],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "image_shape": [tuple, list, None],
        "device": [str, torch.device],
        "precision": [StrOptions(set(PRECISIONS))],
        "checkpoint": [str, os.PathLike, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    #: Whether fitting without an outlier-exposure corpus is an error.
    requires_outlier_exposure = True
    #: Whether an outlier-exposure corpus is used at all; one-class detectors ignore a given corpus, so
    #: that a grid over losses can share one ``outlier_exposure`` parameter.
    uses_outlier_exposure = True

    def __init__(
        self,
        *,
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
        random_state=None,
        verbose=True,
    ):
        self.backbone = backbone
        self.width = width
        self.input_size = input_size
        self.weights = weights
        self.outlier_exposure = outlier_exposure
        self.steps = steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.contamination = contamination
        self.image_shape = image_shape
        self.device = device
        self.precision = precision
        self.checkpoint = checkpoint
        self.jpeg_quality = jpeg_quality
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ subclass hooks
    def _adapt(self, network: nn.Module, data: TrainingData) -> tuple[list[nn.Parameter], object]:
        """Prepare ``network`` (holding theta0, on the training device) for training.

        ``data`` gives access to the training images (e.g. to compute a centre or a Fisher matrix).
        Returns the parameters to optimise and a ``penalty()`` callable (or None) added to the loss.
        """
        raise NotImplementedError

    def _objective(self):
        """``objective(network, x_normal, x_outlier_or_None) -> loss`` (see :mod:`skad_transfer.engine`)."""
        raise NotImplementedError

    def _normality(self, network: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Per-image normality score of a normalised batch (higher = more normal): the negated logit."""
        return -network(x).reshape(len(x), -1)[:, 0]

    def _finalize(self, network: nn.Module, data: TrainingData) -> None:
        """After training, with ``network`` in eval mode: e.g. compute a centre of the trained features."""

    def _auto_offset(self, X: torch.Tensor) -> float:
        """``offset_`` for ``contamination="auto"``; ``X`` are the (normal) training images."""
        # The logit's own boundary: sigmoid(logit) = 1/2 between "normal" and "OE-like".
        return 0.0

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, X_outlier=None):
        """Fit the detector on normal images, contrasted with an outlier-exposure corpus.

        Parameters
        ----------
        X : array-like or tensor
            Normal training images: (N, H, W, C), (N, C, H, W), (N, H, W) or flattened (N, C*H*W);
            uint8 0..255 or float 0..1.
        y : None, array-like of shape (N,), image batch, or corpus specification
            scikit-learn's second argument. 1-D labels (+1 normal, -1 anomaly) select the normal rows
            to train on, which is how ``GridSearchCV(..., scoring="roc_auc")`` runs the novelty
            protocol fold by fold. A batch of images (or a corpus name, path or object) is taken as
            the outlier-exposure corpus, so ``fit(X_normal, X_outlier)`` works positionally.
        X_outlier : image batch or corpus specification, optional
            The outlier-exposure corpus, by keyword. Overrides nothing: giving it together with an
            OE corpus in ``y`` is an error; it takes precedence over the ``outlier_exposure``
            parameter.

        Returns
        -------
        self : object
        """
        X, y_outlier = self._split_fit_arguments(X, y)
        if y_outlier is not None and X_outlier is not None:
            raise ValueError("fit: the outlier-exposure corpus was given twice (as y and as X_outlier)")
        outlier_spec = X_outlier if X_outlier is not None else y_outlier
        if outlier_spec is None:
            outlier_spec = self.outlier_exposure
        if not self.uses_outlier_exposure:
            outlier_spec = None
        if outlier_spec is None and self.requires_outlier_exposure:
            raise ValueError(
                f"{type(self).__name__} needs an outlier-exposure corpus: pass it to fit "
                f"(fit(X_normal, X_outlier)) or set outlier_exposure= to a corpus name, path or array"
            )
        corpus = None
        if outlier_spec is not None:
            corpus = resolve_corpus(outlier_spec, name="X_outlier" if outlier_spec is not self.outlier_exposure
                                    else "outlier_exposure")

        device = resolve_device(self.device)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        record = resolve_weights(self.weights)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            network = self._build_network(record).to(device)
        self.weights_ = record
        self.input_size_ = network.input_size if isinstance(network, ResNet26) else (self.input_size or 32)
        self.mean_ = tuple(record.mean) if record is not None else CIFAR_MEAN
        self.std_ = tuple(record.std) if record is not None else CIFAR_STD
        self.jpeg_quality_ = check_jpeg_quality(self.jpeg_quality)
        data = TrainingData(X, corpus, device, self.input_size_, jpeg_quality=self.jpeg_quality_)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            parameters, penalty = self._adapt(network, data)

        settings = TrainSettings(
            steps=self.steps, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, momentum=self.momentum,
            weight_decay=self.weight_decay, seed=seed, device=device, precision=self.precision, verbose=bool(self.verbose),
            checkpoint=self.checkpoint, description=type(self).__name__,
        )
        if self.checkpoint is not None:
            settings.fingerprint = self._fingerprint(X, corpus, seed)
        self.history_ = train(network, data, self._objective(), parameters, settings,
                              mean=self.mean_, std=self.std_, penalty=penalty)
        network.eval()
        self._finalize(network, data)
        self.network_ = network
        self.device_ = device
        self.n_iter_ = len(self.history_)
        if self.contamination == "auto":
            self.offset_ = float(self._auto_offset(X))
        else:
            self.offset_ = float(np.percentile(self._score(X), 100.0 * self.contamination))
        return self

    def _split_fit_arguments(self, X, y):
        """Validate X; split ``y`` into (normal rows of X, OE corpus spec or None)."""
        X_raw = to_numpy(X, "X")
        y_outlier = None
        labels = None
        if y is not None:
            if isinstance(y, (str, os.PathLike, OutlierCorpus)):
                y_outlier = y
            else:
                y_array = np.asarray(to_numpy(y, "y"))
                y_shape = y_array.shape
                if len(y_shape) >= 2:
                    y_outlier = y
                elif len(y_shape) == 1:
                    labels = y_array
                else:
                    raise ValueError(f"y: expected 1-D labels or an image batch, got {type(y).__name__} {y_shape}")
        images = self._validate_images(X_raw, reset=True)
        if labels is not None:
            if labels.shape[0] != images.shape[0]:
                raise ValueError(
                    f"y: expected {images.shape[0]} labels (one per row of X; +1 normal, -1 anomaly), "
                    f"got {labels.shape[0]}"
                )
            if labels.dtype.kind not in "iufb":
                raise ValueError(
                    f"y: Unknown label type: expected numeric labels (+1 normal, -1 anomaly), got dtype {labels.dtype}"
                )
            normal = labels != -1
            if not normal.any():
                raise ValueError("y: every row is labelled -1 (anomaly); at least one normal (+1) row is needed")
            if not normal.all():
                images = images[torch.from_numpy(normal)]
        return images, y_outlier

    def _validate_images(self, X, *, reset: bool) -> torch.Tensor:
        return validate_images(self, X, reset=reset)

    def _build_network(self, record: WeightsRecord | None) -> nn.Module:
        if isinstance(self.backbone, nn.Module):
            if self.width is not None:
                raise ValueError("width applies to backbone='resnet26' only, not to a module backbone")
            network = copy.deepcopy(self.backbone).cpu()
            if record is not None:
                state = record.load_state_dict()
                if isinstance(network, ResNet26):
                    load_backbone_state(network, state, source=f"weights {record.name!r}")
                else:
                    network.load_state_dict(state)
            if isinstance(network, ResNet26):
                network.reset_head(1)
                return network
            self._check_module_output(network)
            return network
        from ..nn.resnet import resnet26

        size = self.input_size
        if size is not None and size not in SUPPORTED_INPUT_SIZES:
            raise ValueError(f"input_size must be one of {SUPPORTED_INPUT_SIZES} or None, got {size!r}")
        network = resnet26(width=self.width, input_size=size, weights=record, num_classes=1)
        network.reset_head(1)  # the AD head is always fresh, whatever head theta0 came with
        return network

    def _check_module_output(self, network: nn.Module) -> None:
        size = self.input_size or 32
        was_training = network.training
        network.eval()
        with torch.no_grad():
            out = network(torch.zeros(2, 3, size, size))
        network.train(was_training)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) not in ((2, 1), (2,)):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise TypeError(
                f"backbone: a module backbone must map (N, 3, {size}, {size}) images to (N, 1) anomaly "
                f"logits, got output {shape}"
            )

    def _fingerprint(self, X: torch.Tensor, corpus: OutlierCorpus | None, seed: int) -> str:
        digest = hashlib.sha256()
        params = {k: v for k, v in self.get_params().items() if k not in ("verbose", "checkpoint", "device")}
        digest.update(repr(sorted((k, repr(v)) for k, v in params.items())).encode())
        digest.update(f"{type(self).__name__}/{seed}/{tuple(X.shape)}".encode())
        digest.update(X.contiguous().numpy().tobytes())
        if corpus is not None:
            digest.update(f"{len(corpus)}/{corpus.path}".encode())
            digest.update(corpus.take(np.arange(min(len(corpus), 64))).numpy().tobytes())
        return digest.hexdigest()

    # ------------------------------------------------------------------ scoring
    def _score(self, images: torch.Tensor) -> np.ndarray:
        network = self.network_
        scores = apply_batched(lambda x: self._normality(network, x), images, device=self.device_, mean=self.mean_,
                               std=self.std_, input_size=self.input_size_, precision=self.precision,
                               # A model pickled before jpeg_quality existed was trained without it.
                               jpeg_quality=getattr(self, "jpeg_quality_", None))
        return scores.double().numpy()

    def score_samples(self, X):
        """Normality score of each image: the negated anomaly logit (higher = more normal).

        ``sigmoid(-score)`` is the network's probability that the image is anomalous.

        Parameters
        ----------
        X : array-like or tensor of images, in any form ``fit`` accepts.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self._score(self._validate_images(X, reset=False))

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers, positive for inliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """-1 for outliers and +1 for inliers, agreeing with ``decision_function(X) >= 0``."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    # ------------------------------------------------------------------ sklearn plumbing
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "network_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.target_tags.required = False
        return tags

    def __getstate__(self):
        return portable_network_state(super().__getstate__())

    def __setstate__(self, state):
        # A pickle made before a constructor parameter existed gets that parameter's default, so
        # get_params (and clone) keep working on it.
        for name, parameter in inspect.signature(type(self).__init__).parameters.items():
            if parameter.kind == parameter.KEYWORD_ONLY and name not in state:
                state[name] = parameter.default
        super().__setstate__(state)
        restore_network_device(self, state)


def portable_network_state(state) -> dict:
    """``__getstate__`` for estimators holding ``network_`` on ``device_``: CPU tensors in the pickle,
    so that a model fitted on CUDA loads anywhere."""
    state = dict(state)  # object.__getstate__ returns the live __dict__
    if "network_" in state:
        network = state["network_"]
        state["network_"] = copy.deepcopy(network).cpu() if any(
            t.device.type != "cpu" for t in network.state_dict().values()) else network
        state["device_"] = str(state["device_"])
    return state


def restore_network_device(estimator, state) -> None:
    """The ``__setstate__`` half of :func:`portable_network_state`: back to ``device_``, or to the CPU
    where that CUDA device does not exist."""
    if "network_" in state:
        device = torch.device(state["device_"])
        if device.type == "cuda" and (not torch.cuda.is_available() or
                                      (device.index or 0) >= torch.cuda.device_count()):
            device = torch.device("cpu")
        estimator.device_ = device
        estimator.network_ = estimator.network_.to(device)
