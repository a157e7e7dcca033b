"""What a detector trains: its loss, its pull toward theta0 and which parameters move.

A preset (:class:`~skad_transfer.ADIBDetector`, :class:`~skad_transfer.ADRADetector`, the deep
baselines) only turns its parameters into a :class:`Recipe` (its ``_recipe``); the fit asks the
recipe for the loss, the regularizer and the trainable parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..losses import LOSSES, FitContext, Loss, make_loss
from ..nn.adapters import add_residual_adapters, freeze_for_adaptation
from ..regularizers import Regularizer, make_regularizer

__all__ = ["Recipe"]


@dataclass(frozen=True)
class Recipe:
    """What a detector trains; a preset builds it from its parameters (``_recipe``).

    ``loss`` names a :mod:`skad_transfer.losses` loss (``compactness_weight`` is DOC's setting);
    ``regularizer`` (with ``alpha``, or ``ewc_lambda`` for ``"ewc"``) the pull toward theta0;
    ``adapters`` ADRA's parametrisation (3x3 convolutions frozen, parallel 1x1 adapters trained).
    """

    loss: str = "bce"
    regularizer: str | None = "l2sp"
    alpha: float = 1e-2
    ewc_lambda: float = 400.0
    adapters: bool = False
    compactness_weight: float = 0.1

    @property
    def uses_outlier_exposure(self) -> bool:
        return LOSSES[self.loss].uses_outlier_exposure

    def make_loss(self, center=None) -> Loss:
        return make_loss(self.loss, center=center, compactness_weight=self.compactness_weight)

    def make_regularizer(self) -> Regularizer | None:
        return make_regularizer(self.regularizer, alpha=self.alpha, ewc_lambda=self.ewc_lambda)

    def trainable(self, loss: Loss, network: nn.Module, context: FitContext, *, lr: float):
        """Make ``network`` (theta0, prepared for ``loss``) trainable as this recipe says.

        Returns the parameters to optimise and the regularizer's ``penalty()`` (or None). The
        regularizer covers what theta0 provides, so its parameters are taken before adapters exist.
        """
        regularizer = self.make_regularizer()
        if regularizer is not None:
            regularizer.prepare(network, context, lr=lr)
        if self.adapters:
            add_residual_adapters(network)
            parameters = freeze_for_adaptation(network)
        else:
            parameters = list(network.parameters())
        parameters = loss.trainable(network, parameters)
        penalty = None if regularizer is None else regularizer.penalty(parameters, adapters=self.adapters)
        return parameters, penalty
