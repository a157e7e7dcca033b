"""
GridSearchCV over alpha and outlier-exposure corpora
====================================================

GridSearchCV over alpha and two outlier-exposure corpora given by path, with the novelty protocol.

    python examples/grid_search.py [--epochs 2] [--n 300] [--weights default|none --width 8] [--workdir DIR]

Labels follow scikit-learn: +1 normal, -1 anomaly; StratifiedKFold keeps both in every fold, and
each fold's fit trains on its normal rows only. The figure shows each grid point's cross-validated
AUC (mean and standard deviation over the folds).
"""

import argparse
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
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
results = search.cv_results_
print("mean cross-validated AUC (normal = positive class), per grid point:")
for params, score in zip(results["params"], results["mean_test_score"]):
    print(f"{score:.3f}  {params}")
print("best_params_:", search.best_params_)

labels = [f"alpha={p['alpha']:g}\n{Path(p['outlier_exposure']).stem}" for p in results["params"]]
fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
ax.bar(range(len(labels)), results["mean_test_score"], yerr=results["std_test_score"], capsize=4, color="0.6")
ax.set_xticks(range(len(labels)), labels)
ax.set(ylabel="cross-validated AUC", ylim=(0, 1), title="GridSearchCV over alpha and OE corpora")
plt.show()
