"""What ``score_samples`` computes from a fitted network: the loss's score, kNN in its feature space,
or their standardised sum.

A detector trained with outlier exposure learns "normal vs the OE corpus". When the corpus is far
from the data (rendered strokes or shapes against photographs), that boundary can settle between
"images like the training set" and "photographs", and anomalies that are other objects of the same
kind fall on the normal side of it, while the network's features still tell them apart. A density
term in the fitted network's feature space, the distance to the nearest normal training images
(kNN-AD, Bergman, Cohen & Hoshen 2020; on fine-tuned features as in PANDA, Reiss et al. 2021), keeps
that information in the score. The default, chosen on the development suite
(``docs/design.md``), adds the two after standardising each by its spread over the normal training
images:

``score = -((a - mean(a_train)) / std(a_train) + (d - mean(d_train)) / std(d_train))``

with ``a`` the loss's anomaly score (the logit for ADIB/ADRA) and ``d`` the mean Euclidean distance
of an image's pooled features to its :data:`KNN_NEIGHBORS` nearest training images (a training image
is left out of its own neighbours for its statistics, since it would find itself at distance 0).

Everything is one torch function of a normalised batch (:class:`ScoreRule`), so the ONNX export
computes what ``score_samples`` computes: the network runs once and the distances are expanded as
``|q|^2 - 2 q.b + |b|^2`` (matrix products and TopK, which every runtime has).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .nn.backbone import Backbone

__all__ = ["KNN_NEIGHBORS", "OE_SEPARABILITY_THRESHOLD", "SCORES", "OutlierExposureWarning", "ScoreRule",
           "feature_separability", "knn_distances", "refitted_boundary", "resolve_score", "ScoreCalibration",
           "warn_if_oe_cannot_teach"]

#: The values of a detector's ``score`` parameter besides ``"auto"``.
SCORES = ("loss", "knn", "loss+knn")

KNN_NEIGHBORS = 2
"""Neighbours whose distances are averaged (Bergman et al.'s kNN-AD uses 2, as does :class:`KNNDetector`)."""

KNN_CANDIDATES = 8
"""Extra candidates whose exact distances are computed beyond the ``k`` the expansion ranks first."""

KNN_BANK_CHUNK = 4096
"""Bank rows compared with a query batch at a time: bounds the distance matrix's memory."""


#: The losses whose ``anomaly_score="auto"`` adds the kNN term: outlier exposure's classifier (ADIB, ADRA).
#: The other losses are the paper's baselines and keep their own score.
KNN_BY_DEFAULT = ("bce",)


def resolve_score(score: str, network: nn.Module, loss: str = "bce") -> str:
    """The score a fit uses: ``score`` itself, or for ``"auto"`` the loss and kNN where the loss is
    in :data:`KNN_BY_DEFAULT` and the network has pooled features (every
    :class:`~skad_transfer.nn.Backbone`), else the loss alone (a baseline's own score, or a module
    that only returns logits)."""
    if score == "auto" and loss not in KNN_BY_DEFAULT:
        return "loss"
    if score != "auto":
        if score != "loss" and not isinstance(network, Backbone):
            raise ValueError(f"anomaly_score={score!r} needs the pooled features of a skad_transfer backbone (ResNet26 or a "
                             f"torchvision ResNet by name); a module backbone gives logits only: use anomaly_score='loss'")
        return score
    return "loss+knn" if isinstance(network, Backbone) else "loss"


def knn_distances(queries: torch.Tensor, bank: torch.Tensor, k: int, *, leave_one_out: bool = False) -> torch.Tensor:
    """Mean Euclidean distance of each query row to its ``k`` nearest rows of ``bank`` (float32).

    ``leave_one_out`` (``queries`` being the bank itself) skips each row's nearest neighbour, itself.
    Candidates are found with the expansion ``|q|^2 - 2 q.b + |b|^2`` (matrix products, in chunks
    of the bank), and the distances of the :data:`KNN_CANDIDATES` best are then computed from the
    differences themselves: the expansion's float32 rounding grows with the rows' norms, not with
    their distance, and would cost a near neighbour most of its digits. The exported ONNX graph
    computes the same.
    """
    queries, bank = queries.float(), bank.float()
    wanted = min(k + int(leave_one_out) + KNN_CANDIDATES, bank.shape[0])
    q2 = (queries * queries).sum(dim=1, keepdim=True)
    best_values = best_index = None
    for start in range(0, bank.shape[0], KNN_BANK_CHUNK):
        part = bank[start:start + KNN_BANK_CHUNK]
        squared = q2 - 2.0 * queries @ part.T + (part * part).sum(dim=1)[None, :]
        index = torch.arange(start, start + part.shape[0], device=bank.device).expand(queries.shape[0], -1)
        if best_values is not None:
            squared, index = torch.cat([best_values, squared], dim=1), torch.cat([best_index, index], dim=1)
        best_values, chosen = torch.topk(squared, min(wanted, squared.shape[1]), dim=1, largest=False)
        best_index = torch.gather(index, 1, chosen)
    exact = (queries[:, None, :] - bank[best_index]).square().sum(dim=2).sqrt()
    nearest = torch.topk(exact, k + int(leave_one_out), dim=1, largest=False).values
    return nearest[:, int(leave_one_out):].mean(dim=1)


@dataclass
class Standardization:
    """``(value - mean) / scale`` of one score component, fitted on the normal training images."""

    mean: float
    scale: float

    @classmethod
    def fit(cls, values: np.ndarray) -> "Standardization":
        values = np.asarray(values, dtype=np.float64)
        scale = float(values.std())
        return cls(float(values.mean()), scale if scale > 1e-12 else 1.0)


class ScoreRule(nn.Module):
    """``(network, x) -> normality`` of a normalised batch, for one of :data:`SCORES`.

    Parameters
    ----------
    score : {"loss", "knn", "loss+knn"}
    loss : skad_transfer.losses.Loss
        The fitted loss (its :meth:`~skad_transfer.losses.Loss.normality_of_pooled`).
    bank : tensor of shape (n_train, n_features), optional
        Pooled features of the normal training images (``"knn"``, ``"loss+knn"``).
    loss_scale, knn_scale : Standardization, optional
        The standardisations of the anomaly logit and the kNN distance (``"loss+knn"``).
    """

    def __init__(self, score: str, loss, bank: torch.Tensor | None = None, loss_scale: Standardization | None = None,
                 knn_scale: Standardization | None = None, k: int = KNN_NEIGHBORS):
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        self.anomaly_score, self.loss, self.k = score, loss, k
        self.loss_scale, self.knn_scale = loss_scale, knn_scale
        self.register_buffer("bank", None if bank is None else bank.float())

    def forward(self, network: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Normality scores (float32) of the normalised batch ``x``."""
        if self.anomaly_score == "loss":
            return self.loss.normality(network, x).float()
        pooled = network.features(x, ("pooled",))["pooled"].float()
        distance = knn_distances(pooled, self.bank.to(pooled.device), self.k)
        if self.anomaly_score == "knn":
            return -distance
        anomaly = -self.loss.normality_of_pooled(network, pooled).float()
        return -((anomaly - self.loss_scale.mean) / self.loss_scale.scale
                 + (distance - self.knn_scale.mean) / self.knn_scale.scale)


@dataclass(frozen=True)
class ScoreCalibration:
    """A logistic model of "normal" on the score alone, fitted on normal images against OE images
    (the two sets weighted equally, as in a training batch): Platt scaling. ``predict_proba`` and
    the ``contamination="auto"`` boundary of the kNN scores come from it.

    The probability is that of an image being normal in a balanced mix of normal and OE-like images,
    not a calibrated frequency of anomalies among a user's data.
    """

    center: float
    scale: float
    slope: float
    intercept: float

    @classmethod
    def fit(cls, normal_scores: np.ndarray, outlier_scores: np.ndarray | None) -> "ScoreCalibration | None":
        """The model fitted on these scores; None without OE scores."""
        from sklearn.linear_model import LogisticRegression

        if outlier_scores is None or len(outlier_scores) == 0:
            return None
        normal = np.asarray(normal_scores, dtype=np.float64)
        outlier = np.asarray(outlier_scores, dtype=np.float64)
        values = np.concatenate([normal, outlier])
        center, scale = float(values.mean()), float(max(values.std(), 1e-12))
        model = LogisticRegression(C=100.0, class_weight="balanced")
        model.fit(((values - center) / scale)[:, None], np.r_[np.ones(len(normal)), np.zeros(len(outlier))])
        return cls(center, scale, float(model.coef_[0, 0]), float(model.intercept_[0]))

    def boundary(self) -> float | None:
        """The score at which the probability is 1/2; None when OE images scored as normal as the
        normal images (slope <= 0: no boundary was learnt)."""
        if self.slope <= 0:
            return None
        return self.center - self.scale * self.intercept / self.slope

    def normal_probability(self, scores: np.ndarray) -> np.ndarray:
        """P(normal) of each score, float64."""
        from scipy.special import expit

        return expit(self.slope * (np.asarray(scores, dtype=np.float64) - self.center) / self.scale + self.intercept)


def refitted_boundary(normal_scores: np.ndarray, outlier_scores: np.ndarray | None) -> float:
    """``offset_`` of ``contamination="auto"`` for a score without a boundary of its own (``"knn"``,
    ``"loss+knn"``): the score at which :class:`ScoreCalibration` of normal vs OE images gives
    probability 1/2. Without OE images (or when they score as normal as the normal images), the
    10% quantile of the normal scores (as for the distance-based detectors)."""
    from .losses import AUTO_QUANTILE

    calibration = ScoreCalibration.fit(normal_scores, outlier_scores)
    boundary = None if calibration is None else calibration.boundary()
    if boundary is None:
        return float(np.percentile(np.asarray(normal_scores, dtype=np.float64), 100.0 * AUTO_QUANTILE))
    return float(boundary)


OE_SEPARABILITY_THRESHOLD = 0.99
"""``fit`` warns (:class:`OutlierExposureWarning`) when theta0's features alone separate the normal
training images from the OE images this well (``oe_separability_``); the development suite's far-OE
kinds measured at or above it and its natural photographs below (``docs/design.md``)."""


OE_SEPARABILITY_SAMPLE = 1000
"""Normal and OE images (at most, each) on which ``fit`` measures ``oe_separability_``."""


class OutlierExposureWarning(UserWarning):
    """The outlier-exposure corpus is too easy to tell from the normal images to teach the task."""


def feature_separability(normal: np.ndarray, outliers: np.ndarray, random_state: int = 0) -> float:
    """The 3-fold cross-validated ROC AUC of a logistic regression telling ``normal`` feature rows from
    ``outliers`` (normal as the positive class); ``nan`` when either has fewer than 2 rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_normal, n_outliers = len(normal), len(outliers)
    if min(n_normal, n_outliers) < 2:
        return float("nan")
    features = np.concatenate([normal, outliers]).astype(np.float64)
    labels = [1] * n_normal + [0] * n_outliers
    folds = StratifiedKFold(min(3, n_normal, n_outliers), shuffle=True, random_state=random_state)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(cross_val_score(model, features, labels, cv=folds, scoring="roc_auc").mean())


def warn_if_oe_cannot_teach(separability: float, score: str) -> None:
    """Warn (:class:`OutlierExposureWarning`) when ``separability`` (``oe_separability_``) reaches
    :data:`OE_SEPARABILITY_THRESHOLD`, naming the remedy and what the fit's ``score`` does about it."""
    if not separability >= OE_SEPARABILITY_THRESHOLD:
        return
    kept = ("the kNN term of this fit's score (anomaly_score_='loss+knn') keeps what the features tell apart"
            if score != "loss" else "anomaly_score='loss+knn' adds a kNN term that keeps what the features tell apart")
    warnings.warn(
        f"the outlier-exposure corpus is told apart from the normal images by theta0's features alone, before any "
        f"training (cross-validated AUC {separability:.3f} >= {OE_SEPARABILITY_THRESHOLD}; oe_separability_): a "
        f"classifier against it learns what kind of image is normal more than what makes an anomaly, and its logit "
        f"may call anomalies of the same kind normal; {kept}. The remedy is an outlier-exposure corpus of the same "
        f"kind as the normal images (other classes, other sources).",
        OutlierExposureWarning, stacklevel=5)
