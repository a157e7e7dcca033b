"""The baselines and the Table 4 family: kNN-AD by brute force, DSVDD/HSC/DOC/EWC, the ablation grid, the contract."""

import inspect
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, ParameterGrid, StratifiedKFold
from sklearn.utils.estimator_checks import check_estimator

from conftest import TINY
from skad_transfer import (ADIBDetector, ADRADetector, DeepADDetector, DOCDetector, DSVDDDetector, HSCDetector,
                           KNNDetector, LabelsIgnoredWarning, OutlierCorpus, resnet26)
from skad_transfer.weights import save_weights


@pytest.fixture(scope="module")
def theta0(tmp_path_factory):
    """A width-4 'pretrained' theta0 with a 10-class head (DOC's reference task, EWC's Fisher)."""
    torch.manual_seed(0)
    network = resnet26(width=4, num_classes=10)
    return network, save_weights(network, tmp_path_factory.mktemp("theta0") / "theta0.pth").path


def pretrained(path, **kwargs):
    return {**TINY, "width": None, "weights": path, **kwargs}


# ---------------------------------------------------------------------------- kNN-AD
def brute_force_knn_scores(train, test, k):
    distances = np.sqrt(((test[:, None, :] - train[None, :, :]) ** 2).sum(axis=2))
    return -np.sort(distances, axis=1)[:, :k].mean(axis=1)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_knn_matches_brute_force(k):
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(40, 6)), rng.normal(size=(15, 6)) * 2
    det = KNNDetector(n_neighbors=k).fit(train)
    assert np.allclose(det.score_samples(test), brute_force_knn_scores(train, test, k))
    # A training row is scored as a new query: it is its own nearest neighbour, at distance 0.
    assert np.allclose(det.score_samples(train), brute_force_knn_scores(train, train, k))
    assert np.allclose(det.decision_function(test), det.score_samples(test) - det.offset_)


def test_knn_contamination_and_labels():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(100, 3))
    assert np.mean(KNNDetector(contamination=0.2).fit(train).predict(train) == -1) == pytest.approx(0.2, abs=0.02)
    assert np.mean(KNNDetector().fit(train).predict(train) == -1) == pytest.approx(0.1, abs=0.02)  # "auto"
    y = np.r_[np.ones(90, int), -np.ones(10, int)]
    assert np.array_equal(KNNDetector().fit(train, y).score_samples(train),
                          KNNDetector().fit(train[:90]).score_samples(train))
    with pytest.raises(ValueError, match="y: .*100"):
        KNNDetector().fit(train, np.ones(3))
    with pytest.warns(LabelsIgnoredWarning, match=r"y: values \{0, 1\} are not novelty labels"):
        ignored = KNNDetector().fit(train, (y == -1).astype(int))  # PyOD's 0/1 (1 = anomaly): not misread silently
    assert np.array_equal(ignored.score_samples(train), KNNDetector().fit(train).score_samples(train))


def test_knn_caps_neighbours_with_a_warning():
    with pytest.warns(UserWarning, match="n_neighbors=5 is more than the 3"):
        det = KNNDetector(n_neighbors=5).fit(np.eye(3))
    assert det.n_neighbors_ == 3


def test_knn_check_estimator():
    # As shipped: the checks' class labels are ignored with a LabelsIgnoredWarning.
    results = check_estimator(KNNDetector(), on_fail=None)
    assert [r["check_name"] for r in results if r["status"] == "failed"] == []


# ---------------------------------------------------------------------------- deep baselines
def test_dsvdd_is_one_class(easy_problem):
    X_normal, X_outlier, X_test, y_test = easy_problem
    det = DSVDDDetector(**TINY).fit(X_normal)
    scores = det.score_samples(X_test)
    assert roc_auc_score(y_test, scores) > 0.8  # 1.0 when measured
    assert det.center_.shape == (16,) and np.all(scores <= 0)
    # A corpus is ignored (so a grid over losses can share one), not an error.
    assert np.array_equal(DSVDDDetector(**TINY).fit(X_normal, X_outlier).score_samples(X_test), scores)
    assert np.mean(det.predict(X_normal) == -1) == pytest.approx(0.1, abs=0.02)  # "auto": nu = 0.1


def test_dsvdd_trains_no_bias_terms(easy_problem):
    X_normal = easy_problem[0]
    det = DSVDDDetector(**TINY).fit(X_normal)
    fresh = resnet26(width=4)  # BatchNorm affine parameters start at weight 1, bias 0 in every ResNet26
    for name, module in det.network_.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight)), name
            assert torch.equal(module.bias, torch.zeros_like(module.bias)), name
    assert not torch.equal(det.network_.pre_bn.running_mean, fresh.pre_bn.running_mean)
    convs = sum(m.weight.numel() for m in det.network_.modules() if isinstance(m, torch.nn.Conv2d))
    assert det.n_trainable_parameters_ == convs


def test_hsc_fits_scores_and_has_a_probability_boundary(easy_problem):
    X_normal, X_outlier, X_test, y_test = easy_problem
    det = HSCDetector(**TINY).fit(X_normal, X_outlier)
    scores = det.score_samples(X_test)
    assert roc_auc_score(y_test, scores) > 0.8 and np.all(scores <= 0)
    # "auto": anomaly probability 1 - exp(-u h) = 1/2, with u the scale that minimises the HSC loss
    # over the training images and the corpus (all of it here, as training saw it: histograms matched).
    u = math.log(2.0) / -det.offset_
    assert det.offset_ < 0 and np.array_equal(det.predict(X_test) == -1, 1 - np.exp(u * scores) > 0.5)
    assert np.mean(det.predict(X_test[y_test == 1]) == -1) < 0.2 < 0.8 < np.mean(det.predict(X_test[y_test == -1]) == -1)


def test_doc_uses_theta0_classifier_as_reference_task(easy_problem, theta0):
    network, path = theta0
    X_normal, X_outlier, X_test, y_test = easy_problem
    det = DOCDetector(**pretrained(path)).fit(X_normal, X_outlier)
    assert roc_auc_score(y_test, det.score_samples(X_test)) > 0.8
    assert det.network_.linears.out_features == 10 and det.center_.shape == (16,)
    assert not torch.equal(det.network_.linears.weight, network.linears.weight)  # the head trained on
    with pytest.raises(ValueError, match="reference classification task"):
        DOCDetector(**TINY).fit(X_normal, X_outlier)


@pytest.mark.parametrize("Detector, kwargs", [
    (HSCDetector, {}), (DOCDetector, {}), (ADIBDetector, {}), (DeepADDetector, {"loss": "hsc"}),
])
def test_outlier_exposure_is_required(Detector, kwargs, easy_problem, theta0):
    with pytest.raises(ValueError, match="needs an outlier-exposure corpus"):
        Detector(**pretrained(theta0[1]), **kwargs).fit(easy_problem[0])


@pytest.mark.parametrize("Detector", [ADIBDetector, DeepADDetector])
def test_ewc_penalty_pulls_toward_theta0(Detector, easy_problem, theta0):
    network, path = theta0
    X_normal, X_outlier, X_test, _ = easy_problem
    settings = pretrained(path, epochs=2, lr=0.1, precision="float32")
    free = Detector(**settings, regularizer=None).fit(X_normal, X_outlier)
    pulled = Detector(**settings, regularizer="ewc", ewc_lambda=1e4).fit(X_normal, X_outlier)
    assert all(h["penalty"] > 0 for h in pulled.history_)
    assert np.isfinite(pulled.score_samples(X_test)).all()

    def drift(det):
        return sum(((a - b) ** 2).sum().item()
                   for a, b in zip(det.network_.conv3x3_parameters(), network.conv3x3_parameters()))

    assert 0 < drift(pulled) < drift(free)


def test_presets_are_members_of_the_family(easy_problem):
    X_normal, X_outlier, X_test, _ = easy_problem
    pairs = [
        (ADIBDetector(**TINY), DeepADDetector(**TINY)),
        (ADIBDetector(**TINY, regularizer="l2sp-ref"), DeepADDetector(**TINY, regularizer="l2sp-ref")),
        (ADRADetector(**TINY), DeepADDetector(**TINY, regularizer=None, adapters=True)),
        (HSCDetector(**TINY), DeepADDetector(**TINY, loss="hsc", regularizer=None)),
        (DSVDDDetector(**TINY), DeepADDetector(**TINY, loss="dsvdd", regularizer=None)),
    ]
    for preset, member in pairs:
        a = preset.fit(X_normal, X_outlier).score_samples(X_test)
        b = member.fit(X_normal, X_outlier).score_samples(X_test)
        assert np.array_equal(a, b), type(preset).__name__


# What each preset fixes (and so does not take), and the defaults that differ from the family's on purpose.
PRESET_FIXES = {
    ADIBDetector: ({"loss", "adapters", "compactness_weight"}, {}),
    ADRADetector: ({"loss", "adapters", "compactness_weight", "regularizer", "alpha", "ewc_lambda"}, {}),
    HSCDetector: ({"loss", "adapters", "compactness_weight"}, {"regularizer": None}),
    DSVDDDetector: ({"loss", "adapters", "compactness_weight"}, {"regularizer": None}),
    DOCDetector: ({"loss", "adapters"}, {"regularizer": None}),
}


@pytest.mark.parametrize("Preset", list(PRESET_FIXES), ids=lambda c: c.__name__)
def test_preset_signatures_cannot_drift_from_the_family(Preset):
    family = inspect.signature(DeepADDetector.__init__).parameters
    preset = inspect.signature(Preset.__init__).parameters
    fixed, own_defaults = PRESET_FIXES[Preset]
    assert set(preset) == set(family) - fixed
    for name, parameter in preset.items():
        if name == "self":
            continue
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert parameter.default == own_defaults.get(name, family[name].default), name


def test_adapters_with_regularizers(easy_problem):
    X_normal, X_outlier, _, _ = easy_problem
    det = DeepADDetector(**TINY, adapters=True, regularizer="l2sp").fit(X_normal, X_outlier)
    assert det.history_[0]["penalty"] > 0  # on the BatchNorm layers, the trained part theta0 provides
    with pytest.raises(ValueError, match="adapters=True freezes the 3x3"):
        DeepADDetector(**TINY, adapters=True, regularizer="l2sp-ref").fit(X_normal, X_outlier)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"loss": "mse"}, ValueError, "loss"),
    ({"ewc_lambda": -1.0}, ValueError, "ewc_lambda"),
    ({"adapters": "yes"}, ValueError, "adapters"),
    ({"compactness_weight": -0.1}, ValueError, "compactness_weight"),
    ({"loss": "dsvdd", "backbone": torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 1))},
     TypeError, "pooled features of a skad_transfer backbone"),
])
def test_family_parameter_errors(kwargs, error, match, easy_problem):
    X_normal, X_outlier, _, _ = easy_problem
    settings = {**TINY, "width": None} if "backbone" in kwargs else TINY
    with pytest.raises(error, match=match):
        DeepADDetector(**settings, **kwargs).fit(X_normal, X_outlier)


# ---------------------------------------------------------------------------- the ablation (paper Table 4)
def table4_grid(path):
    return ParameterGrid([
        {"weights": [None], "width": [4], "loss": ["bce"], "regularizer": [None]},  # a1: random init
        {"weights": [path], "loss": ["bce"], "regularizer": [None, "ewc", "l2sp"]},  # a2, a5, a7 (ADIB)
        {"weights": [path], "loss": ["hsc"], "regularizer": ["l2sp"]},  # a3
        {"weights": [path], "loss": ["doc"], "regularizer": [None]},  # a4
        {"weights": [path], "loss": ["bce"], "regularizer": [None], "adapters": [True]},  # a6 (ADRA)
    ])


def test_table4_ablation_is_a_parameter_grid(easy_problem, theta0):
    X_normal, X_outlier, X_test, y_test = easy_problem
    grid = table4_grid(theta0[1])
    assert len(grid) == 7
    base = {k: v for k, v in TINY.items() if k not in ("weights", "width")}
    for params in grid:
        det = DeepADDetector(**base, **params).fit(X_normal, X_outlier)
        assert roc_auc_score(y_test, det.score_samples(X_test)) > 0.8, params


def test_grid_search_over_losses(easy_problem):
    X_normal, X_outlier, X_test, y_test = easy_problem
    X = np.concatenate([X_normal[:60], X_test])
    y = np.r_[np.ones(60, int), y_test]
    search = GridSearchCV(DeepADDetector(**TINY, outlier_exposure=OutlierCorpus(X_outlier)),
                          {"loss": ["bce", "hsc", "dsvdd"]}, scoring="roc_auc",
                          cv=StratifiedKFold(2, shuffle=True, random_state=0))
    search.fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all() and search.best_score_ > 0.8


def test_old_pickles_get_new_parameters_defaults(easy_problem):
    det = ADIBDetector(**TINY)
    state = det.__getstate__()
    del state["ewc_lambda"]  # what an ADIBDetector pickled before EWC existed holds
    old = ADIBDetector.__new__(ADIBDetector)
    old.__setstate__(state)
    assert old.get_params()["ewc_lambda"] == 400.0


def test_joblib_round_trip_keeps_the_centre(easy_problem, tmp_path, theta0):
    import joblib

    X_normal, X_outlier, X_test, _ = easy_problem
    for det in (DSVDDDetector(**TINY), DOCDetector(**pretrained(theta0[1]))):
        det.fit(X_normal, X_outlier)
        joblib.dump(det, tmp_path / "det.joblib")
        loaded = joblib.load(tmp_path / "det.joblib")
        assert np.array_equal(loaded.center_, det.center_)
        assert np.array_equal(loaded.score_samples(X_test), det.score_samples(X_test))
        assert not hasattr(loaded, "_fit_objective")  # DOC's teacher network is not kept
