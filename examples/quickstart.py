"""
Quickstart: ADIB and ADRA on synthetic interventions
====================================================

ADIB and ADRA on synthetic interventions, in a few lines: fit on normal images (red small circles)
and an outlier-exposure corpus, then score test sets in which one factor (colour, shape or size) is
changed. The figure shows where the scores fall: ``score_samples`` is higher for more normal
images, and ``predict`` calls an image anomalous (-1) below the detector's ``offset_``.

    python examples/quickstart.py [--epochs 4] [--width 16] [--weights default|none|PATH]
"""

import argparse

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_auc_score

from skad_transfer import ADIBDetector, ADRADetector, list_weights
from skad_transfer.data.synthetic import make_intervention_task

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=4)
parser.add_argument("--width", type=int, default=None, help="only with --weights none")
parser.add_argument("--weights", default="default" if "default" in list_weights() else "none")
parser.add_argument("--n-normal", type=int, default=500)
args = parser.parse_args()
weights = None if args.weights == "none" else args.weights

task = make_intervention_task(n_normal=args.n_normal, n_outlier=2 * args.n_normal, n_test_per_intervention=200,
                              random_state=0)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True, layout="constrained")
for ax, Detector in zip(axes, (ADIBDetector, ADRADetector)):
    det = Detector(weights=weights, width=args.width, epochs=args.epochs, random_state=0)
    det.fit(task.X_normal, task.X_outlier)
    scores = {factor: det.score_samples(test.X_test) for factor, test in task.tests.items()}
    aucs = {factor: roc_auc_score(test.y_test, scores[factor]) for factor, test in task.tests.items()}
    print(Detector.__name__, "AUC (normal = positive class):", {k: round(v, 3) for k, v in aucs.items()})

    normal = np.concatenate([scores[f][test.y_test == 1] for f, test in task.tests.items()])
    bins = np.histogram_bin_edges(np.concatenate(list(scores.values())), bins=40)
    ax.hist(normal, bins=bins, color="0.6", label="normal test images")
    for factor, test in task.tests.items():
        ax.hist(scores[factor][test.y_test == -1], bins=bins, histtype="step", linewidth=1.5,
                label=f"{factor} changed (AUC {aucs[factor]:.2f})")
    ax.axvline(det.offset_, color="k", linestyle="--", label="offset_ (predict: -1 left of it)")
    ax.set(title=Detector.__name__, xlabel="score_samples (higher = more normal)")
    ax.legend(fontsize="x-small", loc="upper left")
axes[0].set_ylabel("test images")
plt.show()
