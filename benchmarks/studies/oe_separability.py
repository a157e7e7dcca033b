"""``oe_separability_`` on the development suite: how well theta0's features alone tell each kind's
normal images from the Tiny-ImageNet-32 OE corpus, as ``fit`` measures it (issue 25, goal 6).

    python benchmarks/studies/oe_separability.py --data DATA_DIR --out benchmarks/results/dev_suite/oe_separability.json

Each task is fitted for one step with the defaults (the measurement happens before training) and its
``oe_separability_`` recorded; the threshold :data:`skad_transfer.scoring.OE_SEPARABILITY_THRESHOLD`
at which ``fit`` warns was set between the suite's natural photographs and its far-OE kinds.
``--out`` holds ``{"provenance": ..., "rows": [...]}`` (the record of ``benchmarks/common``).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import provenance, with_provenance  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 3])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dev_suite/oe_separability.json"))
    args = parser.parse_args(argv)

    from skad_transfer import ADIBDetector, OutlierExposureWarning
    from skad_transfer.bench.devsuite import KINDS, load_outlier_exposure, make_task

    corpus = load_outlier_exposure(args.data)
    rows = []
    for kind in KINDS:
        for c in args.classes:
            task = make_task(kind, c, data_dir=args.data)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", OutlierExposureWarning)
                det = ADIBDetector(steps=1, random_state=0, verbose=False).fit(task.X_normal, corpus)
            warned = any(issubclass(w.category, OutlierExposureWarning) for w in caught)
            row = {"kind": kind, "class": c, "class_name": task.class_name,
                   "oe_separability": round(det.oe_separability_, 4), "warned": warned}
            print(json.dumps(row), flush=True)
            rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(with_provenance(rows, provenance("auto", "auto")), indent=1) + "\n")


if __name__ == "__main__":
    main()
