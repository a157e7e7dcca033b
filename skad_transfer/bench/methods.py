"""The benchmark's method registry: method names, the factories that build their estimators, and
the settings every run shares.

:data:`METHODS` maps a name (``adib``, ``adra``, ``hsc``, ``dsvdd``, ``doc``, ``ewc``, ``knn``,
``ocsvm``) to a factory ``(settings, random_state, **method_params) -> estimator``;
:func:`make_estimator` validates a name and the settings and calls its factory. Estimators are
imported when a factory runs, so that reading the registry imports neither torch nor the detectors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .._registry import Registry

__all__ = ["DEFAULT_SETTINGS", "METHODS", "check_method", "check_settings", "make_estimator"]

#: Shared settings every method factory receives (and their defaults).
DEFAULT_SETTINGS: dict[str, Any] = {
    "epochs": None,  # None: the estimators' own training length (their ``steps``)
    "steps": None,
    "weights": "default",
    "width": None,
    "lr": 0.01,
    "batch_size": 128,  # the paper's 64 normal + 64 OE
    "device": "auto",
}


def _deep(cls_name: str, **fixed) -> Callable[..., Any]:
    def factory(settings: Mapping[str, Any], random_state: int, **extra):
        from .. import detectors

        cls = getattr(detectors, cls_name)
        kwargs = dict(weights=settings["weights"], width=settings["width"], epochs=settings["epochs"],
                      lr=settings["lr"], batch_size=settings["batch_size"], device=settings["device"],
                      random_state=random_state, verbose=False)
        if settings.get("steps") is not None:
            kwargs["steps"] = settings["steps"]
        return cls(**{**fixed, **kwargs, **extra})

    factory.__doc__ = f"{cls_name}({', '.join(f'{k}={v!r}' for k, v in fixed.items())}) with the shared settings"
    return factory


def _knn(settings, random_state, n_neighbors=2, layer="pooled", **extra):
    """LayerFeatures of theta0 (pooled) + kNN distance (kNN-AD)."""
    from sklearn.pipeline import make_pipeline

    from ..detectors import KNNDetector
    from ..features import LayerFeatures

    features = LayerFeatures(weights=settings["weights"], width=settings["width"], layer=layer,
                             device=settings["device"], random_state=random_state)
    return make_pipeline(features, KNNDetector(n_neighbors=n_neighbors, **extra))


def _ocsvm(settings, random_state, layer="stage3", nu=0.1, gamma="scale", **extra):
    """LayerFeatures of theta0 (stage3) + standardisation + one-class SVM (linear-probe baseline)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import OneClassSVM

    from ..features import LayerFeatures

    features = LayerFeatures(weights=settings["weights"], width=settings["width"], layer=layer,
                             device=settings["device"], random_state=random_state)
    return make_pipeline(features, StandardScaler(), OneClassSVM(nu=nu, gamma=gamma, **extra))


#: Method name -> factory ``(settings, random_state, **method_params) -> estimator``; the package's
#: one :class:`~skad_transfer._registry.Registry` (``METHODS.register(name, factory)`` adds one).
METHODS = Registry("method", {
    "adib": _deep("ADIBDetector"),
    "adra": _deep("ADRADetector"),
    "hsc": _deep("HSCDetector"),
    "dsvdd": _deep("DSVDDDetector"),
    "doc": _deep("DOCDetector"),
    "ewc": _deep("ADIBDetector", regularizer="ewc"),
    "knn": _knn,
    "ocsvm": _ocsvm,
}, unknown="unknown method {name!r}; valid methods are {choices}")


def check_method(name) -> str:
    """Return ``name`` if it is a key of :data:`METHODS`.

    Raises
    ------
    ValueError
        For any other value; the message lists the valid names.
    """
    if not isinstance(name, str) or name not in METHODS:
        raise METHODS.error(name)
    return name


def check_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a copy of ``settings`` with the missing keys of :data:`DEFAULT_SETTINGS` filled in.

    Raises
    ------
    ValueError
        If ``settings`` has a key that :data:`DEFAULT_SETTINGS` lacks; the message lists the valid keys.
    """
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(f"settings: unknown keys {unknown}; valid keys are {sorted(DEFAULT_SETTINGS)}")
    return {**DEFAULT_SETTINGS, **settings}


def make_estimator(method: str, settings: Mapping[str, Any] | None = None, *, random_state: int = 0,
                   **method_params):
    """Build the estimator of a named method.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`: ``adib``, ``adra``, ``hsc``, ``dsvdd``, ``doc``, ``ewc`` (ADIB with
        the EWC regularizer), ``knn`` (theta0 features + kNN), ``ocsvm`` (theta0 stage3 features +
        one-class SVM).
    settings : dict, optional
        Shared settings (keys of :data:`DEFAULT_SETTINGS`: epochs, weights, width, lr, batch_size,
        device); missing keys take their defaults. Feature-based methods use weights, width and
        device only.
    random_state : int, default=0
        Seed of the estimator.
    **method_params
        Extra constructor arguments of this method (e.g. ``alpha=0.1`` for adib,
        ``n_neighbors=5`` for knn).

    Returns
    -------
    estimator : scikit-learn estimator with ``fit`` and ``score_samples`` (higher = more normal)

    Raises
    ------
    ValueError
        For an unknown method (the message lists the valid ones) or unknown settings keys.
    """
    return METHODS[check_method(method)](check_settings(settings), random_state, **method_params)
