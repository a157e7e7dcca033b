"""The package's figures: the demo's chart and the benchmark report's figures, drawn from numbers.

Every function takes what it draws (AUC tables, curves, images, an embedding) and a path, writes
the figure atomically (:func:`skad_transfer._io.save_figure`, format from the suffix) and returns
the path. Nothing here reads a result store or fits a model: the callers
(:mod:`skad_transfer.demo`, :mod:`skad_transfer.bench.report`) do. matplotlib is imported on first
use, with the non-interactive Agg backend, so that importing the package needs no display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ._io import save_figure

__all__ = ["plot_embedding", "plot_image_grid", "plot_interventions", "plot_shift"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _subplots(*args, **kwargs):
    """``plt.subplots`` on the Agg backend: ``(figure, axes)``."""
    return _pyplot().subplots(*args, **kwargs)


def _finish(fig, path) -> Path:
    """Lay out, write atomically (an interrupted run never leaves half a PNG) and close."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    _pyplot().close(fig)
    return path


def plot_interventions(table: Mapping[str, Mapping[str, float]], interventions: Mapping[str, str], path) -> Path:
    """Grouped bars: AUC per intervention (x) and method (colour), like the paper's Figure 1.

    Parameters
    ----------
    table : dict of str to dict of str to float
        Method label -> intervened factor -> AUC (other keys are ignored).
    interventions : dict of str to str
        Factor -> its changed value, in the order of the bars (``{"color": "blue", ...}``).
    path : str or path-like
        The figure file.

    Returns
    -------
    path : Path
    """
    factors = list(interventions)
    fig, ax = _subplots(figsize=(7, 4.0), dpi=120)
    width = 0.8 / len(table)
    for i, (label, row) in enumerate(table.items()):
        x = np.arange(len(factors)) + (i - (len(table) - 1) / 2) * width
        ax.bar(x, [row[f] for f in factors], width, label=label)
    ax.axhline(0.5, color="gray", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(factors)), [f"{f}: -> {interventions[f]}" for f in factors])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("AUC")
    ax.set_title("Detection under interventions (synthetic; normal = red small circle)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(table), frameon=False)
    return _finish(fig, path)


def plot_shift(curves: Mapping[str, tuple[Sequence, Sequence, Sequence]], steps: Sequence[int],
               tick_labels: Sequence[str], path) -> Path:
    """AUC against the number of normal colours, one line (mean, shaded std) per method: Figure 2.

    Parameters
    ----------
    curves : dict of str to (steps, means, stds)
        Method label -> the steps it has a result for, and its AUC mean and std there.
    steps, tick_labels : sequence
        The x ticks and their labels.
    path : str or path-like
        The figure file.

    Returns
    -------
    path : Path
    """
    fig, ax = _subplots(figsize=(6, 4.0), dpi=120)
    for label, (xs, means, stds) in curves.items():
        means, stds = np.asarray(means, dtype=float), np.asarray(stds, dtype=float)
        ax.plot(xs, means, marker="o", label=label)
        ax.fill_between(xs, means - stds, means + stds, alpha=0.2)
    ax.axhline(0.5, color="gray", lw=0.8, ls="--")
    ax.set_xticks(steps, tick_labels, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("number of normal colours")
    ax.set_ylabel("AUC")
    ax.set_title("Robustness to non-semantic colour shift")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_image_grid(images: Sequence, is_anomaly: Sequence[bool], title: str, path, *, columns: int = 8) -> Path:
    """Images in rows of ``columns``, each titled ``#rank anomaly`` (red) or ``#rank normal`` (blue): Figure 4.

    Parameters
    ----------
    images : sequence of (H, W, C) or (H, W) images
        In rank order (the most anomalous first).
    is_anomaly : sequence of bool
        The true label of each image.
    title : str
        The figure's title.
    path : str or path-like
        The figure file.
    columns : int, default=8
        Images per row (fewer when there are fewer images).

    Returns
    -------
    path : Path
    """
    cols = min(len(images), columns)
    rows = int(np.ceil(len(images) / cols))
    fig, axes = _subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows + 0.5), dpi=120, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for rank, (ax, image, anomalous) in enumerate(zip(axes.ravel(), images, is_anomaly), start=1):
        ax.imshow(np.asarray(image))
        ax.set_title(f"#{rank} {'anomaly' if anomalous else 'normal'}", fontsize=7,
                     color="tab:red" if anomalous else "tab:blue")
    fig.suptitle(title, fontsize=8)
    return _finish(fig, path)


def plot_embedding(embedding, is_anomaly, title: str, path, *, classes=None) -> Path:
    """A 2-D embedding of test images (t-SNE): Figure 3.

    Parameters
    ----------
    embedding : array-like of shape (n, 2)
    is_anomaly : array-like of bool, shape (n,)
    title : str
    path : str or path-like
        The figure file.
    classes : array-like of str, shape (n,), optional
        Class names: points are coloured by class, as in the paper, and anomalies ringed; without
        them, by normal (blue) and anomaly (red).

    Returns
    -------
    path : Path
    """
    E, anomalous = np.asarray(embedding), np.asarray(is_anomaly, dtype=bool)
    fig, ax = _subplots(figsize=(5, 5), dpi=120)
    if classes is not None:
        names, codes = np.unique(np.asarray(classes), return_inverse=True)
        cmap = _pyplot().get_cmap("tab10")
        for k, name in enumerate(names):
            m = codes == k
            ax.scatter(E[m, 0], E[m, 1], s=10, color=cmap(k % 10), label=str(name), alpha=0.8)
        ax.scatter(E[anomalous, 0], E[anomalous, 1], s=40, facecolors="none", edgecolors="black", lw=0.6,
                   label="anomaly")
    else:
        for mask, label, color in ((~anomalous, "normal", "tab:blue"), (anomalous, "anomaly", "tab:red")):
            ax.scatter(E[mask, 0], E[mask, 1], s=8, c=color, label=label, alpha=0.7)
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8)
    return _finish(fig, path)
