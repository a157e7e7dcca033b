"""Training objectives and regularizers as plain functions of tensors.

Losses take the network outputs (logits or features) of the normal half and of the outlier-exposure
half of a batch. Regularizers take the current parameters and their theta0 copies (same order).

Sign convention (the reference code's): the network's logit is the evidence for *anomalous*,
label 0 = normal, 1 = OE; detectors negate it for scikit-learn's higher-is-more-normal scores.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

def outlier_exposure_bce(normal_logits: torch.Tensor, outlier_logits: torch.Tensor) -> torch.Tensor:
    """Paper eq. (1): binary cross-entropy, normal -> 0, OE -> 1, averaged over the whole batch."""
    logits = torch.cat([normal_logits.reshape(-1), outlier_logits.reshape(-1)]).float()
    targets = torch.cat([torch.zeros(normal_logits.numel(), device=logits.device),
                         torch.ones(outlier_logits.numel(), device=logits.device)])
    return F.binary_cross_entropy_with_logits(logits, targets)


class _SquaredDistance(torch.autograd.Function):
    """``sum_i ||p_i - a_i||^2`` and its gradient ``2 (p_i - a_i)`` in a handful of foreach kernels.

    Written with autograd per tensor, the penalty over a ResNet26's ~80 parameter tensors added about
    1,200 operators to every training step (85% more than the network's forward and backward,
    ``benchmarks/speed/step_ops.py``). On a GPU a step of 128 small images is bound by kernel launches:
    there a 100-epoch ADIB fit ran at half the img/s of the device suite's engine rows (the same
    loop, without the penalty or the fit's setup).
    """

    @staticmethod
    def forward(ctx, anchors, *params):
        diffs = torch._foreach_sub(_float32(params), _float32(anchors))
        ctx.diffs = diffs
        ctx.dtypes = [p.dtype for p in params]
        return torch.stack(torch._foreach_norm(diffs)).square().sum()

    @staticmethod
    def backward(ctx, grad):
        grads = torch._foreach_mul(ctx.diffs, 2.0 * grad)
        return (None, *(g if g.dtype == dtype else g.to(dtype) for g, dtype in zip(grads, ctx.dtypes)))


def _float32(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [t if t.dtype == torch.float32 else t.float() for t in tensors]


def l2_sp(params: Sequence[torch.Tensor], anchors: Sequence[torch.Tensor], *, squared: bool = True) -> torch.Tensor:
    """``||theta - theta0||_2`` over all given tensors together, squared or not.

    The unsquared norm's gradient is undefined at theta == theta0 (the first step of every fine-tune);
    there its subgradient 0 is used, as the reference code effectively does.
    """
    if len(params) != len(anchors):
        raise ValueError(f"l2_sp: {len(params)} parameters but {len(anchors)} anchors")
    if not params:
        raise ValueError("l2_sp: no parameters to regularize")
    total = _SquaredDistance.apply(list(anchors), *params)
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


# ---------------------------------------------------------------------------- baselines (paper Table 4)
# The losses below take network outputs rather than logits only; every one computes in float32 so that
# bf16 autocast never reaches a log or an exp.


def pseudo_huber(outputs: torch.Tensor) -> torch.Tensor:
    """``h(z) = sqrt(||z||^2 + 1) - 1`` per row (Ruff et al. 2020a): a radial distance from 0 that is
    quadratic near 0 and linear far away. Rows are ``outputs.reshape(len(outputs), -1)``."""
    z = outputs.reshape(outputs.shape[0], -1).float()
    return torch.sqrt((z ** 2).sum(dim=1) + 1.0) - 1.0


def hsc_loss(normal_outputs: torch.Tensor, outlier_outputs: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """Hypersphere classifier loss (HSC, Ruff et al. 2020a, "Rethinking assumptions in deep AD").

    With ``h`` the :func:`pseudo_huber` distance and ``1 - exp(-h)`` the probability of "anomalous":
    normal rows cost ``h(z)``, outlier-exposure rows ``-log(1 - exp(-h(z)) + eps)``; the mean is over
    the whole batch, as in :func:`outlier_exposure_bce`. ``eps`` is the reference code's guard
    against ``log(0)`` at ``z = 0``.
    """
    normal = pseudo_huber(normal_outputs)
    outlier = -torch.log(-torch.expm1(-pseudo_huber(outlier_outputs)) + eps)
    return torch.cat([normal, outlier]).mean()


def dsvdd_loss(features: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """One-class Deep SVDD (Ruff et al. 2018): mean over the batch of ``||f(x) - c||^2``."""
    diff = features.reshape(features.shape[0], -1).float() - center.reshape(1, -1).float()
    return (diff ** 2).sum(dim=1).mean()


def compactness_loss(features: torch.Tensor) -> torch.Tensor:
    """DOC's compactness loss (Perera & Patel 2019, eq. 3): ``(1 / (n k)) sum_i ||x_i - m_i||^2`` with
    ``m_i`` the mean of the *other* ``n - 1`` rows of the batch and ``k`` the feature dimension.

    ``x_i - m_i = n / (n - 1) * (x_i - mean)``, which is how it is computed. A single row has no
    others to be compact with: its loss is 0 (an epoch's last batch can hold one normal image).
    """
    x = features.reshape(features.shape[0], -1).float()
    n, k = x.shape
    if n < 2:
        return x.sum() * 0.0  # keeps the graph (and the device) of a real loss
    z = (x - x.mean(dim=0, keepdim=True)) * (n / (n - 1))
    return (z ** 2).sum() / (n * k)


def doc_loss(normal_features: torch.Tensor, reference_logits: torch.Tensor, reference_labels: torch.Tensor, *,
             compactness_weight: float = 0.1) -> torch.Tensor:
    """DOC (Perera & Patel 2019): descriptiveness + ``compactness_weight`` x compactness.

    Descriptiveness is the cross-entropy of a classifier on a labelled reference set
    (``reference_logits`` against ``reference_labels``); compactness is :func:`compactness_loss` of the
    normal batch's features. ``compactness_weight`` is the paper's lambda (0.1).
    """
    descriptiveness = F.cross_entropy(reference_logits.float(), reference_labels)
    return descriptiveness + compactness_weight * compactness_loss(normal_features)


def ewc_penalty(params: Sequence[torch.Tensor], anchors: Sequence[torch.Tensor], fisher: Sequence[torch.Tensor],
                strength: float) -> torch.Tensor:
    """Elastic weight consolidation (Kirkpatrick et al. 2017): ``(strength / 2) sum_i F_i (theta_i - theta0_i)^2``.

    ``fisher`` holds the diagonal Fisher information at theta0, one tensor per parameter (see
    :func:`diagonal_fisher`); ``strength`` is the paper's Fisher multiplier (400).
    """
    if not len(params) == len(anchors) == len(fisher):
        raise ValueError(f"ewc_penalty: {len(params)} parameters, {len(anchors)} anchors, {len(fisher)} Fisher tensors")
    if not params:
        raise ValueError("ewc_penalty: no parameters to regularize")
    total = sum((f.float() * (p.float() - a.float()) ** 2).sum() for p, a, f in zip(params, anchors, fisher))
    return 0.5 * strength * total


def diagonal_fisher(network: torch.nn.Module, inputs: torch.Tensor, names: Sequence[str], *,
                    labels: torch.Tensor | None = None, chunk_size: int = 32,
                    generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The diagonal Fisher information of ``network``'s predictive distribution, per named parameter.

    ``F = mean over samples of (d/dtheta -log p(y | x))^2``, from per-sample gradients. The outputs are
    logits: one column is a Bernoulli (sigmoid), several a categorical (softmax). Without ``labels``,
    ``y`` is sampled from the network's own prediction (the Fisher proper, which needs no labels);
    with ``labels`` it is the empirical Fisher of those labels (0/1 for one column, class indices
    otherwise). Sampled labels are drawn from ``generator``, a CPU generator (torch's global one when
    None). The network is evaluated as it is (call ``eval()`` first for BatchNorm running
    statistics); its parameters are not changed and get no ``.grad``.
    """
    from torch.func import functional_call, grad, vmap

    params = {name: p.detach() for name, p in network.named_parameters()}
    unknown = [name for name in names if name not in params]
    if unknown:
        raise ValueError(f"diagonal_fisher: unknown parameter names {unknown[:5]}")
    buffers = {name: b.detach() for name, b in network.named_buffers()}
    wanted = {name: params[name] for name in names}
    fixed = {name: p for name, p in params.items() if name not in wanted}

    if labels is None:
        with torch.no_grad():
            # Drawn on the CPU: the same seed gives the same labels on any device, and no CUDA
            # generator is advanced.
            logits = network(inputs).reshape(inputs.shape[0], -1).float().cpu()
        if logits.shape[1] == 1:
            labels = torch.bernoulli(torch.sigmoid(logits[:, 0]), generator=generator)
        else:
            labels = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator)[:, 0]
    labels = labels.to(inputs.device)

    def nll(theta, x, y):
        out = functional_call(network, ({**fixed, **theta}, buffers), (x.unsqueeze(0),)).reshape(1, -1).float()
        if out.shape[1] == 1:
            return F.binary_cross_entropy_with_logits(out[0, 0], y.float())
        return F.cross_entropy(out, y.long().reshape(1))

    per_sample = vmap(grad(nll), in_dims=(None, 0, 0))
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in wanted.items()}
    for start in range(0, inputs.shape[0], chunk_size):
        grads = per_sample(wanted, inputs[start:start + chunk_size], labels[start:start + chunk_size])
        for name, g in grads.items():
            fisher[name] += (g.float() ** 2).sum(dim=0)
    return {name: f / inputs.shape[0] for name, f in fisher.items()}
