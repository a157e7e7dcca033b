"""The detectors' ``score``: the loss's score, kNN on the fitted features or their standardised sum;
float32 scores whatever the training precision; the warning for an OE corpus that cannot teach."""

import pickle
import warnings

import numpy as np
import pytest
import torch

from skad_transfer import ADIBDetector, ADRADetector, HSCDetector, LayerFeatures, OutlierExposureWarning
from skad_transfer.scoring import OE_SEPARABILITY_THRESHOLD

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = dict(weights=None, width=4, steps=3, batch_size=16, device="cpu", precision="float32", random_state=0,
            verbose=False)


def loo_knn(bank, k=2):
    distances = np.sqrt(((bank[:, None].astype(np.float64) - bank[None].astype(np.float64)) ** 2).sum(-1))
    distances.sort(axis=1)
    return distances[:, 1:k + 1].mean(1)


def test_the_default_score_is_the_standardised_sum_of_logit_and_knn(easy_problem):
    X_normal, X_outlier, X_test, _ = easy_problem
    det = ADIBDetector(**FAST).fit(X_normal, X_outlier)
    assert det.anomaly_score == "auto" and det.anomaly_score_ == "loss+knn"
    logit_only = ADIBDetector(**FAST, anomaly_score="loss").fit(X_normal, X_outlier)  # the same network: score is not trained
    features = LayerFeatures(backbone=det, precision="float32").fit(X_normal)
    bank, queries = features.transform(X_normal), features.transform(X_test)
    np.testing.assert_allclose(det.train_features_, bank, rtol=1e-5, atol=1e-6)
    anomaly_train, anomaly = -logit_only.score_samples(X_normal), -logit_only.score_samples(X_test)
    distance = np.sqrt(((queries[:, None].astype(np.float64) - bank[None]) ** 2).sum(-1))
    distance.sort(axis=1)
    own = loo_knn(bank)
    expected = -((anomaly - anomaly_train.mean()) / anomaly_train.std()
                 + (distance[:, :2].mean(1) - own.mean()) / own.std())
    np.testing.assert_allclose(det.score_samples(X_test), expected, rtol=1e-4, atol=1e-4)


def test_knn_alone_and_the_loss_alone(easy_problem):
    X_normal, X_outlier, X_test, y_test = easy_problem
    knn = ADIBDetector(**FAST, anomaly_score="knn").fit(X_normal, X_outlier)
    assert knn.anomaly_score_ == "knn" and knn.score_samples(X_test).max() <= 0  # minus a distance
    loss = ADIBDetector(**FAST, anomaly_score="loss").fit(X_normal, X_outlier)
    assert loss.anomaly_score_ == "loss" and not hasattr(loss, "train_features_")
    # A refit with the loss alone drops the kNN bank of the previous fit.
    assert not hasattr(knn.set_params(anomaly_score="loss").fit(X_normal, X_outlier), "train_features_")


def test_the_baselines_keep_their_own_score_by_default(easy_problem):
    X_normal, X_outlier, _, _ = easy_problem
    assert HSCDetector(**FAST).fit(X_normal, X_outlier).anomaly_score_ == "loss"


def test_a_module_backbone_scores_by_its_logit(easy_problem):
    X_normal, X_outlier, _, _ = easy_problem
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                 torch.nn.Linear(2, 1))
    params = {k: v for k, v in FAST.items() if k not in ("weights", "width")}
    det = ADIBDetector(backbone=module, weights=None, **params).fit(X_normal, X_outlier)
    assert det.anomaly_score_ == "loss" and det.oe_separability_ is None
    with pytest.raises(ValueError, match="needs the pooled features"):
        ADIBDetector(backbone=module, weights=None, anomaly_score="loss+knn", **params).fit(X_normal, X_outlier)


def test_knn_scores_survive_pickling_and_contamination_sets_the_offset(easy_problem):
    X_normal, X_outlier, X_test, _ = easy_problem
    det = ADIBDetector(**FAST).fit(X_normal, X_outlier)
    again = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(again.score_samples(X_test), det.score_samples(X_test))
    # "auto": the boundary between normal and OE scores; a float: that share of the training images below it.
    assert np.mean(det.predict(X_normal) == 1) > 0.8 and np.mean(det.predict(X_outlier) == -1) > 0.8
    det = ADIBDetector(**FAST, contamination=0.2).fit(X_normal, X_outlier)
    assert np.mean(det.score_samples(X_normal) < det.offset_) == pytest.approx(0.2, abs=0.01)


def test_scores_keep_float32_resolution_when_training_in_bfloat16():
    """bf16 autocast trains; scoring runs in float32, so 200 different images get 200 scores."""
    rng = np.random.default_rng(0)
    X_normal = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    X_outlier = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    X = rng.integers(0, 256, (200, 32, 32, 3), dtype=np.uint8)
    for anomaly_score in ("loss", "loss+knn"):
        det = ADRADetector(**{**FAST, "weights": "default", "width": None, "precision": "bfloat16"},
                           anomaly_score=anomaly_score)
        scores = det.fit(X_normal, X_outlier).score_samples(X)
        assert len(np.unique(scores)) == len(X), anomaly_score
        # bf16 would round a logit of size ~1 to steps of 2**-7; float32 resolves far finer.
        assert np.min(np.diff(np.sort(scores))) < 2.0 ** -10


def flat_squares(n, rng):
    """Flat colour images: theta0 tells them from natural-looking noise at once."""
    return np.repeat(np.repeat(rng.integers(0, 256, (n, 1, 1, 3), dtype=np.uint8), 32, 1), 32, 2)


def test_an_oe_corpus_told_apart_by_theta0_alone_is_warned_about_and_recorded():
    rng = np.random.default_rng(0)
    X_normal = flat_squares(96, rng)
    X_outlier = rng.integers(0, 256, (96, 32, 32, 3), dtype=np.uint8)
    params = {**FAST, "weights": "default", "width": None}
    with pytest.warns(OutlierExposureWarning, match=r"oe_separability_.*same kind as the normal images"):
        det = ADIBDetector(**params).fit(X_normal, X_outlier)
    assert det.oe_separability_ >= OE_SEPARABILITY_THRESHOLD
    # An OE corpus of the same kind as the normal images: no warning, a separability far from 1.
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutlierExposureWarning)
        det = ADIBDetector(**params).fit(X_normal, flat_squares(96, rng))
    assert det.oe_separability_ < 0.8


@pytest.mark.parametrize("anomaly_score", ["auto", "loss"])
def test_predict_proba_is_the_logistic_calibration_of_the_score_against_oe(easy_problem, anomaly_score):
    from scipy.special import expit
    from sklearn.metrics import roc_auc_score

    X_normal, X_outlier, X_test, y_test = easy_problem
    det = ADIBDetector(**FAST, anomaly_score=anomaly_score).fit(X_normal, X_outlier)
    proba, scores = det.predict_proba(X_test), det.score_samples(X_test)
    assert proba.shape == (len(X_test), 2) and np.allclose(proba.sum(1), 1.0)
    c = det.score_calibration_
    assert c.slope > 0 and np.allclose(proba[:, 1], expit(c.slope * (scores - c.center) / c.scale + c.intercept))
    # Column 0 is P(anomaly): it ranks the images as the score does, the other way round.
    assert roc_auc_score(y_test == -1, proba[:, 0]) == pytest.approx(roc_auc_score(y_test, scores))
    if anomaly_score == "auto":  # its "auto" threshold is the calibration's probability 1/2
        assert det.score_calibration_.normal_probability(np.array([det.offset_]))[0] == pytest.approx(0.5, abs=1e-9)


def test_one_class_detectors_have_no_predict_proba_and_a_fit_without_oe_says_why(easy_problem, monkeypatch):
    from skad_transfer import DSVDDDetector

    X_normal, _, X_test, _ = easy_problem
    det = DSVDDDetector(**FAST).fit(X_normal)
    assert det.score_calibration_ is None and not hasattr(det, "predict_proba")
    fitted = ADIBDetector(**FAST).fit(X_normal, X_normal[::-1].copy())
    monkeypatch.setattr(fitted, "score_calibration_", None)  # as a fit without OE images leaves it
    with pytest.raises(ValueError, match="predict_proba: this ADIBDetector was fitted without outlier-exposure"):
        fitted.predict_proba(X_test)
