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
    assert OutlierExposureBCE().auto_offset(lambda: 1 / 0) == 0.0  # never scores the training set
    assert HypersphereLoss().auto_offset(lambda: 1 / 0) == -math.log(2.0)
    scores = np.arange(100.0)
    assert DeepSVDDLoss().auto_offset(lambda: scores) == pytest.approx(np.percentile(scores, 100 * AUTO_QUANTILE))


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
