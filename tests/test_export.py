"""export_onnx: the fitted detector as an ONNX graph, checked against score_samples with onnxruntime."""

import numpy as np
import pytest
import torch

from skad_transfer import ADIBDetector, ADRADetector, DSVDDDetector
from skad_transfer.data.harmonize import jpeg_roundtrip
from skad_transfer.export import export_onnx, onnx_inputs

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


def test_the_deployer_s_path_runs_as_documented_in_the_default_precision(tmp_path):
    # A default detector (JPEG round trip at 75, precision "auto"), exported with jpeg="caller"; the
    # deployer feeds onnx_inputs(images, the session's metadata) to the model: score_samples to 1e-4.
    X_normal, X_outlier = problem()
    det = ADIBDetector(**{**FAST, "precision": "auto"}).fit(X_normal, X_outlier)
    path = export_onnx(det, tmp_path / "det.onnx", jpeg="caller")
    session = ort.InferenceSession(str(path))
    metadata = session.get_modelmeta().custom_metadata_map
    X = np.concatenate([X_normal[:5], X_outlier[:5]])
    scores = session.run(None, {"images": onnx_inputs(X, metadata)})[0]
    np.testing.assert_allclose(scores, det.score_samples(X), rtol=0, atol=1e-4)
    same = jpeg_roundtrip(torch.from_numpy(X).permute(0, 3, 1, 2), 75).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(onnx_inputs(X, metadata), same)  # the detector's pixels


def test_onnx_inputs_say_what_the_model_takes(tmp_path):
    metadata = {"skad_transfer.image_size": "32,32,3", "skad_transfer.jpeg_quality": ""}
    X = problem()[0][:2]
    assert np.array_equal(onnx_inputs(X, metadata), X)  # no JPEG quality: the images as they are
    with pytest.raises(ValueError, match=r"uint8 0\.\.255, got dtype float64 \(floats in 0\.\.1: "):
        onnx_inputs(X / 255.0, metadata)
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\) NHWC images, got shape \(2, 3, 32, 32\); NCHW\? "):
        onnx_inputs(X.transpose(0, 3, 1, 2), metadata)
    with pytest.raises(ValueError, match=r"got shape \(2, 28, 28, 3\); export_onnx\(\.\.\., image_size="):
        onnx_inputs(X[:, :28, :28], metadata)
    with pytest.raises(TypeError, match="numpy array .*permute"):
        onnx_inputs(torch.from_numpy(X), metadata)
    with pytest.raises(ValueError, match="metadata: not an skad_transfer model"):
        onnx_inputs(X, {})
    # A model exported before image_size was recorded: its readable input line says the shape.
    assert np.array_equal(onnx_inputs(X, {"skad_transfer.input": "uint8 (N, 32, 32, 3) NHWC, 0..255"}), X)


def test_an_export_path_that_is_a_directory_fails_before_the_export(tmp_path, monkeypatch):
    import skad_transfer.export as export

    monkeypatch.setattr(export, "_cpu_copy", lambda network: pytest.fail("the export started"))
    X_normal, X_outlier = problem()
    det = ADIBDetector(jpeg_quality=None, **FAST).fit(X_normal, X_outlier)
    with pytest.raises(IsADirectoryError, match=r"path: .* is a directory; name the \.onnx file"):
        export_onnx(det, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        export_onnx(det, tmp_path / "file" / "det.onnx")
