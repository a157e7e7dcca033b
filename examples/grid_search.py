"""
GridSearchCV over alpha and outlier-exposure corpora
====================================================

GridSearchCV over alpha and two outlier-exposure corpora given by path, with the novelty protocol.

    python examples/grid_search.py [--epochs 2] [--n 300] [--weights default|none --width 8] [--workdir DIR]

Labels follow scikit-learn: +1 normal, -1 anomaly; StratifiedKFold keeps both in every fold, and
each fold's fit trains on its normal rows only.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skad_transfer import ADIBDetector
from skad_transfer.data.synthetic import make_intervention_task, make_interventions

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--weights", default="default", help="theta0 ('none' for a random init of --width)")
parser.add_argument("--width", type=int, default=None, help="network width, only with --weights none")
parser.add_argument("--n", type=int, default=300)
parser.add_argument("--workdir", default=None)
args = parser.parse_args()
workdir = Path(args.workdir or tempfile.mkdtemp(prefix="skad_grid_"))

task = make_intervention_task(n_normal=args.n, n_outlier=args.n, n_test_per_intervention=args.n, random_state=0)
shape = task.tests["shape"]  # the intervention a prior helps with
X = np.concatenate([task.X_normal, shape.X_test])
y = np.concatenate([np.ones(len(task.X_normal), int), shape.y_test])

# Two corpora on disk: the task's own OE images, and objects on black backgrounds only.
np.save(workdir / "oe_task.npy", task.X_outlier)
np.save(workdir / "oe_black.npy", make_interventions(args.n, backgrounds=["black"], random_state=1,
                                                     return_factors=False))
grid = {"alpha": [1e-2, 1.0], "outlier_exposure": [str(workdir / "oe_task.npy"), str(workdir / "oe_black.npy")]}
weights = None if args.weights == "none" else args.weights
search = GridSearchCV(ADIBDetector(weights=weights, width=args.width, epochs=args.epochs, random_state=0), grid,
                      scoring="roc_auc",
                      cv=StratifiedKFold(3, shuffle=True, random_state=0))
search.fit(X, y)
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    print(f"{score:.3f}  {params}")
print("best_params_:", search.best_params_)
