import math

import pytest
import torch

from skad_transfer.objectives import l2_sp, outlier_exposure_bce


def test_bce_is_eq1_with_normal_0_and_outliers_1():
    normal = torch.tensor([0.0, -2.0])
    outlier = torch.tensor([0.0, 3.0])
    expected = (math.log(2) + math.log(1 + math.exp(-2)) + math.log(2) + math.log(1 + math.exp(-3))) / 4
    assert outlier_exposure_bce(normal, outlier).item() == pytest.approx(expected, rel=1e-6)


def test_l2_sp_squared_and_unsquared_by_hand():
    p = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    a = [torch.tensor([0.0, 0.0]), torch.tensor([[1.0]])]
    assert l2_sp(p, a, squared=True).item() == pytest.approx(1 + 4 + 4)
    assert l2_sp(p, a, squared=False).item() == pytest.approx(3.0)


def test_unsquared_gradient_is_finite_at_theta0():
    p = torch.ones(3, requires_grad=True)
    l2_sp([p], [torch.ones(3)], squared=False).backward()
    assert torch.equal(p.grad, torch.zeros(3))


def test_l2_sp_gradient_points_back_to_theta0():
    p = torch.tensor([2.0, -1.0], requires_grad=True)
    l2_sp([p], [torch.zeros(2)], squared=False).backward()
    assert torch.allclose(p.grad, torch.tensor([2.0, -1.0]) / math.sqrt(5))


def test_l2_sp_rejects_mismatched_lists():
    with pytest.raises(ValueError):
        l2_sp([torch.zeros(1)], [])
