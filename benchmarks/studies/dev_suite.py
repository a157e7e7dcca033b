"""The development suite (issue 25): kNN-AD, the OC-SVM probe, ADIB and ADRA on five kinds of data.

    python benchmarks/studies/dev_suite.py --data DATA_DIR --out benchmarks/results/dev_suite/suite.jsonl
    python benchmarks/studies/dev_suite.py --table benchmarks/results/dev_suite/suite.jsonl

DATA_DIR holds ``cifar10-jpg.zip`` and ``tiny-imagenet-32.zip``. The kinds and their splits are
:mod:`skad_transfer.bench.devsuite` (CIFAR-10's training split only, rendered glyphs, shapes and
textures); per kind, classes ``--classes`` (default 0 and 3, the same rule for every kind) are
the normal class of a one-vs-rest task with 1,000 normal training images and 200 evaluation images
of every class; OE = Tiny-ImageNet-32's training split (100,000 images) for every kind.

Per task the script fits ADIB and ADRA with the library's defaults (only ``random_state`` set) and
records, besides the default ``score_samples``, every score the ablation of the score needs,
computed from the same fits: the logit alone, kNN on the fitted network's pooled features, the
standardised sums, and the frozen theta0's kNN (kNN-AD, the baseline) and OC-SVM probe. Each line of
``--out`` is one (kind, class, seed, method) with its AUC (anomaly = positive class) per score and
the fit's seconds; a finished one is skipped, so an interrupted run resumes. ``--table`` prints the
suite's table (mean AUC per kind) from a results file. Each invocation first appends a line
``{"provenance": ...}`` to ``--out`` (commit, versions, device, CPU, precision, threads:
``benchmarks/common``; lines written before it say ``"environment": true``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import PROVENANCE_KEY, is_provenance, provenance  # noqa: E402

METHODS = ("knn", "ocsvm", "adib", "adra")


def leave_one_out_knn(train: np.ndarray, queries: np.ndarray | None, k: int = 2):
    """kNN distances (mean of ``k``): of ``queries`` to ``train``, and of each training row to the
    others (leave-one-out), as the library's ``anomaly_score="logit+knn"`` standardises them."""
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=k + 1).fit(train)
    own = index.kneighbors(train, n_neighbors=k + 1)[0][:, 1:].mean(1)
    return own, None if queries is None else index.kneighbors(queries, n_neighbors=k)[0].mean(1)


def standardised(train_anomaly: np.ndarray, anomaly: np.ndarray) -> np.ndarray:
    return (anomaly - train_anomaly.mean()) / max(train_anomaly.std(), 1e-12)


def auc(y_eval: np.ndarray, anomaly: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y_eval == -1, anomaly)), 5)


def frozen_features(X_normal, X_eval):
    from skad_transfer import LayerFeatures

    pooled = LayerFeatures(precision="float32").fit(X_normal)
    stage3 = LayerFeatures(layer="stage3", precision="float32").fit(X_normal)
    return pooled.transform(X_normal), pooled.transform(X_eval), stage3.transform(X_normal), stage3.transform(X_eval)


def baselines(task, features) -> dict:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import OneClassSVM

    train, test, train3, test3 = features
    own, knn = leave_one_out_knn(train, test)
    probe = make_pipeline(StandardScaler(), OneClassSVM(nu=0.1, gamma="scale")).fit(train3)
    return {"knn": {"default": auc(task.y_eval, knn)},
            "ocsvm": {"default": auc(task.y_eval, -probe.score_samples(test3))}}, (own, knn)


def deep(task, cls, corpus, seed: int, precision: str, frozen_knn) -> tuple[dict, float, dict]:
    """AUC of every score variant of one default fit, its seconds and its fitted attributes of note."""
    from skad_transfer import LayerFeatures

    started = time.perf_counter()
    det = cls(random_state=seed, precision=precision, verbose=False).fit(task.X_normal, corpus)
    seconds = time.perf_counter() - started
    default = -det.score_samples(task.X_eval)
    logit_train = -det.set_params(anomaly_score="loss").score_samples(task.X_normal) if "anomaly_score" in det.get_params() \
        else -det.score_samples(task.X_normal)
    logit = -det.score_samples(task.X_eval)
    flipped = -det.score_samples(task.X_eval[:, :, ::-1] if task.X_eval.ndim == 4 else task.X_eval)
    features = LayerFeatures(backbone=det, precision="float32").fit(task.X_normal)
    own_ft, knn_ft = leave_one_out_knn(features.transform(task.X_normal), features.transform(task.X_eval))
    own_frozen, knn_frozen = frozen_knn
    z_logit = standardised(logit_train, logit)
    z_ft, z_frozen = standardised(own_ft, knn_ft), standardised(own_frozen, knn_frozen)
    scores = {
        "default": default, "logit": logit, "logit+flip": (logit + flipped) / 2, "knn-ft": knn_ft,
        "logit+knn-ft": z_logit + z_ft, "logit+knn-frozen": z_logit + z_frozen,
        "knn-ft+knn-frozen": z_ft + z_frozen, "logit+knn-ft+knn-frozen": z_logit + z_ft + z_frozen,
    }
    notes = {k: getattr(det, k) for k in ("match_histograms_", "intensity_separability_") if hasattr(det, k)}
    for k in ("oe_separability_",):
        if hasattr(det, k):
            notes[k] = getattr(det, k)
    notes["distinct_default_scores"] = int(len(np.unique(default)))
    return {name: auc(task.y_eval, s) for name, s in scores.items()}, seconds, notes


def run(args) -> None:
    from skad_transfer import ADIBDetector, ADRADetector
    from skad_transfer.bench.devsuite import load_outlier_exposure, make_task

    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            record = json.loads(line)
            if not is_provenance(record):
                done.add((record["kind"], record["class"], record["seed"], record["method"]))
    with args.out.open("a") as handle:
        handle.write(json.dumps({PROVENANCE_KEY: provenance("auto", args.precision)}) + "\n")
    corpus = load_outlier_exposure(args.data)
    for kind in args.kinds:
        for c in args.classes:
            for seed in args.seeds:
                todo = [m for m in args.methods if (kind, c, seed, m) not in done]
                if not todo:
                    continue
                task = make_task(kind, c, data_dir=args.data, seed=seed)
                features = frozen_features(task.X_normal, task.X_eval)
                base, frozen_knn = baselines(task, features)
                for method in todo:
                    record = {"kind": kind, "class": c, "class_name": task.class_name, "seed": seed, "method": method}
                    if method in base:
                        record["auc"] = base[method]
                    else:
                        cls = {"adib": ADIBDetector, "adra": ADRADetector}[method]
                        record["auc"], record["seconds"], notes = deep(task, cls, corpus, seed, args.precision,
                                                                       frozen_knn)
                        record.update(notes)
                    print(json.dumps(record), flush=True)
                    with args.out.open("a") as handle:
                        handle.write(json.dumps(record) + "\n")


def load(path: Path) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if not is_provenance(r)]


def table(path: Path, score: str = "default") -> str:
    """Mean AUC (%) per kind and method for one score variant of the deep methods, as markdown."""
    from skad_transfer.bench.devsuite import KINDS

    records = load(path)
    kinds = [k for k in KINDS if any(r["kind"] == k for r in records)]
    lines = ["| kind | classes | " + " | ".join(METHODS) + " | ADIB - kNN-AD |", "|---|---|" + "---|" * (len(METHODS) + 1)]
    means = {m: [] for m in METHODS}
    for kind in kinds:
        row, values = [], {}
        for m in METHODS:
            aucs = [r["auc"].get(score, r["auc"].get("default")) for r in records if r["kind"] == kind and r["method"] == m]
            values[m] = 100 * float(np.mean(aucs)) if aucs else float("nan")
            means[m].append(values[m])
            row.append(f"{values[m]:.1f}")
        classes = sorted({r["class_name"] for r in records if r["kind"] == kind})
        lines.append(f"| {kind} | {', '.join(classes)} | " + " | ".join(row) + f" | {values['adib'] - values['knn']:+.1f} |")
    overall = {m: float(np.mean(v)) for m, v in means.items()}
    lines.append("| **mean** | | " + " | ".join(f"**{overall[m]:.1f}**" for m in METHODS)
                 + f" | {overall['adib'] - overall['knn']:+.1f} |")
    return "\n".join(lines)


def ablation(path: Path) -> str:
    """Mean AUC (%) per kind of every recorded score variant of ADIB and ADRA."""
    from skad_transfer.bench.devsuite import KINDS

    records = load(path)
    kinds = [k for k in KINDS if any(r["kind"] == k for r in records)]
    out = []
    for method in ("adib", "adra"):
        rows = [r for r in records if r["method"] == method]
        if not rows:
            continue
        variants = list(rows[0]["auc"])
        out.append(f"\n{method}: | score | " + " | ".join(kinds) + " | mean | min margin over kNN-AD |")
        for v in variants:
            per_kind, margins = [], []
            for kind in kinds:
                aucs = [r["auc"][v] for r in rows if r["kind"] == kind]
                knn = [r["auc"]["default"] for r in records if r["kind"] == kind and r["method"] == "knn"]
                per_kind.append(100 * np.mean(aucs))
                margins.append(100 * (np.mean(aucs) - np.mean(knn)))
            out.append(f"| {v} | " + " | ".join(f"{x:.1f}" for x in per_kind)
                       + f" | {np.mean(per_kind):.1f} | {min(margins):+.1f} |")
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("SKAD_TRANSFER_DATA"))
    parser.add_argument("--kinds", nargs="+", default=None)
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dev_suite/suite.jsonl"))
    parser.add_argument("--table", type=Path, help="print the tables of this results file and exit")
    parser.add_argument("--score", default="default", help="with --table: the deep methods' score variant")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.table, args.score))
        print(ablation(args.table))
        return
    from skad_transfer.bench.devsuite import KINDS

    args.kinds = args.kinds or list(KINDS)
    if args.data is None:
        sys.exit("--data (or SKAD_TRANSFER_DATA) must name the folder with cifar10-jpg.zip and tiny-imagenet-32.zip")
    run(args)


if __name__ == "__main__":
    main()
