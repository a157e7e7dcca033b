"""Protocols: label conventions, class composition, the shift protocol's colours, OE ablation."""

import numpy as np
import pytest

from skad_transfer.bench import (PROTOCOLS, Split, interventions, leave_one_out, load_benchmark_data,
                                 non_semantic_shift, oe_ablation, one_vs_rest)
from skad_transfer.data.datasets import MPI3D_COLORS, MPI3D_FACTOR_NAMES, MPI3D_SHAPES
from skad_transfer.data.synthetic import COLOR_NAMES, SHAPE_NAMES


@pytest.fixture(scope="module")
def labelled():
    """Tiny labelled arrays whose pixel value encodes the class, so composition is checkable."""
    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 4, 80), rng.integers(0, 4, 40)
    X_train = np.broadcast_to(y_train[:, None, None, None], (80, 8, 8, 3)).astype(np.uint8)
    X_test = np.broadcast_to(y_test[:, None, None, None], (40, 8, 8, 3)).astype(np.uint8)
    return X_train, y_train, X_test, y_test


def test_one_vs_rest_labels_and_composition(labelled):
    X_train, y_train, X_test, y_test = labelled
    split = one_vs_rest(X_train, y_train, X_test, y_test, 2, outlier_exposure="tinyimagenet")
    assert isinstance(split, Split) and split.outlier_exposure == "tinyimagenet"
    assert (split.X_normal[:, 0, 0, 0] == 2).all() and len(split.X_normal) == (y_train == 2).sum()
    assert len(split.X_test) == len(y_test)
    classes = split.X_test[:, 0, 0, 0]
    np.testing.assert_array_equal(split.y_test, np.where(classes == 2, 1, -1))
    assert split.y_test.dtype == np.int64 and set(np.unique(split.y_test)) == {-1, 1}
    assert split.meta["normal_class"] == 2 and split.name == "class2"


def test_leave_one_out_labels_and_composition(labelled):
    X_train, y_train, X_test, y_test = labelled
    split = leave_one_out(X_train, y_train, X_test, y_test, 1, class_names=list("abcd"))
    assert (split.X_normal[:, 0, 0, 0] != 1).all() and len(split.X_normal) == (y_train != 1).sum()
    np.testing.assert_array_equal(split.y_test, np.where(split.X_test[:, 0, 0, 0] == 1, -1, 1))
    assert split.outlier_exposure is None and split.name == "1:b"


def test_class_protocol_subsampling_and_errors(labelled):
    X_train, y_train, X_test, y_test = labelled
    a = one_vs_rest(X_train, y_train, X_test, y_test, 0, n_normal=5, n_test=30, random_state=3)
    b = one_vs_rest(X_train, y_train, X_test, y_test, 0, n_normal=5, n_test=30, random_state=3)
    assert len(a.X_normal) == 5 and len(a.X_test) == 30
    np.testing.assert_array_equal(a.X_test, b.X_test)
    np.testing.assert_array_equal(a.y_test, np.where(a.X_test[:, 0, 0, 0] == 0, 1, -1))
    with pytest.raises(ValueError, match="normal_class=7"):
        one_vs_rest(X_train, y_train, X_test, y_test, 7)
    with pytest.raises(ValueError, match="n_normal"):
        one_vs_rest(X_train, y_train, X_test, y_test, 0, n_normal=0)
    with pytest.raises(ValueError, match="y_train"):
        leave_one_out(X_train, y_train[:-1], X_test, y_test, 0)


def test_synthetic_interventions_one_split_per_factor():
    splits = interventions(n_normal=16, n_outlier=16, n_test=10, random_state=0)
    assert [s.name for s in splits] == ["color->blue", "shape->square", "size->large"]
    for s in splits:
        assert (s.y_test == -1).sum() == 5 and (s.y_test == 1).sum() == 5
        assert s.outlier_exposure.shape == (16, 32, 32, 3)
        assert s.X_normal is splits[0].X_normal


def _fake_mpi3d(rng):
    """A reduced MPI3D-like grid: all colours, shapes, sizes; 2 positions; pixel 0 encodes the row id."""
    grid = np.array(np.meshgrid(range(6), range(6), range(2), range(1), range(1), range(2), range(2),
                                indexing="ij")).reshape(7, -1).T
    grid = np.repeat(grid, 3, axis=0)  # 3 copies per combination: enough normals for train + test
    X = np.zeros((len(grid), 4, 4, 3), np.int64)
    X[:, 0, 0, 0] = np.arange(len(grid))
    return X, grid


def test_mpi3d_interventions_rows():
    X, factors = _fake_mpi3d(np.random.default_rng(0))
    col, shp, siz = (MPI3D_FACTOR_NAMES.index(k) for k in ("color", "shape", "size"))
    red, blue = MPI3D_COLORS.index("red"), MPI3D_COLORS.index("blue")
    cone, cube = MPI3D_SHAPES.index("cone"), MPI3D_SHAPES.index("cube")
    splits = interventions(X, factors, n_normal=6, n_outlier=None, n_test=6, random_state=0)
    assert [s.name for s in splits] == ["color->blue", "shape->cube", "size->large"]
    f = lambda A: factors[A[:, 0, 0, 0]]  # noqa: E731
    normal = f(splits[0].X_normal)
    assert (normal[:, col] == red).all() and (normal[:, shp] == cone).all() and (normal[:, siz] == 0).all()
    oe = f(splits[0].outlier_exposure)
    is_normal = (oe[:, col] == red) & (oe[:, shp] == cone) & (oe[:, siz] == 0)
    one_change = ((oe[:, col] == blue) & (oe[:, shp] == cone) & (oe[:, siz] == 0)) \
        | ((oe[:, col] == red) & (oe[:, shp] == cube) & (oe[:, siz] == 0)) \
        | ((oe[:, col] == red) & (oe[:, shp] == cone) & (oe[:, siz] == 1))
    assert not (is_normal | one_change).any() and len(oe) == len(factors) - 4 * 12
    test = f(splits[0].X_test)
    anomalies = test[splits[0].y_test == -1]
    assert (anomalies[:, col] == blue).all() and (anomalies[:, shp] == cone).all()
    train_ids = set(splits[0].X_normal[:, 0, 0, 0])
    assert not train_ids & set(splits[0].X_test[splits[0].y_test == 1][:, 0, 0, 0])


def test_non_semantic_shift_colour_sequence_synthetic():
    colors = ["red", "green", "blue"]
    splits = non_semantic_shift(colors=colors, n_normal=12, n_outlier=12, n_test=8, random_state=0)
    assert [s.name for s in splits] == ["colors=1", "colors=2", "colors=3"]
    assert [s.meta["normal_colors"] for s in splits] == [["red"], ["red", "green"], ["red", "green", "blue"]]
    for s in splits:
        assert s.meta["normal_shape"] == "circle" and s.meta["anomaly_shape"] == "square"
        assert set(s.meta["oe_shapes"]) == set(SHAPE_NAMES) - {"circle", "square"}
        assert (s.y_test == -1).sum() == 4 and len(s.X_normal) == 12
    default = non_semantic_shift(n_normal=4, n_outlier=4, n_test=4, random_state=0)
    assert [s.meta["normal_colors"][-1] for s in default] == list(COLOR_NAMES)
    with pytest.raises(ValueError, match="colors: unknown colour"):
        non_semantic_shift(colors=["red", "mauve"])
    with pytest.raises(ValueError, match="must differ"):
        non_semantic_shift(normal_shape="circle", anomaly_shape="circle")


def test_non_semantic_shift_mpi3d_oe_never_adds_colours():
    X, factors = _fake_mpi3d(np.random.default_rng(0))
    col, shp = MPI3D_FACTOR_NAMES.index("color"), MPI3D_FACTOR_NAMES.index("shape")
    splits = non_semantic_shift(X, factors, colors=["red", "white"], n_normal=10, n_outlier=None, n_test=8,
                                random_state=0)
    f = lambda A: factors[A[:, 0, 0, 0]]  # noqa: E731
    for k, s in enumerate(splits, start=1):
        allowed = [MPI3D_COLORS.index(c) for c in ["red", "white"][:k]]
        assert np.isin(f(s.X_normal)[:, col], allowed).all()
        assert (f(s.X_normal)[:, shp] == MPI3D_SHAPES.index("cone")).all()
        oe = f(s.outlier_exposure)
        assert np.isin(oe[:, col], allowed).all()
        assert not np.isin(oe[:, shp], [MPI3D_SHAPES.index("cone"), MPI3D_SHAPES.index("cube")]).any()
        anomalies = f(s.X_test[s.y_test == -1])
        assert (anomalies[:, shp] == MPI3D_SHAPES.index("cube")).all()


def test_oe_ablation_shares_data_and_swaps_corpus(labelled):
    X_train, y_train, X_test, y_test = labelled
    base = one_vs_rest(X_train, y_train, X_test, y_test, 0, outlier_exposure="tinyimagenet")
    array = np.zeros((4, 8, 8, 3), np.uint8)
    splits = oe_ablation(base, ["tinyimagenet", "svhn", None, array])
    assert [s.name for s in splits] == ["class0|oe=tinyimagenet", "class0|oe=svhn", "class0|oe=none",
                                        "class0|oe=array3"]
    assert [s.meta["oe"] for s in splits] == ["tinyimagenet", "svhn", "none", "array3"]
    assert splits[1].outlier_exposure == "svhn" and splits[2].outlier_exposure is None
    assert splits[3].outlier_exposure is array
    for s in splits:
        assert s.X_normal is base.X_normal and s.y_test is base.y_test
    assert [s.name for s in oe_ablation(base, {"a": "svhn"})] == ["class0|oe=a"]
    with pytest.raises(ValueError, match="corpora"):
        oe_ablation(base, [])
    with pytest.raises(ValueError, match="unique"):
        oe_ablation(base, ["svhn", "svhn"])


def test_registry_and_synthetic_data():
    assert set(PROTOCOLS) == {"one-vs-rest", "leave-one-out", "interventions", "non-semantic-shift", "oe-ablation"}
    data = load_benchmark_data("synthetic", n_train=30, n_test=20)
    assert data.X_train.shape == (30, 32, 32, 3) and data.class_names == list(SHAPE_NAMES)
    assert set(np.unique(data.y_train)) <= set(range(len(SHAPE_NAMES)))
    with pytest.raises(ValueError, match="unknown dataset"):
        load_benchmark_data("imagenet")
    with pytest.raises(ValueError, match="data_dir"):
        load_benchmark_data("cifar10")


def test_digits_data_is_scikit_learns_digits_split_in_stratified_halves():
    from sklearn.datasets import load_digits

    data = load_benchmark_data("digits")
    assert data.name == "digits" and data.class_names == [str(k) for k in range(10)]
    assert data.X_train.shape == (898, 8, 8, 1) and data.X_test.shape == (899, 8, 8, 1)
    assert data.X_train.dtype == np.uint8 and data.X_train.max() == 255
    # Every class is in both halves in proportion, and the halves are the whole dataset, once.
    counts = np.bincount(data.y_train, minlength=10)
    assert counts.min() >= 87 and counts.max() <= 92
    digits = load_digits()
    expected = np.sort(np.rint(digits.images.reshape(len(digits.images), -1) * (255 / 16)).sum(1))
    got = np.sort(np.concatenate([data.X_train, data.X_test]).reshape(1797, -1).astype(np.int64).sum(1))
    np.testing.assert_array_equal(got, expected)
    again = load_benchmark_data("digits")
    np.testing.assert_array_equal(again.X_test, data.X_test)
    assert not np.array_equal(load_benchmark_data("digits", random_state=1).y_test, data.y_test)
    split = one_vs_rest(data.X_train, data.y_train, data.X_test, data.y_test, 3, class_names=data.class_names)
    assert split.name == "3:3" and (split.y_test == 1).sum() == (data.y_test == 3).sum()
