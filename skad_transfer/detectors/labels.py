"""What ``fit``'s second argument is: novelty labels (+1 normal, -1 anomaly) or an outlier-exposure
corpus, told apart by type and shape; and which rows labels select.

scikit-learn passes labels there (``GridSearchCV``, ``cross_val_score``, its estimator checks, which
pass class labels for an outlier detector to ignore), users the OE corpus
(``fit(X_normal, X_outlier)``). Only +1 and -1 are read as labels; other numbers are ignored, as
scikit-learn's outlier detectors ignore them, but never silently (:class:`LabelsIgnoredWarning`).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from ..data.corpora import OutlierCorpus
from ..data.images import to_numpy

__all__ = ["LABEL_CONVENTION", "LabelsIgnoredWarning", "check_novelty_labels", "split_second_argument"]

LABEL_CONVENTION = "+1 normal, -1 anomaly"
"""Novelty labels, as ``fit`` reads its ``y``."""


class LabelsIgnoredWarning(UserWarning):
    """``fit`` got a ``y`` of numbers that are not novelty labels (+1 normal, -1 anomaly), such as
    class labels or PyOD's 0/1, and ignored it: every row of ``X`` trained as normal.

    scikit-learn's outlier detectors ignore such a ``y`` (its estimator checks pass class labels and
    expect that); these detectors say so, since 0/1 labels with 1 = anomaly would otherwise put the
    anomalies into training without a word. Turn it into an error with
    ``warnings.simplefilter("error", LabelsIgnoredWarning)``.
    """


def check_novelty_labels(y, n_samples: int, *, name: str = "y") -> np.ndarray:
    """The normal rows that novelty labels select: ``y == +1`` (normal) as opposed to ``-1`` (anomaly).

    Only +1 and -1 are read as labels. Other numbers (class labels, PyOD's 0/1 with 1 = anomaly)
    select every row, with a :class:`LabelsIgnoredWarning` that names the values and the conversion
    to novelty labels: read as "not -1" they would train on the anomalies as if they were normal.
    Booleans, NaN and non-numeric values are an error: they do not say which rows are normal.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        +1 or -1 per row, as ints or floats.
    n_samples : int
        The rows of X that ``y`` labels.
    name : str, default="y"
        The argument named in errors.

    Returns
    -------
    normal : ndarray of bool, shape (n_samples,)

    Raises
    ------
    ValueError
        For another shape, length, dtype or value, or when no row is normal; the message names
        ``name`` and states the convention.
    """
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"{name}: expected 1-D labels of shape ({n_samples},) ({LABEL_CONVENTION}), "
                         f"got shape {labels.shape}")
    if labels.shape[0] != n_samples:
        raise ValueError(f"{name}: expected {n_samples} labels (one per row of X; {LABEL_CONVENTION}), "
                         f"got {labels.shape[0]}")
    if labels.dtype.kind == "b":
        raise ValueError(f"{name}: boolean labels are ambiguous (does True mark normal rows or anomalies?); "
                         f"pass {LABEL_CONVENTION}, e.g. np.where(is_anomaly, -1, 1)")
    if labels.dtype.kind not in "iuf":
        raise ValueError(f"{name}: Unknown label type: expected numeric labels ({LABEL_CONVENTION}), "
                         f"got dtype {labels.dtype}")
    if not np.isfinite(labels).all():
        raise ValueError(f"{name}: labels must be finite ({LABEL_CONVENTION}), got NaN or infinity")
    if not ((labels == 1) | (labels == -1)).all():
        found = np.unique(labels)
        shown = ", ".join(f"{v:g}" for v in found[:6].tolist()) + (", ..." if len(found) > 6 else "")
        warnings.warn(
            f"{name}: values {{{shown}}} are not novelty labels ({LABEL_CONVENTION}), so {name} is ignored and every "
            f"row of X trains as normal, as scikit-learn's outlier detectors ignore class labels. If 1 marks "
            f"anomalies (PyOD's convention) pass np.where({name} == 1, -1, 1); if it marks normal rows, "
            f"np.where({name} == 1, 1, -1)", LabelsIgnoredWarning, stacklevel=3)
        return np.ones(n_samples, dtype=bool)
    normal = labels == 1
    if not normal.any():
        raise ValueError(f"{name}: every row is labelled -1 (anomaly); at least one normal (+1) row is needed")
    return normal


def split_second_argument(y, *, name: str = "y") -> tuple[object, np.ndarray | None]:
    """What ``fit``'s second argument is: ``(corpus, None)``, ``(None, labels)`` or ``(None, None)``.

    scikit-learn passes labels there (``GridSearchCV``, ``cross_val_score``), users the OE corpus
    (``fit(X_normal, X_outlier)``). They are told apart by type and shape, without reading data:

    * None: neither;
    * a corpus name, a path or an :class:`~skad_transfer.data.corpora.OutlierCorpus`: the corpus;
    * an array, tensor or list: 1-D is labels, 2-D or more the corpus (kept as given, so that a
      memory map or an h5py array is read lazily). One column, ``(n, 1)``, is an error: it is as much
      a column of labels as n one-pixel images;
    * a map-style dataset (``__getitem__`` and ``__len__``): the corpus, as for ``X_outlier=``;
    * a ``DataLoader``, an iterable dataset, an iterator or anything else: a ``TypeError``. A corpus
      is drawn from at random, which needs random access, and ``np.asarray`` would walk them whole.
    """
    if y is None:
        return None, None
    if isinstance(y, (str, os.PathLike, OutlierCorpus)):
        return y, None
    if isinstance(y, torch.utils.data.DataLoader):
        raise TypeError(f"{name}: a DataLoader cannot be the outlier-exposure corpus, which is drawn from at random "
                        f"and needs random access; pass its dataset instead, X_outlier=loader.dataset (items: "
                        f"images or (image, label) pairs)")
    shape = None
    if isinstance(y, (list, tuple)):
        shape = (len(y), *np.shape(y[0])) if len(y) else (0,)
    elif hasattr(y, "shape"):
        shape = tuple(y.shape)
    elif hasattr(y, "__array__") or hasattr(y, "__array_interface__"):
        y = np.asarray(y)  # an array-like without a shape (scikit-learn's _NotAnArray) converts as a whole
        shape = y.shape
    if shape is not None:
        if len(shape) == 1:
            return None, np.asarray(to_numpy(y, name))
        if len(shape) == 2 and shape[1] == 1:
            raise ValueError(
                f"{name}: shape {shape} is ambiguous: a column of labels, or {shape[0]} one-pixel images? Pass labels "
                f"1-D ({LABEL_CONVENTION}; y.ravel()), or the outlier-exposure corpus by keyword, X_outlier="
            )
        if len(shape) >= 2:
            return y, None
    elif (hasattr(y, "__getitem__") and hasattr(y, "__len__")
          and not isinstance(y, torch.utils.data.IterableDataset)):
        return y, None
    hint = ("; an iterator cannot be drawn from at random: collect its images into an array and pass it as "
            "X_outlier= (or outlier_exposure=)") if hasattr(y, "__iter__") else ""
    raise TypeError(
        f"{name}: fit's second argument is 1-D labels ({LABEL_CONVENTION}) or an outlier-exposure corpus (an image "
        f"array or tensor, a corpus name or path, or an indexable dataset), got {type(y).__name__}{hint}"
    )
