"""What each training knob of the family does, pinned by an effect that an ignored knob would not have.

Each test varies one parameter and asserts the direction its meaning implies (a larger ``alpha``
keeps the weights closer to theta0, ...), so a knob that is accepted, validated and then dropped on
its way to the loss fails here even where every score still looks fine.
"""

import numpy as np
import pytest
import torch

from conftest import TINY
from skad_transfer import ADIBDetector, DeepADDetector, DOCDetector, resnet26
from skad_transfer.losses import pooled_features
from skad_transfer.weights import save_weights

KNOBS = {**TINY, "width": None, "precision": "float32", "jpeg_quality": None, "match_histograms": False,
         "verbose": False, "epochs": 2}


@pytest.fixture(scope="module")
def theta0(tmp_path_factory):
    torch.manual_seed(0)
    network = resnet26(width=4, num_classes=10)
    return network, save_weights(network, tmp_path_factory.mktemp("knobs") / "theta0.pth").path


def drift(det, network) -> float:
    """Squared distance of the fitted body to theta0's (the head is fresh, so it is left out)."""
    theta0 = dict(network.named_parameters())
    return sum(((p.detach() - theta0[name]) ** 2).sum().item() for name, p in det.network_.named_parameters()
               if not name.startswith("linears.") and name in theta0)


def fitted(Detector, path, problem, **params):
    X_normal, X_outlier, _, _ = problem
    return Detector(**{**KNOBS, "weights": path, **params}).fit(X_normal, X_outlier)


def test_a_larger_alpha_keeps_the_weights_closer_to_theta0(theta0, easy_problem, one_torch_thread):
    network, path = theta0
    drifts = [drift(fitted(ADIBDetector, path, easy_problem, alpha=alpha), network) for alpha in (0.0, 1.0, 10.0)]
    assert drifts[0] > drifts[1] > drifts[2] > 0, drifts


def test_a_larger_ewc_lambda_keeps_the_weights_closer_to_theta0(theta0, easy_problem, one_torch_thread):
    network, path = theta0
    drifts = [drift(fitted(ADIBDetector, path, easy_problem, regularizer="ewc", ewc_lambda=strength), network)
              for strength in (0.0, 100.0, 1000.0)]
    assert drifts[0] > drifts[1] > drifts[2] > 0, drifts


def test_strength_zero_is_no_regularizer(theta0, easy_problem, one_torch_thread):
    _, path = theta0
    X_test = easy_problem[2]
    free = fitted(ADIBDetector, path, easy_problem, regularizer=None).score_samples(X_test)
    for params in ({"alpha": 0.0}, {"regularizer": "ewc", "ewc_lambda": 0.0}):
        assert np.array_equal(fitted(ADIBDetector, path, easy_problem, **params).score_samples(X_test), free)


def test_a_smaller_lr_moves_the_weights_less(theta0, easy_problem, one_torch_thread):
    network, path = theta0
    drifts = [drift(fitted(ADIBDetector, path, easy_problem, regularizer=None, lr=lr), network)
              for lr in (1e-4, 1e-3, 1e-2)]
    assert 0 < drifts[0] < drifts[1] < drifts[2], drifts


def test_weight_decay_shrinks_the_weights(theta0, easy_problem, one_torch_thread):
    _, path = theta0

    def norm(weight_decay):
        det = fitted(ADIBDetector, path, easy_problem, regularizer=None, weight_decay=weight_decay)
        return sum((p.detach() ** 2).sum().item() for p in det.network_.parameters())

    assert norm(0.0) > norm(0.5)


def test_momentum_changes_the_trajectory(theta0, easy_problem, one_torch_thread):
    network, path = theta0
    assert drift(fitted(ADIBDetector, path, easy_problem, regularizer=None, momentum=0.0), network) < \
        drift(fitted(ADIBDetector, path, easy_problem, regularizer=None, momentum=0.9), network)


def test_a_larger_compactness_weight_makes_the_normal_features_more_compact(theta0, easy_problem,
                                                                              one_torch_thread):
    _, path = theta0
    X_normal = easy_problem[0]

    def spread(weight):
        det = fitted(DOCDetector, path, easy_problem, compactness_weight=weight, lr=0.05)
        x = torch.from_numpy(X_normal[:64]).permute(0, 3, 1, 2).float() / 255
        x = (x - torch.tensor(det.mean_).view(1, 3, 1, 1)) / torch.tensor(det.std_).view(1, 3, 1, 1)
        with torch.no_grad():
            features = pooled_features(det.network_, x)
        return ((features - features.mean(dim=0)) ** 2).sum(dim=1).mean().item()

    assert spread(10.0) < spread(0.0)


def test_adapters_train_only_the_adapters_batchnorm_and_head(theta0, easy_problem, one_torch_thread):
    network, path = theta0
    det = fitted(DeepADDetector, path, easy_problem, regularizer=None, adapters=True)
    assert drift(det, network) > 0  # BatchNorm moved
    for a, b in zip(det.network_.conv3x3_parameters(), network.conv3x3_parameters()):
        assert torch.equal(a.detach(), b.detach())
