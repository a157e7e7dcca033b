"""CIFAR-10 one-vs-rest AUC of ADIB, ADRA and the paper's baselines on one theta0 and one OE corpus.

    python benchmarks/accuracy/cifar10_baselines.py --data DATA_DIR --classes 0 3 8 --epochs 3 \
        [--out benchmarks/results/cifar10_baselines]

Protocol (paper Table 5, at CPU scale): one class is normal (its 5,000 training images), all 10,000
test images are scored, AUC with the normal class as positive (equivalently, anomaly-positive AUC of
the negated score). Every method starts from the same theta0 (``--weights``, default: the embedded
ResNet26 width 16) and, where it uses outlier exposure, the same corpus: Tiny-ImageNet-32's training
split (``outlier_exposure="tinyimagenet"``, read from ``--data``, the folder holding
``cifar10-jpg.zip`` and ``tiny-imagenet-32.zip``). Deep methods share the training
engine and its settings (``--epochs``, lr 0.01, batch 64 + 64). Results go to a CSV and a markdown
table under ``--out``; finished (method, class) cells are kept and skipped on a rerun. Each invocation
that runs a cell first appends its provenance record (commit, versions, device, precision, threads:
``benchmarks/common``) to ``--out``/``provenance.jsonl``; the stored ``results/cifar10_baselines/``
predates it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import PROVENANCE_KEY, provenance  # noqa: E402

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def methods(weights: str, epochs: int, seed: int):
    from skad_transfer import (ADIBDetector, ADRADetector, DSVDDDetector, HSCDetector, KNNDetector,
                               LayerFeatures)

    deep = dict(weights=weights, epochs=epochs, random_state=seed, outlier_exposure="tinyimagenet")
    return {
        "ADIB": lambda: ADIBDetector(**deep),
        "ADRA": lambda: ADRADetector(**deep),
        "HSC": lambda: HSCDetector(**deep),
        "DSVDD": lambda: DSVDDDetector(**deep),
        "EWC": lambda: ADIBDetector(regularizer="ewc", **deep),
        "kNN-AD": lambda: make_pipeline(LayerFeatures(weights=weights), KNNDetector(n_neighbors=2)),
        "OC-SVM probe": lambda: make_pipeline(LayerFeatures(weights=weights, layer="stage3"), StandardScaler(),
                                              OneClassSVM(nu=0.1, gamma="scale")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path,
                        help="folder holding cifar10-jpg.zip and tiny-imagenet-32.zip")
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 3, 8])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--weights", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--out", default="benchmarks/results/cifar10_baselines")
    args = parser.parse_args()
    # This script's own process: the registered corpus "tinyimagenet" is looked up under $SKAD_TRANSFER_DATA.
    os.environ["SKAD_TRANSFER_DATA"] = str(args.data.resolve())
    from skad_transfer.data.datasets import load_image_folder

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "runs.csv"
    done = {}
    if store.is_file():
        with open(store) as handle:
            done = {(r["method"], int(r["class"])): r for r in csv.DictReader(handle)}
    X_train, y_train, _ = load_image_folder(args.data / "cifar10-jpg.zip", split="train")
    X_test, y_test, _ = load_image_folder(args.data / "cifar10-jpg.zip", split="test")
    X_test = np.asarray(X_test)
    factories = methods(args.weights, args.epochs, args.seed)
    chosen = args.methods or list(factories)
    started = time.perf_counter()
    header = {PROVENANCE_KEY: provenance("auto", "auto", arguments=sys.argv[1:])}
    for c in args.classes:
        X_normal = np.asarray(X_train[y_train == c])
        for name in chosen:
            if (name, c) in done:
                continue
            if header is not None:  # one line per invocation that runs anything, before its first run
                with open(out / "provenance.jsonl", "a") as handle:
                    handle.write(json.dumps(header) + "\n")
                header = None
            t0 = time.perf_counter()
            model = factories[name]().fit(X_normal)
            auc = roc_auc_score(y_test == c, model.score_samples(X_test))
            row = {"method": name, "class": c, "class_name": CLASSES[c], "auc": f"{auc:.4f}",
                   "seconds": f"{time.perf_counter() - t0:.1f}", "epochs": args.epochs, "weights": args.weights}
            done[(name, c)] = row
            new = not store.is_file()
            with open(store, "a", newline="") as handle:  # one line per finished run: a rerun skips it
                writer = csv.DictWriter(handle, fieldnames=list(row))
                if new:
                    writer.writeheader()
                writer.writerow(row)
            print(f"{name:<14}{CLASSES[c]:<12}AUC {auc:.3f}  ({row['seconds']} s)", flush=True)
    lines = ["| method | " + " | ".join(CLASSES[c] for c in args.classes) + " | mean |",
             "|---|" + "---|" * (len(args.classes) + 1)]
    for name in chosen:
        aucs = [float(done[(name, c)]["auc"]) for c in args.classes]
        lines.append(f"| {name} | " + " | ".join(f"{a:.3f}" for a in aucs) + f" | {np.mean(aucs):.3f} |")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    print(table)
    print(f"wall time this run: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
