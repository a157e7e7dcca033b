"""LayerFeatures: shapes per layer, batch invariance, probes in pipelines, detector backbones, the contract."""

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM
from sklearn.utils.estimator_checks import check_estimator

from conftest import TINY
from skad_transfer import ADIBDetector, KNNDetector, LayerFeatures, resnet26
from skad_transfer.weights import save_weights

FEATURES = dict(weights=None, width=4, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def images(easy_problem):
    return easy_problem[2][:20]


@pytest.mark.parametrize("layer, pooling, dim", [
    ("stem", "avg", 4), ("stage1", "max", 4), ("stage2", "avg", 8), ("stage3", "avg", 16), ("pooled", "avg", 16),
    ("stem", "none", 4 * 32 * 32), ("stage1", "none", 4 * 32 * 32), ("stage2", "none", 8 * 16 * 16),
    ("stage3", "none", 16 * 8 * 8), ("pooled", "none", 16),
])
def test_shapes_per_layer(images, layer, pooling, dim):
    transformer = LayerFeatures(**FEATURES, layer=layer, pooling=pooling).fit(images)
    features = transformer.transform(images)
    assert features.shape == (len(images), dim) and features.dtype == np.float32
    assert transformer.n_features_out_ == dim
    assert len(transformer.get_feature_names_out()) == dim


def test_layers_agree_with_the_network(images):
    exact = {**FEATURES, "precision": "float32"}  # bf16 autocast (CPUs with AMX) would round the two apart
    pooled = LayerFeatures(**exact).fit_transform(images)
    stage3 = LayerFeatures(**exact, layer="stage3", pooling="none").fit_transform(images)
    assert np.allclose(pooled, stage3.reshape(len(images), 16, 64).mean(axis=2), rtol=1e-5, atol=1e-4)
    same_seed = LayerFeatures(**exact).fit_transform(images)
    other_seed = LayerFeatures(**{**exact, "random_state": 1}).fit_transform(images)
    assert np.array_equal(pooled, same_seed) and not np.array_equal(pooled, other_seed)


def test_exact_batch_invariance(images):
    transformer = LayerFeatures(**FEATURES, layer="stage2", pooling="none").fit(images)
    full = transformer.transform(images)
    assert np.array_equal(transformer.transform(images[5:9]), full[5:9])
    assert np.array_equal(transformer.transform(images[::-1]), full[::-1])
    assert np.array_equal(transformer.transform(images[3:4]), full[3:4])
    small_batches = clone(transformer).set_params(batch_size=3).fit(images)
    assert np.array_equal(small_batches.transform(images), full)


def test_input_forms(images):
    transformer = LayerFeatures(**FEATURES).fit(images)
    reference = transformer.transform(images)
    nchw = images.transpose(0, 3, 1, 2)
    for form in (nchw, torch.from_numpy(images)):
        assert np.array_equal(transformer.transform(form), reference)
    with pytest.raises(ValueError, match="reads two ways"):  # flattened colour rows: NCHW or NHWC?
        transformer.transform(nchw.reshape(len(images), -1))
    flat = clone(transformer).set_params(image_shape=images.shape[-1:] + images.shape[1:3]).fit(images)
    assert np.array_equal(flat.transform(nchw.reshape(len(images), -1)), reference)
    with pytest.raises(ValueError, match="NaN"):
        transformer.transform(np.full((2, 32, 32, 3), np.nan))


def test_oc_svm_probe_pipeline(easy_problem):
    X_normal, _, X_test, y_test = easy_problem
    probe = make_pipeline(LayerFeatures(**FEATURES, layer="stage3"), StandardScaler(), OneClassSVM())
    scores = probe.fit(X_normal).score_samples(X_test)
    assert scores.shape == (len(X_test),) and roc_auc_score(y_test, scores) > 0.8


def test_knn_pipeline_is_the_paper_baseline(easy_problem):
    X_normal, _, X_test, y_test = easy_problem
    knn = make_pipeline(LayerFeatures(**FEATURES), KNNDetector())
    assert roc_auc_score(y_test, knn.fit(X_normal).score_samples(X_test)) > 0.8


def test_theta0_from_weights_sets_preprocessing(images, tmp_path):
    record = save_weights(resnet26(width=4, num_classes=7), tmp_path / "t.pth", mean=(0.1, 0.2, 0.3),
                          std=(0.5, 0.5, 0.5))
    transformer = LayerFeatures(weights=record.path, device="cpu").fit(images)
    assert transformer.mean_ == (0.1, 0.2, 0.3) and transformer.weights_.width == 4
    with pytest.raises(ValueError, match="width=8 does not match"):
        LayerFeatures(weights=record.path, width=8, device="cpu").fit(images)


def test_features_of_a_fitted_detector(easy_problem):
    X_normal, X_outlier, X_test, _ = easy_problem
    det = ADIBDetector(**TINY).fit(X_normal, X_outlier)
    transformer = LayerFeatures(det, device="cpu", precision="float32").fit(X_test)
    assert transformer.input_size_ == det.input_size_ and transformer.mean_ == det.mean_
    assert transformer.jpeg_quality_ == det.jpeg_quality == 75
    with torch.no_grad():
        from skad_transfer.data.augment import normalize

        from skad_transfer.data.harmonize import jpeg_roundtrip

        # The detector's images make a JPEG round trip (jpeg_quality) before its network: so do these.
        images = jpeg_roundtrip(torch.from_numpy(X_test[:8]).permute(0, 3, 1, 2).contiguous(), det.jpeg_quality)
        expected = det.network_.features(normalize(images, det.mean_, det.std_))["pooled"]
    assert np.allclose(transformer.transform(X_test[:8]), expected.numpy(), rtol=1e-5, atol=1e-5)
    # clone() unfits nested estimators; FrozenEstimator keeps the fitted detector through it.
    with pytest.raises(TypeError, match="FrozenEstimator"):
        clone(transformer).fit(X_test)
    frozen = clone(LayerFeatures(FrozenEstimator(det), device="cpu", precision="float32")).fit(X_test)
    assert np.array_equal(frozen.transform(X_test), transformer.transform(X_test))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"layer": "conv9"}, ValueError, "layer"),
    ({"pooling": "sum"}, ValueError, "pooling"),
    ({"layer": "pooled", "pooling": "max"}, ValueError, "pooling='max' does not apply"),
    ({"backbone": "vgg"}, ValueError, r"backbone must be one of \[.*'resnet26'.*'resnet50'.*got 'vgg'"),
    ({"backbone": "resnet18", "layer": "stage4", "width": 8}, ValueError, "width applies to backbone='resnet26'"),
    ({"backbone": torch.nn.Linear(2, 2)}, TypeError, "ResNet26"),
    ({"backbone": object()}, TypeError, "has no network_"),
    ({"weights": "no-such-weights"}, ValueError, "unknown name"),
])
def test_bad_parameters(images, kwargs, error, match):
    with pytest.raises(error, match=match):
        LayerFeatures(**{**FEATURES, **kwargs}).fit(images)


def test_unfitted_and_pickled(images, tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        LayerFeatures().transform(images)
    transformer = LayerFeatures(**FEATURES, layer="stage1").fit(images)
    joblib.dump(transformer, tmp_path / "f.joblib")
    assert np.array_equal(joblib.load(tmp_path / "f.joblib").transform(images), transformer.transform(images))


def test_check_estimator():
    transformer = LayerFeatures(**FEATURES, layer="stage2", image_shape=(1, 1, -1))
    results = check_estimator(transformer, on_fail=None)
    assert [r["check_name"] for r in results if r["status"] == "failed"] == []
    assert len(results) > 30
