"""Is contamination="auto" a usable threshold after any fit? The fixed boundary vs the refitted one.

    OMP_NUM_THREADS=1 python benchmarks/accuracy/auto_threshold.py [--data DATA_DIR] [--classes 0 3] [--steps 40 1500] [--out rows.json]

(The stored rows ran on one torch thread: short bf16 fits differ with the thread count.) ``--out``
writes ``{"provenance": ..., "rows": [...]}`` (the record of ``benchmarks/common``: its thread count
and ``OMP_NUM_THREADS`` among the rest); the stored ``results/auto_threshold*.json`` predate it (rows only).

``"auto"`` was the loss's fixed boundary: logit 0 for ADIB (eq. (1)), anomaly probability
``1 - exp(-h) = 1/2`` (``h = log 2``) for HSC. It is now that boundary with the last free parameter
refitted after training on normal vs OE scores (ADIB: a shift of the logit; HSC: a scale of ``h``;
:meth:`skad_transfer.losses.Loss.auto_offset`). Each fit below is scored once and judged by both
thresholds: the false-alarm rate on normal test images, the detection rate on anomalous ones, their
balanced accuracy, and the best balanced accuracy any threshold reaches on the same scores.

Cases:

* synthetic interventions (``examples/quickstart.py``'s task: 500 normal images, 1,000 OE, 600 test),
  a random-init width-4 network for 1 epoch and the embedded theta0 for 1 and 4 epochs; no data needed;
* with ``--data`` (holding ``cifar10-jpg.zip`` and ``tiny-imagenet-32.zip``, or ``$SKAD_TRANSFER_DATA``):
  CIFAR-10 one-vs-rest for ``--classes`` (all 5,000 training images of the class, all 10,000 test
  images, OE = Tiny-ImageNet-32 train), the embedded theta0, ``--steps`` SGD steps (1500 is the default).
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import provenance, with_provenance  # noqa: E402

from skad_transfer import ADIBDetector, HSCDetector  # noqa: E402
from skad_transfer.data.synthetic import make_intervention_task  # noqa: E402

FIXED_BOUNDARY = {"ADIBDetector": 0.0, "HSCDetector": -math.log(2.0)}  # the former "auto" offset_


def judge(scores: np.ndarray, y: np.ndarray, offset: float) -> dict:
    false_alarms = float(np.mean(scores[y == 1] < offset))
    detected = float(np.mean(scores[y == -1] < offset))
    return {"false_alarm_rate": false_alarms, "detection_rate": detected,
            "balanced_accuracy": 0.5 * (1.0 - false_alarms + detected)}


def best_balanced_accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    """The best balanced accuracy of any threshold, in one pass over the sorted scores (every
    threshold between two distinct scores is one point of the ROC curve, anomalies positive)."""
    false_alarms, detections, _ = roc_curve(y == -1, -scores)
    return float(np.max(0.5 * (1.0 - false_alarms + detections)))


def run_case(case: str, Detector, params: dict, X_normal, X_outlier, X_test, y_test) -> dict:
    started = time.perf_counter()
    det = Detector(**params, random_state=0).fit(X_normal, X_outlier)
    fit_seconds = time.perf_counter() - started
    scores = det.score_samples(X_test)
    row = {"case": case, "detector": Detector.__name__, "params": {k: v for k, v in params.items() if k != "verbose"},
           "fit_seconds": round(fit_seconds, 1), "offset_fixed": FIXED_BOUNDARY[Detector.__name__],
           "offset_refitted": det.offset_, "best_balanced_accuracy": best_balanced_accuracy(scores, y_test),
           "fixed": judge(scores, y_test, FIXED_BOUNDARY[Detector.__name__]),
           "refitted": judge(scores, y_test, det.offset_)}
    print(f"{case}, {Detector.__name__}: fit {fit_seconds:.0f} s; false alarms / detections / balanced accuracy: "
          + "; ".join(f"{rule} {100 * row[rule]['false_alarm_rate']:.1f} / {100 * row[rule]['detection_rate']:.1f} / "
                      f"{100 * row[rule]['balanced_accuracy']:.1f}" for rule in ("fixed", "refitted"))
          + f"; best {100 * row['best_balanced_accuracy']:.1f}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("SKAD_TRANSFER_DATA"),
                        help="folder holding cifar10-jpg.zip and tiny-imagenet-32.zip (default $SKAD_TRANSFER_DATA; "
                             "without it, the synthetic cases only)")
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 3], help="CIFAR-10 normal classes (default 0 3)")
    parser.add_argument("--steps", type=int, nargs="+", default=[40, 1500], help="CIFAR-10 fits' SGD steps")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()

    rows = []
    task = make_intervention_task(n_normal=500, n_outlier=1000, n_test_per_intervention=200, random_state=0)
    X_test = np.concatenate([t.X_test for t in task.tests.values()])
    y_test = np.concatenate([t.y_test for t in task.tests.values()])
    for case, params in (("synthetic, random init width 4, 1 epoch", dict(weights=None, width=4, epochs=1)),
                         ("synthetic, theta0, 1 epoch", dict(epochs=1)),
                         ("synthetic, theta0, 4 epochs", dict(epochs=4))):
        for Detector in (ADIBDetector, HSCDetector):
            rows.append(run_case(case, Detector, {**params, "verbose": False}, task.X_normal, task.X_outlier,
                                 X_test, y_test))

    if args.data is not None:
        from skad_transfer.bench import load_benchmark_data, one_vs_rest
        from skad_transfer.data.corpora import resolve_corpus

        data = load_benchmark_data("cifar10", args.data)
        corpus = resolve_corpus("tinyimagenet", root=args.data)
        for c in args.classes:
            split = one_vs_rest(data.X_train, data.y_train, data.X_test, data.y_test, c, class_names=data.class_names)
            for steps in args.steps:
                for Detector in (ADIBDetector, HSCDetector):
                    rows.append(run_case(f"CIFAR-10 {data.class_names[c]}, theta0, {steps} steps", Detector,
                                         {"steps": steps, "verbose": False}, split.X_normal, corpus, split.X_test,
                                         split.y_test))

    print("\n| case | detector | false alarms, fixed | false alarms, refitted | detections, fixed | "
          "detections, refitted | balanced acc., fixed | balanced acc., refitted | best balanced acc. |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [100 * r[rule][metric] for metric in ("false_alarm_rate", "detection_rate", "balanced_accuracy")
                 for rule in ("fixed", "refitted")]
        print(f"| {r['case']} | {r['detector']} | " + " | ".join(f"{v:.1f}" for v in cells)
              + f" | {100 * r['best_balanced_accuracy']:.1f} |")
    if args.out is not None:
        args.out.write_text(json.dumps(with_provenance(rows, provenance("auto", "auto")), indent=1))


if __name__ == "__main__":
    main()
