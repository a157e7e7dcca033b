"""Behaviour shared by ADIB and ADRA: inputs, labels, OE corpora, scores, persistence, errors."""

import copy

import joblib
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from conftest import TINY
from skad_transfer import ADIBDetector, ADRADetector, resnet26
from skad_transfer.losses import OutlierExposureBCE
from skad_transfer.scoring import refitted_boundary

DETECTORS = [ADIBDetector, ADRADetector]


@pytest.mark.parametrize("Detector", DETECTORS)
def test_separates_an_easy_anomaly(Detector, easy_problem):
    X_normal, X_outlier, X_test, y_test = easy_problem
    det = Detector(**{**TINY, "width": 8, "epochs": 3}).fit(X_normal, X_outlier)
    scores = det.score_samples(X_test)
    assert roc_auc_score(y_test, scores) > 0.9
    assert np.array_equal(det.decision_function(X_test), scores - det.offset_)
    pred = det.predict(X_test)
    assert pred.dtype.kind == "i" and set(np.unique(pred)) <= {-1, 1}
    assert np.array_equal(pred == 1, det.decision_function(X_test) >= 0)
    assert len(det.history_) == 3 and det.n_iter_ == 3


@pytest.mark.parametrize("Detector", DETECTORS)
def test_same_seed_same_scores(Detector, easy_problem):
    X_normal, X_outlier, X_test, _ = easy_problem
    a = Detector(**TINY).fit(X_normal, X_outlier).score_samples(X_test)
    b = Detector(**TINY).fit(X_normal, X_outlier).score_samples(X_test)
    c = Detector(**{**TINY, "random_state": 1}).fit(X_normal, X_outlier).score_samples(X_test)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_every_way_of_passing_the_corpus_is_the_same_fit(easy_problem, tmp_path):
    X_normal, X_outlier, X_test, _ = easy_problem
    np.save(tmp_path / "oe.npy", X_outlier)
    reference = ADIBDetector(**TINY).fit(X_normal, X_outlier).score_samples(X_test)
    for det, args, kwargs in [
        (ADIBDetector(**TINY), (X_normal,), {"X_outlier": X_outlier}),
        (ADIBDetector(**TINY, outlier_exposure=tmp_path / "oe.npy"), (X_normal,), {}),
        (ADIBDetector(**TINY), (X_normal, str(tmp_path / "oe.npy")), {}),
        (ADIBDetector(**TINY), (X_normal, torch.from_numpy(X_outlier)), {}),
    ]:
        assert np.array_equal(det.fit(*args, **kwargs).score_samples(X_test), reference)


def test_labels_select_the_normal_rows(easy_problem):
    X_normal, X_outlier, X_test, _ = easy_problem
    X = np.concatenate([X_normal, X_outlier[:20]])
    y = np.r_[np.ones(len(X_normal), int), -np.ones(20, int)]
    with_labels = ADIBDetector(**TINY, outlier_exposure=X_outlier).fit(X, y)
    normal_only = ADIBDetector(**TINY, outlier_exposure=X_outlier).fit(X_normal)
    assert np.array_equal(with_labels.score_samples(X_test), normal_only.score_samples(X_test))


def test_input_forms_give_the_same_scores(easy_problem):
    X_normal, X_outlier, X_test, _ = easy_problem
    det = ADIBDetector(**TINY).fit(X_normal, X_outlier)
    reference = det.score_samples(X_test)
    nchw = X_test.transpose(0, 3, 1, 2)
    for form in (nchw, torch.from_numpy(X_test)):
        assert np.array_equal(det.score_samples(form), reference)
    assert np.allclose(det.score_samples(X_test / 255.0), reference, atol=0.05)
    assert det.n_features_in_ == 3072 and det.image_shape_ == (3, 32, 32)
    # Flattened colour rows read two ways (channel-major or NHWC): the image_shape parameter says which.
    with pytest.raises(ValueError, match="reads two ways"):
        det.score_samples(nchw.reshape(len(X_test), -1))
    told = copy.deepcopy(det).set_params(image_shape=(3, 32, 32))
    assert np.array_equal(told.score_samples(nchw.reshape(len(X_test), -1)), reference)
    # Other sizes and channel counts than the fitted ones are refused, as scikit-learn refuses another width.
    with pytest.raises(ValueError, match=r"X holds 3-channel 24x24 images .* fitted on 3-channel 32x32"):
        det.score_samples(X_test[:, :24, :24])
    with pytest.raises(ValueError, match=r"X holds 1-channel 32x32 images .* fitted on 3-channel 32x32"):
        det.score_samples(X_test[..., 0])


def test_flattened_training_input_and_width_check(easy_problem):
    X_normal, X_outlier, X_test, _ = easy_problem
    flat = X_normal.transpose(0, 3, 1, 2).reshape(len(X_normal), -1)
    with pytest.raises(ValueError, match=r"X has 3072 = 3\*32\*32 features per row, which reads two ways"):
        ADIBDetector(**TINY).fit(flat, X_outlier)
    det = ADIBDetector(**TINY, image_shape=(3, 32, 32)).fit(flat, X_outlier)
    assert det.n_features_in_ == 3072
    assert np.array_equal(det.score_samples(flat[:4]), det.score_samples(X_normal[:4]))
    with pytest.raises(ValueError, match="X has 300 features, but ADIBDetector is expecting 3072"):
        det.score_samples(np.zeros((2, 300)))


def test_contamination_sets_the_offset(easy_problem):
    X_normal, X_outlier, _, _ = easy_problem
    det = ADIBDetector(**TINY, contamination=0.1).fit(X_normal, X_outlier)
    assert np.mean(det.predict(X_normal) == -1) == pytest.approx(0.1, abs=0.02)


def test_auto_threshold_is_the_refitted_boundary_of_normal_vs_oe(easy_problem):
    X_normal, X_outlier, X_test, y_test = easy_problem
    # One epoch of a random-init width-4 network: logit 0 (the old "auto") is no boundary yet; here it
    # called every test image anomalous, normal ones included.
    auto = ADIBDetector(**TINY, match_histograms=False, anomaly_score="loss").fit(X_normal, X_outlier)
    # Without validation_fraction: the training images and (here all of) the corpus, as training saw them.
    expected = OutlierExposureBCE().auto_offset(lambda: auto.score_samples(X_normal),
                                                lambda: auto.score_samples(X_outlier))
    assert auto.offset_ == pytest.approx(expected, rel=1e-5, abs=1e-6) and auto.offset_ != 0.0
    assert np.mean(auto.predict(X_test[y_test == 1]) == -1) < 0.2
    assert np.mean(auto.predict(X_test[y_test == -1]) == -1) > 0.5
    # The default score (logit + kNN) has no boundary of its own: a logistic fit of normal vs OE scores.
    auto = ADIBDetector(**TINY, match_histograms=False).fit(X_normal, X_outlier)
    expected = refitted_boundary(auto.score_samples(X_normal), auto.score_samples(X_outlier))
    assert auto.anomaly_score_ == "loss+knn" and auto.offset_ == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert np.mean(auto.predict(X_test[y_test == 1]) == -1) < 0.2
    assert np.mean(auto.predict(X_test[y_test == -1]) == -1) > 0.5


@pytest.mark.parametrize("Detector", DETECTORS)
def test_joblib_round_trip(Detector, easy_problem, tmp_path):
    X_normal, X_outlier, X_test, _ = easy_problem
    det = Detector(**TINY).fit(X_normal, X_outlier)
    joblib.dump(det, tmp_path / "det.joblib")
    loaded = joblib.load(tmp_path / "det.joblib")
    assert np.array_equal(loaded.score_samples(X_test), det.score_samples(X_test))
    assert loaded.mean_ == det.mean_ and loaded.input_size_ == det.input_size_


def test_a_cuda_pickle_loads_on_a_cpu_only_machine(easy_problem, monkeypatch):
    X_normal, X_outlier, X_test, _ = easy_problem
    det = ADIBDetector(**TINY).fit(X_normal, X_outlier)
    state = det.__getstate__()
    state["device_"] = "cuda:0"  # what a CUDA fit pickles; tensors are already moved to the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    clone = ADIBDetector.__new__(ADIBDetector)
    clone.__setstate__(state)
    assert clone.device_ == torch.device("cpu")
    assert np.array_equal(clone.score_samples(X_test), det.score_samples(X_test))


def test_module_backbone_is_copied_not_mutated(easy_problem):
    X_normal, X_outlier, _, _ = easy_problem
    backbone = resnet26(width=4)
    before = copy.deepcopy(backbone.state_dict())
    for Detector in DETECTORS:
        det = Detector(**{**TINY, "width": None}, backbone=backbone).fit(X_normal, X_outlier)
        assert det.network_ is not backbone
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    assert not any(name.startswith("pre_ra") for name, _ in backbone.named_parameters())


def test_module_backbone_must_output_one_logit(easy_problem):
    X_normal, X_outlier, _, _ = easy_problem
    wrong = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5))
    with pytest.raises(TypeError, match=r"\(N, 1\) anomaly logits, got output \(2, 5\)"):
        ADIBDetector(**{**TINY, "width": None}, backbone=wrong).fit(X_normal, X_outlier)
    right = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 1))
    det = ADIBDetector(**{**TINY, "width": None}, backbone=right).fit(X_normal, X_outlier)
    assert det.score_samples(X_normal[:3]).shape == (3,)
    with pytest.raises(TypeError, match="ResNet26"):
        ADRADetector(**{**TINY, "width": None}, backbone=right).fit(X_normal, X_outlier)


def test_theta0_from_a_checkpoint_sets_preprocessing(easy_problem, tmp_path):
    from skad_transfer.weights import save_weights

    X_normal, X_outlier, _, _ = easy_problem
    record = save_weights(resnet26(width=4, num_classes=7), tmp_path / "t.pth", mean=(0.1, 0.1, 0.1),
                          std=(0.3, 0.3, 0.3))
    det = ADRADetector(**{**TINY, "width": None, "weights": record.path}).fit(X_normal, X_outlier)
    assert det.mean_ == (0.1, 0.1, 0.1) and det.weights_.width == 4
    assert det.network_.linears.out_features == 1


@pytest.mark.parametrize("kwargs, fit_args, error, match", [
    ({}, "no_oe", ValueError, "needs an outlier-exposure corpus"),
    ({}, "twice", ValueError, "given twice"),
    ({}, "short_labels", ValueError, "expected 128 labels"),
    ({}, "all_anomalous", ValueError, "at least one normal"),
    ({}, "string_labels", ValueError, "Unknown label type"),
    ({}, "nan", ValueError, "NaN"),
    ({}, "channels", ValueError, "1 or 3 channels"),
    ({"alpha": -1.0}, "ok", ValueError, "alpha"),
    ({"epochs": 0}, "ok", ValueError, "epochs"),
    ({"contamination": 0.7}, "ok", ValueError, "contamination"),
    ({"device": "tpu"}, "ok", ValueError, "device"),
    ({"regularizer": "l1"}, "ok", ValueError, "regularizer"),
    ({"weights": "no-such-weights"}, "ok", ValueError, "unknown name 'no-such-weights'"),
    ({"weights": "/nonexistent/theta0.pth"}, "ok", OSError, "does not exist"),
    ({"outlier_exposure": "no-such-corpus"}, "no_oe", ValueError, "unknown corpus name"),
    ({"input_size": 64}, "ok", ValueError, "input_size"),
])
def test_bad_input_errors(easy_problem, kwargs, fit_args, error, match):
    X_normal, X_outlier, _, _ = easy_problem
    det = ADIBDetector(**{**TINY, **kwargs})
    args = {
        "ok": ((X_normal, X_outlier), {}),
        "no_oe": ((X_normal,), {}),
        "twice": ((X_normal, X_outlier), {"X_outlier": X_outlier}),
        "short_labels": ((X_normal, np.ones(5)), {"X_outlier": X_outlier}),
        "all_anomalous": ((X_normal, -np.ones(len(X_normal))), {"X_outlier": X_outlier}),
        "string_labels": ((X_normal, np.array(["a"] * len(X_normal), dtype=object)), {"X_outlier": X_outlier}),
        "nan": ((np.full((4, 3, 32, 32), np.nan), X_outlier), {}),
        "channels": ((np.zeros((4, 32, 32, 4)), X_outlier), {}),
    }[fit_args]
    with pytest.raises(error, match=match):
        det.fit(*args[0], **args[1])


def test_corrupt_weights_file(easy_problem, tmp_path):
    X_normal, X_outlier, _, _ = easy_problem
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(OSError, match="could not read"):
        ADIBDetector(**{**TINY, "width": None, "weights": tmp_path / "bad.pth"}).fit(X_normal, X_outlier)


def test_unfitted_and_bad_score_input(easy_problem):
    from sklearn.exceptions import NotFittedError

    X_normal, X_outlier, _, _ = easy_problem
    with pytest.raises(NotFittedError):
        ADIBDetector().score_samples(X_normal)
    det = ADIBDetector(**TINY).fit(X_normal, X_outlier)
    with pytest.raises(ValueError, match="NaN"):
        det.score_samples(np.full((2, 32, 32, 3), np.nan))
    with pytest.raises(ValueError, match="0 sample"):
        det.score_samples(np.zeros((0, 32, 32, 3)))


def test_checkpointed_fit_resumes(easy_problem, tmp_path):
    X_normal, X_outlier, X_test, _ = easy_problem
    kwargs = {**TINY, "epochs": 2, "checkpoint": tmp_path / "fit.pt"}
    first = ADIBDetector(**kwargs).fit(X_normal, X_outlier)
    assert (tmp_path / "fit.pt").is_file()
    again = ADIBDetector(**kwargs).fit(X_normal, X_outlier)  # finds both epochs done: nothing to train
    assert np.array_equal(first.score_samples(X_test), again.score_samples(X_test))
    with pytest.raises(ValueError, match="different fit"):
        ADIBDetector(**{**kwargs, "alpha": 0.5}).fit(X_normal, X_outlier)


def test_repr_shows_an_image_array_parameter_by_its_shape_not_its_pixels():
    import torch

    from skad_transfer import ADIBDetector, DeepADDetector

    det = ADIBDetector(outlier_exposure=np.zeros((1000, 32, 32, 3), np.uint8), lr=0.1)
    assert repr(det) == "ADIBDetector(lr=0.1, outlier_exposure=<ndarray shape=(1000, 32, 32, 3) dtype=uint8>)"
    assert "shape=(5, 3, 8, 8)" in repr(DeepADDetector(outlier_exposure=torch.zeros(5, 3, 8, 8)))
    assert repr(ADIBDetector(outlier_exposure="tinyimagenet")) == "ADIBDetector(outlier_exposure='tinyimagenet')"
    assert det.get_params()["outlier_exposure"].shape == (1000, 32, 32, 3)  # the parameter itself is untouched
