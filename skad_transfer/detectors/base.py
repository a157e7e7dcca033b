"""The one scikit-learn outlier detector behind ADIB, ADRA and the deep baselines: theta0 + a recipe.

A detector is :class:`TransferDetector` with a :class:`Recipe`: a loss (one object each, in
:mod:`skad_transfer.losses`), a regularizer toward theta0 (:mod:`skad_transfer.regularizers`) and
which parameters train (all, or ADRA's adapters). The presets (:class:`~skad_transfer.ADIBDetector`,
:class:`~skad_transfer.ADRADetector`, :class:`~skad_transfer.DeepADDetector` and the baselines) only
say which recipe their parameters make (``_recipe``). This module holds the estimator: parameter
and input validation, the OE corpus, the held-out images, ``fit`` as a composition of steps (theta0:
:mod:`~skad_transfer.detectors.theta0`; the data path: :mod:`skad_transfer.data.fitdata`; what
trains: :mod:`~skad_transfer.detectors.recipe`; training: :mod:`skad_transfer.training`; the fitted
score: :mod:`~skad_transfer.detectors.fitted_score`), ``offset_``, scoring and pickling.

Scores follow scikit-learn: ``score_samples`` is higher for more normal samples (the negated anomaly
logit), ``decision_function = score_samples - offset_`` is negative for outliers and ``predict``
returns -1 (outlier) / +1 (inlier).

A fit draws every random number from generators of its own, seeded from ``random_state`` (never
from torch's global generator, which all threads share), so fits running at the same time in
threads give the same scores as one after the other. A fit that fails (an error, a divergence, a
``KeyboardInterrupt``) leaves the estimator as it was before the call. Pickles carry the package
version; unpickling under another version warns with
:class:`~skad_transfer.persistence.InconsistentVersionWarning` (:mod:`skad_transfer.persistence`).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..data.corpora import OutlierCorpus, resolve_corpus
from ..data.fitdata import TrainingData
from ..data.harmonize import check_jpeg_quality
from ..data.images import validate_images
from ..device import PRECISIONS, resolve_device
from ..inference import SCORING_PRECISION, apply_batched
from ..losses import FitContext, Loss, theta0_classifier_head
from ..nn.backbone import BACKBONES, Backbone
from ..persistence import InconsistentVersionWarning, PortableNetworkMixin  # noqa: F401 (its old home)
from ..scoring import SCORES, ScoreCalibration, refitted_boundary
from ..training import (COMPILE_MODES, Callback, EarlyStopping, TrainingDivergedError, TrainSettings, checkpoint_seed,
                        train)
from ..training import fingerprint as run_fingerprint
from ..training.checkpoints import check_checkpoint_path
from ..weights import CIFAR_MEAN, CIFAR_STD, WeightsRecord, resolve_weights
from .fitted_score import FittedScoreMixin
from .labels import check_novelty_labels, split_second_argument
from .recipe import Recipe
from .theta0 import build_theta0, check_theta0_is_finite
from .validation import HeldOutScores

DIVERGENCE_CHECK_SIZE = 64
"""Training images scored after a fit to make sure the model does not score NaN (one scoring batch)."""


def keep_state_on_failure(fit):
    """Decorate ``fit`` so that an exception (``KeyboardInterrupt`` included) leaves the estimator as
    it was before the call: fitted by its previous ``fit``, or unfitted.

    Without it a failed refit would leave a mixture, e.g. the previous network with the new fit's
    preprocessing or centre, which scores without error and gives wrong results.
    """
    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        # Attributes are replaced, never mutated in place, by fit: a shallow copy is a snapshot.
        before = dict(self.__dict__)
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    return wrapper


def _is_image_data(value) -> bool:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.ndim >= 2
    return isinstance(value, (list, tuple)) and len(value) > 8


class _Summary:
    """How a parameter holding images reads in a repr: its type, shape and dtype."""

    def __init__(self, value):
        if isinstance(value, (list, tuple)):
            self.text = f"<{type(value).__name__} of {len(value)} images>"
        else:
            self.text = f"<{type(value).__name__} shape={tuple(value.shape)} dtype={value.dtype}>"

    def __repr__(self) -> str:
        return self.text


def _checked_callbacks(callbacks) -> list:
    """``fit``'s ``callbacks``, checked before any work: a list (or tuple) of training callbacks."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks: expected a list of skad_transfer.training.Callback instances, got "
                        f"{type(callbacks).__name__}")
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks: expected skad_transfer.training.Callback instances, got "
                            f"{type(callback).__name__}; subclass Callback and override its on_* hooks")
    return list(callbacks)


class TransferDetector(FittedScoreMixin, PortableNetworkMixin, OutlierMixin, BaseEstimator):
    """Base class of the transfer-based detectors; not meant to be used directly.

    A subclass is a preset: its constructor stores its parameters and ``_recipe()`` says what they
    train. See :class:`~skad_transfer.ADIBDetector` for the parameters.
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
        "match_outlier_exposure": ["boolean"],
        "match_histograms": ["boolean", StrOptions({"auto"})],
        "anomaly_score": [StrOptions({"auto", *SCORES})],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "image_shape": [tuple, list, None],
        "device": [str, torch.device],
        "precision": [StrOptions(set(PRECISIONS))],
        "compile": ["boolean", StrOptions(set(COMPILE_MODES))],
        "checkpoint": [str, os.PathLike, None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "early_stopping": ["boolean"],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

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
        self.compile = compile
        self.checkpoint = checkpoint
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.jpeg_quality = jpeg_quality
        self.match_outlier_exposure = match_outlier_exposure
        self.match_histograms = match_histograms
        self.anomaly_score = anomaly_score
        self.random_state = random_state
        self.verbose = verbose

    def __repr__(self, N_CHAR_MAX=700):
        # An image array given as a parameter (outlier_exposure=X) is shown by its shape, not its pixels.
        shown = copy.copy(self)
        for name, value in self.get_params(deep=False).items():
            if _is_image_data(value):
                setattr(shown, name, _Summary(value))
        return BaseEstimator.__repr__(shown, N_CHAR_MAX)

    # ------------------------------------------------------------------ the recipe
    def _recipe(self) -> Recipe:
        raise NotImplementedError(f"{type(self).__name__} must say what it trains (_recipe)")

    @property
    def requires_outlier_exposure(self) -> bool:
        """Whether fitting without an outlier-exposure corpus is an error."""
        return self._recipe().uses_outlier_exposure

    @property
    def uses_outlier_exposure(self) -> bool:
        """Whether an outlier-exposure corpus is used at all; one-class detectors ignore a given
        corpus, so that a grid over losses can share one ``outlier_exposure`` parameter."""
        return self._recipe().uses_outlier_exposure

    def _theta0_head(self):
        """theta0's classifier head: from the weights, else from a module backbone's own head."""
        head = theta0_classifier_head(self.weights_)
        if head is None and self.weights_ is None and isinstance(self.backbone, Backbone):
            linear = self.backbone.head
            if linear.out_features >= 2:
                head = (linear.weight.detach().cpu(), linear.bias.detach().cpu())
        return head

    def _backbone_arch(self) -> str:
        """The ``backbone=`` name the weights are for (a module backbone: its family's, else resnet26's)."""
        if isinstance(self.backbone, str):
            return self.backbone
        return getattr(self.backbone, "arch", "resnet26")

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    @keep_state_on_failure
    def fit(self, X, y=None, X_outlier=None, *, callbacks=None):
        """Fit the detector on normal images, contrasted with an outlier-exposure corpus.

        Parameters
        ----------
        X : array-like, list of images or tensor
            Normal training images: (N, H, W, C), (N, C, H, W), (N, H, W) or flattened (N, C*H*W);
            uint8 0..255 or float 0..1 (the input rules: ``docs/design.md``, "Input rules").
        y : None, array-like of shape (N,), image batch, or corpus specification
            scikit-learn's second argument. 1-D labels, +1 normal and -1 anomaly, select the normal
            rows to train on, which is how ``GridSearchCV(..., scoring="roc_auc")`` runs the novelty
            protocol fold by fold; other numbers (class labels, PyOD's 0/1) are ignored with a
            :class:`~skad_transfer.LabelsIgnoredWarning`, booleans and NaN are an error. An array
            or tensor of 2 or more dimensions, a corpus name or path, an ``OutlierCorpus`` or a
            map-style dataset is taken as the outlier-exposure corpus, so ``fit(X_normal, X_outlier)``
            works positionally. A single column ``(N, 1)``, a ``DataLoader`` or an iterator is an
            error.
        X_outlier : image batch or corpus specification, optional
            The outlier-exposure corpus, by keyword. Overrides nothing: giving it together with an
            OE corpus in ``y`` is an error; it takes precedence over the ``outlier_exposure``
            parameter.
        callbacks : list of skad_transfer.training.Callback, optional
            Your own training callbacks for this fit (subclass
            :class:`~skad_transfer.training.Callback` and override ``on_epoch_end``,
            ``on_step_end``, ...; as Keras takes them in ``fit``). They are notified after the
            fit's own (validation, early stopping), so an epoch's entry already holds ``val_loss``,
            and before the checkpoint, which saves what they add to the entry (``history_`` keeps
            it); a callback may end training with ``run.request_stop()``. Through a ``Pipeline``:
            ``pipe.fit(X, detector__callbacks=[...])``.

        Returns
        -------
        self : object

        Raises
        ------
        TrainingDivergedError
            When the loss, the weights or the scores of the training images become NaN or infinite
            (typically ``lr`` too large); a fit never returns a model that scores NaN.

        Notes
        -----
        A fit that raises (``KeyboardInterrupt`` included) leaves the estimator as it was before
        the call; with ``checkpoint=`` the last saved state stays on disk, and the same fit resumes
        from it.
        """
        callbacks = _checked_callbacks(callbacks)
        # warm_start continues from the fitted network (taken before validation resets the fitted state).
        previous = ((self.network_, self.history_, self._fitted_recipe().loss)
                    if self.warm_start and hasattr(self, "network_") else None)
        X, y_outlier = self._split_fit_arguments(X, y)
        corpus = self._resolve_outlier_corpus(y_outlier, X_outlier)
        device = resolve_device(self.device)
        seed, fingerprint = self._seed_and_fingerprint(X, corpus)
        X, X_val, corpus, oe_val = self._hold_out(X, corpus, seed)
        network = self._prepare_theta0(seed, device)
        self.jpeg_quality_ = check_jpeg_quality(self.jpeg_quality)
        data = TrainingData.for_fit(X, corpus, device, self.input_size_, jpeg_quality=self.jpeg_quality_,
                                    outlier_shape=self.image_shape_ if self.match_outlier_exposure else None,
                                    match_histograms=self.match_histograms, seed=seed)
        self.match_histograms_, self.intensity_separability_ = data.match_histograms, data.intensity_separability
        self.oe_separability_ = self._outlier_exposure_separability(network, X, data, seed)
        recipe = self._recipe()
        if previous is not None and previous[2] != recipe.loss:
            raise ValueError(
                f"warm_start: the last fit trained loss={previous[2]!r} and this one would train loss={recipe.loss!r}; "
                f"a warm start continues the same objective from where it stopped. Refit with warm_start=False"
            )
        loss, context = self._train(network, recipe, data, seed, fingerprint, previous, X_val, oe_val, device,
                                    callbacks)
        network.eval()
        loss.finish(network, context)
        if loss.center is not None:
            self.center_ = loss.center
        else:
            self.__dict__.pop("center_", None)  # a refit with another loss leaves no stale centre
        self.network_ = network
        self._fit_recipe = recipe  # what the network was trained for: what it scores with, what a warm start continues
        self.device_ = device
        self.n_iter_ = len(self.history_)
        self._fit_score(X)
        # Finite weights can still overflow in the forward pass (the divergence guard checks the loss
        # and the weights, not what the network computes from them): score a batch of training images.
        self._check_finite(self._score(X[:DIVERGENCE_CHECK_SIZE]), "scores of training images")
        self._set_offset(loss, X, X_val, data, oe_val, seed)
        return self

    def _resolve_outlier_corpus(self, y_outlier, X_outlier) -> OutlierCorpus | None:
        """The fit's OE corpus: ``X_outlier=``, else an OE corpus given as ``y``, else the
        ``outlier_exposure`` parameter; None for one-class detectors, an error where one is needed."""
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
        if outlier_spec is None:
            return None
        return resolve_corpus(outlier_spec, name="X_outlier" if outlier_spec is not self.outlier_exposure
                              else "outlier_exposure")

    def _prepare_theta0(self, seed: int, device: torch.device) -> nn.Module:
        """theta0 with a fresh head on ``device``, checked finite; records ``weights_``, ``input_size_``,
        ``mean_`` and ``std_``."""
        record = resolve_weights(self.weights, arch=self._backbone_arch())
        # The fit's own generators, not torch's global one, which concurrent fits in threads share.
        network = build_theta0(self.backbone, self.width, self.input_size, record,
                               torch.Generator().manual_seed(seed)).to(device)
        check_theta0_is_finite(network, "weights " + repr(record.name) if record is not None else "backbone")
        self.weights_ = record
        self.input_size_ = network.input_size if isinstance(network, Backbone) else (self.input_size or 32)
        self.mean_ = tuple(record.mean) if record is not None else CIFAR_MEAN
        self.std_ = tuple(record.std) if record is not None else CIFAR_STD
        return network

    def _train(self, network: nn.Module, recipe: Recipe, data: TrainingData, seed: int, fingerprint: str, previous,
               X_val, oe_val, device: torch.device, user_callbacks=None):
        """Train ``network`` as ``recipe`` says (from the fitted weights with ``warm_start``), with
        validation and early stopping when images are held out; records ``history_``,
        ``best_epoch_`` and ``n_trainable_parameters_``. Returns the loss and its context."""
        loss = recipe.make_loss()
        loss.check_network(network)
        context = FitContext(data=data, mean=self.mean_, std=self.std_, precision=self.precision,
                             batch_size=self.batch_size, generator=torch.Generator().manual_seed(seed + 1),
                             find_theta0_head=self._theta0_head, weights=self.weights)
        objective = loss.prepare(network, context)
        parameters, penalty = recipe.trainable(loss, network, context, lr=self.lr)
        self.n_trainable_parameters_ = sum(p.numel() for p in parameters)
        if previous is not None:
            # theta0 stays the regularizer's anchor (taken above); training starts from the fitted weights.
            self._continue_from(network, previous[0])
            if fingerprint:
                fingerprint = run_fingerprint(fingerprint, *previous[0].state_dict().values())
        settings = TrainSettings(
            steps=self.steps, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, momentum=self.momentum,
            weight_decay=self.weight_decay, seed=seed, device=device, precision=self.precision, compile=self.compile,
            verbose=bool(self.verbose),
            checkpoint=self.checkpoint, fingerprint=fingerprint, description=type(self).__name__,
        )
        callbacks, stopping = self._fit_callbacks(loss, objective, data, X_val, oe_val, device, user_callbacks)
        self.history_ = train(network, data, objective, parameters, settings, mean=self.mean_, std=self.std_,
                              penalty=penalty, callbacks=callbacks)
        self.best_epoch_ = len(self.history_)
        if stopping is not None and stopping.best_state is not None:
            self.best_epoch_ = stopping.best_epoch  # whose weights the callback restored
        if previous is not None:  # one history across the continued fits, epochs numbered on
            done = len(previous[1])
            self.history_ = [*previous[1], *({**h, "epoch": h["epoch"] + done} for h in self.history_)]
            self.best_epoch_ += done
        return loss, context

    def _fit_callbacks(self, loss: Loss, objective, data: TrainingData, X_val, oe_val, device: torch.device,
                       user_callbacks=None):
        """The training callbacks this fit adds to every fit's (``train``'s): validation with
        ``validation_fraction``, early stopping with ``early_stopping``, then ``fit``'s ``callbacks``
        (as given, checked by :func:`_checked_callbacks`). Returns them and the early-stopping
        callback (or None)."""
        callbacks, stopping = [], None
        if X_val is not None:
            preprocessing = {"mean": self.mean_, "std": self.std_, "input_size": self.input_size_,
                             "jpeg_quality": self.jpeg_quality_}
            callbacks.append(HeldOutScores(loss, objective, data, X_val, oe_val, preprocessing=preprocessing,
                                           batch_size=self.batch_size, device=device, precision=self.precision))
            if self.early_stopping:
                stopping = EarlyStopping(patience=self.n_iter_no_change, monitor="val_loss")
                callbacks.append(stopping)
        callbacks.extend(user_callbacks or ())
        return callbacks, stopping

    def _set_offset(self, loss: Loss, X: torch.Tensor, X_val, data: TrainingData, oe_val, seed: int) -> None:
        """``offset_`` (and ``score_calibration_``, ``n_validation_``) from the fitted detector's scores."""
        # Held-out normal images, when there are any, set the threshold: their scores are what new
        # normal images will score, while the training images' scores are those the network fitted.
        X_offset = X if X_val is None else X_val
        self.n_validation_ = 0 if X_val is None else int(X_val.shape[0])
        normal_scores = self._score(X_offset)
        outlier_scorer = self._outlier_scorer(data, oe_val, X_offset.shape[0], seed)
        outlier_scores = None if outlier_scorer is None else outlier_scorer()
        self.score_calibration_ = ScoreCalibration.fit(normal_scores, outlier_scores)
        if self.contamination == "auto" and self.anomaly_score_ != "loss":
            self.offset_ = refitted_boundary(normal_scores, outlier_scores)
        elif self.contamination == "auto":
            self.offset_ = float(loss.auto_offset(lambda: normal_scores,
                                                  None if outlier_scores is None else lambda: outlier_scores))
        else:
            self.offset_ = float(np.percentile(normal_scores, 100.0 * self.contamination))
        self._check_finite(np.array([self.offset_]), "offset_")

    def _outlier_scorer(self, data: TrainingData, oe_val, n: int, seed: int):
        """``outlier_scores()`` for :meth:`Loss.auto_offset`: scores of the held-out OE images (with
        ``validation_fraction``), else of up to ``n`` corpus images drawn with the fit's seed, each
        as training presented it (harmonised, JPEG round trip done); None without OE."""
        if oe_val is not None:
            return lambda: self._score(data.harmonize(*oe_val), roundtrip=False)
        if data.corpus is None:
            return None

        def outlier_scores():
            n_outlier = len(data.corpus)
            rows = np.sort(np.random.default_rng([seed, 4]).choice(n_outlier, size=min(n, n_outlier), replace=False))
            return self._score(data.outlier_batch(torch.as_tensor(rows)), roundtrip=False)

        return outlier_scores

    def _continue_from(self, network: nn.Module, fitted: nn.Module) -> None:
        """Load the fitted network's weights into ``network`` (built for this fit), for ``warm_start``."""
        try:
            network.load_state_dict({k: v.to(next(network.parameters()).device)
                                     for k, v in fitted.state_dict().items()})
        except RuntimeError as error:
            raise ValueError(
                f"warm_start: the fitted network does not match the one these parameters build (backbone, width, "
                f"adapters or loss changed since the last fit); refit with warm_start=False ({error})"
            ) from None

    def _hold_out(self, X: torch.Tensor, corpus: OutlierCorpus | None, seed: int):
        """``(X_train, X_val, corpus_train, oe_val)``: ``validation_fraction`` of the normal images
        and as many OE images (at most) held out, drawn with the fit's seed; ``X_val`` and
        ``oe_val`` (``(images, corpus rows)``) are None without ``validation_fraction``."""
        if self.validation_fraction is None:
            if self.early_stopping:
                raise ValueError("early_stopping=True needs held-out images to judge by: set validation_fraction "
                                 "(e.g. 0.1)")
            self.__dict__.pop("validation_indices_", None)  # a refit without validation leaves none stale
            return X, None, corpus, None
        n = X.shape[0]
        n_val = int(round(self.validation_fraction * n))
        if n_val < 1 or n_val >= n:
            raise ValueError(f"validation_fraction={self.validation_fraction} holds out {n_val} of the {n} normal "
                             f"images; at least one must be held out and one left to train on")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 2))
        self.validation_indices_ = order[:n_val].sort().values.numpy()
        X_val, X = X[self.validation_indices_], X[order[n_val:].sort().values]
        oe_val = None
        if corpus is not None:
            k = min(n_val, len(corpus) - 1)
            if k < 1:
                raise ValueError(f"validation_fraction: the outlier-exposure corpus has {len(corpus)} image(s); "
                                 f"holding some out for validation needs at least 2")
            rows = np.sort(np.random.default_rng([seed, 3]).choice(len(corpus), size=k, replace=False))
            oe_val = (corpus.take(rows), torch.as_tensor(rows))
            corpus = corpus.without(rows)
        return X, X_val, corpus, oe_val

    def _check_finite(self, values: np.ndarray, what: str) -> None:
        if not np.isfinite(values).all():
            bad = values[~np.isfinite(values)][0]
            raise TrainingDivergedError(
                f"training diverged: the fitted model's {what} include {bad} (lr={self.lr:g}); lower lr "
                f"(e.g. 10x), or check the inputs"
            )

    def _seed_and_fingerprint(self, X: torch.Tensor, corpus: OutlierCorpus | None) -> tuple[int, str]:
        """The fit's seed, and the fingerprint that identifies its ``checkpoint`` ("" without one).

        An integer ``random_state`` fixes the seed. Otherwise the seed is drawn (from the
        RandomState, or from numpy's global one for None, as in scikit-learn), unless the
        checkpoint of this very fit (same data and parameters) exists: then it is the seed the
        checkpoint recorded, or the fit could never resume.
        """
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        if self.checkpoint is None:
            return seed, ""
        check_checkpoint_path(self.checkpoint)  # before any work: a bad path fails now, not after an epoch
        fixed = isinstance(self.random_state, Integral)
        fingerprint = self._fingerprint(X, corpus, seed if fixed else None)
        if not fixed:
            recorded = checkpoint_seed(self.checkpoint, fingerprint)
            seed = seed if recorded is None else recorded
        return seed, fingerprint

    def _split_fit_arguments(self, X, y):
        """Validate X; split ``y`` into (normal rows of X, OE corpus spec or None)."""
        y_outlier, labels = split_second_argument(y)
        images = self._validate_images(X, reset=True)
        if labels is not None:
            normal = check_novelty_labels(labels, images.shape[0])
            if not normal.all():
                images = images[torch.from_numpy(normal)]
        return images, y_outlier

    def _validate_images(self, X, *, reset: bool) -> torch.Tensor:
        return validate_images(self, X, reset=reset)

    def _fingerprint(self, X: torch.Tensor, corpus: OutlierCorpus | None, seed: int | None) -> str:
        """What identifies a fit for its checkpoint: class, parameters, data and ``seed`` (None for a
        drawn seed, which the checkpoint records instead; then ``random_state`` is left out too)."""
        digest = hashlib.sha256()
        excluded = ("verbose", "checkpoint", "device") + (() if seed is not None else ("random_state",))
        params = {k: v for k, v in self.get_params().items() if k not in excluded}
        digest.update(repr(sorted((k, repr(v)) for k, v in params.items())).encode())
        digest.update(f"{type(self).__name__}/{'drawn' if seed is None else seed}/{tuple(X.shape)}".encode())
        digest.update(X.contiguous().numpy().tobytes())
        if corpus is not None:
            digest.update(f"{len(corpus)}/{corpus.path}".encode())
            digest.update(corpus.take(np.arange(min(len(corpus), 64))).numpy().tobytes())
        return digest.hexdigest()

    # ------------------------------------------------------------------ scoring
    def _score(self, images: torch.Tensor, *, roundtrip: bool = True) -> np.ndarray:
        """Normality scores; ``roundtrip=False`` for images whose JPEG round trip is already done."""
        network = self.network_
        rule = self._score_rule().to(self.device_)
        scores = apply_batched(lambda x: rule(network, x), images, device=self.device_, mean=self.mean_,
                               std=self.std_, input_size=self.input_size_, precision=SCORING_PRECISION,
                               # A model pickled before jpeg_quality existed was trained without it.
                               jpeg_quality=getattr(self, "jpeg_quality_", None) if roundtrip else None,
                               progress=f"{type(self).__name__} scoring" if self.verbose else None)
        return scores.double().numpy()

    def score_samples(self, X):
        """Normality score of each image (higher = more normal), float32 resolution.

        ``anomaly_score_`` says which: ``"loss+knn"`` (the default for the BCE detectors) the negated
        sum of the standardised anomaly logit and the standardised distance to the nearest normal
        training images; ``"loss"`` the loss's own score, for BCE the negated anomaly logit, whose
        ``sigmoid(-score)`` is the network's probability that the image is anomalous; ``"knn"`` the
        negated distance alone. Images must have the fitted channels and size (``image_shape_``).

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
        """``score_samples(X) - offset_``: negative for outliers, positive for inliers.

        Parameters
        ----------
        X : array-like or tensor of images, in any form ``fit`` accepts.

        Returns
        -------
        decision : ndarray of shape (n_samples,)
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """-1 for outliers and +1 for inliers, agreeing with ``decision_function(X) >= 0``.

        Parameters
        ----------
        X : array-like or tensor of images, in any form ``fit`` accepts.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return np.where(self.decision_function(X) >= 0, 1, -1)

    @available_if(lambda self: self.uses_outlier_exposure)
    def predict_proba(self, X):
        """Probability of each image being anomalous and normal: columns for the labels -1 and +1,
        in that order (a scikit-learn classifier's with ``classes_ = [-1, 1]``; PyOD's columns are
        the other way round).

        A logistic model of ``score_samples`` (``score_calibration_``, Platt scaling), fitted at the
        end of ``fit`` on the normal images (the held-out ones with ``validation_fraction``) against
        as many OE images, the two weighted equally. So it is the probability in a balanced mix of
        normal and OE-like images, not a calibrated frequency of anomalies in your data; ranking by
        it is ranking by ``score_samples``.

        Parameters
        ----------
        X : array-like or tensor of images, in any form ``fit`` accepts.

        Returns
        -------
        proba : ndarray of shape (n_samples, 2)

        Raises
        ------
        ValueError
            For a detector fitted without OE images (nothing to calibrate against). One-class
            detectors (DSVDD, DOC), which train without OE, have no ``predict_proba``.
        """
        check_is_fitted(self)
        calibration = getattr(self, "score_calibration_", None)
        if calibration is None:
            raise ValueError(f"predict_proba: this {type(self).__name__} was fitted without outlier-exposure images, "
                             f"against which the probability is calibrated; rank by score_samples, or fit with an "
                             f"OE corpus")
        normal = calibration.normal_probability(self.score_samples(X))
        return np.column_stack([1.0 - normal, normal])

    def fit_predict(self, X, y=None, **kwargs):
        """Fit on ``X`` and return -1 (outlier) / +1 (inlier) for every row of ``X``.

        scikit-learn's ``OutlierMixin.fit_predict`` drops ``y``, which here is labels or the
        outlier-exposure corpus; this one passes ``y`` and ``X_outlier=`` on to :meth:`fit`.

        Parameters
        ----------
        X : array-like, list of images or tensor
            As for :meth:`fit`; all rows are predicted, also those ``y`` labels -1.
        y : None, labels or corpus specification
            As for :meth:`fit`.
        **kwargs : dict
            Passed on to :meth:`fit` (``X_outlier=``).

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.fit(X, y, **kwargs).predict(X)

    # ------------------------------------------------------------------ sklearn plumbing
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "network_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.target_tags.required = False
        return tags
