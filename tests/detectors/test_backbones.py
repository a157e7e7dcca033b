"""Every detector and LayerFeatures on a torchvision ResNet (random init or a local state dict)."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from torchvision.models import get_model

from skad_transfer import (ADIBDetector, ADRADetector, DOCDetector, DSVDDDetector, HSCDetector, KNNDetector,
                           LayerFeatures)
from skad_transfer.nn import TorchvisionResNet, build_backbone

SMALL = dict(backbone="resnet18", weights=None, input_size=32, steps=2, epochs=None, batch_size=8, device="cpu",
             precision="float32", random_state=0, verbose=False)


@pytest.fixture(scope="module")
def data(easy_problem):
    X_normal, X_outlier, X_test, y_test = easy_problem
    return X_normal[:16], X_outlier[:16], X_test, y_test


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    """A torchvision resnet18 state dict with a 1000-way head, saved locally (stands in for ImageNet's)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tv") / "resnet18.pth"
    torch.save(get_model("resnet18", weights=None).state_dict(), path)
    return path


@pytest.mark.parametrize("cls", [ADIBDetector, HSCDetector, DSVDDDetector])
def test_detectors_fit_and_score_on_a_torchvision_resnet(cls, data):
    X_normal, X_outlier, X_test, _ = data
    det = cls(**SMALL).fit(X_normal, X_outlier)
    assert isinstance(det.network_, TorchvisionResNet) and det.network_.arch == "resnet18"
    assert det.input_size_ == 32 and det.weights_ is None
    scores = det.score_samples(X_test)
    assert scores.shape == (len(X_test),) and np.isfinite(scores).all()
    assert det.predict(X_test).shape == (len(X_test),)


def test_adra_leaves_every_pretrained_conv_bitwise_unchanged(data, imagenet_like):
    X_normal, X_outlier, _, _ = data
    det = ADRADetector(**{**SMALL, "weights": str(imagenet_like), "lr": 0.1}).fit(X_normal, X_outlier)
    theta0 = torch.load(imagenet_like)
    convs = {name: m for name, m in det.network_.named_modules()
             if isinstance(m, torch.nn.Conv2d) and "adapter" not in name}
    assert len(convs) == 20  # the 7x7 stem, 16 3x3s and 3 downsampling 1x1s
    for name, conv in convs.items():
        key = name.replace(".conv.", ".").removesuffix(".conv") + ".weight"
        assert torch.equal(conv.weight, theta0[key]), name
    adapters = [m for n, m in det.network_.named_modules() if n.endswith(".adapter")]
    assert len(adapters) == 16 and all(a.weight.abs().sum() > 0 for a in adapters)
    assert det.weights_.arch == "resnet18" and det.mean_ == (0.485, 0.456, 0.406)  # ImageNet's preprocessing
    restored = pickle.loads(pickle.dumps(det))
    assert np.array_equal(restored.score_samples(X_normal), det.score_samples(X_normal))


def test_adib_pulls_toward_the_torchvision_theta0(data, imagenet_like):
    X_normal, X_outlier, _, _ = data
    det = ADIBDetector(**{**SMALL, "weights": str(imagenet_like)}).fit(X_normal, X_outlier)
    assert det.history_[-1]["penalty"] > 0
    theta0 = torch.load(imagenet_like)
    assert not torch.equal(det.network_.conv1.weight, theta0["conv1.weight"])  # fine-tuned, not frozen


@pytest.mark.parametrize("make", [
    lambda weights: DOCDetector(**{**SMALL, "weights": weights}),
    lambda weights: ADIBDetector(**{**SMALL, "weights": weights, "regularizer": "ewc"}),
])
def test_theta0_s_own_1000_way_head_is_the_reference_task(make, data, imagenet_like, monkeypatch):
    import skad_transfer.losses as losses
    import skad_transfer.regularizers as regularizers

    X_normal, X_outlier, X_test, _ = data
    real, heads = losses.with_classifier_head, []

    def recording(network, head, generator):
        network = real(network, head, generator)
        heads.append((head, tuple(network.head.weight.shape)))
        return network

    monkeypatch.setattr(losses, "with_classifier_head", recording)  # DOC's descriptiveness task
    monkeypatch.setattr(regularizers, "with_classifier_head", recording)  # EWC's Fisher
    det = make(str(imagenet_like)).fit(X_normal, X_outlier)
    # The reference classifier is theta0's own fc layer, all 1000 classes of it, bitwise.
    theta0 = torch.load(imagenet_like)
    assert len(heads) == 1 and heads[0][1] == (1000, 512)
    (weight, bias), _ = heads[0]
    assert torch.equal(weight, theta0["fc.weight"]) and torch.equal(bias, theta0["fc.bias"])
    if isinstance(det, DOCDetector):  # DOC trains that head on (and keeps it)
        assert det.network_.fc.weight.shape == (1000, 512)
    else:  # EWC only weighs its pull by it: the detector's own head is one anomaly logit
        assert det.network_.fc.weight.shape == (1, 512)
    assert np.isfinite(det.score_samples(X_test)).all()


def test_doc_without_a_classifier_head_says_so(data):
    X_normal, X_outlier, _, _ = data
    with pytest.raises(ValueError, match="reference classification task"):
        DOCDetector(**SMALL).fit(X_normal, X_outlier)


def test_grid_search_over_backbones(data):
    X_normal, X_outlier, X_test, y_test = data
    grid = GridSearchCV(ADIBDetector(**{**SMALL, "outlier_exposure": X_outlier}),
                        {"backbone": ["resnet26", "resnet18"]}, scoring="roc_auc",
                        cv=StratifiedKFold(2, shuffle=True, random_state=0))
    X = np.concatenate([X_normal, X_test[y_test == -1][:8]])
    y = np.r_[np.ones(len(X_normal), int), -np.ones(8, int)]
    grid.fit(X, y)
    assert [p["backbone"] for p in grid.cv_results_["params"]] == ["resnet26", "resnet18"]
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    best = grid.best_estimator_
    assert best.backbone == grid.best_params_["backbone"]
    assert type(best.network_).__name__ == {"resnet26": "ResNet26", "resnet18": "TorchvisionResNet"}[best.backbone]


@pytest.mark.parametrize("layer, dim", [("stem", 64), ("stage4", 512), ("pooled", 512)])
def test_layer_features_on_a_torchvision_resnet(data, imagenet_like, layer, dim):
    X_normal, _, X_test, y_test = data
    features = LayerFeatures("resnet18", weights=str(imagenet_like), layer=layer, device="cpu", batch_size=16)
    out = features.fit(X_normal).transform(X_test[:4])
    assert out.shape == (4, dim) and features.input_size_ == 224
    network = build_backbone("resnet18", record=features.weights_, num_classes=1).eval()
    assert torch.equal(network.conv1.weight, features.network_.conv1.weight)


def test_layer_features_refuse_a_tap_the_backbone_lacks(data):
    with pytest.raises(ValueError, match="layer='stage4' is not a feature tap of ResNet26"):
        LayerFeatures("resnet26", weights=None, width=4, layer="stage4", device="cpu").fit(data[0])


def test_knn_on_a_fitted_torchvision_detector(data):
    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import make_pipeline

    from scipy.spatial.distance import cdist

    from skad_transfer.inference import apply_batched

    X_normal, X_outlier, X_test, y_test = data
    det = ADIBDetector(**SMALL).fit(X_normal, X_outlier)
    knn = make_pipeline(LayerFeatures(FrozenEstimator(det), layer="stage3", precision="float32"),
                        KNNDetector(n_neighbors=2))
    scores = knn.fit(X_normal).score_samples(X_test)
    # The features are the fitted detector's: its fine-tuned network (a copy) and its preprocessing.
    features = knn[0]
    fitted = det.network_.state_dict()
    assert all(torch.equal(t, fitted[k]) for k, t in features.network_.state_dict().items())
    assert (features.mean_, features.std_, features.input_size_) == (det.mean_, det.std_, det.input_size_)

    def stage3(images):  # the detector's network at stage3, average-pooled, as the detector sees images
        return apply_batched(lambda x: det.network_.features(x, ("stage3",))["stage3"].mean(dim=(2, 3)),
                             torch.from_numpy(images).permute(0, 3, 1, 2), device=torch.device("cpu"),
                             mean=det.mean_, std=det.std_, input_size=det.input_size_, precision="float32",
                             jpeg_quality=det.jpeg_quality_).numpy()

    # kNN-AD: minus the mean distance to the 2 nearest normal training features.
    expected = -np.sort(cdist(stage3(X_test), stage3(X_normal)), axis=1)[:, :2].mean(axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)


def test_onnx_export_of_adapters_on_a_torchvision_resnet(data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from skad_transfer import export_onnx

    X_normal, X_outlier, X_test, _ = data
    det = ADRADetector(**{**SMALL, "jpeg_quality": None}).fit(X_normal, X_outlier)
    export_onnx(det, tmp_path / "det.onnx")
    session = ort.InferenceSession(str(tmp_path / "det.onnx"))
    scores = session.run(None, {session.get_inputs()[0].name: X_test})[0].ravel()
    np.testing.assert_allclose(scores, det.score_samples(X_test), atol=1e-4)
