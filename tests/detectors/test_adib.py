import numpy as np
import pytest
import torch

from conftest import TINY
from skad_transfer import ADIBDetector, resnet26
from skad_transfer.regularizers import make_regularizer
from skad_transfer.weights import save_weights


def test_regularized_parameter_sets():
    net = resnet26(width=4)
    paper = make_regularizer("l2sp", alpha=0.1).covered(net)
    names = {id(p): n for n, p in net.named_parameters()}
    assert all(not names[id(p)].startswith("linears") for p in paper)
    assert len(paper) == len(list(net.parameters())) - 2  # everything but the fresh head
    reference = make_regularizer("l2sp-ref", alpha=0.1).covered(net)
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


def test_defaults_are_a_step_budget_with_jpeg_harmonisation_and_progress():
    params = ADIBDetector().get_params()
    assert (params["steps"], params["epochs"], params["jpeg_quality"], params["verbose"]) == (1500, None, 75, True)
    assert params["match_outlier_exposure"] is True
    assert params["match_histograms"] == "auto"


def test_outlier_exposure_is_matched_to_the_normal_images_resolution_and_channels(easy_problem):
    X_normal, X_outlier, X_test, _ = easy_problem
    settings = {**TINY, "precision": "float32"}
    # Same size and channels as the OE corpus: matching changes nothing, bitwise.
    on = ADIBDetector(**settings).fit(X_normal, X_outlier).score_samples(X_test)
    off = ADIBDetector(**settings, match_outlier_exposure=False).fit(X_normal, X_outlier).score_samples(X_test)
    assert (on == off).all()
    # Small grayscale normal images: the OE images are shrunk and made gray first, which is the
    # same as handing over OE images prepared that way.
    gray = X_normal[:, ::4, ::4].mean(-1, keepdims=True).round().astype(np.uint8)       # (N, 8, 8, 1)
    test = X_test[:, ::4, ::4].mean(-1, keepdims=True).round().astype(np.uint8)
    from skad_transfer.data.harmonize import like_source

    prepared = like_source(torch.from_numpy(X_outlier).permute(0, 3, 1, 2).contiguous(), (1, 8, 8))
    matched = ADIBDetector(**settings).fit(gray, X_outlier).score_samples(test)
    by_hand = ADIBDetector(**settings, match_outlier_exposure=False).fit(gray, prepared).score_samples(test)
    unmatched = ADIBDetector(**settings, match_outlier_exposure=False).fit(gray, X_outlier).score_samples(test)
    np.testing.assert_array_equal(matched, by_hand)
    assert not (matched == unmatched).all()


def strokes_on_black(n, rng):
    """8x8 grayscale images of bright bars on an exactly black background (digits-like statistics)."""
    x = np.zeros((n, 8, 8, 1), dtype=np.uint8)
    for i in range(n):
        c = int(rng.integers(1, 7))
        x[i, 1:7, c, 0] = rng.integers(160, 256)
    return x


def test_match_histograms_auto_matches_only_when_intensities_alone_separate_normal_from_oe(easy_problem):
    X_test = easy_problem[2]
    settings = {**TINY, "precision": "float32", "verbose": False}
    natural = np.random.default_rng(1).integers(0, 256, (128, 32, 32, 3), dtype=np.uint8)
    # Noise against noise: no intensity shortcut, so "auto" leaves the OE images alone, bitwise.
    auto = ADIBDetector(**settings).fit(natural[:64], natural[64:])
    assert auto.match_histograms_ is False and 0.2 < auto.intensity_separability_ < 0.8
    off = ADIBDetector(**settings, match_histograms=False).fit(natural[:64], natural[64:])
    assert off.intensity_separability_ is None
    np.testing.assert_array_equal(auto.score_samples(X_test), off.score_samples(X_test))
    # Strokes on black against natural images: separable by intensities alone, so matched.
    strokes = strokes_on_black(64, np.random.default_rng(2))
    auto = ADIBDetector(**settings).fit(strokes, natural)
    assert auto.match_histograms_ is True and auto.intensity_separability_ >= 0.95
    on = ADIBDetector(**settings, match_histograms=True).fit(strokes, natural)
    assert on.match_histograms_ is True and on.intensity_separability_ is None
    np.testing.assert_array_equal(auto.score_samples(strokes), on.score_samples(strokes))
    unmatched = ADIBDetector(**settings, match_histograms=False).fit(strokes, natural)
    assert not np.array_equal(unmatched.score_samples(strokes), on.score_samples(strokes))


def test_match_histograms_is_validated():
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="match_histograms"):
        ADIBDetector(match_histograms="yes").fit(np.zeros((4, 8, 8, 1), np.uint8))


def test_steps_set_the_training_length_whatever_the_normal_set_size(easy_problem):
    X_normal, X_outlier, _, _ = easy_problem
    settings = {**TINY, "epochs": None, "steps": 7}  # 128 normal images, 16 per step: 8 steps per epoch
    small = ADIBDetector(**settings).fit(X_normal[:32], X_outlier)
    large = ADIBDetector(**settings).fit(X_normal, X_outlier)
    assert sum(h["steps"] for h in small.history_) == sum(h["steps"] for h in large.history_) == 7
    assert small.n_iter_ == 4 and large.n_iter_ == 1  # epochs begun: 2 steps per epoch, then 8
    epochs = ADIBDetector(**{**settings, "epochs": 2}).fit(X_normal, X_outlier)  # epochs win over steps
    assert sum(h["steps"] for h in epochs.history_) == 16


def test_scored_images_make_the_same_jpeg_round_trip_as_the_training_images(easy_problem):
    from skad_transfer.data.harmonize import jpeg_roundtrip

    X_normal, X_outlier, X_test, _ = easy_problem
    det = ADIBDetector(**{**TINY, "jpeg_quality": 50, "precision": "float32"}).fit(X_normal, X_outlier)
    scores = det.score_samples(X_test)
    encoded = jpeg_roundtrip(torch.from_numpy(X_test).permute(0, 3, 1, 2).contiguous(), 50)
    det.set_params(jpeg_quality=None)  # a parameter change after fit does not change scoring...
    assert (det.score_samples(X_test) == scores).all()
    det.jpeg_quality_ = None  # ...the fitted attribute does: pre-encoded images, no second round trip
    assert (det.score_samples(encoded) == scores).all()
    off = ADIBDetector(**{**TINY, "jpeg_quality": None, "precision": "float32"}).fit(X_normal, X_outlier)
    assert not (off.score_samples(X_test) == scores).all()


def test_out_of_range_float_images_are_refused_by_the_jpeg_round_trip(easy_problem):
    X_normal, X_outlier, _, _ = easy_problem
    with pytest.raises(ValueError, match="jpeg_quality"):
        ADIBDetector(**TINY).fit(X_normal.astype("float32"), X_outlier)  # 0..255 floats
    det = ADIBDetector(**{**TINY, "jpeg_quality": None}).fit(X_normal.astype("float32") / 255, X_outlier)
    assert det.history_


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_a_memory_mapped_file_is_scored_as_the_same_images_in_memory(easy_problem, tmp_path, dtype):
    """score_samples streams a memory map batch by batch (benchmarks/speed/corpus_scale.py measures its
    memory); the scores are those of the array loaded into memory, bitwise."""
    from skad_transfer import LayerFeatures

    X_normal, X_outlier, X_test, _ = easy_problem
    X_test = X_test if dtype == "uint8" else X_test.astype(np.float32) / 255
    np.save(tmp_path / "test.npy", X_test)
    mapped = np.load(tmp_path / "test.npy", mmap_mode="r")
    det = ADIBDetector(**{**TINY, "steps": 2, "epochs": None, "precision": "float32"}).fit(X_normal, X_outlier)
    assert np.array_equal(det.score_samples(mapped), det.score_samples(X_test))
    features = LayerFeatures(weights=None, width=4, device="cpu", precision="float32").fit(X_normal)
    assert np.array_equal(features.transform(mapped), features.transform(X_test))
    assert np.array_equal(np.load(tmp_path / "test.npy"), X_test)  # the file is read, never written
