"""No silent wrong results from arrays, labels and positional arguments (issue 9, part A).

Every hostile input either fails with a ``ValueError``/``TypeError`` whose message names the
argument and says what was expected, or has a documented behaviour (``docs/design.md``, "Input
rules") that is checked here against its canonical form. Validation errors are raised before any
training (the ``no_training`` fixture fails a test that reaches the training loop), so they run
fast; the few fits are width 4, one step, on 16 images of 8x8 pixels.
"""

import copy
import re
import warnings

import numpy as np
import pytest
import scipy.sparse
import torch
from conftest import TINY

import skad_transfer.detectors.base as base
from skad_transfer import ADIBDetector, LayerFeatures
from skad_transfer.scoring import OE_SEPARABILITY_SAMPLE
from skad_transfer.data.harmonize import jpeg_roundtrip
from skad_transfer.data.images import INTENSITY_TOLERANCE, IntensityRangeWarning, as_image_batch, resize_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = {**TINY, "verbose": False, "precision": "float32", "jpeg_quality": None}
"""One training step (16 normal images fill the batch's normal half); noise images are not JPEG-like."""

N = 16


def noise(n, shape, low=0, high=256, seed=0):
    return np.random.default_rng(seed).integers(low, high, (n, *shape)).astype(np.uint8)


@pytest.fixture(scope="module")
def data():
    """(X_normal, X_outlier, X_test): uint8 NHWC 8x8, dark normal images, bright OE images."""
    return noise(N, (8, 8, 3), 0, 80, seed=0), noise(N, (8, 8, 3), 150, 256, seed=1), noise(10, (8, 8, 3), seed=2)


@pytest.fixture(scope="module")
def fitted(data):
    """A model without the JPEG round trip (its inputs may hold any finite floats, with a warning)."""
    return ADIBDetector(**FAST).fit(data[0], data[1])


@pytest.fixture(scope="module")
def fitted_jpeg(data):
    """A model with the default JPEG round trip (its float inputs must be intensities in [0, 1])."""
    return ADIBDetector(**{**FAST, "jpeg_quality": 75}).fit(data[0], data[1])


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if the fit reaches the training loop: validation must come first."""
    def train(*args, **kwargs):
        raise AssertionError("the fit started training before rejecting its input")

    monkeypatch.setattr(base, "train", train)


def named(argument, *fragments):
    """A ``match=`` pattern: the message starts with the argument's name and holds every fragment in order."""
    return "^" + re.escape(f"{argument}: ") + ".*" + ".*".join(re.escape(f) for f in fragments)


# ---------------------------------------------------------------------------------------------------
# 1. Labels: +1 normal, -1 anomaly; other numbers ignored with a warning, nothing else


def labels(kind):
    half = np.r_[np.ones(N // 2), -np.ones(N // 2)]
    return {
        "0/1 (PyOD)": np.r_[np.zeros(N // 2), np.ones(N // 2)].astype(int),
        "0./1.": np.r_[np.zeros(N // 2), np.ones(N // 2)],
        "all 0": np.zeros(N, int),
        "bool": half > 0,
        "NaN": np.r_[np.nan, half[1:]],
        "inf": np.r_[np.inf, half[1:]],
        "0/1/2 classes": np.arange(N) % 3,
        "1/2": np.arange(N) % 2 + 1,
        "strings": np.array(["normal", "anomaly"] * (N // 2)),
        "object with None": np.array([1, None] * (N // 2), dtype=object),
        "complex": half.astype(complex),
        "too short": half[:5],
        "all anomalies": -np.ones(N),
    }[kind]


@pytest.mark.parametrize("kind, error, match", [
    ("bool", ValueError, named("y", "boolean labels are ambiguous", "+1 normal, -1 anomaly")),
    ("NaN", ValueError, named("y", "labels must be finite", "+1 normal, -1 anomaly")),
    ("inf", ValueError, named("y", "labels must be finite", "+1 normal, -1 anomaly")),
    ("strings", ValueError, named("y", "Unknown label type", "+1 normal, -1 anomaly")),
    ("object with None", ValueError, named("y", "Unknown label type", "dtype object")),
    ("complex", ValueError, named("y", "Complex data not supported", "complex128")),
    ("too short", ValueError, named("y", f"expected {N} labels", "+1 normal, -1 anomaly", "got 5")),
    ("all anomalies", ValueError, named("y", "at least one normal (+1) row")),
])
def test_labels_that_do_not_say_which_rows_are_normal_are_an_error_stating_the_convention(data, no_training, kind,
                                                                                          error, match):
    with pytest.raises(error, match=match):
        ADIBDetector(**FAST).fit(data[0], labels(kind), X_outlier=data[1])


@pytest.mark.parametrize("kind, values", [("0/1 (PyOD)", "{0, 1}"), ("0./1.", "{0, 1}"), ("all 0", "{0}"),
                                          ("0/1/2 classes", "{0, 1, 2}"), ("1/2", "{1, 2}")])
def test_other_numbers_are_ignored_as_scikit_learn_does_but_never_silently(data, kind, values):
    # Class labels (what scikit-learn's checks pass) and PyOD's 0/1 are not novelty labels: y is
    # ignored, every row trains as normal, and the warning names the values and the conversion.
    import skad_transfer

    X_normal, X_outlier, X_test = data
    with pytest.warns(skad_transfer.LabelsIgnoredWarning,
                      match=named("y", f"values {values} are not novelty labels", "every row of X trains as normal",
                                  "PyOD", "np.where(y == 1, -1, 1)")):
        ignored = ADIBDetector(**FAST).fit(X_normal, labels(kind), X_outlier=X_outlier)
    assert np.array_equal(ignored.score_samples(X_test), ADIBDetector(**FAST).fit(X_normal, X_outlier).score_samples(X_test))
    with warnings.catch_warnings():  # the documented way to make it an error
        warnings.simplefilter("error", skad_transfer.LabelsIgnoredWarning)
        with pytest.raises(skad_transfer.LabelsIgnoredWarning):
            ADIBDetector(**FAST).fit(X_normal, labels(kind), X_outlier=X_outlier)


class ArrayLike:
    """Only ``__array__``, no ``shape`` (like scikit-learn's ``_NotAnArray``)."""

    def __init__(self, data):
        self.data = data

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.data, dtype=dtype)


@pytest.mark.parametrize("form", ["int", "float", "list", "tensor", "int8", "object", "__array__ only"])
def test_plus_minus_one_labels_in_any_numeric_form_train_on_the_normal_rows(data, form):
    X_normal, X_outlier, X_test = data
    X = np.concatenate([X_normal, X_outlier[:4]])
    y = np.r_[np.ones(N, int), -np.ones(4, int)]
    y = {"int": y, "float": y.astype(float), "list": y.tolist(), "tensor": torch.from_numpy(y),
         "int8": y.astype(np.int8), "object": y.astype(object), "__array__ only": ArrayLike(y)}[form]
    with_labels = ADIBDetector(**FAST).fit(X, y, X_outlier=X_outlier)
    normal_only = ADIBDetector(**FAST).fit(X_normal, X_outlier)
    assert np.array_equal(with_labels.score_samples(X_test), normal_only.score_samples(X_test))


@pytest.mark.parametrize("column", [
    np.ones((N, 1)),                 # the labels of X as a column: N equals len(X)
    -np.ones((5, 1)),                # a column of another length: still labels or one-pixel images
    [[1]] * N,                       # the same as a list
    torch.ones((N, 1)),
])
@pytest.mark.parametrize("with_keyword_corpus", [False, True])
def test_a_label_column_is_never_read_as_images(data, no_training, column, with_keyword_corpus):
    kwargs = {"X_outlier": data[1]} if with_keyword_corpus else {}
    with pytest.raises(ValueError, match=named("y", "is ambiguous", "1-D", "X_outlier=")):
        ADIBDetector(**FAST).fit(data[0], column, **kwargs)


# ---------------------------------------------------------------------------------------------------
# 4. What fit's second positional argument may be


class Images(torch.utils.data.Dataset):
    """A map-style dataset of CHW float tensors with labels, counting its reads."""

    def __init__(self, images, length=None):
        self.images, self.length, self.reads = images, length or len(images), 0

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        self.reads += 1
        return torch.from_numpy(self.images[index % len(self.images)]).permute(2, 0, 1).float() / 255, 0


class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter(())


@pytest.mark.parametrize("make, error, match", [
    (lambda X: torch.utils.data.DataLoader(Images(X), batch_size=4), TypeError,
     named("y", "DataLoader", "random access", "X_outlier=loader.dataset")),
    (lambda X: Stream(), TypeError, named("y", "1-D labels", "outlier-exposure corpus", "X_outlier=")),
    (lambda X: iter(list(X)), TypeError, named("y", "list_iterator", "X_outlier=")),
    (lambda X: (x for x in X), TypeError, named("y", "generator", "X_outlier=", "outlier_exposure=")),
    (lambda X: np.float64(1.0), TypeError, named("y", "1-D labels", "float64")),
    (lambda X: object(), TypeError, named("y", "1-D labels", "object")),
])
def test_loaders_and_iterators_as_second_argument_are_a_type_error(data, no_training, make, error, match):
    with pytest.raises(error, match=match):
        ADIBDetector(**FAST).fit(data[0], make(data[1]))


def test_a_map_style_dataset_as_second_argument_is_the_corpus_read_lazily(data):
    X_normal, X_outlier, X_test = data
    reference = ADIBDetector(**FAST).fit(X_normal, X_outlier / 255.0).score_samples(X_test)
    dataset = Images(X_outlier)
    positional = ADIBDetector(**FAST).fit(X_normal, dataset).score_samples(X_test)
    keyword = ADIBDetector(**FAST).fit(X_normal, X_outlier=Images(X_outlier)).score_samples(X_test)
    assert np.array_equal(positional, reference) and np.array_equal(keyword, reference)
    # A corpus of 100,000 images is drawn from, never read whole (np.asarray would walk it): the
    # training draws, and a fixed sample on which fit measures oe_separability_.
    huge = Images(X_outlier, length=100_000)
    ADIBDetector(**{**FAST, "match_histograms": False}).fit(X_normal, huge)
    assert huge.reads <= 2 + FAST["batch_size"] + OE_SEPARABILITY_SAMPLE
    # match_histograms="auto" reads a fixed sample of 2,000 more to measure intensity separability.
    huge = Images(X_outlier, length=100_000)
    ADIBDetector(**FAST).fit(X_normal, huge)
    assert huge.reads <= 2 + FAST["batch_size"] + OE_SEPARABILITY_SAMPLE + 2000


def test_fit_predict_passes_the_corpus_and_the_labels_on(data):
    X_normal, X_outlier, _ = data
    assert np.array_equal(ADIBDetector(**FAST).fit_predict(X_normal, X_outlier),
                          ADIBDetector(**FAST).fit(X_normal, X_outlier).predict(X_normal))
    assert np.array_equal(ADIBDetector(**FAST).fit_predict(X_normal, X_outlier=X_outlier),
                          ADIBDetector(**FAST).fit(X_normal, X_outlier).predict(X_normal))
    X = np.concatenate([X_normal, X_outlier[:4]])
    y = np.r_[np.ones(N), -np.ones(4)]
    predicted = ADIBDetector(**FAST).fit_predict(X, y, X_outlier=X_outlier)
    assert predicted.shape == (N + 4,)  # every row, the anomalous ones too
    assert np.array_equal(predicted, ADIBDetector(**FAST).fit(X_normal, X_outlier).predict(X))
    with pytest.raises(ValueError, match="needs an outlier-exposure corpus"):
        ADIBDetector(**FAST).fit_predict(X_normal)


# ---------------------------------------------------------------------------------------------------
# 2. Layouts: a batch that reads both as NCHW and as NHWC needs image_shape=


@pytest.mark.parametrize("shape, match", [
    ((N, 1, 64, 3),
     ["(16, 1, 64, 3) is ambiguous", "image_shape=(1, 64, 3) for NCHW", "image_shape=(3, 1, 64) for NHWC"]),
    ((N, 3, 8, 3), ["(16, 3, 8, 3) is ambiguous", "image_shape=(3, 8, 3) for NCHW", "image_shape=(3, 3, 8) for NHWC"]),
    ((N, 1, 8, 1), ["(16, 1, 8, 1) is ambiguous", "image_shape="]),
    ((N, 3, 1, 1), ["(16, 3, 1, 1) is ambiguous", "image_shape="]),
    ((8, 8, 3), ["(8, 8, 3) is ambiguous", "X[None]", "image_shape=(1, 8, 3)"]),
    ((N, 8, 1), ["(16, 8, 1) is ambiguous", "image_shape=(1, 8, 1)"]),
])
def test_ambiguous_layouts_are_an_error_naming_image_shape(data, no_training, shape, match):
    with pytest.raises(ValueError, match=named("X", *match)):
        ADIBDetector(**FAST).fit(noise(shape[0], shape[1:]), data[1])


@pytest.mark.parametrize("shape, image_shape, match", [
    ((N, 3, 8, 3), (1, 8, 8), ["image_shape=(1, 8, 8) matches neither"]),
    ((N, 3, 3, 3), (3, 3, 3), ["cannot tell them apart", "X.reshape(len(X), -1)"]),
    ((N, 3, 3, 3), None, ["(16, 3, 3, 3) is ambiguous"]),
])
def test_image_shape_that_does_not_settle_the_layout_is_an_error(data, no_training, shape, image_shape, match):
    with pytest.raises(ValueError, match=named("X", *match)):
        ADIBDetector(**FAST, image_shape=image_shape).fit(noise(shape[0], shape[1:]), data[1])


def canonical_forms():
    """(ambiguous batch, image_shape, the same images in an unambiguous form)."""
    nchw = noise(N, (3, 1, 8))                           # (N, 3, 1, 8): unambiguous NCHW, 3-channel 1x8
    gray = noise(N, (8, 3))                              # 8x3 grayscale
    rgb = noise(N, (3, 3, 8))                            # NCHW 3-channel 3x8 images
    return {
        "NHWC (N, 1, 8, 3)": (nchw.transpose(0, 2, 3, 1), (3, 1, 8), nchw),
        "NCHW (N, 1, 8, 3)": (gray[:, None], (1, 8, 3), gray[..., None]),
        "NHWC (N, 3, 8, 3)": (rgb.transpose(0, 2, 3, 1), (3, 3, 8), rgb),
        "NCHW (N, 3, 8, 3), -1": (rgb.transpose(0, 1, 3, 2), (3, -1, 3), rgb.transpose(0, 1, 3, 2).reshape(N, -1)),
        "grayscale (N, 8, 3)": (gray, (1, 8, 3), gray.reshape(N, -1)),
    }


@pytest.mark.parametrize("form", list(canonical_forms()))
def test_image_shape_reads_an_ambiguous_batch_like_its_unambiguous_form(form):
    ambiguous, image_shape, unambiguous = canonical_forms()[form]
    expected = as_image_batch(unambiguous, image_shape=image_shape if unambiguous.ndim == 2 else None)
    batch = as_image_batch(ambiguous, image_shape=image_shape)
    assert torch.equal(batch.data, expected.data) and batch.source_shape == expected.source_shape


def test_a_fit_on_an_ambiguous_batch_with_image_shape_equals_the_canonical_fit(data):
    _, X_outlier, _ = data
    ambiguous, image_shape, nchw = canonical_forms()["NHWC (N, 3, 8, 3)"]
    told = ADIBDetector(**FAST, image_shape=image_shape).fit(ambiguous, X_outlier)
    canonical = ADIBDetector(**FAST, image_shape=image_shape).fit(nchw.reshape(N, -1), X_outlier)
    new = noise(10, (3, 8, 3), seed=5)  # NHWC images of the fitted shape, as the parameter says
    assert np.array_equal(told.score_samples(new), canonical.score_samples(new.transpose(0, 3, 1, 2)))
    # Scoring reads the same shape the same way (the parameter still says NHWC).
    assert np.array_equal(told.score_samples(ambiguous), canonical.score_samples(nchw.reshape(N, -1)))


def test_scoring_an_ambiguous_batch_that_the_fit_does_not_settle_is_an_error(fitted):
    # Fitted on 3-channel 8x8 images: (3, 8, 8) is neither reading of (4, 3, 8, 3).
    with pytest.raises(ValueError, match=named("X", "(4, 3, 8, 3) is ambiguous", "matches neither", "image_shape=")):
        fitted.score_samples(noise(4, (3, 8, 3)))


def test_one_pixel_images_read_the_same_either_way():
    pixels = noise(N, (1, 1, 1))
    assert torch.equal(as_image_batch(pixels).data, as_image_batch(pixels.reshape(N, 1)).data)


# ---------------------------------------------------------------------------------------------------
# 3. Intensities: uint8 0..255, floats in [0, 1] (one rule, shared with the JPEG round trip)


@pytest.mark.parametrize("X, match", [
    (lambda X: X.astype(np.float32),
     named("X", "intensities in [0, 1]", "[0, 79]", "divide by 255", "(jpeg_quality=75)", "jpeg_quality=None")),
    (lambda X: X / 255.0 * 6 - 3, named("X", "intensities in [0, 1]", "[-3, ")),
    (lambda X: np.where(X == X.max(), 1 + 2 * INTENSITY_TOLERANCE, X / 255.0), named("X", "intensities in [0, 1]")),
    (lambda X: X > 40, named("X", "boolean images are ambiguous", "astype(np.uint8) * 255")),
    (lambda X: np.where(X == X.max(), np.nan, X / 255.0), r"^Input X contains NaN"),  # scikit-learn's message
    (lambda X: np.where(X == X.max(), np.inf, X / 255.0), r"^Input X contains infinity"),
    (lambda X: X.astype(np.int16) * 4, named("X", "integer images must hold values in 0..255", "316")),
    (lambda X: X.astype(np.int8) - 100, named("X", "integer images must hold values in 0..255", "-100")),
])
def test_values_that_are_not_intensities_are_an_error_before_training(data, no_training, X, match):
    with pytest.raises(ValueError, match=match):
        ADIBDetector(**{**FAST, "jpeg_quality": 75}).fit(X(data[0]), data[1])


@pytest.mark.parametrize("corpus, match", [
    (lambda X: X.astype(np.float32), named("X_outlier", "intensities in [0, 1]", "divide by 255")),
    (lambda X: np.where(X == X.max(), np.nan, X / 255.0), r"^Input X_outlier contains NaN"),
    (lambda X: X > 200, named("X_outlier", "boolean images are ambiguous")),
])
@pytest.mark.parametrize("jpeg_quality", [75, None])  # the corpus is images, whatever the round trip
def test_an_outlier_corpus_that_is_not_intensities_is_an_error(data, no_training, corpus, match, jpeg_quality):
    with pytest.raises(ValueError, match=match):
        ADIBDetector(**{**FAST, "jpeg_quality": jpeg_quality}).fit(data[0], corpus(data[1]))


def test_scoring_0_255_floats_on_a_jpeg_model_is_an_error(fitted_jpeg, data):
    with pytest.raises(ValueError, match=named("X", "float images must hold intensities in [0, 1]", "jpeg_quality=75")):
        fitted_jpeg.score_samples(data[2].astype(np.float64))


def test_floats_outside_0_1_without_a_jpeg_round_trip_warn_and_go_in_as_they_are(fitted, data):
    # Tabular features (scikit-learn's checks, image_shape=(1, 1, -1)) have any range: a warning, not an error.
    with pytest.warns(IntensityRangeWarning, match=named("X", "[0, 1]", "[0, 255]")):
        scores = fitted.score_samples(data[2].astype(np.float32))
    # As they are: 200.0 is read as 200, not rescaled by 1/255 into the uint8 image's intensity.
    assert np.isfinite(scores).all() and not np.allclose(scores, fitted.score_samples(data[2]), atol=1e-3)
    with pytest.warns(IntensityRangeWarning, match=named("X", "[0, 1]")):
        LayerFeatures(weights=None, width=4, device="cpu").fit(data[2] * 10.0)


def test_floats_within_the_rounding_tolerance_are_intensities(fitted_jpeg, data):
    X = data[2] / 255.0
    nudged = X + np.where(X == 0, -0.5, np.where(X == 1, 0.5, 0)) * INTENSITY_TOLERANCE
    nudged[0, 0, 0] = [1 + 0.9 * INTENSITY_TOLERANCE, -0.9 * INTENSITY_TOLERANCE, 0.5]
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntensityRangeWarning)
        scores = fitted_jpeg.score_samples(nudged)
    assert np.array_equal(scores, fitted_jpeg.score_samples(np.clip(nudged, 0, 1)))
    tensor = as_image_batch(nudged).data
    assert torch.equal(jpeg_roundtrip(tensor, 75), jpeg_roundtrip(tensor.clamp(0, 1), 75))


def test_jpeg_roundtrip_applies_the_same_rule():
    outside = torch.full((1, 3, 8, 8), 1 + 2 * INTENSITY_TOLERANCE)
    with pytest.raises(ValueError, match=r"^jpeg_quality=75 .*0\.\.1.*jpeg_quality=None"):
        jpeg_roundtrip(outside, 75)
    inside = torch.full((1, 3, 8, 8), 1 + INTENSITY_TOLERANCE / 2)
    assert torch.equal(jpeg_roundtrip(inside, 75), jpeg_roundtrip(torch.ones_like(inside), 75))


# ---------------------------------------------------------------------------------------------------
# 5. Types, dtypes, shapes and sizes


def ragged_tensors():
    return [torch.zeros(3, 8, 8), torch.zeros(3, 4, 8)]


@pytest.mark.parametrize("X, error, match", [
    (np.array([["a", "b"], ["c", "d"]]), ValueError, named("X", "strings")),
    (np.array([[0.5, "b"]] * 2, dtype=object), ValueError, named("X", "strings")),
    (np.zeros((N, 8, 8, 3), dtype=np.complex64), ValueError, named("X", "Complex data not supported")),
    (np.zeros((0, 8, 8, 3), np.uint8), ValueError, named("X", "0 sample(s)")),
    (np.zeros((N, 0, 8, 3), np.uint8), ValueError, named("X", "images must not be empty")),
    (np.zeros((N, 8, 0), np.uint8), ValueError, named("X", "images must not be empty")),
    (np.zeros((N, 0), np.uint8), ValueError, named("X", "0 feature(s)")),
    ([np.zeros((8, 8, 3)), np.zeros((6, 8, 3))], ValueError,
     named("X", "a list of images must hold images of one shape", "(8, 8, 3) at index 0", "(6, 8, 3) at index 1")),
    (ragged_tensors(), ValueError, named("X", "one shape", "(3, 4, 8) at index 1")),
    (np.zeros((N, 8, 8, 2), np.uint8), ValueError, named("X", "expected 1 or 3 channels")),
    (np.zeros((N, 8, 8, 4), np.uint8), ValueError, named("X", "expected 1 or 3 channels", "alpha")),
    (np.zeros((N, 1, 8, 8, 3), np.uint8), ValueError, named("X", "expected (N, H, W, C)", "(16, 1, 8, 8, 3)")),
    (np.zeros(N, np.uint8), ValueError, named("X", "got one axis", "X[None]")),
    (np.zeros((N, 7), np.uint8), ValueError, "X has 7 features per row.*image_shape="),
    (torch.empty((N, 3, 8, 8), device="meta"), ValueError, named("X", "'meta' device")),
    (torch.zeros((N, 192)).to_sparse(), TypeError, named("X", "sparse tensors")),
    (scipy.sparse.csr_matrix(np.ones((N, 192))), TypeError, named("X", "sparse input")),
    (torch.zeros((N, 3, 8, 8), dtype=torch.bool), ValueError, named("X", "boolean images")),
    (torch.zeros((N, 3, 8, 8), dtype=torch.complex64), ValueError, named("X", "Complex data not supported")),
    (Images(noise(N, (8, 8, 3))), TypeError, named("X", "got Images", "outlier-exposure corpus")),
    (torch.utils.data.DataLoader(Images(noise(N, (8, 8, 3)))), TypeError, named("X", "got DataLoader", "np.stack")),
    ((x for x in noise(N, (8, 8, 3))), TypeError, named("X", "got generator")),
    (None, TypeError, named("X", "got None")),
    ({"images": noise(N, (8, 8, 3))}, TypeError, named("X", "got dict")),
])
def test_malformed_X_is_an_error_naming_it(data, no_training, X, error, match):
    with pytest.raises(error, match=match):
        ADIBDetector(**FAST).fit(X, data[1])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64, torch.uint16,
                                   torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_tensors_of_every_real_dtype_give_the_canonical_batch(dtype):
    images = noise(4, (8, 8, 3))
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2)
    if dtype.is_floating_point:
        # Multiples of 1/8 are exact in every float format, bfloat16 included.
        eighths = torch.from_numpy(images // 32).permute(0, 3, 1, 2) / 8
        assert torch.equal(as_image_batch(eighths.to(dtype)).data, eighths.float())
    else:
        assert torch.equal(as_image_batch(tensor.to(dtype)).data, tensor)


@pytest.mark.parametrize("form", ["list of arrays", "list of lists", "list of tensors", "tuple", "object array",
                                  "read-only array", "non-contiguous"])
def test_other_array_likes_give_the_canonical_batch(form):
    images = noise(4, (8, 8, 3))
    readonly = images.copy()
    readonly.flags.writeable = False
    X = {"list of arrays": list(images), "list of lists": images.tolist(),
         "list of tensors": [torch.from_numpy(x) for x in images], "tuple": tuple(images),
         "object array": images.astype(object), "read-only array": readonly,
         "non-contiguous": np.ascontiguousarray(images.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)}[form]
    assert torch.equal(as_image_batch(X).data, torch.from_numpy(images).permute(0, 3, 1, 2))


def test_an_unavailable_device_is_an_error_naming_it(data, no_training):
    with pytest.raises(ValueError, match=r"^device='cuda:99' "):
        ADIBDetector(**{**FAST, "device": "cuda:99"}).fit(data[0], data[1])


def test_scored_images_of_another_size_are_an_error_naming_both_shapes(fitted):
    # As scikit-learn refuses another feature count: the detector learnt nothing about other images.
    with pytest.raises(ValueError, match=r"X holds 3-channel 12x12 images .* fitted on 3-channel 8x8 images "
                                         r"\(image_shape_=\(3, 8, 8\)\)"):
        fitted.score_samples(noise(6, (12, 12, 3), seed=3))


def test_scored_images_with_other_channels_are_an_error_and_the_suggested_conversion_scores(fitted, data):
    gray = data[2][..., 0]
    for form in (gray, gray[:, None]):
        with pytest.raises(ValueError, match=r"X holds 1-channel 8x8 images .* fitted on 3-channel 8x8 images"):
            fitted.score_samples(form)
    with pytest.raises(ValueError, match="X has 64 features, but ADIBDetector is expecting 192"):  # scikit-learn's
        fitted.score_samples(gray.reshape(len(gray), -1))
    # The message's remedy: repeat the channel; the result is what the detector scores as colour.
    assert fitted.score_samples(np.repeat(gray[..., None], 3, axis=-1)).shape == (len(gray),)


def test_flattened_colour_rows_are_an_error_unless_image_shape_says_channel_major(fitted, data):
    X_test = data[2]
    with pytest.raises(ValueError, match=r"X has 192 = 3\*8\*8 features per row, which reads two ways.*"
                                         r"image_shape=\(3, 8, 8\).*X.reshape\(-1, 8, 8, 3\)"):
        fitted.score_samples(X_test.reshape(len(X_test), -1))
    told = copy.deepcopy(fitted).set_params(image_shape=(3, 8, 8))  # the parameter says channel-major
    nchw_rows = X_test.transpose(0, 3, 1, 2).reshape(len(X_test), -1)
    assert np.array_equal(told.score_samples(nchw_rows), fitted.score_samples(X_test))
