"""Training objectives and regularizers as plain functions of tensors.

Losses take the logits of the normal half and of the outlier-exposure half of a batch.
Regularizers take the current parameters and their theta0 copies (same order).

Sign convention (the reference code's): the network's logit is the evidence for *anomalous*,
label 0 = normal, 1 = OE; detectors negate it for scikit-learn's higher-is-more-normal scores.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

REGULARIZERS = ("l2sp", "l2sp-ref")
"""``"l2sp"``: the paper's ``alpha * ||theta - theta0||_2^2`` over every parameter that has a theta0
(all convolutions and BatchNorm affine parameters; the fresh head has none). ``"l2sp-ref"``: the
reference code's ``alpha * ||theta - theta0||_2`` (not squared) over the 3x3 convolutions only."""


def outlier_exposure_bce(normal_logits: torch.Tensor, outlier_logits: torch.Tensor) -> torch.Tensor:
    """Paper eq. (1): binary cross-entropy, normal -> 0, OE -> 1, averaged over the whole batch."""
    logits = torch.cat([normal_logits.reshape(-1), outlier_logits.reshape(-1)]).float()
    targets = torch.cat([torch.zeros(normal_logits.numel(), device=logits.device),
                         torch.ones(outlier_logits.numel(), device=logits.device)])
    return F.binary_cross_entropy_with_logits(logits, targets)


def l2_sp(params: Sequence[torch.Tensor], anchors: Sequence[torch.Tensor], *, squared: bool = True) -> torch.Tensor:
    """``||theta - theta0||_2`` over all given tensors together, squared or not.

    The unsquared norm's gradient is undefined at theta == theta0 (the first step of every fine-tune);
    there its subgradient 0 is used, as the reference code effectively does.
    """
    if len(params) != len(anchors):
        raise ValueError(f"l2_sp: {len(params)} parameters but {len(anchors)} anchors")
    if not params:
        raise ValueError("l2_sp: no parameters to regularize")
    total = sum(((p.float() - a.float()) ** 2).sum() for p, a in zip(params, anchors))
    if squared:
        return total
    # sqrt(x + eps) - sqrt(eps) keeps the value exact to ~1e-6 and the gradient finite at 0.
    eps = torch.finfo(torch.float32).tiny
    return torch.sqrt(total + eps) - eps ** 0.5


def oe_bce_objective(network, x_normal: torch.Tensor, x_outlier: torch.Tensor) -> torch.Tensor:
    """One forward pass over normal + OE together (BatchNorm sees both), then :func:`outlier_exposure_bce`."""
    logits = network(torch.cat([x_normal, x_outlier]))
    n = x_normal.shape[0]
    return outlier_exposure_bce(logits[:n], logits[n:])
