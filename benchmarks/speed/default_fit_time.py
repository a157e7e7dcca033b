"""Wall time of a default ADIB fit on 5,000 CIFAR-10 images, by precision.

    python benchmarks/speed/default_fit_time.py --data DATA_DIR [--precision float32 bfloat16] [--steps N]

DATA_DIR holds ``cifar10-jpg.zip`` and ``tiny-imagenet-32.zip``. Fits
``ADIBDetector(precision=P, random_state=0)`` on the 5,000 training images of one class with
Tiny-ImageNet-32's training split as OE, everything else at its default (1,500 steps of 64 normal
+ 64 OE images, ``jpeg_quality=75``), and prints the fit's wall time (data placement, the JPEG round
trip of both sets and training), the training throughput, and the time to score the 10,000 test
images. ``--steps N`` times a shorter fit and also prints the default fit's time extrapolated from
its training throughput (labelled as such). Decoded datasets come from the decode cache (the first
run decodes them; that time is not counted).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import print_provenance  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--precision", nargs="+", default=["float32"])
    parser.add_argument("--normal-class", type=int, default=0)
    parser.add_argument("--steps", type=int, help="time a shorter fit and extrapolate to the default 1,500 steps")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    from skad_transfer import ADIBDetector
    from skad_transfer.data.datasets import load_image_folder, load_tiny_imagenet
    from skad_transfer.device import cpu_has_native_bfloat16, resolve_device

    X, y, _ = load_image_folder(args.data / "cifar10-jpg.zip", split="train")
    X_test, _, _ = load_image_folder(args.data / "cifar10-jpg.zip", split="test")
    oe, _, _ = load_tiny_imagenet(args.data / "tiny-imagenet-32.zip", split="train")
    normal = np.asarray(X[np.asarray(y) == args.normal_class])
    device = resolve_device(args.device)
    print_provenance(device, args.precision)
    print(f"torch {torch.__version__}, {platform.machine()}, device {device}, {torch.get_num_threads()} threads, "
          f"native bf16 on this CPU: {cpu_has_native_bfloat16()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    default_steps = ADIBDetector().steps
    for precision in args.precision:
        kwargs = {} if args.steps is None else {"steps": args.steps}
        det = ADIBDetector(precision=precision, device=args.device, random_state=0, verbose=False, **kwargs)
        started = time.perf_counter()
        det.fit(normal, oe)
        fit_s = time.perf_counter() - started
        train_s = sum(h["seconds"] for h in det.history_)
        images = sum(h["images_per_second"] * h["seconds"] for h in det.history_)
        started = time.perf_counter()
        det.score_samples(np.asarray(X_test))
        score_s = time.perf_counter() - started
        line = (f"precision={precision}: {len(normal)} normal images, {det.steps} steps, fit {fit_s:.1f} s "
                f"(training {train_s:.1f} s, {images / train_s:.0f} img/s); scoring 10,000 images {score_s:.1f} s")
        if args.steps is not None:
            line += (f"; default fit ({default_steps} steps) extrapolated: "
                     f"{fit_s - train_s + train_s * default_steps / args.steps:.0f} s")
        print(line, flush=True)


if __name__ == "__main__":
    main()
