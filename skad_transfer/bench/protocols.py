"""Evaluation protocols: datasets in, :class:`Split` objects out.

Every protocol returns one :class:`Split` (or a list of them): the normal training images, a test
set whose labels follow scikit-learn's outlier convention (``+1`` normal, ``-1`` anomaly), and the
outlier-exposure (OE) corpus the detectors may use, as a corpus specification (a registered name
such as ``"tinyimagenet"``, a path, an image array) or ``None``.

==========================  ============================================================  ===========
protocol                    normal / anomaly                                              paper
==========================  ============================================================  ===========
:func:`one_vs_rest`         one class normal, every other class anomalous                 Table 5
:func:`leave_one_out`       every class but one normal, the held-out class anomalous      Tables 2, 3
:func:`interventions`       one factor combination normal; anomalies change one factor    Fig. 1
:func:`non_semantic_shift`  shape A in 1, 2, ... colours normal; shape B anomalous        Fig. 2
:func:`oe_ablation`         any split, repeated with different OE corpora                 Table 6
==========================  ============================================================  ===========

The protocols only select and relabel rows; they never train anything. Random subsampling
(``n_normal``, ``n_test``) and synthetic generation are deterministic for a fixed ``random_state``.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.datasets import (MPI3D_BACKGROUND_COLORS, MPI3D_CAMERA_HEIGHTS, MPI3D_COLORS, MPI3D_FACTOR_NAMES,
                             MPI3D_SHAPES, MPI3D_SIZES)
from ..data.catalogue import load_dataset
from ..data.images import take_rows
from ..data.synthetic import COLOR_NAMES, SHAPE_NAMES, make_intervention_task, make_interventions

__all__ = [
    "PROTOCOLS",
    "BenchmarkData",
    "Split",
    "interventions",
    "leave_one_out",
    "load_benchmark_data",
    "non_semantic_shift",
    "oe_ablation",
    "one_vs_rest",
]

#: Value names of the categorical MPI3D factors (codes index these tuples).
MPI3D_VALUES: dict[str, tuple[str, ...]] = {
    "color": MPI3D_COLORS,
    "shape": MPI3D_SHAPES,
    "size": MPI3D_SIZES,
    "camera_height": MPI3D_CAMERA_HEIGHTS,
    "background_color": MPI3D_BACKGROUND_COLORS,
}


@dataclass(frozen=True, eq=False)
class Split:
    """One anomaly detection problem: what to train on and what to score.

    Attributes
    ----------
    X_normal : ndarray of shape (n_normal, H, W, 3)
        Normal training images.
    X_test : ndarray of shape (n_test, H, W, 3)
        Test images.
    y_test : ndarray of shape (n_test,), dtype int64
        ``+1`` for normal test images, ``-1`` for anomalies.
    outlier_exposure : str, path-like, ndarray or None
        The OE corpus specification handed to the detectors (``fit(X_normal, X_outlier=...)``):
        a registered corpus name, a path, an image array, or ``None`` for no OE.
    name : str
        Short identifier of the split within its protocol (e.g. ``"class3"``,
        ``"color->blue"``); the result store groups runs by it.
    meta : dict
        JSON-serialisable description (protocol parameters, class names, sizes).
    """

    X_normal: Any
    X_test: Any
    y_test: np.ndarray
    outlier_exposure: Any
    name: str
    meta: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        n_anomalies = int(np.sum(np.asarray(self.y_test) == -1))
        return (f"Split(name={self.name!r}, n_normal={len(self.X_normal)}, n_test={len(self.X_test)}, "
                f"n_anomalies={n_anomalies}, outlier_exposure={describe_corpus(self.outlier_exposure)!r})")


@dataclass(frozen=True, eq=False)
class BenchmarkData:
    """Arrays of a labelled benchmark dataset, as returned by :func:`load_benchmark_data`.

    Attributes
    ----------
    X_train, y_train, X_test, y_test : ndarray
        Images (NHWC uint8) and integer class labels of the two splits.
    class_names : list of str
        ``class_names[k]`` names label ``k``.
    name : str
        The dataset's name.
    """

    X_train: Any
    y_train: np.ndarray
    X_test: Any
    y_test: np.ndarray
    class_names: list
    name: str
    source: str = ""
    """Where the images came from when a dataset has more than one copy (``"torchvision"`` for
    CIFAR-10 read from torchvision's files); empty for the default copy."""


def describe_corpus(spec) -> str | None:
    """A short, JSON-friendly label of an OE corpus specification (names and paths verbatim)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        return spec
    if isinstance(spec, os.PathLike):
        return os.fspath(spec)
    shape = getattr(spec, "shape", None)
    if shape is not None:
        return f"array{tuple(int(s) for s in shape)}"
    return type(spec).__name__


# ----------------------------------------------------------------------------- helpers
def _rng(random_state) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or (isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)):
        return np.random.default_rng(random_state)
    raise ValueError(f"random_state must be None, an int or a numpy Generator, got {random_state!r}")


def _check_n(value, name: str, *, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def _labels(y, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D class labels, got shape {y.shape}")
    return y


def _check_xy(X, y, xname: str, yname: str) -> np.ndarray:
    y = _labels(y, yname)
    if len(X) != len(y):
        raise ValueError(f"{xname} and {yname} differ in length: {len(X)} != {len(y)}")
    return y


def _subsample(index: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    if n is None or n >= len(index):
        return index
    return np.sort(rng.choice(index, size=n, replace=False))


def _class_name(c, class_names) -> str:
    if class_names is not None:
        try:
            return str(class_names[int(c)])
        except (IndexError, TypeError, ValueError):
            pass
    return str(c)


def _class_protocol(X_train, y_train, X_test, y_test, cls, *, normal_is_class: bool, arg: str, outlier_exposure,
                    n_normal, n_test, class_names, random_state, protocol: str) -> Split:
    y_train = _check_xy(X_train, y_train, "X_train", "y_train")
    y_test = _check_xy(X_test, y_test, "X_test", "y_test")
    n_normal = _check_n(n_normal, "n_normal")
    n_test = _check_n(n_test, "n_test")
    present = np.unique(y_train)
    if cls not in present:
        raise ValueError(f"{arg}={cls!r} does not occur in y_train; its classes are {present.tolist()}")
    rng = _rng(random_state)
    in_class_train = y_train == cls
    normal_rows = np.flatnonzero(in_class_train if normal_is_class else ~in_class_train)
    normal_rows = _subsample(normal_rows, n_normal, rng)
    test_rows = _subsample(np.arange(len(y_test)), n_test, rng)
    in_class_test = y_test[test_rows] == cls
    is_normal = in_class_test if normal_is_class else ~in_class_test
    y = np.where(is_normal, 1, -1).astype(np.int64)
    if not (y == 1).any() or not (y == -1).any():
        raise ValueError(f"{protocol}: the test set for {arg}={cls!r} holds only one of normal/anomalous images; "
                         f"increase n_test or check y_test")
    label = _class_name(cls, class_names)
    name = f"class{cls}" if class_names is None else f"{cls}:{label}"
    meta = {"protocol": protocol, arg: int(cls) if isinstance(cls, numbers.Integral) else cls, "class_name": label,
            "n_normal": int(len(normal_rows)), "n_test": int(len(test_rows)),
            "n_anomalies": int((y == -1).sum()), "outlier_exposure": describe_corpus(outlier_exposure),
            "random_state": random_state if isinstance(random_state, (int, type(None))) else None}
    return Split(take_rows(X_train, normal_rows), take_rows(X_test, test_rows), y, outlier_exposure, name, meta)


# ----------------------------------------------------------------------------- class protocols
def one_vs_rest(X_train, y_train, X_test, y_test, normal_class, *, outlier_exposure=None, n_normal=None,
                n_test=None, class_names=None, random_state=None) -> Split:
    """One class is normal, all other classes are anomalies (paper Table 5).

    Parameters
    ----------
    X_train, y_train : array-like
        Labelled training images; the rows of ``normal_class`` become ``X_normal``.
    X_test, y_test : array-like
        Labelled test images, all scored; ``y_test == normal_class`` is labelled ``+1``, the rest
        ``-1``.
    normal_class : int
        The normal class label.
    outlier_exposure : str, path-like, ndarray or None, default=None
        OE corpus specification stored in the split (e.g. ``"tinyimagenet"``).
    n_normal : int, optional
        Keep a random subset of this many normal training images (default: all).
    n_test : int, optional
        Keep a random subset of this many test images (default: all).
    class_names : sequence of str, optional
        Names of the labels, used in the split's name and meta.
    random_state : int or numpy Generator, optional
        Seed of the subsampling.

    Returns
    -------
    split : Split

    Raises
    ------
    ValueError
        If ``normal_class`` is absent from ``y_train``, lengths disagree, or the test set is one-class.
    """
    return _class_protocol(X_train, y_train, X_test, y_test, normal_class, normal_is_class=True,
                           arg="normal_class", outlier_exposure=outlier_exposure, n_normal=n_normal, n_test=n_test,
                           class_names=class_names, random_state=random_state, protocol="one-vs-rest")


def leave_one_out(X_train, y_train, X_test, y_test, anomaly_class, *, outlier_exposure=None, n_normal=None,
                  n_test=None, class_names=None, random_state=None) -> Split:
    """Semantic AD: every class except ``anomaly_class`` is normal (paper Tables 2 and 3).

    Parameters
    ----------
    X_train, y_train : array-like
        Labelled training images; all rows not of ``anomaly_class`` become ``X_normal``.
    X_test, y_test : array-like
        Labelled test images; ``y_test == anomaly_class`` is labelled ``-1``, the rest ``+1``.
    anomaly_class : int
        The held-out (anomalous) class label.
    outlier_exposure, n_normal, n_test, class_names, random_state
        As in :func:`one_vs_rest`.

    Returns
    -------
    split : Split
    """
    return _class_protocol(X_train, y_train, X_test, y_test, anomaly_class, normal_is_class=False,
                           arg="anomaly_class", outlier_exposure=outlier_exposure, n_normal=n_normal, n_test=n_test,
                           class_names=class_names, random_state=random_state, protocol="leave-one-out")


# ----------------------------------------------------------------------------- factor protocols
def _mpi3d_factors(X, factors) -> np.ndarray:
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(MPI3D_FACTOR_NAMES):
        raise ValueError(f"factors must be an (n, {len(MPI3D_FACTOR_NAMES)}) MPI3D factor matrix "
                         f"(columns {list(MPI3D_FACTOR_NAMES)}), got shape {factors.shape}")
    if len(X) != len(factors):
        raise ValueError(f"X and factors differ in length: {len(X)} != {len(factors)}")
    return factors


def _mpi3d_codes(assignment, arg: str) -> dict[str, int]:
    if not isinstance(assignment, Mapping) or not assignment:
        raise ValueError(f"{arg} must be a non-empty dict of factor name to value name, got {assignment!r}")
    codes = {}
    for key, value in assignment.items():
        if key not in MPI3D_VALUES:
            raise ValueError(f"{arg}: unknown MPI3D factor {key!r}; categorical factors are {list(MPI3D_VALUES)}")
        names = MPI3D_VALUES[key]
        if value not in names:
            raise ValueError(f"{arg}[{key!r}]: unknown value {value!r}; valid names are {list(names)}")
        codes[key] = names.index(value)
    return codes


def _mpi3d_match(factors: np.ndarray, codes: Mapping[str, int]) -> np.ndarray:
    hit = np.ones(len(factors), dtype=bool)
    for key, code in codes.items():
        hit &= factors[:, MPI3D_FACTOR_NAMES.index(key)] == code
    return hit


def interventions(X=None, factors=None, *, normal=None, interventions=None, n_normal=1000, n_outlier=1000,
                  n_test=200, image_size=32, random_state=None) -> list[Split]:
    """Single-factor interventions (paper Fig. 1): one split per intervened factor.

    Without ``X`` the synthetic generator is used
    (:func:`~skad_transfer.data.synthetic.make_intervention_task`): normal images show one colour,
    shape and size (default a small red circle), each split's anomalies change one factor (default
    colour -> blue, shape -> square, size -> large), and the OE corpus holds every other
    combination. With MPI3D arrays (``X`` and ``factors`` from
    :func:`~skad_transfer.data.datasets.load_mpi3d`) the same protocol selects rows: normal is the
    combination ``normal`` (default ``{"color": "red", "shape": "cone", "size": "small"}``),
    anomalies are normal with one factor set to its ``interventions`` value (default blue, cube,
    large), and OE is drawn from all images that are neither normal nor any of the anomalies.

    Parameters
    ----------
    X : ndarray of shape (n, 64, 64, 3), optional
        MPI3D images; ``None`` uses the synthetic generator.
    factors : ndarray of shape (n, 7), optional
        MPI3D factor matrix; required with ``X``.
    normal, interventions : dict of str to str, optional
        Normal factor values and the anomalous value of each intervened factor (value names of
        :data:`~skad_transfer.data.synthetic.FACTOR_VALUES` or :data:`MPI3D_VALUES`).
    n_normal : int, default=1000
        Normal training images.
    n_outlier : int or None, default=1000
        OE images; for MPI3D ``None`` keeps every eligible image (about a million: mind memory).
    n_test : int, default=200
        Size of each test set, half of it anomalies (MPI3D: fewer if a pool runs short).
    image_size : int, default=32
        Side of synthetic images (ignored for MPI3D).
    random_state : int or numpy Generator, optional
        Seed of generation / subsampling.

    Returns
    -------
    splits : list of Split
        Named ``"<factor>-><value>"``; all share ``X_normal`` and ``outlier_exposure`` (an array).
    """
    changes = interventions
    if X is None:
        if factors is not None:
            raise ValueError("factors were given without X; pass both MPI3D arrays or neither (synthetic)")
        return _synthetic_interventions(n_normal, n_outlier, n_test, normal=normal, changes=changes,
                                        image_size=image_size, random_state=random_state)
    if factors is None:
        raise ValueError("X was given without factors; MPI3D needs both (load_mpi3d returns them)")
    return _mpi3d_interventions(X, factors, n_normal, n_outlier, n_test, normal=normal, changes=changes,
                                random_state=random_state)


def _synthetic_interventions(n_normal, n_outlier, n_test, *, normal, changes, image_size,
                             random_state) -> list[Split]:
    """The splits of :func:`interventions` drawn from the synthetic generator."""
    task = make_intervention_task(n_normal, n_outlier, n_test, normal=normal, interventions=changes,
                                  image_size=image_size, random_state=random_state)
    splits = []
    for factor, test in task.tests.items():
        meta = {"protocol": "interventions", "source": "synthetic", "normal": task.normal, "factor": factor,
                "value": task.interventions[factor], "n_normal": int(len(task.X_normal)),
                "n_outlier": int(len(task.X_outlier)), "n_test": int(len(test.y_test)),
                "image_size": int(image_size),
                "random_state": random_state if isinstance(random_state, (int, type(None))) else None}
        splits.append(Split(task.X_normal, test.X_test, test.y_test, task.X_outlier,
                            f"{factor}->{task.interventions[factor]}", meta))
    return splits


def _mpi3d_intervention_codes(normal, changes) -> tuple[dict, dict, dict[str, int], dict[str, int]]:
    """The normal and intervened MPI3D values of :func:`interventions` (defaults filled in), and their codes.

    Raises
    ------
    ValueError
        For an unknown factor or value, an intervened factor that ``normal`` does not fix, or an
        intervention to the normal value.
    """
    normal = {"color": "red", "shape": "cone", "size": "small"} if normal is None else dict(normal)
    changes = {"color": "blue", "shape": "cube", "size": "large"} if changes is None else dict(changes)
    normal_codes = _mpi3d_codes(normal, "normal")
    change_codes = _mpi3d_codes(changes, "interventions")
    for key, code in change_codes.items():
        if key not in normal_codes:
            raise ValueError(f"interventions[{key!r}]: {key!r} is not fixed by normal={normal}; add it to normal")
        if code == normal_codes[key]:
            raise ValueError(f"interventions[{key!r}] equals the normal value {normal[key]!r}")
    return normal, changes, normal_codes, change_codes


def _mpi3d_interventions(X, factors, n_normal, n_outlier, n_test, *, normal, changes,
                         random_state) -> list[Split]:
    """The splits of :func:`interventions` selected from MPI3D rows."""
    factors = _mpi3d_factors(X, factors)
    n_normal = _check_n(n_normal, "n_normal", allow_none=False)
    n_outlier = _check_n(n_outlier, "n_outlier")
    n_test = _check_n(n_test, "n_test", allow_none=False)
    normal, changes, normal_codes, change_codes = _mpi3d_intervention_codes(normal, changes)
    rng = _rng(random_state)
    is_normal = _mpi3d_match(factors, normal_codes)
    anomaly_masks = {key: _mpi3d_match(factors, {**normal_codes, key: code}) for key, code in change_codes.items()}
    normal_rows = rng.permutation(np.flatnonzero(is_normal))
    n_test_normal = n_test - n_test // 2
    if len(normal_rows) < n_normal + n_test_normal:
        raise ValueError(f"only {len(normal_rows)} normal images for n_normal={n_normal} + "
                         f"{n_test_normal} normal test images; lower n_normal or n_test")
    train_rows = np.sort(normal_rows[:n_normal])
    test_normal_pool = normal_rows[n_normal:]
    neither = ~is_normal
    for mask in anomaly_masks.values():
        neither &= ~mask
    oe_rows = _subsample(np.flatnonzero(neither), n_outlier, rng)
    X_normal, X_outlier = take_rows(X, train_rows), take_rows(X, oe_rows)
    splits = []
    for key, mask in anomaly_masks.items():
        pool = np.flatnonzero(mask)
        anomalies = rng.choice(pool, size=min(n_test // 2, len(pool)), replace=False)
        normals = rng.choice(test_normal_pool, size=n_test_normal, replace=False)
        rows = np.concatenate([normals, anomalies])
        y = np.concatenate([np.ones(len(normals), np.int64), -np.ones(len(anomalies), np.int64)])
        order = rng.permutation(len(rows))
        meta = {"protocol": "interventions", "source": "mpi3d", "normal": normal, "factor": key,
                "value": changes[key], "n_normal": int(n_normal), "n_outlier": int(len(oe_rows)),
                "n_test": int(len(rows)),
                "random_state": random_state if isinstance(random_state, (int, type(None))) else None}
        splits.append(Split(X_normal, take_rows(X, rows[order]), y[order], X_outlier, f"{key}->{changes[key]}", meta))
    return splits


def non_semantic_shift(X=None, factors=None, *, normal_shape=None, anomaly_shape=None, colors=None, n_normal=500,
                       n_outlier=500, n_test=200, image_size=32, random_state=None) -> list[Split]:
    """Robustness to non-semantic colour shift (paper Fig. 2): one split per number of colours.

    Step ``k`` (``k = 1 .. len(colors)``): normal images show ``normal_shape`` in the first ``k``
    entries of ``colors``; anomalies show ``anomaly_shape`` in *any* colour; the test set mixes
    fresh normal images (same ``k`` colours) and anomalies half and half. The OE corpus shows
    shapes other than the normal and the anomalous one, in the same ``k`` colours only (OE never
    brings additional colours, as in the paper). Without ``X`` the synthetic generator is used
    (default circle vs square, colours in :data:`~skad_transfer.data.synthetic.COLOR_NAMES`
    order: red, green, blue, ...); with MPI3D arrays the default is cone vs cube, colours in
    :data:`~skad_transfer.data.datasets.MPI3D_COLORS` order starting from red.

    Parameters
    ----------
    X, factors : ndarray, optional
        MPI3D images and factor matrix; ``None`` uses the synthetic generator.
    normal_shape, anomaly_shape : str, optional
        The semantic classes.
    colors : sequence of str, optional
        Colours added to the normal class one step at a time.
    n_normal, n_outlier, n_test : int
        Sizes per step (MPI3D: ``n_outlier=None`` keeps all eligible images).
    image_size : int, default=32
        Side of synthetic images.
    random_state : int or numpy Generator, optional
        Seed of generation / subsampling.

    Returns
    -------
    splits : list of Split
        Named ``"colors=<k>"``; ``meta["normal_colors"]`` lists the step's colours.
    """
    synthetic = X is None
    if synthetic and factors is not None:
        raise ValueError("factors were given without X; pass both MPI3D arrays or neither (synthetic)")
    shapes_all = SHAPE_NAMES if synthetic else MPI3D_SHAPES
    normal_shape, anomaly_shape, colors = _shift_classes(synthetic, normal_shape, anomaly_shape, colors)
    oe_shapes = [s for s in shapes_all if s not in (normal_shape, anomaly_shape)]
    n_normal = _check_n(n_normal, "n_normal", allow_none=False)
    n_test = _check_n(n_test, "n_test", allow_none=False)
    n_outlier = _check_n(n_outlier, "n_outlier", allow_none=not synthetic)
    rng = _rng(random_state)
    n_anom = n_test // 2
    sizes = dict(n_normal=n_normal, n_outlier=n_outlier, n_test_normal=n_test - n_anom, n_anom=n_anom)
    if not synthetic:
        if factors is None:
            raise ValueError("X was given without factors; MPI3D needs both (load_mpi3d returns them)")
        factors = _mpi3d_factors(X, factors)
        anomaly_pool = np.flatnonzero(factors[:, MPI3D_FACTOR_NAMES.index("shape")]
                                      == MPI3D_SHAPES.index(anomaly_shape))
    splits = []
    for k in range(1, len(colors) + 1):
        step = colors[:k]
        if synthetic:
            X_normal, X_test, y, X_oe, n_oe = _synthetic_shift_step(step, normal_shape, anomaly_shape, oe_shapes,
                                                                    image_size=image_size, rng=rng, **sizes)
        else:
            X_normal, X_test, y, X_oe, n_oe = _mpi3d_shift_step(X, factors, k, step, normal_shape, oe_shapes,
                                                                anomaly_pool, rng=rng, **sizes)
        meta = {"protocol": "non-semantic-shift", "source": "synthetic" if synthetic else "mpi3d", "step": k,
                "normal_colors": step, "normal_shape": normal_shape, "anomaly_shape": anomaly_shape,
                "oe_shapes": oe_shapes, "n_normal": int(len(X_normal)), "n_outlier": int(n_oe),
                "n_test": int(len(y)),
                "random_state": random_state if isinstance(random_state, (int, type(None))) else None}
        splits.append(Split(X_normal, X_test, y, X_oe, f"colors={k}", meta))
    return splits


def _shift_classes(synthetic: bool, normal_shape, anomaly_shape, colors) -> tuple[str, str, list[str]]:
    """The normal shape, anomalous shape and colour order of :func:`non_semantic_shift`, defaults filled in.

    Raises
    ------
    ValueError
        For an unknown shape or colour, equal shapes, or no or repeated colours.
    """
    shapes_all = SHAPE_NAMES if synthetic else MPI3D_SHAPES
    colors_all = COLOR_NAMES if synthetic else MPI3D_COLORS
    normal_shape = normal_shape or ("circle" if synthetic else "cone")
    anomaly_shape = anomaly_shape or ("square" if synthetic else "cube")
    for arg, value in (("normal_shape", normal_shape), ("anomaly_shape", anomaly_shape)):
        if value not in shapes_all:
            raise ValueError(f"{arg}: unknown shape {value!r}; valid names are {list(shapes_all)}")
    if normal_shape == anomaly_shape:
        raise ValueError(f"normal_shape and anomaly_shape must differ, both are {normal_shape!r}")
    if colors is None:
        colors = colors_all if synthetic else ("red",) + tuple(c for c in colors_all if c != "red")
    if isinstance(colors, str):
        colors = [colors]
    colors = list(colors)
    if not colors:
        raise ValueError("colors must name at least one colour")
    for c in colors:
        if c not in colors_all:
            raise ValueError(f"colors: unknown colour {c!r}; valid names are {list(colors_all)}")
    if len(set(colors)) != len(colors):
        raise ValueError(f"colors must not repeat a colour, got {colors}")
    return normal_shape, anomaly_shape, colors


def _synthetic_shift_step(step, normal_shape, anomaly_shape, oe_shapes, *, n_normal, n_outlier, n_test_normal,
                          n_anom, image_size, rng):
    """One step of :func:`non_semantic_shift` from the synthetic generator: ``(X_normal, X_test, y_test,
    X_outlier, n_outlier)``, the normal images and the OE in the colours ``step``."""
    X_normal = make_interventions(n_normal, image_size=image_size, colors=step, shapes=normal_shape,
                                  random_state=rng, return_factors=False)
    X_oe = make_interventions(n_outlier, image_size=image_size, colors=step, shapes=oe_shapes,
                              random_state=rng, return_factors=False)
    X_in = make_interventions(n_test_normal, image_size=image_size, colors=step, shapes=normal_shape,
                              random_state=rng, return_factors=False)
    X_out = make_interventions(n_anom, image_size=image_size, shapes=anomaly_shape, random_state=rng,
                               return_factors=False)
    X_test = np.concatenate([X_in, X_out])
    y = np.concatenate([np.ones(len(X_in), np.int64), -np.ones(len(X_out), np.int64)])
    order = rng.permutation(len(y))
    return X_normal, X_test[order], y[order], X_oe, len(X_oe)


def _mpi3d_shift_step(X, factors, k, step, normal_shape, oe_shapes, anomaly_pool, *, n_normal, n_outlier,
                      n_test_normal, n_anom, rng):
    """Step ``k`` of :func:`non_semantic_shift` selected from MPI3D rows: ``(X_normal, X_test, y_test,
    X_outlier, n_outlier)``, the normal images and the OE in the colours ``step``, the anomalies
    drawn from ``anomaly_pool``."""
    col, shp = MPI3D_FACTOR_NAMES.index("color"), MPI3D_FACTOR_NAMES.index("shape")
    in_step = np.isin(factors[:, col], [MPI3D_COLORS.index(c) for c in step])
    normal_rows = rng.permutation(np.flatnonzero(in_step & (factors[:, shp] == MPI3D_SHAPES.index(normal_shape))))
    if len(normal_rows) < n_normal + n_test_normal:
        raise ValueError(f"only {len(normal_rows)} normal images at step {k}; lower n_normal or n_test")
    oe_mask = in_step & np.isin(factors[:, shp], [MPI3D_SHAPES.index(s) for s in oe_shapes])
    oe_rows = _subsample(np.flatnonzero(oe_mask), n_outlier, rng)
    X_normal, X_oe = take_rows(X, np.sort(normal_rows[:n_normal])), take_rows(X, oe_rows)
    anomalies = rng.choice(anomaly_pool, size=min(n_anom, len(anomaly_pool)), replace=False)
    rows = np.concatenate([normal_rows[n_normal:n_normal + n_test_normal], anomalies])
    y = np.concatenate([np.ones(n_test_normal, np.int64), -np.ones(len(anomalies), np.int64)])
    order = rng.permutation(len(rows))
    return X_normal, take_rows(X, rows[order]), y[order], X_oe, len(oe_rows)


def oe_ablation(base_split: Split, corpora) -> list[Split]:
    """The same split with different outlier-exposure corpora (paper Table 6).

    Parameters
    ----------
    base_split : Split
        The split to repeat; its images and labels are shared, not copied.
    corpora : sequence of corpus specifications, or dict of label to specification
        Each entry (a registered name such as ``"tinyimagenet"`` or ``"svhn"``, a path, an array,
        or ``None`` for no OE) yields one split. Labels default to the name / file name, or
        ``"array<i>"`` and ``"none"``.

    Returns
    -------
    splits : list of Split
        Named ``"<base name>|oe=<label>"``, with ``meta["oe"]`` set to the label.
    """
    if not isinstance(base_split, Split):
        raise ValueError(f"base_split must be a Split, got {type(base_split).__name__}")
    if isinstance(corpora, Mapping):
        items = [(str(label), spec) for label, spec in corpora.items()]
    elif isinstance(corpora, (str, os.PathLike)) or not isinstance(corpora, Sequence) or not len(corpora):
        raise ValueError(f"corpora must be a non-empty list of corpus specifications or a dict of label to "
                         f"specification, got {corpora!r}")
    else:
        items = []
        for i, spec in enumerate(corpora):
            if spec is None:
                label = "none"
            elif isinstance(spec, str) and os.sep not in spec:
                label = spec
            elif isinstance(spec, (str, os.PathLike)):
                label = Path(spec).name
            else:
                label = f"array{i}"
            items.append((label, spec))
    labels = [label for label, _ in items]
    if len(set(labels)) != len(labels):
        raise ValueError(f"corpora: labels must be unique, got {labels}; pass a dict of label to specification")
    return [replace(base_split, outlier_exposure=spec, name=f"{base_split.name}|oe={label}",
                    meta={**base_split.meta, "oe": label, "outlier_exposure": describe_corpus(spec),
                          "oe_ablation": True})
            for label, spec in items]


# ----------------------------------------------------------------------------- data
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def load_benchmark_data(dataset: str, data_dir=None, *, n_train: int = 2000, n_test: int = 1000,
                        image_size: int = 32, random_state: int = 0, download: bool = False) -> BenchmarkData:
    """Load a labelled dataset for the class protocols.

    Parameters
    ----------
    dataset : {"cifar10", "digits", "synthetic"}
        ``"cifar10"`` reads ``cifar10-jpg.zip`` (an ImageFolder zip with ``train/`` and ``test/``)
        from ``data_dir`` through :func:`~skad_transfer.data.datasets.load_image_folder` (with its
        decode cache). ``"digits"`` is scikit-learn's handwritten digits
        (:func:`sklearn.datasets.load_digits`, shipped inside scikit-learn: 1,797 grayscale 8x8
        images, 10 classes, 0..16 scaled to uint8 0..255 as ``(N, 8, 8, 1)``), split in halves
        stratified by class with ``random_state``. ``"synthetic"`` draws images with
        :func:`~skad_transfer.data.synthetic.make_interventions`, labelled by shape (5 classes).
    data_dir : str or path-like, optional
        Folder holding ``cifar10-jpg.zip`` (required for ``"cifar10"``). Without it (or with
        ``download``), ``"cifar10"`` reads torchvision's CIFAR-10 files there instead, and the
        result's ``source`` is ``"torchvision"``.
    n_train, n_test : int
        Synthetic only: numbers of images.
    image_size : int, default=32
        Synthetic only: image side.
    random_state : int, default=0
        Synthetic: generator seed (the test set uses ``random_state + 1``). Digits: seed of the
        train/test split.
    download : bool, default=False
        ``"cifar10"``: fetch torchvision's CIFAR-10 into ``data_dir`` (and use it).

    Returns
    -------
    data : BenchmarkData
    """
    if dataset == "cifar10":
        if data_dir is None:
            raise ValueError("data_dir is required for dataset='cifar10' (the folder holding cifar10-jpg.zip)")
        jpeg_copy = any((Path(data_dir) / name).exists() for name in ("cifar10-jpg.zip", "cifar10-jpg"))
        if jpeg_copy and not download:
            # The benchmarks' CIFAR-10 is the catalogue's JPEG copy where present (the stored runs use it).
            X_train, y_train, names = load_dataset("cifar10-jpg", "train", root=data_dir)
            X_test, y_test, _ = load_dataset("cifar10-jpg", "test", root=data_dir)
            return BenchmarkData(X_train, y_train, X_test, y_test, list(names), "cifar10")
        try:
            X_train, y_train, names = load_dataset("cifar10", "train", root=data_dir, download=download)
            X_test, y_test, _ = load_dataset("cifar10", "test", root=data_dir, download=download)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"dataset='cifar10': neither cifar10-jpg.zip nor torchvision's CIFAR-10 files are "
                                    f"under {data_dir}; pass download=True (bench --download) to fetch "
                                    f"torchvision's ({error})") from error
        return BenchmarkData(X_train, y_train, X_test, y_test, list(names), "cifar10", source="torchvision")
    if dataset == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
        X_train, X_test, y_train, y_test = train_test_split(images, digits.target.astype(np.int64), test_size=0.5,
                                                            stratify=digits.target, random_state=random_state)
        return BenchmarkData(X_train, y_train, X_test, y_test, [str(k) for k in range(10)], "digits")
    if dataset == "synthetic":
        X_train, f_train = make_interventions(n_train, image_size=image_size, random_state=random_state)
        X_test, f_test = make_interventions(n_test, image_size=image_size, random_state=random_state + 1)
        return BenchmarkData(X_train, f_train["shape"].astype(np.int64), X_test, f_test["shape"].astype(np.int64),
                             list(SHAPE_NAMES), "synthetic")
    raise ValueError(f"dataset: unknown dataset {dataset!r}; valid names are ['cifar10', 'digits', 'synthetic']")


#: Protocols by name (as used by ``skad-transfer bench --protocol``).
PROTOCOLS: dict[str, Callable[..., Split | list[Split]]] = {
    "one-vs-rest": one_vs_rest,
    "leave-one-out": leave_one_out,
    "interventions": interventions,
    "non-semantic-shift": non_semantic_shift,
    "oe-ablation": oe_ablation,
}
