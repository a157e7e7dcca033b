"""
Quickstart: ADIB and ADRA on synthetic interventions
====================================================

ADIB and ADRA on synthetic interventions, in a few lines.

    python examples/quickstart.py [--epochs 4] [--width 16] [--weights default|none|PATH]
"""

import argparse

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
for Detector in (ADIBDetector, ADRADetector):
    det = Detector(weights=weights, width=args.width, epochs=args.epochs, random_state=0)
    det.fit(task.X_normal, task.X_outlier)
    aucs = {factor: roc_auc_score(test.y_test, det.score_samples(test.X_test)) for factor, test in task.tests.items()}
    print(Detector.__name__, {k: round(v, 3) for k, v in aucs.items()})
