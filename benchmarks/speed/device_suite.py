"""The device benchmark: everything a GPU session should measure, in one command of a few minutes.

    python benchmarks/speed/device_suite.py --out OUT_DIR [--refloop REFLOOP] [--device cuda] [--smoke]

Writes ``OUT_DIR/device_suite.json`` and ``OUT_DIR/device_suite.md`` with:

* training throughput (img/s) of the engine at widths 16 and 64, in the device's "auto" precision
  (bf16 autocast and channels_last on CUDA) and float32, with and without ``torch.compile`` (in the "auto"
  precision only: each compilation costs about a minute; on CUDA also in the ``"reduce-overhead"``
  mode, whose CUDA graphs remove the kernel-launch cost that bounds a step of small images), against
  the reference-style loop (``REFLOOP`` or ``$SKAD_REFLOOP``: per-image PIL transforms in a DataLoader,
  fp32; ``python REFLOOP WIDTH STEPS DEVICE`` printing ``<number> img/s``) on the same device;
* training throughput of a whole ``ADIBDetector.fit`` at width 64 (the engine plus the L2-SP
  penalty, the JPEG round trip and the OE harmonisation; the second of two epochs), eager and, on
  CUDA, with ``compile="reduce-overhead"``;
* the projected wall time of the paper's fit (100 epochs of 5,000 normal + 5,000 OE images at width
  64) from the best width-64 throughput of a whole fit;
* scoring time for 10,000 images at widths 16 and 64 (``score_samples``' path: padded batches, autocast);
* pretraining throughput (``pretrain``, width 16, random labelled images);
* peak GPU memory of each measurement;
* the provenance record (commit, versions, device, precisions, threads: ``benchmarks/common``).

Every line states its precision. ``--smoke`` runs the same code on the CPU at tiny sizes (width 4, a
few steps, 256 scored images, no ``torch.compile``) in seconds: the test suite runs it so that the
GPU session finds a working script. A measurement that fails (e.g. ``torch.compile`` without a compiler) is recorded
with its error instead of stopping the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import provenance  # noqa: E402
from common.throughput import engine_images_per_second, refloop_images_per_second  # noqa: E402

from skad_transfer.device import Precision, resolve_device  # noqa: E402
from skad_transfer.inference import apply_batched  # noqa: E402
from skad_transfer.nn import resnet26  # noqa: E402

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
PAPER_IMAGES = 100 * 2 * 5000  # 100 epochs of 5,000 normal + 5,000 OE images
FIT_LOOP = "ADIBDetector.fit (L2-SP)"


def _peak_memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_throughput(width: int, steps: int, precision: str, compiled: bool, device: torch.device) -> dict:
    """img/s of the engine over ``steps`` steps of 64 normal + 64 OE images, after 2 warm-up steps
    (with ``compile=True``, the detectors' ``torch.compile`` path, 5: compilation happens in the
    first ones); :func:`common.throughput.engine_images_per_second` with the peak GPU memory."""
    _peak_memory_reset(device)
    run = engine_images_per_second(width, steps, precision, device, compiled=compiled)
    return {"images_per_second": run.images_per_second, "peak_memory_mib": _peak_memory_mib(device)}


def fit_throughput(width: int, steps: int, compile, device: torch.device) -> dict:
    """img/s of the second of two epochs of ``ADIBDetector.fit`` (``steps`` steps of 64 normal + 64 OE
    random images each, the detector's defaults otherwise: L2-SP at alpha 0.01, the JPEG round trip,
    OE harmonisation), in the "auto" precision; the first epoch includes compilation and warm-up."""
    from skad_transfer import ADIBDetector

    rng = np.random.default_rng(3)
    normal = rng.integers(0, 256, (64 * steps, 32, 32, 3), dtype=np.uint8)
    outliers = rng.integers(0, 256, (5000, 32, 32, 3), dtype=np.uint8)
    _peak_memory_reset(device)
    detector = ADIBDetector(weights=None, width=width, epochs=2, batch_size=128, device=device, compile=compile,
                            random_state=0, verbose=False).fit(normal, outliers)
    second = detector.history_[-1]
    return {"images_per_second": second["images_per_second"], "peak_memory_mib": _peak_memory_mib(device)}


def scoring_seconds(width: int, n_images: int, device: torch.device) -> dict:
    network = resnet26(width=width).to(device).eval()
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (n_images, 3, 32, 32), dtype=np.uint8))
    kwargs = dict(device=device, mean=MEAN, std=STD, input_size=32, precision="auto")
    apply_batched(network, images[:512], **kwargs)  # warm-up (kernel selection, allocator)
    _peak_memory_reset(device)
    started = time.perf_counter()
    apply_batched(network, images, **kwargs)
    _sync(device)
    return {"seconds": time.perf_counter() - started, "n_images": n_images, "peak_memory_mib": _peak_memory_mib(device)}


def pretrain_throughput(width: int, n_images: int, device: torch.device) -> dict:
    from skad_transfer.pretrain import pretrain

    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, (n_images, 32, 32, 3), dtype=np.uint8)
    y = np.arange(n_images) % 10
    _peak_memory_reset(device)
    with tempfile.TemporaryDirectory() as folder:
        _, record = pretrain(X, y, output=Path(folder) / "t.pth", width=width, epochs=2, val_fraction=0.0,
                             device=device, verbose=False)
    second = record.meta["history"][-1]  # the first epoch includes warm-up
    return {"width": width, "images_per_second": second["images_per_second"], "precision": record.meta["precision"],
            "peak_memory_mib": _peak_memory_mib(device)}


def _attempt(function, *args) -> dict:
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001 - recorded, the suite goes on
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}


def run_suite(device: torch.device, *, smoke: bool, refloop: str | None, steps: int | None = None,
              on_update=lambda result: None) -> dict:
    """Every measurement in turn; ``on_update(result)`` after each one, so that a run stopped at a
    time limit keeps what it measured."""
    widths = (4,) if smoke else (16, 64)
    if steps is None:
        # A GPU step at width 16 takes a few milliseconds: 100 steps time well past launch jitter.
        steps = 3 if smoke else (100 if device.type == "cuda" else 40)
    auto = Precision.resolve(device).name
    # "reduce-overhead" differs from the default mode only where there are CUDA graphs.
    compile_modes = (False,) if smoke else (False, True, "reduce-overhead") if device.type == "cuda" else (False, True)
    fit_modes = (False, "reduce-overhead") if device.type == "cuda" else (False,)
    result = {"provenance": provenance(device, list(dict.fromkeys((auto, "float32")))),
              "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "auto_precision": auto, "smoke": smoke, "steps": steps,
              "training": [], "scoring": [], "paper_fit_projection": None, "pretraining": None}

    def record(section: str, entry: dict) -> None:
        result[section].append(entry)
        print(json.dumps(entry), flush=True)
        on_update(result)

    for width in widths:
        reference = None
        if refloop:
            reference = _attempt(lambda: {"images_per_second": refloop_images_per_second(refloop, width, steps, device)})
        record("training", {"width": width, "loop": "reference (DataLoader + PIL)", "precision": "float32",
                            "compile": False, **(reference or {"error": "no --refloop given"})})
        for precision in dict.fromkeys((auto, "float32")):  # one row when "auto" is float32 (CPUs without bf16)
            # Compiling costs a minute per configuration: only the "auto" precision, and not in smoke.
            for compiled in (compile_modes if precision == auto else (False,)):
                entry = _attempt(train_throughput, width, steps, precision, compiled, device)
                record("training", {"width": width, "loop": "engine", "compile": compiled, "precision": precision,
                                    **entry})
    wide = max(widths)
    for compiled in fit_modes:
        record("training", {"width": wide, "loop": FIT_LOOP, "compile": compiled, "precision": auto,
                            **_attempt(fit_throughput, wide, steps, compiled, device)})
    best = max((e["images_per_second"] for e in result["training"]
                if e["width"] == wide and e["loop"] == FIT_LOOP and "images_per_second" in e), default=None)
    result["paper_fit_projection"] = None if best is None else {
        "width": wide, "images": PAPER_IMAGES, "images_per_second": best, "seconds": PAPER_IMAGES / best}
    for width in widths:
        record("scoring", {"width": width, **_attempt(scoring_seconds, width, 256 if smoke else 10_000, device)})
    result["pretraining"] = _attempt(pretrain_throughput, 4 if smoke else 16, 64 if smoke else 20_000, device)
    on_update(result)
    return result


def markdown(result: dict) -> str:
    lines = [f"Device suite on {result['gpu'] or result['cpu']} ({result['device']}), torch {result['torch']}, "
             f"{result['threads']} CPU threads, auto precision = {result['auto_precision']}, "
             f"commit {result.get('provenance', {}).get('commit')}"
             + (" (SMOKE: tiny sizes, not a measurement)" if result["smoke"] else ""), "",
             "| width | loop | precision | torch.compile | img/s | vs reference | peak GPU MiB |", "|---|---|---|---|---|---|---|"]
    reference = {e["width"]: e.get("images_per_second") for e in result["training"] if e["loop"].startswith("reference")}
    for e in result["training"]:
        ips = e.get("images_per_second")
        ratio = f"{ips / reference[e['width']]:.2f}x" if ips and reference.get(e["width"]) else "—"
        memory = e.get("peak_memory_mib")
        mode = {False: "no", True: "default"}.get(e["compile"], e["compile"])
        lines.append(f"| {e['width']} | {e['loop']} | {e['precision']} | {mode} | "
                     f"{f'{ips:.0f}' if ips else e.get('error', '—')} | {ratio} | "
                     f"{f'{memory:.0f}' if memory else '—'} |")
    projection = result["paper_fit_projection"]
    if projection:
        lines += ["", f"Paper fit (100 epochs x 10,000 images, width {projection['width']}), projected from the best "
                      f"whole-fit throughput ({projection['images_per_second']:.0f} img/s): {projection['seconds']:.0f} s"]
    for scoring in result["scoring"]:
        lines.append(f"Scoring {scoring.get('n_images', '?')} images at width {scoring['width']} (auto precision): "
                     + (f"{scoring['seconds']:.2f} s" if "seconds" in scoring else scoring["error"]))
    pre = result["pretraining"]
    if pre is not None:
        lines.append("Pretraining throughput: " + (
            f"{pre['images_per_second']:.0f} img/s at width {pre['width']} ({pre['precision']})"
            if "images_per_second" in pre else pre["error"]))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", "--output", "-o", dest="out", required=True, type=Path,
                        help="folder for device_suite.json and device_suite.md")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--refloop", default=os.environ.get("SKAD_REFLOOP"),
                        help="the reference loop script (default $SKAD_REFLOOP; without it the ratio is left out)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the script, measures nothing")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed training steps per measurement (default 100 on CUDA, 40 on the CPU, 3 with --smoke)")
    args = parser.parse_args(argv)
    device = torch.device("cpu") if args.smoke else resolve_device(args.device)
    if args.refloop and not os.path.isfile(args.refloop):
        parser.error(f"--refloop {args.refloop}: no such file")
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    def write(result: dict) -> None:
        result["suite_seconds"] = time.perf_counter() - started
        (args.out / "device_suite.json").write_text(json.dumps(result, indent=1))
        (args.out / "device_suite.md").write_text(markdown(result))

    result = run_suite(device, smoke=args.smoke, refloop=args.refloop, steps=args.steps, on_update=write)
    print(markdown(result))
    print(f"suite: {result['suite_seconds']:.0f} s; wrote {args.out / 'device_suite.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
