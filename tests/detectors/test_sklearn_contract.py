"""scikit-learn's estimator contract, and the meta-estimators users put the detectors into."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import check_estimator

from conftest import TINY
import skad_transfer.detectors.base as base
from skad_transfer import (ADIBDetector, ADRADetector, DeepADDetector, DOCDetector, DSVDDDetector, HSCDetector,
                           OutlierCorpus, resnet26)
from skad_transfer.weights import save_weights

# The checks' tabular floats (any range) reach the network as they are, which is what
# IntensityRangeWarning says about every one of them.
pytestmark = pytest.mark.filterwarnings("ignore::skad_transfer.data.images.IntensityRangeWarning")


def contract_estimator(Detector, **kwargs):
    # Tabular check data become 1-pixel-high strips; a fixed tiny OE corpus stands in for images. The
    # checks' data are arbitrary floats, not intensities in [0, 1], so no JPEG round trip (it refuses them).
    corpus = OutlierCorpus(np.random.default_rng(0).integers(0, 256, (32, 8, 8, 3), dtype=np.uint8))
    return Detector(**{**TINY, "batch_size": 16, "jpeg_quality": None, **kwargs}, image_shape=(1, 1, -1),
                    outlier_exposure=corpus)


# scikit-learn's checks pass class labels ({0, 1, 2}, {0, 1}, ...) as a y that outlier detectors
# ignore: these detectors ignore them too, as shipped, with a LabelsIgnoredWarning (novelty labels
# are +1/-1 only; tests/bad_inputs/test_arrays.py).
pytestmark = [pytestmark, pytest.mark.filterwarnings("ignore::skad_transfer.LabelsIgnoredWarning")]


@pytest.mark.parametrize("Detector", [ADIBDetector, ADRADetector])
def test_check_estimator(Detector):
    # Every check passes with the defaults, check_outliers_train and check_outliers_fit_predict
    # included: they demand both labels among the training predictions, which "auto" gives since its
    # boundary is refitted on normal vs OE scores (logit 0 called every training row normal).
    results = check_estimator(contract_estimator(Detector), on_fail=None)
    assert {r["check_name"] for r in results if r["status"] == "failed"} == set()
    assert len({r["check_name"] for r in results}) > 40


@pytest.mark.parametrize("Detector, kwargs", [
    (DeepADDetector, {"loss": "bce", "regularizer": "ewc"}),
    (HSCDetector, {}),
    (DSVDDDetector, {}),
    (DOCDetector, {"weights": "theta0"}),
])
def test_check_estimator_baselines(Detector, kwargs, tmp_path_factory):
    if kwargs.get("weights") == "theta0":
        torch.manual_seed(0)
        path = save_weights(resnet26(width=4, num_classes=5), tmp_path_factory.mktemp("w") / "t.pth").path
        kwargs = {**kwargs, "weights": path, "width": None}
    results = check_estimator(contract_estimator(Detector, **kwargs), on_fail=None)
    assert {r["check_name"] for r in results if r["status"] == "failed"} == set()
    assert len({r["check_name"] for r in results}) > 40


def test_check_estimator_passes_everything_with_float_contamination():
    results = check_estimator(contract_estimator(ADIBDetector, contamination=0.1), on_fail=None)
    assert [r["check_name"] for r in results if r["status"] == "failed"] == []


@pytest.fixture(scope="module")
def novelty_data(easy_problem):
    X_normal, X_outlier, X_test, y_test = easy_problem
    X = np.concatenate([X_normal[:60], X_test])
    y = np.r_[np.ones(60, int), y_test]
    return X, y


def test_grid_search_over_alpha_and_corpora_by_path(novelty_data, easy_problem, tmp_path):
    X, y = novelty_data
    X_outlier = easy_problem[1]
    np.save(tmp_path / "bright.npy", X_outlier)
    np.save(tmp_path / "noise.npy", np.random.default_rng(1).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8))
    grid = {"alpha": [1e-2, 1.0], "outlier_exposure": [str(tmp_path / "bright.npy"), str(tmp_path / "noise.npy")]}
    # Plumbing on synthetic noise images: no JPEG round trip (tested on its own), full margin for width 4.
    # The anomalies differ from normal by brightness alone, a cue match_histograms removes by design.
    search = GridSearchCV(ADIBDetector(**TINY, jpeg_quality=None, match_histograms=False), grid, scoring="roc_auc",
                          cv=StratifiedKFold(3, shuffle=True, random_state=0))
    search.fit(X, y)
    assert set(search.best_params_) == {"alpha", "outlier_exposure"}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    # Bright squares are the anomalies: the corpus that shows them must win.
    assert search.best_params_["outlier_exposure"].endswith("bright.npy")
    assert search.best_score_ > 0.9


def test_cross_val_score_and_pipeline(novelty_data, easy_problem):
    X, y = novelty_data
    pipe = make_pipeline(FunctionTransformer(lambda x: x / 255.0), ADRADetector(**TINY, jpeg_quality=None,
                                                                                   outlier_exposure=easy_problem[1] / 255.0))
    scores = cross_val_score(pipe, X, y, scoring="roc_auc", cv=StratifiedKFold(3, shuffle=True, random_state=0))
    assert scores.shape == (3,) and np.all(scores > 0.8)
    fitted = clone(pipe).fit(X[y == 1])
    assert set(np.unique(fitted.predict(X))) <= {-1, 1}
