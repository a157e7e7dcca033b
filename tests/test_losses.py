"""The loss objects: what each needs, how it scores and thresholds, and the errors of the registry."""

import math

import numpy as np
import pytest
import torch

from skad_transfer.losses import (AUTO_QUANTILE, LOSSES, DeepSVDDLoss, DOCLoss, HypersphereLoss, OutlierExposureBCE,
                                  make_loss, pooled_features)
from skad_transfer.nn import resnet26
from skad_transfer.objectives import pseudo_huber


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return resnet26(width=4).eval()


def test_registry_and_settings():
    assert set(LOSSES) == {"bce", "hsc", "dsvdd", "doc"}
    assert [name for name, cls in LOSSES.items() if not cls.uses_outlier_exposure] == ["dsvdd"]
    # A family passes all its settings; each loss takes only its own.
    assert make_loss("doc", compactness_weight=2.0).compactness_weight == 2.0
    assert isinstance(make_loss("bce", compactness_weight=2.0), OutlierExposureBCE)
    with pytest.raises(ValueError, match=r"loss must be one of \['bce', 'doc', 'dsvdd', 'hsc'\], got 'svdd'"):
        make_loss("svdd")


def test_scores_and_auto_thresholds(network):
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        logits = network(x)[:, 0]
        assert torch.equal(OutlierExposureBCE().normality(network, x), -logits)
        assert torch.equal(HypersphereLoss().normality(network, x), -pseudo_huber(network(x)))
        center = pooled_features(network, x).mean(dim=0).numpy()
        distances = ((pooled_features(network, x) - torch.from_numpy(center)) ** 2).sum(dim=1)
        for loss in (DeepSVDDLoss(center=center), DOCLoss(center=center)):
            torch.testing.assert_close(loss.normality(network, x), -distances)
    scores = np.arange(100.0)
    assert DeepSVDDLoss().auto_offset(lambda: scores, None) == pytest.approx(
        np.percentile(scores, 100 * AUTO_QUANTILE))
    assert DOCLoss().auto_offset(lambda: scores, lambda: 1 / 0) == pytest.approx(  # never scores OE images
        np.percentile(scores, 100 * AUTO_QUANTILE))


def bce(logits, targets):
    return np.mean(np.logaddexp(0.0, logits) - targets * logits)


def test_bce_auto_threshold_refits_the_logit_shift():
    rng = np.random.default_rng(0)
    normal, outlier = -rng.normal(-2.0, 1.0, 400), -rng.normal(3.0, 2.0, 300)  # scores = -logits
    offset = OutlierExposureBCE().auto_offset(lambda: normal, lambda: outlier)
    # offset_ = -b for the b that minimises eq. (1) of (logit - b), both sets weighted equally.
    loss = lambda b: bce(-normal - b, 0.0) + bce(-outlier - b, 1.0)  # noqa: E731
    assert loss(-offset) < min(loss(-offset + d) for d in (-1e-3, 1e-3))
    # A head bias that has not converged (every logit shifted) leaves the decisions where they were:
    # the offset moves with the scores, which logit 0 (the old "auto") did not.
    for shift in (-7.0, 5.0):
        moved = OutlierExposureBCE().auto_offset(lambda: normal + shift, lambda: outlier + shift)
        assert moved == pytest.approx(offset + shift, abs=1e-6)
    assert OutlierExposureBCE().auto_offset(lambda: 1 / 0, None) == 0.0  # no OE to refit against
    # Symmetric sets: the boundary is halfway, where logit 0 already was.
    assert OutlierExposureBCE().auto_offset(lambda: np.r_[1.0, 3.0], lambda: np.r_[-1.0, -3.0]) == pytest.approx(0.0)


def hsc(h, normal):
    return np.mean(h) if normal else np.mean(-np.log(-np.expm1(-h)))


def test_hsc_auto_threshold_refits_the_scale_of_h():
    rng = np.random.default_rng(0)
    normal_h, outlier_h = rng.gamma(2.0, 0.2, 400), rng.gamma(4.0, 1.0, 300)
    offset = HypersphereLoss().auto_offset(lambda: -normal_h, lambda: -outlier_h)
    # The boundary is anomaly probability 1 - exp(-u h) = 1/2 for the u that minimises the HSC loss of u h.
    u = math.log(2.0) / -offset
    loss = lambda u: hsc(u * normal_h, True) + hsc(u * outlier_h, False)  # noqa: E731
    assert loss(u) < min(loss(u * f) for f in (0.999, 1.001))
    # h measured in other units moves the boundary with it.
    for scale in (1e-3, 50.0):
        moved = HypersphereLoss().auto_offset(lambda: -scale * normal_h, lambda: -scale * outlier_h)
        assert moved == pytest.approx(scale * offset, rel=1e-6)
    assert HypersphereLoss().auto_offset(lambda: 1 / 0, None) == -math.log(2.0)
    # Every normal image at the centre: nothing to refit, the fixed boundary h = log 2.
    assert HypersphereLoss().auto_offset(lambda: np.zeros(3), lambda: -outlier_h) == pytest.approx(-math.log(2.0))


def test_distance_losses_need_a_backbone():
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 1))
    OutlierExposureBCE().check_network(module)
    for name in ("dsvdd", "doc"):
        with pytest.raises(TypeError, match=f"loss '{name}' needs the pooled features of a skad_transfer backbone"):
            make_loss(name).check_network(module)


def test_dsvdd_trains_no_batchnorm_affine_and_no_head(network):
    import copy

    net = copy.deepcopy(network)
    kept = DeepSVDDLoss().trainable(net, list(net.parameters()))
    names = {id(p): name for name, p in net.named_parameters()}
    assert kept and all("bn" not in names[id(p)] and not names[id(p)].startswith("linears.") for p in kept)
    assert all(not p.requires_grad for name, p in net.named_parameters() if id(p) not in {id(q) for q in kept})
