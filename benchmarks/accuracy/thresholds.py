"""Do thresholds mean what they say? Requested vs measured false-alarm rate, CIFAR-10 one-vs-rest.

    python benchmarks/accuracy/thresholds.py --data DATA_DIR [--classes 0 3 8] [--seed 0] [--out thresholds.json]

For each normal class, one ADIBDetector fit with the library's defaults plus
``validation_fraction=0.1`` (all 5,000 training images of the class, 500 of them held out; OE =
Tiny-ImageNet-32 train, the embedded theta0). From that one model, the threshold for a requested
contamination ``c`` is set by two rules:

* "training scores" (the rule without ``validation_fraction``): the ``c`` quantile of the scores of
  the images the network was trained on;
* "held-out scores" (the rule with it): the ``c`` quantile of the scores of the held-out normal images.

The measured false-alarm rate is the fraction of the class's 1,000 CIFAR-10 *test* images that the
threshold calls anomalous; a rule means what it says when that is ``c``. ``DATA_DIR`` holds
``cifar10-jpg.zip`` and ``tiny-imagenet-32.zip`` (or set ``$SKAD_TRANSFER_DATA``). ``--out`` writes
``{"provenance": ..., "rows": [...]}`` (the record of ``benchmarks/common``); the stored
``results/thresholds_cifar10.json`` predates it (rows only).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import provenance, with_provenance  # noqa: E402

from skad_transfer import ADIBDetector  # noqa: E402
from skad_transfer.bench import load_benchmark_data, one_vs_rest  # noqa: E402
from skad_transfer.data.corpora import resolve_corpus  # noqa: E402

CONTAMINATIONS = (0.05, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("SKAD_TRANSFER_DATA"),
                        help="folder holding cifar10-jpg.zip and tiny-imagenet-32.zip (default $SKAD_TRANSFER_DATA)")
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 3, 8])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    if args.data is None:
        parser.error("--data (or $SKAD_TRANSFER_DATA) is required")
    data = load_benchmark_data("cifar10", args.data)
    corpus = resolve_corpus("tinyimagenet", root=args.data)
    rows = []
    for c in args.classes:
        split = one_vs_rest(data.X_train, data.y_train, data.X_test, data.y_test, c, class_names=data.class_names)
        started = time.perf_counter()
        det = ADIBDetector(validation_fraction=0.1, random_state=args.seed).fit(split.X_normal, corpus)
        fit_seconds = time.perf_counter() - started
        trained = np.setdiff1d(np.arange(len(split.X_normal)), det.validation_indices_)
        scores = {"training scores": det.score_samples(split.X_normal[trained]),
                  "held-out scores": det.score_samples(split.X_normal[det.validation_indices_])}
        test_normal = det.score_samples(split.X_test[split.y_test == 1])
        for contamination in CONTAMINATIONS:
            for rule, reference in scores.items():
                offset = float(np.percentile(reference, 100.0 * contamination))
                rows.append({"class": data.class_names[c], "requested": contamination, "rule": rule,
                             "false_alarm_rate": float(np.mean(test_normal < offset)),
                             "n_test_normal": int(len(test_normal)), "fit_seconds": round(fit_seconds, 1)})
        print(f"{data.class_names[c]}: fit {fit_seconds:.0f} s, "
              + ", ".join(f"{r['rule']} @ {r['requested']:.2f} -> {100 * r['false_alarm_rate']:.1f}%"
                          for r in rows if r["class"] == data.class_names[c]), flush=True)
    print("\n| class | requested | false alarms, training-score threshold | false alarms, held-out threshold |")
    print("|---|---|---|---|")
    for name in dict.fromkeys(r["class"] for r in rows):
        for contamination in CONTAMINATIONS:
            pick = {r["rule"]: r for r in rows if r["class"] == name and r["requested"] == contamination}
            print(f"| {name} | {100 * contamination:.0f}% | {100 * pick['training scores']['false_alarm_rate']:.1f}% | "
                  f"{100 * pick['held-out scores']['false_alarm_rate']:.1f}% |")
    for contamination in CONTAMINATIONS:
        for rule in ("training scores", "held-out scores"):
            mean = np.mean([r["false_alarm_rate"] for r in rows if r["requested"] == contamination and r["rule"] == rule])
            print(f"mean false-alarm rate at {100 * contamination:.0f}% requested, {rule}: {100 * mean:.1f}%")
    if args.out is not None:
        args.out.write_text(json.dumps(with_provenance(rows, provenance("auto", "auto")), indent=1))


if __name__ == "__main__":
    main()
