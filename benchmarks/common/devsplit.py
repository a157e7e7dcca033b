"""The development protocol's data, shared by ``studies/dev_defaults.py`` and
``studies/intensity_separability.py`` (moved here from ``dev_defaults.py`` unchanged).

:func:`dev_split`: CIFAR-10 training images 0..3999 of each class (position within the class) train,
4000..4999 evaluate; OE = all Tiny-ImageNet-32 training images. :func:`low_res`: images resized (and
made luma), the stand-in for small grayscale datasets. :func:`match_histograms`: each image's pixel
values replaced by a random reference's in its own rank order. :func:`glyph_split`: rendered letters
(:func:`skad_transfer.bench.devsuite.make_glyphs`) as a training and an evaluation draw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["dev_split", "glyph_split", "low_res", "match_histograms"]


def dev_split(data_dir: Path):
    from skad_transfer.data.datasets import load_image_folder, load_tiny_imagenet

    X, y, names = load_image_folder(data_dir / "cifar10-jpg.zip", split="train")
    y = np.asarray(y)
    position = np.zeros(len(y), dtype=int)
    for c in range(len(names)):
        index = np.flatnonzero(y == c)
        position[index] = np.arange(len(index))
    oe, _, _ = load_tiny_imagenet(data_dir / "tiny-imagenet-32.zip", split="train")
    return np.asarray(X), y, position < 4000, position >= 4000, oe, list(names)


def low_res(images: np.ndarray, size: int, gray: bool) -> np.ndarray:
    """NHWC uint8 images resized to ``size`` (bilinear, antialiased) and, with ``gray``, made luma:
    :func:`skad_transfer.bench.devsuite.low_resolution`, under the studies' older name."""
    from skad_transfer.bench.devsuite import low_resolution

    return low_resolution(images, size, luma=gray)


def match_histograms(images: np.ndarray, references: np.ndarray, seed: int) -> np.ndarray:
    """Each image's pixel values replaced by a random reference's, in the image's own rank order."""
    rng = np.random.default_rng(seed)
    flat = images.reshape(len(images), -1)
    chosen = np.sort(references.reshape(len(references), -1)[rng.integers(0, len(references), len(images))], axis=1)
    out = np.empty_like(flat)
    np.put_along_axis(out, np.argsort(flat, axis=1, kind="stable"), chosen, axis=1)
    return out.reshape(images.shape)


def glyph_split(n_normal: int, seed: int):
    from skad_transfer.bench.devsuite import make_glyphs

    X_train, y_train = make_glyphs(n_normal, random_state=1000 + seed)
    X_eval, y_eval = make_glyphs(n_normal, random_state=2000 + seed)
    X = np.concatenate([X_train, X_eval])
    y = np.concatenate([y_train, y_eval])
    train = np.arange(len(y)) < len(y_train)
    return X, y, train, ~train, [chr(c) for c in b"ACEFHKLPTX"]
