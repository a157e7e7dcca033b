import copy

import numpy as np
import torch

from conftest import TINY
from skad_transfer import ADRADetector, resnet26
from skad_transfer.nn.backbone import ResidualAdapter
from skad_transfer.weights import save_weights


def test_fit_changes_everything_but_the_3x3_convs(easy_problem, tmp_path):
    X_normal, X_outlier, _, _ = easy_problem
    torch.manual_seed(0)
    theta0 = resnet26(width=4, num_classes=10)
    path = save_weights(theta0, tmp_path / "theta0.pth").path
    det = ADRADetector(**{**TINY, "width": None, "epochs": 2, "lr": 0.1, "weights": path}).fit(X_normal, X_outlier)
    fitted = dict(det.network_.named_parameters())
    original = dict(theta0.named_parameters())
    convs = [n for n, m in theta0.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 25
    for name in convs:
        assert torch.equal(fitted[f"{name}.weight"], original[f"{name}.weight"]), name
    assert not torch.equal(fitted["pre_bn.weight"], original["pre_bn.weight"])
    assert not torch.equal(det.network_.pre_bn.running_mean, theta0.pre_bn.running_mean)
    assert det.network_.layer3[3].ra2.weight.abs().sum() > 0
    trainable = sum(p.numel() for n, p in fitted.items() if n not in {f"{c}.weight" for c in convs})
    assert det.n_trainable_parameters_ == trainable


def test_adra_scores_reflect_adapters(easy_problem):
    X_normal, X_outlier, X_test, _ = easy_problem
    det = ADRADetector(**TINY).fit(X_normal, X_outlier)
    scores = det.score_samples(X_test)
    adapters = [m for m in det.network_.modules() if isinstance(m, ResidualAdapter)]
    assert len(adapters) == 25  # one beside each 3x3 conv
    assert all(a.weight.abs().sum() > 0 for a in adapters)  # trained away from their zero start
    # The same fitted detector with its adapters back at zero (theta0's convs alone) scores otherwise.
    bare = copy.deepcopy(det)
    with torch.no_grad():
        for adapter in (m for m in bare.network_.modules() if isinstance(m, ResidualAdapter)):
            adapter.weight.zero_()
    assert np.abs(bare.score_samples(X_test) - scores).max() > 1e-3
    assert np.array_equal(det.score_samples(X_test), scores)  # the copy's change did not reach det
