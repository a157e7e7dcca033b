"""Shared fixtures: tiny image problems that a width-4..8 ResNet26 learns in seconds on a CPU."""

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest


def blobs(n, *, bright, rng, size=32):
    """Dark noise images; ``bright`` ones carry a saturated square (the easy anomaly)."""
    x = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    if bright:
        for i in range(n):
            r, c = rng.integers(0, size - 12, 2)
            x[i, r:r + 12, c:c + 12, int(rng.integers(0, 3))] = 255
    return x


@pytest.fixture(scope="session")
def easy_problem():
    """(X_normal, X_outlier, X_test, y_test) with y_test +1 normal / -1 anomaly."""
    rng = np.random.default_rng(0)
    X_normal = blobs(128, bright=False, rng=rng)
    X_outlier = blobs(128, bright=True, rng=rng)
    X_test = np.concatenate([blobs(40, bright=False, rng=rng), blobs(40, bright=True, rng=rng)])
    y_test = np.r_[np.ones(40, int), -np.ones(40, int)]
    return X_normal, X_outlier, X_test, y_test


TINY = dict(weights=None, width=4, epochs=1, batch_size=32, device="cpu", random_state=0)
"""Constructor settings for fast detector tests."""


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks run fastest single-threaded (and do not stall on a busy 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def zip_tree(src: Path, dest: Path) -> Path:
    """Zip every file under ``src`` into ``dest``, with paths relative to ``src``."""
    with zipfile.ZipFile(dest, "w") as archive:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(src).as_posix())
    return dest


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_fake_cifar10(root: Path, per_batch: int = 2) -> np.ndarray:
    """Write cifar-10-batches-py with the real pickle layout; return the NHWC train images."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        nhwc = rng.integers(0, 256, size=(per_batch, 32, 32, 3), dtype=np.uint8)
        rows = nhwc.transpose(0, 3, 1, 2).reshape(per_batch, -1)  # CIFAR rows are CHW
        labels = [(len(train) * per_batch + i) % 10 for i in range(per_batch)]
        with open(base / name, "wb") as fh:
            pickle.dump({"data": rows, "labels": labels}, fh)
        if name != "test_batch":
            train.append(nhwc)
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": CIFAR_CLASSES}, fh)
    return np.concatenate(train)


@pytest.fixture
def skip_md5(monkeypatch):
    """Fake files cannot match torchvision's md5 sums; keep only the existence check."""
    import torchvision.datasets.cifar
    import torchvision.datasets.stl10
    import torchvision.datasets.svhn

    def exists(fpath, md5=None):
        return os.path.isfile(fpath)

    for module in (torchvision.datasets.cifar, torchvision.datasets.svhn, torchvision.datasets.stl10):
        monkeypatch.setattr(module, "check_integrity", exists)
