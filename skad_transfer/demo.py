"""``skad-transfer demo``: the paper's Figure 1 in miniature, on a laptop CPU, with no downloads.

Normal images show a red circle; the anomalies each change one factor (colour -> blue,
shape -> square, size -> large); the outlier-exposure corpus holds every other combination
(:func:`~skad_transfer.data.synthetic.make_intervention_task`). ADIB and ADRA start from the embedded
theta0 and are compared with two controls: ADIB from a random initialisation (no transfer) and ADIB
without its regularizer (transfer, but free to forget). The result is an AUC table and a bar chart.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from .cli import float_in, int_at_least
from .data.synthetic import make_intervention_task
from .detectors import ADIBDetector, ADRADetector
from .plotting import plot_interventions
from .weights import list_weights, resolve_weights


def methods(weights, width: int | None):
    """(label, detector factory) of the four models the demo compares."""
    return [
        ("ADIB", lambda **kw: ADIBDetector(weights=weights, **kw)),
        ("ADRA", lambda **kw: ADRADetector(weights=weights, **kw)),
        ("ADIB, random init", lambda **kw: ADIBDetector(weights=None, width=width, **kw)),
        ("ADIB, no regularizer", lambda **kw: ADIBDetector(weights=weights, regularizer=None, **kw)),
    ]


def run_demo(*, weights="default", n_normal=1000, n_outlier=2000, n_test=400, epochs=6, batch_size=128, lr=0.01,
             seed=0, device="auto", verbose=True, output: str | Path | None = "skad_transfer_demo.png"):
    """Fit the four models and return ``{method: {intervention: AUC}}`` (and write the chart)."""
    if weights == "default" and "default" not in list_weights():
        raise FileNotFoundError("the embedded theta0 ('default') is missing from this installation")
    record = resolve_weights(weights)
    output = _check_output(output)   # before the fits, not after them
    width = record.width if record is not None else 16
    task = make_intervention_task(n_normal, n_outlier, n_test, random_state=seed)
    table: dict[str, dict[str, float]] = {}
    for label, make in methods(weights, width):
        started = time.perf_counter()
        detector = make(epochs=epochs, batch_size=batch_size, lr=lr, device=device, random_state=seed,
                        verbose=verbose)
        detector.fit(task.X_normal, task.X_outlier)
        table[label] = {factor: roc_auc_score(test.y_test, detector.score_samples(test.X_test))
                        for factor, test in task.tests.items()}
        table[label]["seconds"] = time.perf_counter() - started
    if output is not None:
        plot_interventions(table, task.interventions, output)
    return table, task


def _check_output(output) -> Path | None:
    """The chart path, refused now if it is a folder or a format matplotlib cannot write."""
    if output is None:
        return None
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(output)
    if path.is_dir():
        raise IsADirectoryError(f"output {path}: is a directory; name the chart file (e.g. {path / 'demo.png'})")
    fmt = path.suffix[1:].lower() or "png"
    formats = FigureCanvasBase.get_supported_filetypes()
    if fmt not in formats:
        raise ValueError(f"output {path}: matplotlib cannot write {fmt!r} files; use one of {sorted(formats)}")
    return path


def format_table(table, interventions) -> str:
    factors = list(interventions)
    head = f"{'method':<22}" + "".join(f"{f + '->' + interventions[f]:>15}" for f in factors) + f"{'mean':>8}{'fit s':>8}"
    lines = ["AUC of each detector, normal images vs each intervention's images (1 = perfect, 0.5 = chance)",
             head, "-" * len(head)]
    for label, row in table.items():
        aucs = [row[f] for f in factors]
        lines.append(f"{label:<22}" + "".join(f"{a:>15.3f}" for a in aucs) + f"{np.mean(aucs):>8.3f}"
                     + f"{row['seconds']:>8.1f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default="default",
                        help="theta0: a registered name, a checkpoint path or 'none' (default: the embedded theta0)")
    # Numbers are checked while parsing: a bad value must not cost four fits first.
    parser.add_argument("--n-normal", type=int_at_least(2), default=1000, help="normal training images (red circles)")
    parser.add_argument("--n-outlier", type=int_at_least(2), default=2000,
                        help="outlier-exposure images (every colour, shape and size)")
    parser.add_argument("--n-test", type=int_at_least(2), default=400,
                        help="test images per intervention (half anomalous)")
    parser.add_argument("--epochs", type=int_at_least(1), default=6, help="training epochs of each detector")
    parser.add_argument("--lr", type=float_in(0, low_open=True), default=0.01, help="learning rate")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the data and of every fit")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--output", "-o", default="skad_transfer_demo.png", help="bar chart path ('' for none)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    weights = None if args.weights.lower() == "none" else args.weights
    started = time.perf_counter()
    table, task = run_demo(weights=weights, n_normal=args.n_normal, n_outlier=args.n_outlier, n_test=args.n_test,
                           epochs=args.epochs, lr=args.lr, seed=args.seed, device=args.device,
                           verbose=not args.quiet, output=args.output or None)
    record = resolve_weights(weights)
    source = "random initialisation" if record is None else f"{record.name} (width {record.width}, " \
        f"{record.meta.get('dataset', 'unknown data')}, val top-1 {record.meta.get('val_top1', 'n/a')})"
    print(f"\ntheta0: {source}")
    print(f"normal: {task.normal}; {len(task.X_normal)} normal, {len(task.X_outlier)} OE images, "
          f"{args.epochs} epochs each\n")
    print(format_table(table, task.interventions))
    if args.output:
        print(f"\nbar chart: {Path(args.output).resolve()}")
    print(f"wall time: {time.perf_counter() - started:.0f} s")
    return 0
