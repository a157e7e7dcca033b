"""Real-data checks on ../shared/data (or $SKAD_SHARED_DATA); marked slow, skipped when absent."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(os.environ.get("SKAD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "cifar10-jpg.zip").is_file(), reason=f"no real data at {DATA}"),
]


def test_cifar10_and_tiny_imagenet_load_with_their_layouts():
    from skad_transfer.data.datasets import load_image_folder, load_tiny_imagenet

    X, y, classes = load_image_folder(DATA / "cifar10-jpg.zip", split="test")
    assert X.shape == (10000, 32, 32, 3) and X.dtype == np.uint8
    assert classes[0] == "airplane" and np.bincount(y).tolist() == [1000] * 10
    X, y, wnids = load_tiny_imagenet(DATA / "tiny-imagenet-32.zip", split="val")
    assert X.shape == (10000, 32, 32, 3) and len(wnids) == 200


def test_embedded_theta0_beats_random_init_with_knn_on_cifar10():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "knn_prior.py"), "--data", str(DATA),
                           "--classes", "0", "8", "--n-train", "500"], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.startswith(("theta0 ", "random"))}
    assert float(lines["theta0"][-1]) > float(lines["random"][-1]) + 0.05
