"""skad_transfer.scoring: kNN distances, the standardised sum, the refitted boundary, separability."""

import numpy as np
import pytest
import torch

from skad_transfer import scoring
from skad_transfer.nn.backbone import Backbone
from skad_transfer.scoring import (ScoreRule, Standardization, feature_separability, knn_distances, refitted_boundary,
                                   resolve_score)


def brute_force(queries, bank, k, leave_one_out=False):
    distances = np.sqrt(((queries[:, None, :].astype(np.float64) - bank[None].astype(np.float64)) ** 2).sum(-1))
    distances.sort(axis=1)
    return distances[:, int(leave_one_out):int(leave_one_out) + k].mean(1)


@pytest.mark.parametrize("chunk", [4096, 7])  # one chunk, and candidates carried across many
def test_knn_distances_equal_brute_force_to_float32_resolution(chunk, monkeypatch):
    monkeypatch.setattr(scoring, "KNN_BANK_CHUNK", chunk)
    rng = np.random.default_rng(0)
    # Far from the origin and close together: the expansion alone loses the near neighbours' digits.
    bank = (30 + rng.normal(size=(50, 16))).astype(np.float32)
    queries = (30 + rng.normal(size=(9, 16))).astype(np.float32)
    got = knn_distances(torch.from_numpy(queries), torch.from_numpy(bank), 2).numpy()
    np.testing.assert_allclose(got, brute_force(queries, bank, 2), rtol=1e-6)
    own = knn_distances(torch.from_numpy(bank), torch.from_numpy(bank), 2, leave_one_out=True).numpy()
    np.testing.assert_allclose(own, brute_force(bank, bank, 2, leave_one_out=True), rtol=1e-6)


def test_a_bank_smaller_than_the_candidates_still_gives_k_neighbours():
    bank = torch.tensor([[0.0], [1.0], [3.0]])
    np.testing.assert_allclose(knn_distances(torch.tensor([[0.0]]), bank, 2).numpy(), [0.5])
    np.testing.assert_allclose(knn_distances(bank, bank, 1, leave_one_out=True).numpy(), [1.0, 1.0, 2.0])


class _Logit:
    """A loss stand-in: the anomaly logit is the first pooled feature."""

    def normality(self, network, x):
        return -network.features(x)["pooled"][:, 0]

    def normality_of_pooled(self, network, pooled):
        return -pooled[:, 0]


class _Identity(Backbone):
    feature_layers = ("pooled",)

    def __init__(self):
        torch.nn.Module.__init__(self)

    def features(self, x, layers=("pooled",)):
        return {"pooled": x}


def test_the_sum_is_each_term_standardised_by_its_training_spread():
    bank = torch.tensor([[0.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    rule = ScoreRule("loss+knn", _Logit(), bank, Standardization(1.0, 2.0), Standardization(0.5, 0.25))
    x = torch.tensor([[5.0, 0.0], [1.0, 2.0]])
    knn = brute_force(x.numpy(), bank.numpy(), 2)
    expected = -((x[:, 0].numpy() - 1.0) / 2.0 + (knn - 0.5) / 0.25)
    np.testing.assert_allclose(rule(_Identity(), x).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(ScoreRule("knn", _Logit(), bank)(_Identity(), x).numpy(), -knn, rtol=1e-6)
    np.testing.assert_allclose(ScoreRule("loss", _Logit())(_Identity(), x).numpy(), -x[:, 0].numpy())


def test_standardization_of_constant_values_keeps_scale_one():
    assert Standardization.fit(np.full(5, 3.0)) == Standardization(3.0, 1.0)
    fitted = Standardization.fit(np.array([1.0, 3.0]))
    assert (fitted.mean, fitted.scale) == (2.0, 1.0)


def test_auto_uses_the_features_of_a_backbone_and_the_loss_of_a_plain_module():
    assert resolve_score("auto", _Identity()) == "loss+knn"
    assert resolve_score("auto", torch.nn.Linear(2, 1)) == "loss"
    assert resolve_score("loss", torch.nn.Linear(2, 1)) == "loss"
    with pytest.raises(ValueError, match="score='loss\\+knn' needs the pooled features.*anomaly_score='loss'"):
        resolve_score("loss+knn", torch.nn.Linear(2, 1))


def test_the_refitted_boundary_lies_between_normal_and_outlier_scores():
    rng = np.random.default_rng(0)
    normal, outlier = rng.normal(5, 1, 200), rng.normal(-5, 1, 300)
    boundary = refitted_boundary(normal, outlier)
    assert -2 < boundary < 2
    # Shifting both shifts the boundary with them; without OE it is the 10% quantile of the normal scores.
    assert refitted_boundary(normal + 10, outlier + 10) == pytest.approx(boundary + 10, abs=1e-3)
    assert refitted_boundary(normal, None) == pytest.approx(np.percentile(normal, 10))


def test_feature_separability_tells_far_sets_from_overlapping_ones():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 8))
    assert feature_separability(a, rng.normal(size=(300, 8)) + 4.0) > 0.99
    assert feature_separability(a, rng.normal(size=(300, 8))) < 0.65
    assert np.isnan(feature_separability(a[:1], a))
