"""Validation of a detector's fit: held-out images scored after every epoch, as a training callback.

With ``validation_fraction`` a fit holds out normal images (and as many OE images) and
:class:`HeldOutScores` adds to each epoch's history entry ``val_loss`` (the training objective on
them) and, with OE, ``val_auc`` (normal vs OE ranked by the loss's own score); ``early_stopping``
adds a :class:`~skad_transfer.training.callbacks.EarlyStopping` on ``val_loss`` after it.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from ..data.fitdata import TrainingData
from ..data.harmonize import jpeg_roundtrip
from ..device import Precision
from ..inference import SCORING_PRECISION, apply_batched
from ..losses import Loss
from ..training.callbacks import Callback

__all__ = ["HeldOutScores"]


class HeldOutScores(Callback):
    """``val_loss`` (and with OE ``val_auc``) of the held-out images after every epoch.

    Parameters
    ----------
    loss : Loss
        The fit's loss: ``val_auc`` ranks by its ``normality``.
    objective : callable
        The training objective, ``objective(network, x_normal, x_outlier)``, called as it is
        (not compiled).
    data : TrainingData
        The fit's data path: held-out OE images are harmonised as the training OE images are.
    X_val : torch.Tensor
        Held-out normal images (NCHW, as given to ``fit``).
    oe_val : (images, corpus rows) or None
        Held-out OE images and their rows in the corpus (which fix their histogram pairing).
    preprocessing : dict
        ``mean``, ``std``, ``input_size`` and ``jpeg_quality`` of the fit.
    batch_size : int
        The fit's; the validation loss is computed in batches of half of it, as in training.
    device : torch.device
    precision : str
        The training precision, in which ``val_loss`` is computed.
    """

    def __init__(self, loss: Loss, objective, data: TrainingData, X_val: torch.Tensor, oe_val, *,
                 preprocessing: dict, batch_size: int, device: torch.device, precision: str):
        self.objective, self.device = objective, device
        self.half = max(1, batch_size // 2)
        self.precision = Precision.resolve(device, precision)
        # The JPEG round trip of the scorer's path is made once here, not every epoch; per image it is
        # what score_samples makes, so the scores below are score_samples' scores.
        prepare = functools.partial(apply_batched, device=device, mean=preprocessing["mean"],
                                    std=preprocessing["std"], input_size=preprocessing["input_size"],
                                    precision=SCORING_PRECISION)
        self.normality = lambda network, images: prepare(lambda x: loss.normality(network, x), images)
        self.X_val = jpeg_roundtrip(X_val, preprocessing["jpeg_quality"])
        self.x_normal = prepare(lambda x: x, self.X_val)  # normalised once for the validation loss
        self.oe_images = self.x_outlier = None
        if oe_val is not None:
            images, rows = oe_val
            self.oe_images = data.harmonize(images, rows)
            self.x_outlier = prepare(lambda x: x, self.oe_images)

    def on_epoch_end(self, run, entry: dict) -> None:
        entry.update(self.evaluate(run.network))

    @torch.no_grad()
    def evaluate(self, network: nn.Module) -> dict:
        """``{"val_loss": ..., "val_auc": ... or None}`` of ``network`` in eval mode (its mode restored)."""
        was_training = network.training
        network.eval()
        losses = []
        n = self.x_normal.shape[0] if self.x_outlier is None else min(self.x_normal.shape[0], self.x_outlier.shape[0])
        for start in range(0, n, self.half):
            x_normal = self.precision.prepare(self.x_normal[start:start + self.half].to(self.device))
            x_outlier = None if self.x_outlier is None else self.precision.prepare(
                self.x_outlier[start:start + self.half].to(self.device))
            with self.precision.autocast(self.device):
                losses.append(float(self.objective(network, x_normal, x_outlier).float()))
        auc = None
        if self.oe_images is not None:
            from sklearn.metrics import roc_auc_score

            normal = self.normality(network, self.X_val).double().numpy()
            outlier = self.normality(network, self.oe_images).double().numpy()
            labels = np.r_[np.ones(len(normal)), np.zeros(len(outlier))]
            auc = float(roc_auc_score(labels, np.r_[normal, outlier]))
        network.train(was_training)
        return {"val_loss": float(np.mean(losses)), "val_auc": auc}
