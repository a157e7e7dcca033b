"""First (decode) and second (cached memmap) load times of the real datasets.

    python benchmarks/speed/data_loading.py --data DATA_DIR [--cache-dir /tmp/skad_bench_cache]

``DATA_DIR`` is the folder holding ``cifar10-jpg.zip`` and ``tiny-imagenet-32.zip``.

The cache directory is emptied first, so the first load decodes every JPEG.
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import print_provenance  # noqa: E402

from skad_transfer.data.datasets import load_image_folder, load_tiny_imagenet  # noqa: E402


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    out = function(*args, **kwargs)
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path,
                        help="folder holding cifar10-jpg.zip and tiny-imagenet-32.zip")
    parser.add_argument("--cache-dir", default="/tmp/skad_bench_cache")
    args = parser.parse_args()
    print_provenance("cpu")
    cache = Path(args.cache_dir)
    shutil.rmtree(cache, ignore_errors=True)
    data = Path(args.data)
    jobs = [
        ("cifar10-jpg.zip train", load_image_folder, data / "cifar10-jpg.zip", "train"),
        ("cifar10-jpg.zip test", load_image_folder, data / "cifar10-jpg.zip", "test"),
        ("tiny-imagenet-32.zip train", load_tiny_imagenet, data / "tiny-imagenet-32.zip", "train"),
        ("tiny-imagenet-32.zip val", load_tiny_imagenet, data / "tiny-imagenet-32.zip", "val"),
    ]
    print(f"{'dataset':<28}{'images':>8}{'first s':>10}{'second s':>10}")
    for label, loader, path, split in jobs:
        first, (X, _, _) = timed(loader, path, split=split, cache_dir=cache)
        second, (X2, _, _) = timed(loader, path, split=split, cache_dir=cache)
        assert X.shape == X2.shape
        print(f"{label:<28}{len(X):>8}{first:>10.2f}{second:>10.3f}")


if __name__ == "__main__":
    main()
