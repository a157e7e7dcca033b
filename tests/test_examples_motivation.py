"""examples/motivation_lenet.py (paper Table 1) runs with tiny settings, on synthetic data and on image folders."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "motivation_lenet.py"


def run(*args, env=None):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_tiny_synthetic_run():
    done = run("--tiny")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "transfer + OE" in done.stdout and "self-supervised" in done.stdout
    for layer in ("conv1", "conv2", "conv3"):
        row = next(line for line in lines if line.startswith(layer))
        assert row.count("[") == 3  # one mean AUC per paradigm


def fake_image_folder(path: Path, classes, n_per_class: int, rng) -> Path:
    """A zip holding <root>/<split>/<class>/<i>.png, like the CIFAR image-folder zips."""
    with zipfile.ZipFile(path, "w") as archive:
        for split in ("train", "test"):
            for c, name in enumerate(classes):
                for i in range(n_per_class):
                    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                    image[:, :, c % 3] = 40 * c  # each class a little different
                    target = path.parent / "png"
                    target.mkdir(exist_ok=True)
                    Image.fromarray(image).save(target / "x.png")
                    archive.write(target / "x.png", f"root/{split}/{name}/{i}.png")
    return path


def test_image_folder_run(tmp_path):
    rng = np.random.default_rng(0)
    cifar10 = fake_image_folder(tmp_path / "c10.zip", ["cat", "dog"], 12, rng)
    cifar100 = fake_image_folder(tmp_path / "c100.zip", ["apple", "bee", "cup"], 12, rng)
    done = run("--tiny", "--cifar10", str(cifar10), "--cifar100", str(cifar100), "--classes", "0", "1",
               env={"SKAD_TRANSFER_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 one-vs-rest problems" in done.stdout


def test_cifar10_needs_cifar100():
    done = run("--tiny", "--cifar10", "nowhere.zip")
    assert done.returncode != 0 and "--cifar10 needs --cifar100" in done.stderr
