"""Does theta0 carry semantics? kNN on pooled features, CIFAR-10 one-vs-rest, theta0 vs random init.

    python benchmarks/accuracy/knn_prior.py --data DATA_DIR [--classes 0 1 3 8] [--n-train 2000] [--k 2]

For each normal class: features of ``n_train`` training images of that class (pooled ResNet26
features, un-augmented), kNN-AD score (mean distance to the k nearest) of all 10,000 test images,
AUC with the class as normal. Same network shape, two initialisations: the embedded theta0
(``weights="default"``) and a random one. ``DATA_DIR`` is the folder holding ``cifar10-jpg.zip``.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import print_provenance  # noqa: E402

from skad_transfer import KNNDetector, LayerFeatures  # noqa: E402
from skad_transfer.data.datasets import load_image_folder  # noqa: E402
from skad_transfer.weights import resolve_weights  # noqa: E402

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="folder holding cifar10-jpg.zip")
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 1, 3, 8])
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--weights", default="default")
    args = parser.parse_args()
    print_provenance("auto", "auto")
    started = time.perf_counter()
    X_train, y_train, _ = load_image_folder(args.data / "cifar10-jpg.zip", split="train")
    X_test, y_test, _ = load_image_folder(args.data / "cifar10-jpg.zip", split="test")
    record = resolve_weights(args.weights)
    features = {"theta0": dict(weights=record),
                "random init": dict(weights=None, width=record.width, random_state=0)}
    X_test = np.asarray(X_test)
    rows = []
    for name, kwargs in features.items():
        # make_pipeline(LayerFeatures(), KNNDetector()) in two steps, so the test features are computed once.
        extractor = LayerFeatures(**kwargs).fit(X_test[:1])
        test_features = extractor.transform(X_test)
        aucs = []
        for c in args.classes:
            idx = np.flatnonzero(y_train == c)[: args.n_train]
            knn = KNNDetector(n_neighbors=args.k).fit(extractor.transform(X_train[idx]))
            aucs.append(roc_auc_score(y_test == c, knn.score_samples(test_features)))
        rows.append((name, aucs))
    print(f"theta0: {record.name} (width {record.width}, val top-1 {record.meta.get('val_top1')})")
    print(f"kNN-AD (k={args.k}) on pooled features, {args.n_train} normal training images per class, "
          f"all 10,000 test images; AUC (class = normal):")
    print(f"{'features':<14}" + "".join(f"{CLASSES[c]:>12}" for c in args.classes) + f"{'mean':>8}")
    for name, aucs in rows:
        print(f"{name:<14}" + "".join(f"{a:>12.3f}" for a in aucs) + f"{np.mean(aucs):>8.3f}")
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
