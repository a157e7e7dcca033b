"""export_onnx: the fitted detector as an ONNX graph, checked against score_samples with onnxruntime."""

import numpy as np
import pytest
import torch

from skad_transfer import ADIBDetector, ADRADetector, DSVDDDetector
from skad_transfer.data.harmonize import jpeg_roundtrip
from skad_transfer.export import export_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = dict(steps=3, batch_size=16, device="cpu", precision="float32", random_state=0, verbose=False)


def problem(shape=(32, 32, 3), seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 120, (48, *shape), dtype=np.uint8), rng.integers(100, 256, (48, *shape), dtype=np.uint8)


def onnx_scores(path, images):
    return ort.InferenceSession(str(path)).run(None, {"images": images})[0]


@pytest.mark.parametrize("Detector", [ADIBDetector, ADRADetector, DSVDDDetector])
def test_onnx_scores_equal_score_samples(Detector, tmp_path):
    X_normal, X_outlier = problem()
    det = Detector(jpeg_quality=None, **FAST).fit(X_normal, X_outlier)
    path = export_onnx(det, tmp_path / "det.onnx")
    X = np.concatenate([X_normal[:7], X_outlier[:6]])  # any batch size: the batch axis is dynamic
    expected = det.score_samples(X)
    np.testing.assert_allclose(onnx_scores(path, X), expected, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(onnx_scores(path, X[:1]), expected[:1], rtol=1e-6, atol=1e-4)

    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert float(meta["skad_transfer.offset"]) == det.offset_ and meta["skad_transfer.estimator"] == Detector.__name__


def test_jpeg_round_trip_is_refused_or_left_to_the_caller(tmp_path):
    X_normal, X_outlier = problem()
    det = ADIBDetector(**FAST).fit(X_normal, X_outlier)  # jpeg_quality=75, the default
    with pytest.raises(ValueError, match=r"jpeg: .*jpeg_quality_=75.*jpeg='caller'"):
        export_onnx(det, tmp_path / "det.onnx")
    path = export_onnx(det, tmp_path / "det.onnx", jpeg="caller")
    X = np.concatenate([X_normal[:5], X_outlier[:5]])
    roundtripped = jpeg_roundtrip(torch.from_numpy(X).permute(0, 3, 1, 2), 75).permute(0, 2, 3, 1).contiguous()
    np.testing.assert_allclose(onnx_scores(path, roundtripped.numpy()), det.score_samples(X), rtol=1e-6, atol=1e-4)


def test_grayscale_images_of_another_size_are_resized_inside_the_graph(tmp_path):
    X_normal, X_outlier = problem(shape=(28, 28, 1))
    det = ADIBDetector(jpeg_quality=None, **FAST).fit(X_normal, X_outlier)
    path = export_onnx(det, tmp_path / "det.onnx")
    X = np.concatenate([X_normal[:7], X_outlier[:6]])
    # onnxruntime's antialiased resize rounds a few pixels to the neighbouring uint8 level (1/255)
    # where torch's does not: scores agree to about 1e-3 of their range, not to float precision.
    expected = det.score_samples(X)
    np.testing.assert_allclose(onnx_scores(path, X), expected, atol=1e-2 * np.ptp(expected))


def test_bad_arguments(tmp_path):
    X_normal, X_outlier = problem()
    det = ADIBDetector(jpeg_quality=None, **FAST).fit(X_normal, X_outlier)
    with pytest.raises(ValueError, match="^jpeg must be one of"):
        export_onnx(det, tmp_path / "a.onnx", jpeg="ignore")
    with pytest.raises(ValueError, match=r"^image_size must be \(H, W\)"):
        export_onnx(det, tmp_path / "a.onnx", image_size=(32,))
    with pytest.raises(TypeError, match="^detector must be a fitted skad_transfer detector"):
        export_onnx(object(), tmp_path / "a.onnx")
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        export_onnx(ADIBDetector(), tmp_path / "a.onnx")


def test_a_default_precision_detector_exports_its_scores_to_1e_4(tmp_path):
    """Training precision "auto" (bf16 where the CPU has it natively), the default score and JPEG
    round trip: scores are float32 either way, and the graph reproduces them."""
    X_normal, X_outlier = problem()
    det = ADIBDetector(**{**FAST, "precision": "auto", "weights": "default"}).fit(X_normal, X_outlier)
    assert det.anomaly_score_ == "loss+knn"
    path = export_onnx(det, tmp_path / "det.onnx", jpeg="caller")
    X = np.concatenate([X_normal[:6], X_outlier[:6]])
    roundtripped = jpeg_roundtrip(torch.from_numpy(X).permute(0, 3, 1, 2), 75).permute(0, 2, 3, 1).contiguous()
    np.testing.assert_allclose(onnx_scores(path, roundtripped.numpy()), det.score_samples(X), rtol=0, atol=1e-4)
