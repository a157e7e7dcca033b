"""Tests for skad_transfer.data.synthetic."""

from __future__ import annotations

import time

import numpy as np
import pytest

from skad_transfer.data.synthetic import (
    BACKGROUND_NAMES,
    COLOR_NAMES,
    FACTOR_DTYPE,
    FACTOR_VALUES,
    SHAPE_NAMES,
    SIZE_NAMES,
    InterventionTask,
    factor_labels,
    make_intervention_task,
    make_interventions,
)

CATEGORICAL = ("color", "shape", "size", "background")
RGB = {
    "red": (220, 35, 35),
    "blue": (45, 80, 235),
}


def centre_pixels(X: np.ndarray, factors: np.ndarray) -> np.ndarray:
    return X[np.arange(len(X)), factors["y"], factors["x"]].astype(int)


def test_shapes_dtypes_and_factor_record():
    X, f = make_interventions(64, image_size=24, random_state=0)
    assert X.shape == (64, 24, 24, 3) and X.dtype == np.uint8
    assert f.dtype == FACTOR_DTYPE and f.shape == (64,)
    for name in CATEGORICAL:
        assert f[name].min() >= 0 and f[name].max() < len(FACTOR_VALUES[name])
    assert f["x"].min() >= 0 and f["x"].max() < 24 and f["y"].min() >= 0 and f["y"].max() < 24
    assert make_interventions(5, random_state=0, return_factors=False).shape == (5, 32, 32, 3)
    assert make_interventions(0, random_state=0)[0].shape == (0, 32, 32, 3)


def test_deterministic_for_fixed_seed():
    X1, f1 = make_interventions(50, random_state=7)
    X2, f2 = make_interventions(50, random_state=7)
    X3, _ = make_interventions(50, random_state=8)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(f1, f2)
    assert not np.array_equal(X1, X3)
    t1 = make_intervention_task(20, 20, 10, random_state=3)
    t2 = make_intervention_task(20, 20, 10, random_state=3)
    np.testing.assert_array_equal(t1.X_outlier, t2.X_outlier)
    np.testing.assert_array_equal(t1.tests["shape"].X_test, t2.tests["shape"].X_test)


def test_restricted_values_and_rendered_colour():
    X, f = make_interventions(200, colors="red", shapes=["circle", "square"], sizes="large", random_state=1)
    assert set(factor_labels(f, "color").tolist()) == {"red"}
    assert set(factor_labels(f, "shape").tolist()) == {"circle", "square"}
    assert set(factor_labels(f, "size").tolist()) == {"large"}
    # The object is drawn where the record says, in the recorded colour.
    assert np.abs(centre_pixels(X, f) - RGB["red"]).max() < 40
    # Every factor value is reachable with the defaults.
    _, f_all = make_interventions(2000, random_state=2)
    for name in CATEGORICAL:
        assert set(f_all[name].tolist()) == set(range(len(FACTOR_VALUES[name])))


def test_fast():
    make_interventions(10, random_state=0)  # warm-up
    start = time.perf_counter()
    make_interventions(1000, random_state=0)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"colors": "purple"}, "valid names are .*'red'"),
        ({"shapes": ["circle", "hexagon"]}, "unknown shape 'hexagon'.*'triangle'"),
        ({"sizes": []}, "at least one size"),
        ({"backgrounds": "white"}, "unknown background"),
        ({"image_size": 4}, "image_size"),
        ({"n_samples": -1}, "n_samples"),
        ({"random_state": "seed"}, "random_state"),
    ],
)
def test_make_interventions_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_interventions(**kwargs)


def _as_dict(record) -> dict[str, int]:
    return {name: int(record[name]) for name in CATEGORICAL}


def test_intervention_task_protocol():
    task = make_intervention_task(60, 80, 30, random_state=0)
    assert isinstance(task, InterventionTask)
    normal = {"color": COLOR_NAMES.index("red"), "shape": SHAPE_NAMES.index("circle"), "size": SIZE_NAMES.index("small")}
    anomalous = {"color": COLOR_NAMES.index("blue"), "shape": SHAPE_NAMES.index("square"), "size": SIZE_NAMES.index("large")}

    assert task.X_normal.shape == (60, 32, 32, 3) and task.X_normal.dtype == np.uint8
    for name, code in normal.items():
        assert (task.factors_normal[name] == code).all()
    # Nuisance factors vary in the normal data.
    assert len(set(task.factors_normal["background"].tolist())) > 1
    assert len(set(task.factors_normal["x"].tolist())) > 1
    assert np.abs(centre_pixels(task.X_normal, task.factors_normal) - RGB["red"]).max() < 40

    # OE (the paper's protocol): never normal, never a test anomaly (normal with one factor
    # intervened), but intervention values do appear in other combinations.
    fo = make_intervention_task(10, 2000, 2, random_state=1).factors_outlier
    assert len(fo) == 2000
    differing = np.zeros(len(fo), int)
    for name, code in normal.items():
        differing += fo[name] != code
    assert (differing >= 1).all()
    for name, code in anomalous.items():
        one_off = (differing == 1) & (fo[name] != normal[name])
        assert not (one_off & (fo[name] == code)).any()
        assert (fo[name] == code).any()
    assert len(set(fo["color"].tolist())) > 1 and len(set(fo["shape"].tolist())) > 1

    assert list(task.tests) == ["color", "shape", "size"]
    for factor, test in task.tests.items():
        assert test.X_test.shape == (30, 32, 32, 3) and test.y_test.dtype == np.int64
        assert set(test.y_test.tolist()) == {-1, 1} and (test.y_test == -1).sum() == 15
        # Labels are shuffled, not sorted blocks.
        assert not (np.all(np.diff(test.y_test) <= 0) or np.all(np.diff(test.y_test) >= 0))
        for record, label in zip(test.factors_test, test.y_test):
            values = _as_dict(record)
            differing = {k for k in normal if values[k] != normal[k]}
            if label == 1:
                assert differing == set()
            else:
                assert differing == {factor} and values[factor] == anomalous[factor]
    blue = task.tests["color"]
    anomalies = blue.y_test == -1
    assert np.abs(centre_pixels(blue.X_test[anomalies], blue.factors_test[anomalies]) - RGB["blue"]).max() < 40


def test_intervention_task_custom_and_odd_test_size():
    task = make_intervention_task(
        10,
        10,
        7,
        normal={"color": "green", "shape": "triangle", "size": "large", "background": "black"},
        interventions={"background": "gray"},
        image_size=16,
        random_state=np.random.default_rng(0),
    )
    assert task.X_normal.shape == (10, 16, 16, 3)
    assert (task.factors_normal["background"] == BACKGROUND_NAMES.index("black")).all()
    test = task.tests["background"]
    assert (test.y_test == -1).sum() == 3 and (test.y_test == 1).sum() == 4
    assert (test.factors_test["shape"] == SHAPE_NAMES.index("triangle")).all()
    fo = task.factors_outlier
    anomaly = ((fo["color"] == COLOR_NAMES.index("green")) & (fo["shape"] == SHAPE_NAMES.index("triangle"))
               & (fo["size"] == SIZE_NAMES.index("large")) & (fo["background"] == BACKGROUND_NAMES.index("gray")))
    assert not anomaly.any()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"normal": {"color": "crimson"}}, "valid names are"),
        ({"normal": {"texture": "smooth"}}, "unknown factor 'texture'"),
        ({"interventions": {"color": "red"}}, "equals the normal value"),
        ({"normal": {"color": "red"}, "interventions": {"shape": "square"}}, "not fixed by normal"),
        ({"interventions": {"shape": "blob"}}, "unknown shape 'blob'"),
        ({"n_test_per_intervention": 2.5}, "n_test_per_intervention"),
    ],
)
def test_intervention_task_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_intervention_task(**{"n_normal": 5, "n_outlier": 5, "n_test_per_intervention": 4, **kwargs})
