"""The library's defaults against single changes, on the development protocol (never the test set).

    python benchmarks/dev_defaults.py --data DATA_DIR --classes 0 2 3 5 8 \\
        --variants default jpeg=none steps=300 "steps=300 jpeg=none" --out dev_defaults.jsonl

DATA_DIR holds ``cifar10-jpg.zip`` and ``tiny-imagenet-32.zip``. Per class, CIFAR-10 training
images 0..3999 (position within the class) are the normal training set and images 4000..4999 of all
ten classes (10,000 images) the evaluation set; OE = all Tiny-ImageNet-32 training images. Each
variant is ``ADIBDetector(**defaults, **changes, random_state=seed)``, with changes written as
``name=value`` (``none`` for None; several in one quoted argument); ``knn`` adds kNN-AD on theta0
(``LayerFeatures`` + ``KNNDetector`` defaults) for reference. Prints one line per fit (AUC with the
anomaly as positive class, fit seconds) and appends it to ``--out`` as JSON; a finished
(variant, class, seed) in ``--out`` is skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import numpy as np


def dev_split(data_dir: Path):
    from skad_transfer.data.datasets import load_image_folder, load_tiny_imagenet

    X, y, names = load_image_folder(data_dir / "cifar10-jpg.zip", split="train")
    y = np.asarray(y)
    position = np.zeros(len(y), dtype=int)
    for c in range(len(names)):
        index = np.flatnonzero(y == c)
        position[index] = np.arange(len(index))
    oe, _, _ = load_tiny_imagenet(data_dir / "tiny-imagenet-32.zip", split="train")
    return np.asarray(X), y, position < 4000, position >= 4000, oe, list(names)


def parse_variant(text: str) -> dict:
    if text in ("default", "knn"):
        return {}
    changes = {}
    for item in text.split():
        key, value = item.split("=", 1)
        changes[key] = None if value.lower() == "none" else ast.literal_eval(value)
    return {("jpeg_quality" if k == "jpeg" else k): v for k, v in changes.items()}


def main(argv=None) -> None:
    from sklearn.metrics import roc_auc_score

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 2, 3, 5, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=["knn", "default", "jpeg=none"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", type=Path, default=Path("dev_defaults.jsonl"))
    args = parser.parse_args(argv)

    from skad_transfer import ADIBDetector, KNNDetector, LayerFeatures

    X, y, train, evaluate, oe, names = dev_split(args.data)
    done = set()
    if args.out.exists():
        done = {(r["variant"], r["class"], r["seed"]) for r in map(json.loads, args.out.read_text().splitlines())}
    X_eval = X[evaluate]
    for c in args.classes:
        normal = X[train & (y == c)]
        anomalous = y[evaluate] != c
        for variant in args.variants:
            for seed in args.seeds:
                if (variant, c, seed) in done:
                    continue
                started = time.perf_counter()
                if variant == "knn":
                    features = LayerFeatures(device=args.device).fit(normal)
                    knn = KNNDetector().fit(features.transform(normal))
                    scores = knn.score_samples(features.transform(X_eval))
                else:
                    det = ADIBDetector(**parse_variant(variant), device=args.device, precision=args.precision,
                                       random_state=seed, verbose=False).fit(normal, oe)
                    scores = det.score_samples(X_eval)
                record = {"variant": variant, "class": c, "class_name": names[c], "seed": seed,
                          "auc": float(roc_auc_score(anomalous, -scores)),
                          "seconds": round(time.perf_counter() - started, 1)}
                print(json.dumps(record), flush=True)
                with args.out.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
