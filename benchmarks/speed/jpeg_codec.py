"""The JPEG round trip's codec: Pillow (used since issue 26) against torchvision's deprecated
``encode_jpeg``/``decode_jpeg`` (used before) and, where installed, TorchCodec and simplejpeg: the
same pixels?, round trips per second, and the training throughput of a short default ADIB fit with
Pillow and with torchvision's codec, per precision.

    python benchmarks/speed/jpeg_codec.py --data DATA_DIR --out benchmarks/results/jpeg_codec.json

DATA_DIR holds ``cifar10-jpg.zip`` and ``tiny-imagenet-32.zip``. Pixels are compared with
torchvision's on 4,000 CIFAR-10 test and 4,000 Tiny-ImageNet-32 training images, in colour and in
luma, at qualities 30, 75 and 90; round trips are timed on the CIFAR-10 images at quality 75, one
thread; the fits (``--steps`` steps, default 100, of the default 64 + 64 images, airplane normal,
Tiny-ImageNet-32 OE) once per codec and precision, everything else at its default. Needs a
torchvision that still ships its JPEG codec (``pip install torchcodec simplejpeg`` adds those two).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import provenance  # noqa: E402


def torchvision_roundtrip(images: torch.Tensor, quality, *, name: str = "jpeg_quality") -> torch.Tensor:
    """The round trip as the library made it before (uint8 NCHW in, uint8 NCHW out)."""
    from torchvision.io import decode_jpeg, encode_jpeg

    if quality is None or images.shape[0] == 0:
        return images
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        batch = images.detach().cpu().to(torch.uint8).contiguous()
        return torch.stack(decode_jpeg(encode_jpeg(list(batch), quality=quality))).to(images.device)


def torchcodec_roundtrip(images: torch.Tensor, quality) -> torch.Tensor:
    from torchcodec.decoders import decode_jpeg
    from torchcodec.encoders import JpegEncoder

    return torch.stack([decode_jpeg(JpegEncoder(image).to_tensor(quality=quality)) for image in images])


def simplejpeg_roundtrip(images: torch.Tensor, quality) -> torch.Tensor:
    import simplejpeg

    out = []
    for image in images.permute(0, 2, 3, 1).numpy():
        space = "GRAY" if image.shape[-1] == 1 else "RGB"
        data = simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=quality, colorspace=space,
                                      colorsubsampling="420", fastdct=False)
        out.append(simplejpeg.decode_jpeg(data, colorspace=space, fastdct=False, fastupsample=False))
    return torch.from_numpy(np.stack(out).reshape(len(out), *images.shape[2:], images.shape[1])).permute(0, 3, 1, 2)


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

    import skad_transfer.data.fitdata as fitdata
    import skad_transfer.detectors.validation as validation
    import skad_transfer.inference as inference
    from skad_transfer import ADIBDetector
    from skad_transfer.data.datasets import load_image_folder, load_tiny_imagenet
    from skad_transfer.data.harmonize import jpeg_roundtrip

    X, y, _ = load_image_folder(args.data / "cifar10-jpg.zip", split="train")
    X_test, _, _ = load_image_folder(args.data / "cifar10-jpg.zip", split="test")
    oe = np.asarray(load_tiny_imagenet(args.data / "tiny-imagenet-32.zip", split="train")[0])
    sample = torch.from_numpy(np.asarray(X_test[:4000])).permute(0, 3, 1, 2).contiguous()
    tiny = torch.from_numpy(oe[:4000]).permute(0, 3, 1, 2).contiguous()
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    sets = {"cifar10-test": sample, "tinyimagenet-train": tiny}
    sets.update({f"{k}-luma": (v.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
                 for k, v in list(sets.items())})
    codecs = {"pillow": jpeg_roundtrip, "torchvision": torchvision_roundtrip}
    for name, function in (("torchcodec", torchcodec_roundtrip), ("simplejpeg", simplejpeg_roundtrip)):
        try:
            function(sample[:1], 75)
            codecs[name] = function
        except ImportError:
            print(f"{name} is not installed: left out", flush=True)
    result = {"provenance": provenance("auto", args.precision), "roundtrip": {"threads": 1}, "fits": []}  # fits: all threads
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for name, function in codecs.items():
        worst = 0
        for images in sets.values():
            for quality in (30, 75, 90):
                diff = (function(images, quality).int() - torchvision_roundtrip(images, quality).int()).abs()
                worst = max(worst, int(diff.max()))
        result["roundtrip"][name] = {"images_per_second": round(roundtrips_per_second(function, sample)),
                                     "bitwise_equal_to_torchvision": worst == 0, "max_difference": worst}
        print(name, result["roundtrip"][name], flush=True)
    torch.set_num_threads(threads)
    codecs = {k: codecs[k] for k in ("pillow", "torchvision")}
    normal = np.asarray(X[np.asarray(y) == 0])
    for precision in args.precision:
        for name, function in codecs.items():
            # Every module that makes the round trip in a fit: training data, scoring, validation.
            fitdata.jpeg_roundtrip = inference.jpeg_roundtrip = validation.jpeg_roundtrip = function
            try:
                det = ADIBDetector(steps=args.steps, precision=precision, random_state=0, verbose=False)
                started = time.perf_counter()
                det.fit(normal, oe)
                fit_s = time.perf_counter() - started
            finally:
                fitdata.jpeg_roundtrip = inference.jpeg_roundtrip = validation.jpeg_roundtrip = jpeg_roundtrip
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
