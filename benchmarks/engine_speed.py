"""Training throughput of the engine against the reference-style loop, side by side in one run.

    python benchmarks/engine_speed.py --width 16 --steps 20 --refloop REFLOOP
    python benchmarks/engine_speed.py --width 16 64 --steps 5 --scoring-only

``REFLOOP`` (or ``$SKAD_REFLOOP``) is a reference-style training script, run as
``python REFLOOP <width> <steps> <device>``, that prints its throughput as ``<number> img/s``
(per-image PIL transforms in a one-worker DataLoader, fp32). Both loops train a ResNet26 of the given width on 64 normal + 64 OE random 32x32 images per step
with BCE and SGD; each reports images per second after two warm-up steps. The engine is measured
in float32 and in its "auto" precision (bf16 autocast where the CPU has native bf16, or on CUDA).
Scoring throughput (``apply_batched`` over 2,048 images in eval mode, as ``score_samples`` runs it)
is printed beside the engine's training throughput, as their ratio; ``--scoring-only`` skips the
reference loop.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np
import torch

from skad_transfer.data.corpora import OutlierCorpus
from skad_transfer.engine import Precision, TrainingData, TrainSettings, resolve_device, train
from skad_transfer.nn import resnet26
from skad_transfer.objectives import oe_bce_objective


def engine_images_per_second(width: int, steps: int, precision: str, device: torch.device) -> float:
    rng = np.random.default_rng(0)
    normal = torch.from_numpy(rng.integers(0, 256, (64 * (steps + 2), 3, 32, 32), dtype=np.uint8))
    corpus = OutlierCorpus(rng.integers(0, 256, (5000, 32, 32, 3), dtype=np.uint8))
    network = resnet26(width=width)
    timestamps = []

    def timed_objective(net, x_normal, x_outlier):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timestamps.append(time.perf_counter())
        return oe_bce_objective(net, x_normal, x_outlier)

    settings = TrainSettings(epochs=1, batch_size=128, lr=0.1, precision=precision, device=device)
    train(network, TrainingData(normal, corpus, device, 32), timed_objective, list(network.parameters()),
          settings, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    end = time.perf_counter()
    # Steps 3..N+2 start at timestamps[2:]; the last one ends at `end`.
    return 128 * steps / (end - timestamps[2])


def scoring_images_per_second(width: int, precision: str, device: torch.device, n: int = 2048) -> float:
    from skad_transfer.engine import apply_batched

    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8))
    network = resnet26(width=width).to(device).eval()
    settings = dict(device=device, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), input_size=32, precision=precision)
    apply_batched(network, images[:256], **settings)  # warm-up
    started = time.perf_counter()
    apply_batched(network, images, **settings)
    return n / (time.perf_counter() - started)


def refloop_images_per_second(path: str, width: int, steps: int, device: torch.device) -> float:
    out = subprocess.run([sys.executable, path, str(width), str(steps), str(device)], capture_output=True,
                         text=True, check=True).stdout
    return float(re.search(r"([\d.]+) img/s", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, nargs="+", default=[16])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--refloop", default=os.environ.get("SKAD_REFLOOP"),
                        help="the reference loop script (default $SKAD_REFLOOP)")
    parser.add_argument("--scoring-only", action="store_true",
                        help="no reference loop: the engine's training and scoring throughput only")
    args = parser.parse_args()
    if args.scoring_only:
        args.refloop = None
    elif not args.refloop:
        parser.error("--refloop: pass the reference loop script (python REFLOOP <width> <steps> <device> printing "
                     "'<number> img/s'), or set $SKAD_REFLOOP")
    if args.refloop and not os.path.isfile(args.refloop):
        parser.error(f"--refloop {args.refloop}: no such file")
    device = resolve_device(args.device)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, device {device}, "
          f"{torch.get_num_threads()} threads, auto precision = {Precision.resolve(device).autocast_dtype}")
    for width in args.width:
        print(f"width {width}")
        reference = None
        if args.refloop:
            reference = refloop_images_per_second(args.refloop, width, args.steps, device)
            print(f"  reference loop (DataLoader + PIL, fp32): {reference:8.1f} img/s")
        for precision in ("float32", "auto"):
            ips = engine_images_per_second(width, args.steps, precision, device)
            versus = f"  ({ips / reference:.2f}x reference)" if reference else ""
            print(f"  engine training, precision={precision:<8}: {ips:8.1f} img/s{versus}")
            scoring = scoring_images_per_second(width, precision, device)
            print(f"  scoring,         precision={precision:<8}: {scoring:8.1f} img/s  ({scoring / ips:.1f}x training)")


if __name__ == "__main__":
    main()
