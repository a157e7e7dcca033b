"""Training throughput of the engine against the reference-style loop, side by side in one run.

    python benchmarks/speed/engine_speed.py --width 16 --steps 20 --refloop REFLOOP
    python benchmarks/speed/engine_speed.py --width 16 64 --steps 5 --scoring-only

``REFLOOP`` (or ``$SKAD_REFLOOP``) is a reference-style training script, run as
``python REFLOOP <width> <steps> <device>``, that prints its throughput as ``<number> img/s``
(per-image PIL transforms in a one-worker DataLoader, fp32). Both loops train a ResNet26 of the given width on 64 normal + 64 OE random 32x32 images per step
with BCE and SGD; each reports images per second after two warm-up steps. The engine is measured
in float32 and in its "auto" precision (bf16 autocast where the CPU has native bf16, or on CUDA).
Scoring throughput (``apply_batched`` over 2,048 images in eval mode, as ``score_samples`` runs it)
is printed beside the engine's training throughput, as their ratio; ``--scoring-only`` skips the
reference loop.

``--compile`` adds the engine in float32 with ``compile=True`` (the training objective under
``torch.compile``; the first 5 steps compile and are left out; their time is printed). ``--profile`` prints where the
float32 engine's step time goes, operator by operator (``torch.profiler``).
``--repeats N`` runs the whole comparison N times, interleaved (reference, engine, reference, ...),
and prints each run and the spread (min / median / max), for the steadiness of both loops. Each
engine run on the CPU also prints how much CPU it got (busy share of its threads, the machine's
steal time, kernel time) and two probes of the machine's speed timed just before and after it: a
fixed float32 matrix product (GFLOP/s: the clock) and a copy far larger than the caches (GB/s: the
memory bandwidth left by other tenants); img/s divided by a probe varies less than img/s alone
when the machine's speed, not the engine, is what varies.
Training throughput is also given in GFLOP/s (the network's forward + backward FLOPs per image,
counted by ``torch.utils.flop_counter``); ``--peak-gflops`` (vector lanes x FMA units x 2 x clock
x cores) adds the fraction of the machine's FMA peak.
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
from common.throughput import engine_images_per_second, refloop_images_per_second  # noqa: E402

from skad_transfer.device import Precision, resolve_device  # noqa: E402
from skad_transfer.nn import resnet26  # noqa: E402


def _calls_per_second(work, seconds: float) -> float:
    """How often ``work()`` runs per second, over ``seconds`` after one untimed warm-up call."""
    work()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        work()
        done += 1
    return done / (time.perf_counter() - started)


def matmul_probe_gflops(size: int = 1024, seconds: float = 0.3) -> float:
    """float32 GFLOP/s of a fixed matrix product on the torch threads: the machine's own speed at
    this moment (clock, shared caches), independent of the engine."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 * _calls_per_second(lambda: torch.mm(a, b), seconds) / 1e9


def copy_probe_gbps(megabytes: int = 256, seconds: float = 0.3) -> float:
    """GB/s of copying a float32 tensor far larger than the caches (read + write): the memory
    bandwidth left to this process at this moment (other tenants share the memory bus)."""
    source = torch.ones(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    return 2 * source.numel() * 4 * _calls_per_second(lambda: target.copy_(source), seconds) / 1e9


def scoring_images_per_second(width: int, precision: str, device: torch.device, n: int = 2048) -> float:
    from skad_transfer.inference import apply_batched

    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8))
    network = resnet26(width=width).to(device).eval()
    settings = dict(device=device, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), input_size=32, precision=precision)
    apply_batched(network, images[:256], **settings)  # warm-up
    started = time.perf_counter()
    apply_batched(network, images, **settings)
    return n / (time.perf_counter() - started)


def training_gflop_per_image(width: int, input_size: int = 32) -> float:
    """Forward + backward FLOPs of one training image (convolutions and the head; BatchNorm and
    ReLU are memory-bound and not counted), in GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    network = resnet26(width=width)
    with FlopCounterMode(display=False) as counter:
        network(torch.randn(8, 3, input_size, input_size)).sum().backward()
    return counter.get_total_flops() / 8 / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, nargs="+", default=[16])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--refloop", default=os.environ.get("SKAD_REFLOOP"),
                        help="the reference loop script (default $SKAD_REFLOOP)")
    parser.add_argument("--repeats", type=int, default=1, help="run the comparison this many times (default 1)")
    parser.add_argument("--peak-gflops", type=float, default=None,
                        help="the machine's float32 FMA peak in GFLOP/s, to print the fraction reached")
    parser.add_argument("--compile", action="store_true",
                        help="also time the engine in float32 with the network under torch.compile (needs a C++ compiler)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the float32 engine's training steps and print the top operators")
    parser.add_argument("--scoring-only", action="store_true",
                        help="no reference loop: the engine's training and scoring throughput only")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats: expected at least 1, got {args.repeats}")
    if args.scoring_only:
        args.refloop = None
    elif not args.refloop:
        parser.error("--refloop: pass the reference loop script (python REFLOOP <width> <steps> <device> printing "
                     "'<number> img/s'), or set $SKAD_REFLOOP")
    if args.refloop and not os.path.isfile(args.refloop):
        parser.error(f"--refloop {args.refloop}: no such file")
    device = resolve_device(args.device)
    print_provenance(device, ["float32", "auto"])
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, device {device}, "
          f"{torch.get_num_threads()} threads, auto precision = {Precision.resolve(device).name}")
    for width in args.width:
        gflop = training_gflop_per_image(width)
        print(f"width {width} ({gflop:.3f} GFLOP per training image)")
        runs: dict[str, list[float]] = {}
        for repeat in range(args.repeats):
            if args.repeats > 1:
                print(f" run {repeat + 1} of {args.repeats}")
            reference = None
            if args.refloop:
                reference = refloop_images_per_second(args.refloop, width, args.steps, device)
                runs.setdefault("reference loop", []).append(reference)
                print(f"  reference loop (DataLoader + PIL, fp32): {reference:8.1f} img/s")
            for precision in ("float32", "auto"):
                probe = (matmul_probe_gflops(), copy_probe_gbps()) if device.type == "cpu" else None
                run = engine_images_per_second(width, args.steps, precision, device)
                ips = run.images_per_second
                runs.setdefault(f"engine, {precision}", []).append(ips)
                if probe is not None:
                    # Divided by the machine's speed of the moment: what remains is the engine's own variation.
                    probe = ((probe[0] + matmul_probe_gflops()) / 2, (probe[1] + copy_probe_gbps()) / 2)
                    runs.setdefault(f"engine, {precision} / matmul probe", []).append(ips / probe[0])
                    runs.setdefault(f"engine, {precision} / copy probe", []).append(ips / probe[1])
                    runs.setdefault("matmul probe (GFLOP/s)", []).append(probe[0])
                    runs.setdefault("copy probe (GB/s)", []).append(probe[1])
                versus = f"  ({ips / reference:.2f}x reference)" if reference else ""
                flops = f"  {ips * gflop:6.1f} GFLOP/s"
                if args.peak_gflops:
                    flops += f" ({100 * ips * gflop / args.peak_gflops:.0f}% of peak)"
                probed = "" if probe is None else f", matmul probe {probe[0]:.0f} GFLOP/s, copy probe {probe[1]:.1f} GB/s"
                print(f"  engine training, precision={precision:<8}: {ips:8.1f} img/s{versus}{flops}"
                      f"  ({run.conditions()}{probed})")
                scoring = scoring_images_per_second(width, precision, device)
                print(f"  scoring,         precision={precision:<8}: {scoring:8.1f} img/s  ({scoring / ips:.1f}x training)")
            if args.profile:
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CPU]) as profiler:
                    engine_images_per_second(width, args.steps, "float32", device)
                print("  where a float32 training step's time goes (torch.profiler, self CPU time):")
                print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12,
                                                    max_name_column_width=40))
            if args.compile:
                run = engine_images_per_second(width, args.steps, "float32", device, compiled=True)
                ips = run.images_per_second
                runs.setdefault("engine, float32, torch.compile", []).append(ips)
                versus = f"  ({ips / reference:.2f}x reference)" if reference else ""
                print(f"  engine training, float32, torch.compile: {ips:8.1f} img/s{versus}  "
                      f"(first 5 steps, compiling: {run.warmup_seconds:.1f} s; {run.conditions()})")
        if args.repeats > 1:
            print(f" spread over {args.repeats} runs (min / median / max img/s):")
            for name, values in runs.items():
                low, mid, high = np.min(values), np.median(values), np.max(values)
                print(f"  {name:<30}: {low:7.2f} / {mid:7.2f} / {high:7.2f}  (max/min {high / low:.2f})")


if __name__ == "__main__":
    main()
