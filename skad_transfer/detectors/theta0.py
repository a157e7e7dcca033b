"""theta0 for a fit: the backbone built with its weights and a fresh one-logit head, checked.

A detector's ``backbone`` is a registered name (built by :func:`~skad_transfer.nn.build_backbone`
with the weights record) or a module (deep-copied, the record's state loaded into it); either way
the fit trains a copy, never the user's module. theta0 with NaN or infinite values, or a module
whose output is not one logit per image, is an error before any training.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..nn.backbone import Backbone, build_backbone, load_backbone_state
from ..weights import WeightsRecord

__all__ = ["build_theta0", "check_module_output", "check_theta0_is_finite"]


def check_theta0_is_finite(network: nn.Module, source: str) -> None:
    """A theta0 with NaN or infinite values is an error before any work, naming the tensor and its
    source: training from it would fail as a diverged loss, and blame the learning rate."""
    for name, tensor in [*network.named_parameters(), *network.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            count = int((~torch.isfinite(tensor)).sum())
            raise ValueError(
                f"{source}: theta0 holds non-finite values (nan or inf) in {name!r} ({count} of {tensor.numel()} "
                f"values), so it can be neither trained nor scored. The weights are damaged or come from a run "
                f"that diverged: pass other weights (a registered name or a checkpoint path), or pretrain again"
            )


def build_theta0(backbone, width: int | None, input_size: int | None, record: WeightsRecord | None,
                 generator: torch.Generator) -> nn.Module:
    """theta0 with a fresh one-logit head, on the CPU; random initialisations come from ``generator``."""
    if isinstance(backbone, nn.Module):
        if width is not None:
            raise ValueError("width applies to backbone='resnet26' only, not to a module backbone")
        network = copy.deepcopy(backbone).cpu()
        if record is not None:
            state = record.load_state_dict()
            if isinstance(network, Backbone):
                load_backbone_state(network, state, source=f"weights {record.name!r}")
            else:
                network.load_state_dict(state)
        if isinstance(network, Backbone):
            network.reset_head(1, generator)
            return network
        check_module_output(network, input_size or 32)
        return network
    network = build_backbone(backbone, width=width, input_size=input_size, record=record,
                             num_classes=1, generator=generator)
    network.reset_head(1, generator)  # the AD head is always fresh, whatever head theta0 came with
    return network


def check_module_output(network: nn.Module, size: int) -> None:
    """A module backbone must map ``(N, 3, size, size)`` images to ``(N, 1)`` logits; a TypeError naming
    ``backbone`` otherwise, found before training rather than at scoring time."""
    was_training = network.training
    network.eval()
    expected = f"a module backbone must map (N, 3, {size}, {size}) images to (N, 1) anomaly logits"
    try:
        # Two batch sizes: an output whose shape ignores the batch size (a fixed reshape, say)
        # passes with one and would fail only at scoring time, after the whole fit.
        for n in (2, 3):
            try:
                with torch.no_grad():
                    out = network(torch.zeros(n, 3, size, size))
            except Exception as error:
                raise TypeError(f"backbone: {expected}, but a batch of N={n} raised "
                                f"{type(error).__name__}: {error}") from error
            if not isinstance(out, torch.Tensor) or tuple(out.shape) not in ((n, 1), (n,)):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise TypeError(f"backbone: {expected}, got output {shape} for a batch of N={n}")
    finally:
        network.train(was_training)
