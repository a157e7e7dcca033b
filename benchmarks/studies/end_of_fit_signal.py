"""Issue 25, goal 6's second signal: does a fit *end* with a boundary that calls things like the
training set normal, and can a fit tell without anomalies?

    python benchmarks/studies/end_of_fit_signal.py --data DATA_DIR --out benchmarks/results/dev_suite/end_signal.jsonl
    python benchmarks/studies/end_of_fit_signal.py --data DATA_DIR --out benchmarks/results/dev_suite/end_signal_candidates.jsonl
    python benchmarks/studies/end_of_fit_signal.py --table benchmarks/results/dev_suite/end_signal_candidates.jsonl

(The second run measures the fits the first saved; the committed ``end_signal.jsonl`` was written by
an earlier version of this script that measured the two shuffles only.)

Per development-suite task (:mod:`skad_transfer.bench.devsuite`, classes 0 and 3 of every kind, the
suite's sizes, seed 0) the script makes one ADIB fit with the library's defaults and measures, on the
fitted network's logit alone (``anomaly_score="loss"``, what the OE corpus taught):

- what a user cannot see (the task's anomalies): ``anomaly_pass``, the fraction of the evaluation
  anomalies that score at least as normal as the 10% quantile of the evaluation normal images (a
  boundary at 10% false alarms), and the logit's AUC;
- what a fit can see without anomalies (candidates for the signal): the same pass rate and AUC for
  *pseudo-anomalies made from the normal training images*, measured against the normal training
  images themselves: their tiles shuffled on a ``g x g`` grid (``shuffle{g}``: colours, textures and
  format kept, objects broken), pairs of them averaged (``mixup``: no edge of its own, the object
  doubled), and a quarter turn (``rot90``); and each made from the held-out normal images and measured
  against them (``heldout-*``: what a fit with ``validation_fraction`` could see).

A candidate is worth a warning if it is high exactly where ``anomaly_pass`` is high and the logit
loses to kNN-AD (``--suite``, the development suite's results file, gives kNN-AD's AUC per task).
Each fitted detector is saved under ``--models`` (git-ignored) so that other candidates can be
measured without refitting: a run with another ``--out`` and the same ``--models`` measures the saved
fits again. Each line of ``--out`` is one task; finished tasks are skipped.
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

GRIDS = (2, 4)


def shuffled_tiles(images: np.ndarray, grid: int, seed: int = 0) -> np.ndarray:
    """``images`` (N, H, W[, C]) with their ``grid x grid`` tiles permuted at random, per image (the
    permutation never the identity); edges that do not divide stay in place."""
    rng = np.random.default_rng([seed, grid])
    out = images.copy()
    h, w = images.shape[1] // grid, images.shape[2] // grid
    tiles = [(r * h, c * w) for r in range(grid) for c in range(grid)]
    for i in range(len(images)):
        order = rng.permutation(len(tiles))
        while (order == np.arange(len(tiles))).all():
            order = rng.permutation(len(tiles))
        for (r, c), source in zip(tiles, order):
            sr, sc = tiles[source]
            out[i, r:r + h, c:c + w] = images[i, sr:sr + h, sc:sc + w]
    return out


def mixed_pairs(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each image averaged with another of ``images`` (a random pairing without fixed points): the
    kind of image kept, with no edge of its own, the object doubled."""
    rng = np.random.default_rng([seed, 7])
    partner = (np.arange(len(images)) + rng.integers(1, len(images), len(images))) % len(images)
    return ((images.astype(np.uint16) + images[partner]) // 2).astype(images.dtype)


def pseudo_anomalies(images: np.ndarray) -> dict:
    """The candidates: tiles shuffled on each of :data:`GRIDS`, pairs mixed, a quarter turn."""
    out = {f"shuffle{g}": shuffled_tiles(images, g) for g in GRIDS}
    out["mixup"] = mixed_pairs(images)
    out["rot90"] = np.ascontiguousarray(np.rot90(images, 1, axes=(1, 2)))
    return out


def pass_rate(normal: np.ndarray, others: np.ndarray, quantile: float = 0.10) -> float:
    """The fraction of ``others`` (normality scores) at least as normal as the ``quantile`` of ``normal``."""
    return round(float(np.mean(others >= np.quantile(normal, quantile))), 4)


def auc(normal: np.ndarray, others: np.ndarray) -> float:
    """ROC AUC of ``others`` as the positive class, ranked by anomaly (= -normality)."""
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(normal)), np.ones(len(others))]
    return round(float(roc_auc_score(labels, -np.r_[normal, others])), 5)


def measure(task, det) -> dict:
    fitted_score = det.anomaly_score
    det.set_params(anomaly_score="loss")
    try:
        normal_eval = det.score_samples(task.X_eval[task.y_eval == 1])
        anomalies = det.score_samples(task.X_eval[task.y_eval == -1])
        normal_train = det.score_samples(task.X_normal)
        out = {"anomaly_pass": pass_rate(normal_eval, anomalies), "logit_auc": auc(normal_eval, anomalies)}
        for name, pseudo in pseudo_anomalies(task.X_normal).items():
            scores = det.score_samples(pseudo)
            out[f"{name}_pass"] = pass_rate(normal_train, scores)
            out[f"{name}_auc"] = auc(normal_train, scores)
        # The same made from held-out normal images and measured against them (what a fit with
        # validation_fraction could measure): is the training images' own fit the confound?
        for name, pseudo in pseudo_anomalies(task.X_eval[task.y_eval == 1]).items():
            scores = det.score_samples(pseudo)
            out[f"heldout-{name}_pass"] = pass_rate(normal_eval, scores)
            out[f"heldout-{name}_auc"] = auc(normal_eval, scores)
    finally:
        det.set_params(anomaly_score=fitted_score)
    return out


def run(args) -> None:
    import joblib

    from skad_transfer import ADIBDetector
    from skad_transfer.bench.devsuite import KINDS, load_outlier_exposure, make_task

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.models.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.exists():
        done = {(r["kind"], r["class"]) for r in map(json.loads, args.out.read_text().splitlines())
                if not is_provenance(r)}
    with args.out.open("a") as handle:
        handle.write(json.dumps({PROVENANCE_KEY: provenance("auto", "auto")}) + "\n")
    corpus = load_outlier_exposure(args.data)
    for kind in args.kinds or KINDS:
        for c in args.classes:
            if (kind, c) in done:
                continue
            task = make_task(kind, c, data_dir=args.data, seed=0)
            path = args.models / f"{kind}-{c}.joblib"
            started = time.perf_counter()
            if path.exists():
                det = joblib.load(path)
            else:
                det = ADIBDetector(random_state=0, verbose=False).fit(task.X_normal, corpus)
                joblib.dump(det, path)
            record = {"kind": kind, "class": c, "class_name": task.class_name,
                      "seconds": round(time.perf_counter() - started, 1),
                      "oe_separability_": getattr(det, "oe_separability_", None), **measure(task, det)}
            print(json.dumps(record), flush=True)
            with args.out.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


def table(path: Path, suite: Path | None) -> str:
    """One row per task: the candidates beside what they should predict."""
    knn = {}
    if suite is not None and suite.exists():
        for r in map(json.loads, suite.read_text().splitlines()):
            if not is_provenance(r) and r.get("method") == "knn":
                knn[(r["kind"], r["class"])] = r["auc"]["default"]
    records = [r for r in map(json.loads, path.read_text().splitlines()) if not is_provenance(r)]
    names = [k[:-5] for k in records[0] if k.endswith("_pass") and k != "anomaly_pass"] if records else []
    columns = ["anomaly_pass", "logit_auc"] + [f"{n}_{m}" for n in names for m in ("pass", "auc")]
    lines = ["| kind | class | logit - kNN-AD | " + " | ".join(columns) + " |", "|---|---|---|" + "---|" * len(columns)]
    for r in records:
        margin = 100 * (r["logit_auc"] - knn[(r["kind"], r["class"])]) if (r["kind"], r["class"]) in knn else float("nan")
        lines.append(f"| {r['kind']} | {r['class_name']} | {margin:+.1f} | "
                     + " | ".join(f"{r[c]:.3f}" for c in columns) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("SKAD_TRANSFER_DATA"))
    parser.add_argument("--kinds", nargs="+", default=None)
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 3])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dev_suite/end_signal.jsonl"))
    parser.add_argument("--models", type=Path, default=Path("benchmarks/results/dev_suite/models"))
    parser.add_argument("--suite", type=Path, default=Path("benchmarks/results/dev_suite/suite.jsonl"))
    parser.add_argument("--table", type=Path, help="print the table of this results file and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.table, args.suite))
        return
    if args.data is None:
        sys.exit("--data (or SKAD_TRANSFER_DATA) must name the folder with cifar10-jpg.zip and tiny-imagenet-32.zip")
    run(args)


if __name__ == "__main__":
    main()
