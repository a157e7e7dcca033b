"""The library's defaults against single changes, on the development protocol (never the test set).

    python benchmarks/studies/dev_defaults.py --data DATA_DIR --classes 0 2 3 5 8 \\
        --variants default jpeg=none steps=300 "steps=300 jpeg=none" --out dev_defaults.jsonl

DATA_DIR holds ``cifar10-jpg.zip`` and ``tiny-imagenet-32.zip``. Per class, CIFAR-10 training
images 0..3999 (position within the class) are the normal training set and images 4000..4999 of all
ten classes (10,000 images) the evaluation set; OE = all Tiny-ImageNet-32 training images. Each
variant is ``ADIBDetector(**defaults, **changes, random_state=seed)``, with changes written as
``name=value`` (``none`` for None; several in one quoted argument); ``knn`` adds kNN-AD on theta0
(``LayerFeatures`` + ``KNNDetector`` defaults) for reference. Prints one line per fit (AUC with the
anomaly as positive class, fit seconds) and appends it to ``--out`` as JSON (after one line
``{"provenance": ...}`` per invocation: commit, versions, device, precision, threads); a finished
(variant, class, seed) in ``--out`` is skipped, so an interrupted run resumes.

``--low-res SIZE`` (with ``--gray``) turns the development split into a stand-in for a small
grayscale dataset such as scikit-learn's 8x8 digits: normal and evaluation images are resized to
SIZE x SIZE (bilinear, antialiased) and, with ``--gray``, converted to luma and passed as
``(N, SIZE, SIZE, 1)``. The variant key ``oe`` then says how the OE corpus is handed over:
``oe='as-is'`` (Tiny-ImageNet-32 at 32x32, RGB), ``oe='size'`` (resized to SIZE x SIZE first) or
``oe='size+gray'`` (resized and converted to luma too), i.e. OE made like the normal images at low
level before the library's own pipeline (JPEG round trip, resize to the network's input size).

``--stand-in glyphs`` replaces the CIFAR-10 split by rendered letters in the format of the 8x8
digits (``benchmarks/studies/glyphs.py``): per class ``--n-normal`` training images (default 90, about
what one digit class has in the digits protocol) and an evaluation set of the same size per class
from another draw; OE is Tiny-ImageNet-32 as before. ``oe='hist'`` hands over the OE corpus at the
normal images' size in luma with each image's intensity histogram matched to a randomly chosen
normal training image (:func:`match_histograms`). A variant name ending in ``+knn-ft`` also scores
with kNN-AD on the fitted detector's own pooled features (``LayerFeatures(backbone=detector)``)
and records that as a second line.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import PROVENANCE_KEY, is_provenance, provenance  # noqa: E402
from common.devsplit import dev_split, glyph_split, low_res, match_histograms  # noqa: E402


def parse_variant(text: str) -> dict:
    text = text.removesuffix("+knn-ft").strip()
    if text in ("default", "knn", ""):
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
    parser.add_argument("--low-res", dest="low_res", type=int, help="resize the split to this side")
    parser.add_argument("--gray", action="store_true", help="with --low-res: luma, (N, S, S, 1)")
    parser.add_argument("--stand-in", dest="stand_in", choices=["cifar10", "glyphs"], default="cifar10")
    parser.add_argument("--n-normal", dest="n_normal", type=int, default=90, help="glyphs: training images per class")
    args = parser.parse_args(argv)

    from skad_transfer import ADIBDetector, KNNDetector, LayerFeatures

    if args.stand_in == "glyphs":
        from skad_transfer.data.datasets import load_tiny_imagenet

        oe = np.asarray(load_tiny_imagenet(args.data / "tiny-imagenet-32.zip", split="train")[0])
        X, y, train, evaluate, names = glyph_split(args.n_normal, 0)
        args.low_res, args.gray = 8, True
        oe_forms = {"as-is": oe, "size+gray": low_res(oe, 8, True)}
    else:
        X, y, train, evaluate, oe, names = dev_split(args.data)
        oe_forms = {"as-is": oe}
    if args.low_res and args.stand_in == "cifar10":
        X = low_res(X, args.low_res, args.gray)
        oe_forms["size"] = low_res(oe, args.low_res, False)
        oe_forms["size+gray"] = low_res(oe, args.low_res, True) if args.gray else oe_forms["size"]
    done = set()
    if args.out.exists():
        done = {(r["variant"], r["class"], r["seed"], r.get("stand_in", "cifar10"))
                for r in map(json.loads, args.out.read_text().splitlines()) if not is_provenance(r)}
    # One provenance line before this invocation's first result line (none if it has nothing to run).
    header = {PROVENANCE_KEY: provenance(args.device, args.precision, arguments=list(sys.argv[1:] if argv is None else argv))}
    X_eval = X[evaluate]
    for c in args.classes:
        normal = X[train & (y == c)]
        anomalous = y[evaluate] != c
        for variant in args.variants:
            for seed in args.seeds:
                if (variant, c, seed, args.stand_in) in done:
                    continue
                started = time.perf_counter()
                if variant == "knn":
                    features = LayerFeatures(device=args.device).fit(normal)
                    knn = KNNDetector().fit(features.transform(normal))
                    scores = knn.score_samples(features.transform(X_eval))
                else:
                    params = parse_variant(variant)
                    form = params.pop("oe", "as-is")
                    corpus = (match_histograms(oe_forms["size+gray"], normal, seed) if form == "hist"
                              else oe_forms[form])
                    det = ADIBDetector(**params, device=args.device, precision=args.precision,
                                       random_state=seed, verbose=False).fit(normal, corpus)
                    scores = det.score_samples(X_eval)
                rows = [(variant, scores, time.perf_counter() - started)]
                if variant.endswith("+knn-ft"):
                    features = LayerFeatures(backbone=det, device=args.device).fit(normal)
                    knn = KNNDetector().fit(features.transform(normal))
                    rows.append((variant.removesuffix("+knn-ft").strip() + " [knn-ft]",
                                 knn.score_samples(features.transform(X_eval)), time.perf_counter() - started))
                for name, row_scores, seconds in rows:
                    record = {"variant": name, "stand_in": args.stand_in, "low_res": args.low_res, "gray": args.gray,
                              "class": c, "class_name": names[c], "seed": seed,
                              "auc": float(roc_auc_score(anomalous, -row_scores)), "seconds": round(seconds, 1)}
                    print(json.dumps(record), flush=True)
                    with args.out.open("a") as handle:
                        if header is not None:
                            handle.write(json.dumps(header) + "\n")
                            header = None
                        handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
