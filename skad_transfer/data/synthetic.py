"""Procedural images with known generative factors, for controlled interventions.

:func:`make_interventions` draws one object (a shape of some colour and size
at a random position) on a textured background, in the style of
scikit-learn's ``make_*`` generators. :func:`make_intervention_task` builds a
semantic anomaly detection task from it that mirrors the MPI3D protocol:
normal data share one combination of factor values, each test set contains
anomalies that differ from normal in exactly one factor, and the
outlier-exposure (OE) corpus holds other combinations that contain none of
the test anomalies' values.

Factors are returned as a numpy structured array with ``int64`` fields:

==============  ===========================================================
``color``       index into :data:`COLOR_NAMES`
``shape``       index into :data:`SHAPE_NAMES`
``size``        index into :data:`SIZE_NAMES`
``background``  index into :data:`BACKGROUND_NAMES`
``x``, ``y``    pixel column and row of the object's centre
==============  ===========================================================

Codes always index the full module-level name lists (also available as
``FACTOR_VALUES[field]``), whatever subset of values was sampled, so they
are comparable between calls; :func:`factor_labels` turns codes into names.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "BACKGROUND_NAMES",
    "COLOR_NAMES",
    "FACTOR_DTYPE",
    "FACTOR_VALUES",
    "InterventionTask",
    "InterventionTestSet",
    "SHAPE_NAMES",
    "SIZE_NAMES",
    "factor_labels",
    "make_intervention_task",
    "make_interventions",
]

_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (35, 185, 55),
    "blue": (45, 80, 235),
    "white": (235, 235, 235),
    "yellow": (240, 215, 35),
    "magenta": (215, 45, 215),
    "cyan": (35, 205, 215),
    "orange": (245, 135, 25),
}
_BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (12, 12, 12),
    "gray": (105, 105, 105),
    "dark-blue": (18, 24, 78),
    "dark-green": (18, 62, 30),
}
# Object radius as a fraction of the image side.
_SIZES: dict[str, float] = {"small": 0.15, "large": 0.30}

#: Object colours; ``factors["color"]`` indexes this tuple.
COLOR_NAMES: tuple[str, ...] = tuple(_COLORS)
#: Object shapes; ``factors["shape"]`` indexes this tuple.
SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "diamond")
#: Object sizes; ``factors["size"]`` indexes this tuple.
SIZE_NAMES: tuple[str, ...] = tuple(_SIZES)
#: Backgrounds; ``factors["background"]`` indexes this tuple.
BACKGROUND_NAMES: tuple[str, ...] = tuple(_BACKGROUNDS)
#: Value names of each categorical factor.
FACTOR_VALUES: dict[str, tuple[str, ...]] = {
    "color": COLOR_NAMES,
    "shape": SHAPE_NAMES,
    "size": SIZE_NAMES,
    "background": BACKGROUND_NAMES,
}
#: dtype of the factor record returned by :func:`make_interventions`.
FACTOR_DTYPE = np.dtype(
    [(name, np.int64) for name in ("color", "shape", "size", "background", "x", "y")]
)

_CATEGORICAL = tuple(FACTOR_VALUES)
_NOISE_STD = 6.0
_GRADIENT = 20.0
_SUPERSAMPLE = 2


def _check_rng(random_state) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        # Draw a seed so a shared RandomState still advances deterministically.
        return np.random.default_rng(random_state.randint(0, 2**32 - 1, dtype=np.int64))
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.default_rng(random_state)
    raise ValueError(
        f"random_state must be None, an int, a numpy Generator or RandomState, got {random_state!r}"
    )


def _code(factor: str, value: str, arg: str) -> int:
    names = FACTOR_VALUES[factor]
    if not isinstance(value, str) or value not in names:
        raise ValueError(f"{arg}: unknown {factor} {value!r}; valid names are {list(names)}")
    return names.index(value)


def _codes(factor: str, values: str | Sequence[str] | None, arg: str) -> list[int]:
    if values is None:
        return list(range(len(FACTOR_VALUES[factor])))
    if isinstance(values, str):
        values = [values]
    codes = [_code(factor, v, arg) for v in values]
    if not codes:
        raise ValueError(f"{arg} must name at least one {factor}; valid names are {list(FACTOR_VALUES[factor])}")
    return sorted(set(codes))


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def _check_image_size(image_size) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    return int(image_size)


def _sample_factors(
    n: int, combos: np.ndarray, image_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Draw ``n`` factor records; ``combos`` is (k, 4): allowed (color, shape, size, background)."""
    factors = np.zeros(n, dtype=FACTOR_DTYPE)
    picked = combos[rng.integers(0, len(combos), size=n)]
    for j, name in enumerate(_CATEGORICAL):
        factors[name] = picked[:, j]
    radius = np.array([_SIZES[s] for s in SIZE_NAMES])[factors["size"]] * image_size
    # Keep the whole object inside the image.
    lo = np.ceil(radius).astype(np.int64)
    hi = image_size - 1 - lo
    factors["x"] = lo + np.floor(rng.random(n) * (hi - lo + 1)).astype(np.int64)
    factors["y"] = lo + np.floor(rng.random(n) * (hi - lo + 1)).astype(np.int64)
    return factors


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test in coordinates normalised by the object radius (v points down)."""
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        # Side 1.6 radii, so its area is close to the circle's.
        return (au <= 0.8) & (av <= 0.8)
    if shape == "triangle":
        return (v <= 0.8) & (au <= (v + 1.0) * (1.1 / 1.8))
    if shape == "cross":
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if shape == "diamond":
        return au + av <= 1.0
    raise AssertionError(shape)


def _render(factors: np.ndarray, image_size: int, rng: np.random.Generator) -> np.ndarray:
    n, s = len(factors), image_size
    out = np.empty((n, s, s, 3), dtype=np.uint8)
    if n == 0:
        return out
    ss = _SUPERSAMPLE
    sub = (np.arange(s)[:, None] + (np.arange(ss) + 0.5) / ss - 0.5).ravel()  # sub-pixel centres
    ramp = (np.arange(s, dtype=np.float32) / max(s - 1, 1)) - 0.5
    colors = np.array([_COLORS[c] for c in COLOR_NAMES], dtype=np.float32)
    backgrounds = np.array([_BACKGROUNDS[b] for b in BACKGROUND_NAMES], dtype=np.float32)
    radius_of = np.array([_SIZES[z] for z in SIZE_NAMES]) * s
    chunk = max(1, (1 << 22) // (s * s * ss * ss))
    for start in range(0, n, chunk):
        f = factors[start : start + chunk]
        m = len(f)
        alpha = np.empty((m, s, s), dtype=np.float32)
        radius = radius_of[f["size"]]
        for code, shape in enumerate(SHAPE_NAMES):
            idx = np.flatnonzero(f["shape"] == code)
            if idx.size == 0:
                continue
            r = radius[idx][:, None, None]
            u = (sub[None, None, :] - f["x"][idx][:, None, None]) / r
            v = (sub[None, :, None] - f["y"][idx][:, None, None]) / r
            inside = _shape_mask(shape, u, v)
            # Anti-aliasing: the coverage of ss x ss sub-pixels.
            alpha[idx] = inside.reshape(idx.size, s, ss, s, ss).mean(axis=(2, 4))
        # A random linear shading keeps backgrounds from being flat colours.
        gx, gy = (rng.uniform(-_GRADIENT, _GRADIENT, size=(2, m, 1, 1))).astype(np.float32)
        shade = gx * ramp[None, None, :] + gy * ramp[None, :, None]
        bg = backgrounds[f["background"]][:, None, None, :] + shade[..., None]
        fg = colors[f["color"]][:, None, None, :]
        a = alpha[..., None]
        img = bg * (1.0 - a) + fg * a
        img += rng.standard_normal(img.shape, dtype=np.float32) * _NOISE_STD
        np.clip(img, 0, 255, out=img)
        out[start : start + m] = np.rint(img).astype(np.uint8)
    return out


def make_interventions(
    n_samples: int = 1000,
    *,
    image_size: int = 32,
    colors: str | Sequence[str] | None = None,
    shapes: str | Sequence[str] | None = None,
    sizes: str | Sequence[str] | None = None,
    backgrounds: str | Sequence[str] | None = None,
    random_state: int | np.random.Generator | np.random.RandomState | None = None,
    return_factors: bool = True,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Generate images of one coloured shape on a textured background.

    Each image shows one object whose colour, shape, size and background are
    drawn independently and uniformly from the allowed values, at a uniform
    random position that keeps it inside the image. Edges are
    anti-aliased, backgrounds carry a random linear shading, and Gaussian
    pixel noise (std 6) covers the whole image. Rendering uses numpy only.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of images.
    image_size : int, default=32
        Side length in pixels (at least 8).
    colors : str or sequence of str, optional
        Allowed object colours, from :data:`COLOR_NAMES` (``"red"``,
        ``"green"``, ``"blue"``, ``"white"``, ``"yellow"``, ``"magenta"``,
        ``"cyan"``, ``"orange"``). ``None`` allows all; a string fixes one.
    shapes : str or sequence of str, optional
        Allowed shapes, from :data:`SHAPE_NAMES` (``"circle"``, ``"square"``,
        ``"triangle"``, ``"cross"``, ``"diamond"``).
    sizes : str or sequence of str, optional
        Allowed sizes, from :data:`SIZE_NAMES` (``"small"``: radius 15% of
        the side, ``"large"``: 30%).
    backgrounds : str or sequence of str, optional
        Allowed backgrounds, from :data:`BACKGROUND_NAMES` (``"black"``,
        ``"gray"``, ``"dark-blue"``, ``"dark-green"``).
    random_state : int, numpy Generator or RandomState, optional
        Seed or generator; results are deterministic for a fixed int.
    return_factors : bool, default=True
        Also return the factor record.

    Returns
    -------
    X : ndarray of shape (n_samples, image_size, image_size, 3), dtype uint8
        RGB images (NHWC).
    factors : structured ndarray of shape (n_samples,), dtype FACTOR_DTYPE
        Only if ``return_factors``. Integer fields ``color``, ``shape``,
        ``size``, ``background`` (indices into :data:`FACTOR_VALUES`) and
        ``x``, ``y`` (object centre, pixel column and row).

    Raises
    ------
    ValueError
        For an unknown value name (the message lists the valid ones) or an
        invalid count, size or seed.

    Examples
    --------
    >>> X, factors = make_interventions(100, colors="red", shapes=["circle", "square"], random_state=0)
    >>> X.shape, X.dtype
    ((100, 32, 32, 3), dtype('uint8'))
    >>> sorted(set(factor_labels(factors, "color").tolist()))
    ['red']
    """
    n = _check_count(n_samples, "n_samples")
    image_size = _check_image_size(image_size)
    allowed = [
        _codes("color", colors, "colors"),
        _codes("shape", shapes, "shapes"),
        _codes("size", sizes, "sizes"),
        _codes("background", backgrounds, "backgrounds"),
    ]
    rng = _check_rng(random_state)
    combos = np.array(list(itertools.product(*allowed)), dtype=np.int64)
    factors = _sample_factors(n, combos, image_size, rng)
    X = _render(factors, image_size, rng)
    return (X, factors) if return_factors else X


def factor_labels(factors: np.ndarray, name: str) -> np.ndarray:
    """Return the value names of a categorical factor.

    Parameters
    ----------
    factors : structured ndarray of dtype FACTOR_DTYPE
        As returned by :func:`make_interventions`.
    name : {"color", "shape", "size", "background"}
        The factor.

    Returns
    -------
    labels : ndarray of str, shape (n_samples,)

    Examples
    --------
    >>> _, f = make_interventions(3, colors="blue", random_state=0)
    >>> factor_labels(f, "color").tolist()
    ['blue', 'blue', 'blue']
    """
    if name not in FACTOR_VALUES:
        raise ValueError(f"unknown factor {name!r}; categorical factors are {list(FACTOR_VALUES)}")
    return np.asarray(FACTOR_VALUES[name])[factors[name]]


@dataclass(frozen=True)
class InterventionTestSet:
    """Test set for one intervened factor.

    Attributes
    ----------
    X_test : ndarray of shape (n, image_size, image_size, 3), dtype uint8
    y_test : ndarray of shape (n,), dtype int64
        ``+1`` for normal images, ``-1`` for anomalies (scikit-learn's
        outlier convention); ``n // 2`` anomalies, shuffled.
    factors_test : structured ndarray of shape (n,)
        Factor record of each image.
    """

    X_test: np.ndarray
    y_test: np.ndarray
    factors_test: np.ndarray


@dataclass(frozen=True)
class InterventionTask:
    """Data of a synthetic semantic anomaly detection task.

    Attributes
    ----------
    X_normal, factors_normal : ndarray
        Training images of the normal factor combination.
    X_outlier, factors_outlier : ndarray
        Outlier-exposure corpus: factor combinations that are neither the
        normal one nor a test anomaly.
    tests : dict of str to InterventionTestSet
        One test set per intervened factor, in the order of ``interventions``.
    normal : dict of str to str
        The normal factor values.
    interventions : dict of str to str
        The anomalous value of each intervened factor.
    """

    X_normal: np.ndarray
    factors_normal: np.ndarray
    X_outlier: np.ndarray
    factors_outlier: np.ndarray
    tests: dict[str, InterventionTestSet] = field(default_factory=dict)
    normal: dict[str, str] = field(default_factory=dict)
    interventions: dict[str, str] = field(default_factory=dict)


def _check_assignment(mapping, arg: str) -> dict[str, int]:
    if not isinstance(mapping, Mapping) or not mapping:
        raise ValueError(f"{arg} must be a non-empty dict of factor name to value name, got {mapping!r}")
    codes = {}
    for key, value in mapping.items():
        if key not in FACTOR_VALUES:
            raise ValueError(f"{arg}: unknown factor {key!r}; categorical factors are {list(FACTOR_VALUES)}")
        codes[key] = _code(key, value, f"{arg}[{key!r}]")
    return codes


def make_intervention_task(
    n_normal: int = 1000,
    n_outlier: int = 1000,
    n_test_per_intervention: int = 200,
    *,
    normal: Mapping[str, str] | None = None,
    interventions: Mapping[str, str] | None = None,
    image_size: int = 32,
    random_state: int | np.random.Generator | np.random.RandomState | None = None,
) -> InterventionTask:
    """Build a semantic anomaly detection task with single-factor interventions.

    Normal images fix the factors in ``normal``; factors not named there
    (and the position) are random nuisance. For each entry ``factor: value``
    of ``interventions``, a test set mixes fresh normal images with
    anomalies equal to normal except that ``factor`` takes ``value``. The
    outlier-exposure corpus draws uniformly from the combinations of the
    categorical combinations that are neither the normal combination nor a
    test anomaly (normal with one factor set to its intervention value), as
    in the paper's MPI3D protocol where the OE data are all images that are
    neither normal nor anomalous: the corpus shows the intervention values
    (blue, square, large) only in combinations that are not anomalies.

    Parameters
    ----------
    n_normal : int, default=1000
        Number of normal training images.
    n_outlier : int, default=1000
        Number of outlier-exposure images.
    n_test_per_intervention : int, default=200
        Size of each test set; ``n // 2`` of them are anomalies.
    normal : dict of str to str, optional
        Normal value of each factor; keys from ``("color", "shape", "size",
        "background")``. Default ``{"color": "red", "shape": "circle",
        "size": "small"}``.
    interventions : dict of str to str, optional
        Anomalous value of each intervened factor; every key must be in
        ``normal`` and every value must differ from the normal one. Default
        ``{"color": "blue", "shape": "square", "size": "large"}``.
    image_size : int, default=32
        Side length in pixels.
    random_state : int, numpy Generator or RandomState, optional
        Seed or generator; the whole task is deterministic for a fixed int.

    Returns
    -------
    task : InterventionTask
        ``task.X_normal``, ``task.X_outlier`` and ``task.tests[factor]``
        (with ``X_test``, ``y_test`` in {+1 normal, -1 anomaly} and
        ``factors_test``), plus the factor records.

    Raises
    ------
    ValueError
        For unknown factor or value names, an intervention on a factor not
        fixed by ``normal`` or equal to its normal value, or when no
        outlier-exposure combination remains.

    Examples
    --------
    >>> task = make_intervention_task(50, 50, 20, random_state=0)
    >>> sorted(task.tests)
    ['color', 'shape', 'size']
    >>> task.tests["color"].X_test.shape, int((task.tests["color"].y_test == -1).sum())
    ((20, 32, 32, 3), 10)
    """
    n_normal = _check_count(n_normal, "n_normal")
    n_outlier = _check_count(n_outlier, "n_outlier")
    n_test = _check_count(n_test_per_intervention, "n_test_per_intervention")
    image_size = _check_image_size(image_size)
    if normal is None:
        normal = {"color": "red", "shape": "circle", "size": "small"}
    if interventions is None:
        interventions = {"color": "blue", "shape": "square", "size": "large"}
    normal_codes, intervention_codes = _check_interventions(normal, interventions)
    rng = _check_rng(random_state)

    # The draws keep this order (normal, OE, then each test set), so a seed gives the same task.
    normal_table = _combinations(normal_codes)
    X_normal, factors_normal = _draw(n_normal, normal_table, image_size, rng)
    X_outlier, factors_outlier = _draw(
        n_outlier, _outlier_exposure_table(normal_codes, intervention_codes), image_size, rng
    )
    tests = {
        key: _intervention_test_set(
            n_test, normal_table, _combinations({**normal_codes, key: code}), image_size, rng
        )
        for key, code in intervention_codes.items()
    }
    return InterventionTask(
        X_normal=X_normal,
        factors_normal=factors_normal,
        X_outlier=X_outlier,
        factors_outlier=factors_outlier,
        tests=tests,
        normal=dict(normal),
        interventions=dict(interventions),
    )


def _check_interventions(
    normal: Mapping[str, str], interventions: Mapping[str, str]
) -> tuple[dict[str, int], dict[str, int]]:
    """The codes of ``normal`` and ``interventions``; each intervention must change one fixed factor."""
    normal_codes = _check_assignment(normal, "normal")
    intervention_codes = _check_assignment(interventions, "interventions")
    for key, code in intervention_codes.items():
        if key not in normal_codes:
            raise ValueError(
                f"interventions[{key!r}]: {key!r} is not fixed by normal={dict(normal)}, so an "
                "intervention on it is not a change of one factor; add it to normal"
            )
        if code == normal_codes[key]:
            raise ValueError(f"interventions[{key!r}] equals the normal value {normal[key]!r}")
    return normal_codes, intervention_codes


def _combinations(fixed: Mapping[str, int]) -> np.ndarray:
    """Every (color, shape, size, background) code combination that agrees with ``fixed``, as rows."""
    values = [[fixed[f]] if f in fixed else range(len(FACTOR_VALUES[f])) for f in _CATEGORICAL]
    return np.array(list(itertools.product(*values)), dtype=np.int64)


def _draw(n: int, table: np.ndarray, image_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rendered images of combinations drawn from ``table``, and their factor records."""
    factors = _sample_factors(n, table, image_size, rng)
    return _render(factors, image_size, rng), factors


def _outlier_exposure_table(normal_codes: Mapping[str, int], intervention_codes: Mapping[str, int]) -> np.ndarray:
    """The combinations the OE corpus draws from: neither the normal one nor a test anomaly.

    A test anomaly is the normal combination with exactly one factor set to its
    intervention value. This is the paper's MPI3D protocol, where e.g. blue cubes
    and large green cones are OE while the blue/cube/large red-cone anomalies are not.
    """
    table = _combinations({})
    columns = {name: j for j, name in enumerate(_CATEGORICAL)}

    def matches(assignment: Mapping[str, int]) -> np.ndarray:
        hit = np.ones(len(table), dtype=bool)
        for name, code in assignment.items():
            hit &= table[:, columns[name]] == code
        return hit

    same_as_normal = matches(normal_codes)
    keep = np.ones(len(table), dtype=bool)
    for key, code in intervention_codes.items():
        keep &= ~matches({**normal_codes, key: code})
    oe_table = table[keep & ~same_as_normal]
    if len(oe_table) == 0:
        raise ValueError("no factor combination is left for the outlier-exposure corpus")
    return oe_table


def _intervention_test_set(
    n_test: int, normal_table: np.ndarray, anomaly_table: np.ndarray, image_size: int, rng: np.random.Generator
) -> InterventionTestSet:
    """``n_test`` shuffled images: ``n_test // 2`` anomalies from ``anomaly_table``, the rest normal."""
    n_anomalies = n_test // 2
    X_in, f_in = _draw(n_test - n_anomalies, normal_table, image_size, rng)
    X_out, f_out = _draw(n_anomalies, anomaly_table, image_size, rng)
    order = rng.permutation(n_test)
    y = np.concatenate([np.ones(len(f_in), np.int64), -np.ones(len(f_out), np.int64)])
    return InterventionTestSet(
        X_test=np.concatenate([X_in, X_out])[order],
        y_test=y[order],
        factors_test=np.concatenate([f_in, f_out])[order],
    )
