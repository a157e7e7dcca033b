"""The fitted score of a transfer detector: what ``anomaly_score`` needs beyond the network.

:class:`FittedScoreMixin` resolves ``anomaly_score`` (``anomaly_score_``), fits the kNN bank of the
normal training images' pooled features (``train_features_``) and the standardisation of each term
(``score_standardization_``), and gives the fitted score as one torch function
(:class:`~skad_transfer.scoring.ScoreRule`, which ``score_samples`` and the ONNX export both run).
It also measures, before training, how well theta0's features alone tell the OE corpus from the
normal images (``oe_separability_``), and warns when they do almost perfectly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.fitdata import TrainingData
from ..inference import SCORING_PRECISION, apply_batched
from ..nn.backbone import Backbone
from ..scoring import (KNN_NEIGHBORS, OE_SEPARABILITY_SAMPLE, ScoreRule, Standardization, feature_separability,
                       knn_distances, resolve_score, warn_if_oe_cannot_teach)
from .recipe import Recipe

__all__ = ["FittedScoreMixin"]


class FittedScoreMixin:
    """Score-building methods of :class:`~skad_transfer.detectors.base.TransferDetector`."""

    def _fit_score(self, X: torch.Tensor) -> None:
        """Resolve ``anomaly_score`` into ``anomaly_score_`` and fit what it needs from the normal training images:
        their pooled features (the kNN bank, ``train_features_``) and the standardisation of each
        term (``score_standardization_``: mean and spread of the anomaly logit, and of each image's
        kNN distance to the *other* training images)."""
        self.anomaly_score_ = resolve_score(self.anomaly_score, self.network_, self._fitted_recipe().loss)
        for name in ("train_features_", "score_standardization_", "n_neighbors_"):
            self.__dict__.pop(name, None)  # a refit with another score leaves nothing stale
        if self.anomaly_score_ == "loss":
            return
        loss = self._fitted_recipe().make_loss(center=getattr(self, "center_", None))
        network = self.network_

        def both(x):
            pooled = network.features(x, ("pooled",))["pooled"].float()
            return torch.cat([pooled, -loss.normality_of_pooled(network, pooled).float()[:, None]], dim=1)

        out = apply_batched(both, X, device=self.device_, mean=self.mean_, std=self.std_,
                            input_size=self.input_size_, precision=SCORING_PRECISION,
                            jpeg_quality=self.jpeg_quality_)
        self.train_features_ = out[:, :-1].numpy()
        # As many neighbours as the other training images allow (one image: its distance to itself, 0).
        self.n_neighbors_ = min(KNN_NEIGHBORS, max(X.shape[0] - 1, 1))
        bank = out[:, :-1].to(self.device_)
        own = torch.cat([knn_distances(bank[start:start + 1024], bank, self.n_neighbors_,
                                       leave_one_out=X.shape[0] > 1)
                         for start in range(0, bank.shape[0], 1024)]).cpu().numpy()
        self.score_standardization_ = {"loss": Standardization.fit(out[:, -1].numpy()),
                                       "knn": Standardization.fit(own)}

    def _fitted_recipe(self) -> Recipe:
        """The recipe of the fit, whatever ``set_params`` changed since; the parameters'
        own for a model pickled before it was recorded."""
        return getattr(self, "_fit_recipe", None) or self._recipe()

    def _score_rule(self) -> ScoreRule:
        """The fitted score as one torch function ``(network, x) -> normality`` (also what ONNX exports)."""
        # The fitted state a loss scores with (a centre) is a fitted attribute, passed back in.
        loss = self._fitted_recipe().make_loss(center=getattr(self, "center_", None))
        score = getattr(self, "anomaly_score_", "loss")  # a model pickled before score existed scores by its loss
        if score == "loss":
            return ScoreRule("loss", loss)
        scales = self.score_standardization_
        return ScoreRule(score, loss, torch.from_numpy(self.train_features_), scales["loss"], scales["knn"],
                         k=self.n_neighbors_)

    def _outlier_exposure_separability(self, network: nn.Module, X: torch.Tensor, data: TrainingData, seed: int,
                                       sample_size: int = OE_SEPARABILITY_SAMPLE) -> float | None:
        """How well theta0's pooled features alone tell normal training images from OE images (up to
        ``sample_size`` of each, as training presents them): the cross-validated AUC of
        :func:`~skad_transfer.scoring.feature_separability`; None without OE or pooled features.

        At or above :data:`~skad_transfer.scoring.OE_SEPARABILITY_THRESHOLD` the corpus is told apart
        before any training, by what kind of image it is, and a classifier against it learns little
        about the anomalies of the task: ``fit`` warns with the remedy."""
        if data.corpus is None or not isinstance(network, Backbone):
            return None
        rng = np.random.default_rng([seed, 5])
        normal_rows = np.sort(rng.choice(X.shape[0], min(sample_size, X.shape[0]), replace=False))
        oe_rows = np.sort(rng.choice(len(data.corpus), min(sample_size, len(data.corpus)), replace=False))
        was_training = network.training
        network.eval()
        common = dict(device=next(network.parameters()).device, mean=self.mean_, std=self.std_,
                      input_size=self.input_size_, precision=SCORING_PRECISION)

        def pooled(x):
            return network.features(x, ("pooled",))["pooled"].float()

        try:
            normal = apply_batched(pooled, X[torch.as_tensor(normal_rows)], jpeg_quality=self.jpeg_quality_, **common)
            outliers = apply_batched(pooled, data.outlier_batch(torch.as_tensor(oe_rows)), **common)
        finally:
            network.train(was_training)
        separability = feature_separability(normal.numpy(), outliers.numpy(), random_state=seed)
        warn_if_oe_cannot_teach(separability, resolve_score(self.anomaly_score, network, self._recipe().loss))
        return separability
