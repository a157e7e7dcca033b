import pytest
import torch

from conftest import TINY
from skad_transfer import ADIBDetector, resnet26
from skad_transfer.detectors.adib import regularized_parameters
from skad_transfer.weights import save_weights


def test_regularized_parameter_sets():
    net = resnet26(width=4)
    paper = regularized_parameters(net, "l2sp")
    names = {id(p): n for n, p in net.named_parameters()}
    assert all(not names[id(p)].startswith("linears") for p in paper)
    assert len(paper) == len(list(net.parameters())) - 2  # everything but the fresh head
    reference = regularized_parameters(net, "l2sp-ref")
    assert [id(p) for p in reference] == [id(p) for p in net.conv3x3_parameters()]


@pytest.mark.parametrize("regularizer", ["l2sp", "l2sp-ref"])
def test_penalty_is_reported_and_pulls_toward_theta0(regularizer, easy_problem, tmp_path):
    X_normal, X_outlier, _, _ = easy_problem
    torch.manual_seed(0)
    theta0 = resnet26(width=4, num_classes=10)
    path = save_weights(theta0, tmp_path / "theta0.pth").path
    settings = {**TINY, "width": None, "weights": path, "epochs": 2, "lr": 0.1, "precision": "float32"}
    free = ADIBDetector(**settings, regularizer=None).fit(X_normal, X_outlier)
    pulled = ADIBDetector(**settings, regularizer=regularizer, alpha=1.0).fit(X_normal, X_outlier)
    assert all(h["penalty"] == 0 for h in free.history_)
    assert all(h["penalty"] > 0 for h in pulled.history_)

    def drift(det):
        return sum(((a - b) ** 2).sum().item()
                   for a, b in zip(det.network_.conv3x3_parameters(), theta0.conv3x3_parameters()))

    assert 0 < drift(pulled) < drift(free)
