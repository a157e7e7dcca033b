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


# ---------------------------------------------------------------------------- baselines, by hand
from skad_transfer.objectives import (compactness_loss, diagonal_fisher, doc_loss, dsvdd_loss, ewc_penalty,
                                      hsc_loss, pseudo_huber)


def test_pseudo_huber_by_hand():
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert torch.allclose(pseudo_huber(z), torch.tensor([math.sqrt(26) - 1, 0.0]))
    assert pseudo_huber(torch.tensor([2.0])).item() == pytest.approx(math.sqrt(5) - 1)  # (N,) = one output


def test_hsc_loss_by_hand():
    normal = torch.tensor([[0.0], [1.0]])
    outlier = torch.tensor([[2.0]])
    h = [0.0, math.sqrt(2) - 1, math.sqrt(5) - 1]
    expected = (h[0] + h[1] - math.log(1 - math.exp(-h[2]) + 1e-6)) / 3
    assert hsc_loss(normal, outlier).item() == pytest.approx(expected, rel=1e-6)


def test_hsc_loss_is_finite_when_an_outlier_sits_at_the_centre():
    z = torch.zeros(1, 1, requires_grad=True)
    loss = hsc_loss(torch.ones(1, 1), z)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_dsvdd_loss_by_hand():
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert dsvdd_loss(features, torch.tensor([1.0, 1.0])).item() == pytest.approx((0 + 1 + 4 + 9) / 2)


def test_compactness_loss_by_hand():
    # Leave-one-out means 3, 2, 1 -> differences -3, 0, 3 -> (9 + 0 + 9) / (n=3 * k=1).
    assert compactness_loss(torch.tensor([[0.0], [2.0], [4.0]])).item() == pytest.approx(6.0)
    assert compactness_loss(torch.ones(1, 3)).item() == 0.0  # one row: no others to compare with


def test_doc_loss_by_hand():
    features = torch.tensor([[0.0], [2.0], [4.0]])
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    labels = torch.tensor([0, 1])
    descriptiveness = (math.log(2) + (2 + math.log(1 + math.exp(-2)))) / 2
    assert doc_loss(features, logits, labels).item() == pytest.approx(descriptiveness + 0.1 * 6.0, rel=1e-6)
    assert doc_loss(features, logits, labels, compactness_weight=0.0).item() == pytest.approx(descriptiveness)


def test_ewc_penalty_by_hand():
    p = [torch.tensor([1.0, 2.0])]
    a = [torch.tensor([0.0, 0.0])]
    f = [torch.tensor([0.5, 2.0])]
    assert ewc_penalty(p, a, f, 4.0).item() == pytest.approx(0.5 * 4.0 * (0.5 * 1 + 2.0 * 4))
    with pytest.raises(ValueError):
        ewc_penalty(p, a, [], 1.0)


def test_diagonal_fisher_of_a_logistic_model_by_hand():
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -1.0]]))
        model.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    fisher = diagonal_fisher(model, x, ["weight", "bias"], labels=torch.tensor([1.0, 0.0]))
    s = 1 / (1 + math.exp(-1))  # d(BCE)/dz = sigmoid(z) - y: -(1 - s) for row 0, (1 - s) for row 1
    assert torch.allclose(fisher["weight"], torch.tensor([[(1 - s) ** 2 / 2, (1 - s) ** 2 / 2]]))
    assert fisher["bias"].item() == pytest.approx((1 - s) ** 2)
    assert model.weight.grad is None


def test_diagonal_fisher_of_a_softmax_model_by_hand():
    model = torch.nn.Linear(2, 3, bias=False)
    torch.nn.init.zeros_(model.weight)
    fisher = diagonal_fisher(model, torch.tensor([[1.0, 2.0]]), ["weight"], labels=torch.tensor([0]))
    grad = torch.outer(torch.tensor([1 / 3 - 1, 1 / 3, 1 / 3]), torch.tensor([1.0, 2.0]))
    assert torch.allclose(fisher["weight"], grad ** 2)


def test_diagonal_fisher_with_sampled_labels():
    # At a logit of 0 the squared gradient is 1/4 whichever label is drawn: the Fisher proper, exactly.
    model = torch.nn.Linear(1, 1)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    fisher = diagonal_fisher(model, torch.ones(5, 1), ["weight", "bias"])
    assert fisher["weight"].item() == pytest.approx(0.25) and fisher["bias"].item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown parameter"):
        diagonal_fisher(model, torch.ones(5, 1), ["nope"])


def test_l2_sp_matches_the_per_tensor_formula_and_its_gradient():
    # The foreach implementation against the plain autograd expression, over tensors of mixed shapes.
    generator = torch.Generator().manual_seed(0)
    shapes = [(4, 3, 3, 3), (4,), (8, 4, 1, 1), (1,)]
    params = [torch.randn(s, generator=generator, requires_grad=True) for s in shapes]
    anchors = [torch.randn(s, generator=generator) for s in shapes]
    copies = [p.detach().clone().requires_grad_() for p in params]
    for squared in (True, False):
        for tensors in (params, copies):
            for t in tensors:
                t.grad = None
        l2_sp(params, anchors, squared=squared).mul(3.0).backward()
        total = sum(((c - a) ** 2).sum() for c, a in zip(copies, anchors))
        (3.0 * (total if squared else total.sqrt())).backward()
        for p, c in zip(params, copies):
            torch.testing.assert_close(p.grad, c.grad, rtol=1e-5, atol=1e-6)
    assert l2_sp(params, anchors).item() == pytest.approx(
        sum(((p - a) ** 2).sum() for p, a in zip(params, anchors)).item(), rel=1e-6)
