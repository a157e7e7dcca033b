"""The JPEG round trip's codec: Pillow (used since issue 26) against torchvision's deprecated
``encode_jpeg``/``decode_jpeg`` (used before): same pixels?, round trips per second, and the
training throughput of a short default ADIB fit with each, per precision.

    python benchmarks/jpeg_codec.py --data DATA_DIR --out benchmarks/results/jpeg_codec.json

DATA_DIR holds ``cifar10-jpg.zip`` and ``tiny-imagenet-32.zip``. The round trips are timed on
4,000 CIFAR-10 test images at quality 75, one thread; the fits (``--steps`` steps, default 100, of
the default 64 + 64 images, airplane normal, Tiny-ImageNet-32 OE) once per codec and precision,
with everything else at its default. Needs a torchvision that still ships its JPEG codec.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def torchvision_roundtrip(images: torch.Tensor, quality, *, name: str = "jpeg_quality") -> torch.Tensor:
    """The round trip as the library made it before (uint8 NCHW in, uint8 NCHW out)."""
    from torchvision.io import decode_jpeg, encode_jpeg

    if quality is None or images.shape[0] == 0:
        return images
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        batch = images.detach().cpu().to(torch.uint8).contiguous()
        return torch.stack(decode_jpeg(encode_jpeg(list(batch), quality=quality))).to(images.device)


def roundtrips_per_second(function, images: torch.Tensor, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function(images, 75)
        best = min(best, time.perf_counter() - started)
    return len(images) / best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--precision", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/jpeg_codec.json"))
    args = parser.parse_args(argv)

    import skad_transfer.detectors.base as base
    import skad_transfer.engine as engine
    from skad_transfer import ADIBDetector
    from skad_transfer.data.datasets import load_image_folder, load_tiny_imagenet
    from skad_transfer.data.harmonize import jpeg_roundtrip

    from dev_suite import environment

    X, y, _ = load_image_folder(args.data / "cifar10-jpg.zip", split="train")
    X_test, _, _ = load_image_folder(args.data / "cifar10-jpg.zip", split="test")
    oe = np.asarray(load_tiny_imagenet(args.data / "tiny-imagenet-32.zip", split="train")[0])
    sample = torch.from_numpy(np.asarray(X_test[:4000])).permute(0, 3, 1, 2).contiguous()
    codecs = {"pillow": jpeg_roundtrip, "torchvision": torchvision_roundtrip}
    result = {"environment": environment("auto"), "roundtrip": {"threads": 1}, "fits": []}  # fits: all threads
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    reference = torchvision_roundtrip(sample, 75)
    for name, function in codecs.items():
        result["roundtrip"][name] = {"images_per_second": round(roundtrips_per_second(function, sample)),
                                     "bitwise_equal_to_torchvision": bool(torch.equal(function(sample, 75), reference))}
        print(name, result["roundtrip"][name], flush=True)
    torch.set_num_threads(threads)
    normal = np.asarray(X[np.asarray(y) == 0])
    for precision in args.precision:
        for name, function in codecs.items():
            engine.jpeg_roundtrip, base.jpeg_roundtrip = function, function
            try:
                det = ADIBDetector(steps=args.steps, precision=precision, random_state=0, verbose=False)
                started = time.perf_counter()
                det.fit(normal, oe)
                fit_s = time.perf_counter() - started
            finally:
                engine.jpeg_roundtrip = base.jpeg_roundtrip = jpeg_roundtrip
            train_s = sum(h["seconds"] for h in det.history_)
            images = sum(h["images_per_second"] * h["seconds"] for h in det.history_)
            row = {"codec": name, "precision": precision, "steps": args.steps, "fit_seconds": round(fit_s, 2),
                   "training_images_per_second": round(images / train_s, 1)}
            print(row, flush=True)
            result["fits"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
