"""Pickling of the estimators that hold a network: CPU tensors in the file, the device back on load, versions.

:class:`PortableNetworkMixin` is shared by the detectors and :class:`~skad_transfer.LayerFeatures`:
a model fitted on CUDA pickles with CPU tensors (so it loads on a machine without CUDA) and goes
back to its device, or to the CPU where that device does not exist, when loaded. Pickles carry the
skad-transfer version; loading under another one warns with :class:`InconsistentVersionWarning`.
A pickle made before a constructor parameter existed gets that parameter's default, so
``get_params`` (and ``clone``) keep working on it.
"""

from __future__ import annotations

import copy
import inspect
import warnings

import torch

from ._version import __version__

__all__ = ["InconsistentVersionWarning", "PortableNetworkMixin"]

_VERSION_KEY = "_skad_transfer_version"
"""Where pickled estimators keep the skad-transfer version that pickled them."""


class InconsistentVersionWarning(UserWarning):
    """An estimator was unpickled by another skad-transfer version than the one that pickled it.

    The fitted network and attributes may not mean the same thing in this version: refit, or load
    the pickle with the version it names. Like every pickle, it runs code when loaded: load only
    files you trust.

    Attributes
    ----------
    estimator_name : str
    original_version : str
        The version that pickled the estimator (``"unknown"`` for pickles made before versions
        were recorded).
    current_version : str
    """

    def __init__(self, *, estimator_name: str, original_version: str, current_version: str):
        self.estimator_name = estimator_name
        self.original_version = original_version
        self.current_version = current_version
        super().__init__(
            f"{estimator_name} was pickled by skad-transfer version {original_version} and is loaded by "
            f"version {current_version}; its fitted state may not be valid here: refit it, or load it "
            f"with skad-transfer {original_version}"
        )


class PortableNetworkMixin:
    """``__getstate__``/``__setstate__`` for estimators holding ``network_`` on ``device_`` (see the
    module docstring). Put it before scikit-learn's ``BaseEstimator`` in the bases."""

    def __getstate__(self):
        return _portable_network_state(super().__getstate__())

    def __setstate__(self, state):
        for name, parameter in inspect.signature(type(self).__init__).parameters.items():
            if parameter.kind == parameter.KEYWORD_ONLY and name not in state:
                state[name] = parameter.default
        super().__setstate__(state)
        _restore_network_device(self, state)


def _portable_network_state(state) -> dict:
    """``__getstate__`` for estimators holding ``network_`` on ``device_``: CPU tensors in the pickle,
    so that a model fitted on CUDA loads anywhere, and the skad-transfer version that pickled it."""

    state = dict(state)  # object.__getstate__ returns the live __dict__
    state[_VERSION_KEY] = __version__
    if "network_" in state:
        network = state["network_"]
        state["network_"] = copy.deepcopy(network).cpu() if any(
            t.device.type != "cpu" for t in network.state_dict().values()) else network
        state["device_"] = str(state["device_"])
    return state


def _restore_network_device(estimator, state) -> None:
    """The ``__setstate__`` half of :func:`_portable_network_state`, called after the state is set:
    back to ``device_``, or to the CPU where that CUDA device does not exist; warns with
    :class:`InconsistentVersionWarning` when another skad-transfer version (or one from before
    versions were recorded) pickled it."""

    estimator.__dict__.pop(_VERSION_KEY, None)
    original = state.get(_VERSION_KEY, "unknown")
    if original != __version__:
        warnings.warn(InconsistentVersionWarning(estimator_name=type(estimator).__name__,
                                                 original_version=original, current_version=__version__),
                      stacklevel=3)
    if "network_" in state:
        device = torch.device(state["device_"])
        if device.type == "cuda" and (not torch.cuda.is_available() or
                                      (device.index or 0) >= torch.cuda.device_count()):
            device = torch.device("cpu")
        estimator.device_ = device
        estimator.network_ = estimator.network_.to(device)
