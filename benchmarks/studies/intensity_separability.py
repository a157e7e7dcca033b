"""How well luminance statistics alone separate normal from OE images, on the development protocols.

    python benchmarks/studies/intensity_separability.py --data DATA_DIR --out separability.json

Prints, per normal class, :func:`skad_transfer.data.harmonize.intensity_separability` of the class's
development training images against Tiny-ImageNet-32 training images (as ``match_histograms="auto"``
measures it in ``fit``: up to 2,000 of each, the OE images brought to the normal images' resolution
and channels first), for the CIFAR-10 development split in colour and as 8x8 luma, the rendered
letters (``benchmarks/studies/glyphs.py``), and the demo's synthetic intervention task; with ``--digits`` also the digits benchmark's classes (reported, not
used to choose anything). The threshold of
``"auto"`` (:data:`~skad_transfer.data.harmonize.INTENSITY_SEPARABILITY_THRESHOLD`) was set from
these figures (``docs/design.md``). DATA_DIR holds ``cifar10-jpg.zip`` and ``tiny-imagenet-32.zip``.
``--out`` writes ``{"provenance": ..., "rows": [...]}`` (the record of ``benchmarks/common``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import provenance, with_provenance  # noqa: E402
from common.devsplit import dev_split, glyph_split, low_res  # noqa: E402


def separability(normal: np.ndarray, oe: np.ndarray, shape, seed: int = 0) -> float:
    """What ``match_histograms="auto"`` measures in ``fit`` with this seed."""
    from skad_transfer.data.corpora import OutlierCorpus
    from skad_transfer.data.harmonize import sampled_intensity_separability
    from skad_transfer.data.images import as_image_batch

    return sampled_intensity_separability(as_image_batch(normal, name="normal").data, OutlierCorpus(oe), shape, seed)


def main(argv=None) -> None:
    from skad_transfer.data.synthetic import make_intervention_task

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--digits", action="store_true",
                        help="also the digits benchmark's training halves (what 'auto' decided there; not a dev protocol)")
    args = parser.parse_args(argv)
    X, y, train, _, oe, names = dev_split(args.data)
    rows = []
    for protocol, images, shape in (("cifar10 dev", X, (3, 32, 32)), ("cifar10 dev 8x8 luma", None, (1, 8, 8))):
        if images is None:
            images = low_res(X, 8, True)
        for c, name in enumerate(names):
            rows.append({"protocol": protocol, "class": name,
                         "separability": separability(images[train & (y == c)], oe, shape)})
            print(json.dumps(rows[-1]), flush=True)
    G, gy, gtrain, _, letters = glyph_split(90, 0)
    for c, name in enumerate(letters):
        rows.append({"protocol": "glyphs", "class": name,
                     "separability": separability(G[gtrain & (gy == c)], oe, (1, 8, 8))})
        print(json.dumps(rows[-1]), flush=True)
    task = make_intervention_task(1000, 2000, 400, random_state=0)
    rows.append({"protocol": "demo (synthetic interventions)", "class": "red circle",
                 "separability": separability(task.X_normal, task.X_outlier, (3, 32, 32))})
    print(json.dumps(rows[-1]), flush=True)
    if args.digits:
        from skad_transfer.bench.protocols import load_benchmark_data

        digits = load_benchmark_data("digits")
        for c, name in enumerate(digits.class_names):
            rows.append({"protocol": "digits (benchmark, training half)", "class": name,
                         "separability": separability(digits.X_train[digits.y_train == c], oe, (1, 8, 8))})
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(with_provenance(rows, provenance("cpu")), indent=1) + "\n")


if __name__ == "__main__":
    main()
