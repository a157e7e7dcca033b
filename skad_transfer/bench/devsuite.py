"""The development suite: five kinds of data on which the library's defaults are chosen.

A default that is chosen on one dataset holds there; a user's data is data nobody tuned on. The
suite is data the project builds or holds for development only, never a reported test split, of
five kinds that fail in different ways (issue 25):

==================  ==========================================================  ==================
kind                normal images (one class) / anomalies (the other classes)   against the OE
==================  ==========================================================  ==================
``cifar10-dev``     CIFAR-10 *training* images, 32x32 colour photographs         near (photographs)
``cifar10-gray16``  the same split at 16x16 in luma, ``(N, 16, 16, 1)``          near, other format
``glyphs``          rendered capital letters in the 8x8 UCI-digits format        far (strokes)
``shapes``          rendered geometric shapes, random colours, sizes, poses      far (renders)
``textures``        procedural grayscale textures (stripes, checks, dots, ...)   far (patterns)
==================  ==========================================================  ==================

Each kind is a one-vs-rest protocol: one class normal, every other class anomalous, so that the
anomalies are other objects of the same kind (semantic and near), never another kind of image.
The CIFAR-10 kinds read only the training split (positions 0..3999 of each class for normal
training images, 4000..4999 for evaluation); CIFAR-10's test split, which the reported tables use,
is never touched. The rendered kinds draw training and evaluation images from different seeds.
The OE corpus is the user's usual choice, natural photographs (Tiny-ImageNet-32), for every kind:
for the rendered kinds it is far from the data, the case where a normal-vs-OE classifier can
separate the two by "rendered vs photograph" alone.

    from skad_transfer.bench.devsuite import make_task
    task = make_task("shapes", 0, data_dir=None)      # rendered kinds need no files
    task.X_normal, task.X_eval, task.y_eval           # y_eval: +1 normal, -1 anomaly
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["KINDS", "SuiteTask", "make_glyphs", "make_shapes", "make_task", "make_textures"]

#: The kinds of the suite, in table order.
KINDS = ("cifar10-dev", "cifar10-gray16", "glyphs", "shapes", "textures")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
GLYPH_LETTERS = "ACEFHKLPTX"
SHAPE_CLASSES = ("circle", "triangle", "square", "pentagon", "hexagon", "star", "cross", "ring")
TEXTURE_CLASSES = ("stripes", "checks", "dots", "rings", "crosshatch", "blobs", "zigzag", "waves")


@dataclass
class SuiteTask:
    """One development task: normal training images, an evaluation set (+1 normal, -1 anomaly)."""

    kind: str
    normal_class: int
    class_name: str
    X_normal: np.ndarray
    X_eval: np.ndarray
    y_eval: np.ndarray


# ---------------------------------------------------------------------------- rendered kinds
def make_glyphs(n_per_class: int, letters: str = GLYPH_LETTERS, random_state: int = 0):
    """``(X, y)``: rendered capital letters in the format of scikit-learn's 8x8 digits.

    Each image is one letter drawn with Pillow's built-in font with a random stroke width, rotation,
    shear and aspect, made binary, cropped to its bounding box and fitted into a 32x32 bitmap, then
    reduced the way the UCI digits were: the count of set pixels in each 4x4 block (0..16), scaled
    by 255/16. White on black, NHWC uint8 ``(N, 8, 8, 1)``; labels index ``letters``.
    """
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(random_state)
    canvas = 96
    images, labels = [], []
    for label, letter in enumerate(letters):
        for _ in range(n_per_class):
            font = ImageFont.load_default(size=60)
            image = Image.new("L", (canvas, canvas), 0)
            draw = ImageDraw.Draw(image)
            box = draw.textbbox((0, 0), letter, font=font)
            x = (canvas - (box[2] - box[0])) / 2 - box[0]
            y = (canvas - (box[3] - box[1])) / 2 - box[1]
            draw.text((x, y), letter, fill=255, font=font, stroke_width=int(rng.integers(0, 5)), stroke_fill=255)
            shear = rng.uniform(-0.35, 0.35)
            image = image.transform((canvas, canvas), Image.Transform.AFFINE,
                                    (1, shear, -shear * canvas / 2, 0, 1, 0), resample=Image.Resampling.BILINEAR)
            image = image.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BILINEAR)
            bitmap = np.asarray(image) > 127
            rows, cols = np.flatnonzero(bitmap.any(1)), np.flatnonzero(bitmap.any(0))
            glyph = Image.fromarray(bitmap[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.uint8) * 255)
            height = int(rng.integers(24, 33))
            width = int(np.clip(round(height * glyph.width / glyph.height * rng.uniform(0.6, 1.0)), 4, 32))
            glyph = glyph.resize((width, height), Image.Resampling.BILINEAR)
            frame = np.zeros((32, 32), dtype=np.uint8)
            top, left = (32 - height) // 2, int(rng.integers(0, 32 - width + 1)) if width < 32 else 0
            frame[top:top + height, left:left + width] = np.asarray(glyph) > 127
            counts = frame.reshape(8, 4, 8, 4).sum(axis=(1, 3))  # 0..16, as UCI's 4x4 blocks
            images.append(np.rint(counts * (255.0 / 16.0)).astype(np.uint8)[..., None])
            labels.append(label)
    order = rng.permutation(len(images))
    return np.stack(images)[order], np.asarray(labels)[order]


def _polygon(n: int, radius: float, rotation: float, star: bool = False) -> list[tuple[float, float]]:
    points = []
    corners = 2 * n if star else n
    for k in range(corners):
        r = radius * (0.45 if star and k % 2 else 1.0)
        angle = rotation + 2 * np.pi * k / corners
        points.append((r * np.cos(angle), r * np.sin(angle)))
    return points


def _draw_shape(draw, shape: str, cx: float, cy: float, radius: float, rotation: float, fill) -> None:
    def moved(points):
        return [(cx + x, cy + y) for x, y in points]

    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
    elif shape == "ring":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
        inner = radius * 0.55
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=None)
    elif shape in ("triangle", "square", "pentagon", "hexagon"):
        sides = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}[shape]
        draw.polygon(moved(_polygon(sides, radius, rotation)), fill=fill)
    elif shape == "star":
        draw.polygon(moved(_polygon(5, radius, rotation, star=True)), fill=fill)
    elif shape == "cross":
        arm = radius * 0.33
        for angle in (rotation, rotation + np.pi / 2):
            c, s = np.cos(angle), np.sin(angle)
            bar = [(-radius, -arm), (radius, -arm), (radius, arm), (-radius, arm)]
            draw.polygon(moved([(x * c - y * s, x * s + y * c) for x, y in bar]), fill=fill)
    else:  # pragma: no cover - the class list is fixed
        raise ValueError(shape)


def make_shapes(n_per_class: int, random_state: int = 0):
    """``(X, y)``: rendered geometric shapes, NHWC uint8 ``(N, 32, 32, 3)``; labels index
    :data:`SHAPE_CLASSES`.

    One filled shape per image, drawn at 4x and downsampled (antialiased), with a random colour,
    size (30-85% of the image), rotation and position, on a random background colour with a linear
    gradient, plus mild pixel noise: the class is the shape's outline alone, everything else varies.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(random_state)
    canvas = 128
    images, labels = [], []
    for label, shape in enumerate(SHAPE_CLASSES):
        for _ in range(n_per_class):
            background = rng.integers(0, 256, 3)
            fill = rng.integers(0, 256, 3)
            while np.abs(fill.astype(int) - background).sum() < 150:  # visible against its background
                fill = rng.integers(0, 256, 3)
            ramp = np.linspace(-1, 1, canvas)[None, :, None] * rng.uniform(-40, 40, 3)
            angle = rng.uniform(0, np.pi)
            grid = np.cos(angle) * ramp + np.sin(angle) * ramp.transpose(1, 0, 2)
            base = np.clip(background + grid, 0, 255).astype(np.uint8)
            image = Image.fromarray(base, "RGB")
            draw = ImageDraw.Draw(image)
            radius = canvas / 2 * rng.uniform(0.3, 0.85)
            margin = canvas / 2 - radius
            cx, cy = canvas / 2 + rng.uniform(-margin, margin, 2)
            _draw_shape(draw, shape, cx, cy, radius, rng.uniform(0, 2 * np.pi), tuple(int(v) for v in fill))
            if shape == "ring":  # the hole shows the background
                inner = radius * 0.55
                mask = Image.new("L", (canvas, canvas), 0)
                ImageDraw.Draw(mask).ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=255)
                image.paste(Image.fromarray(base, "RGB"), (0, 0), mask)
            small = np.asarray(image.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
            small += rng.normal(0, 6, small.shape)
            images.append(np.clip(np.rint(small), 0, 255).astype(np.uint8))
            labels.append(label)
    order = rng.permutation(len(images))
    return np.stack(images)[order], np.asarray(labels)[order]


def _texture(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """One texture in [-1, 1] on a ``size`` x ``size`` grid."""
    v, u = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, np.pi)
    a = np.cos(angle) * u + np.sin(angle) * v
    b = -np.sin(angle) * u + np.cos(angle) * v
    frequency = rng.uniform(1.5, 7.0)
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "stripes":
        return np.sign(np.sin(2 * np.pi * frequency * a + phase))
    if kind == "checks":
        return np.sign(np.sin(2 * np.pi * frequency * a + phase) * np.sin(2 * np.pi * frequency * b))
    if kind == "dots":
        cell_a = (frequency * a + phase / (2 * np.pi)) % 1 - 0.5
        cell_b = (frequency * b) % 1 - 0.5
        return np.where(np.hypot(cell_a, cell_b) < rng.uniform(0.18, 0.32), 1.0, -1.0)
    if kind == "rings":
        cx, cy = rng.uniform(0.2, 0.8, 2)
        return np.sign(np.sin(2 * np.pi * frequency * np.hypot(u - cx, v - cy) + phase))
    if kind == "crosshatch":
        width = rng.uniform(0.12, 0.25)
        lines_a = np.abs(((frequency * a + phase / (2 * np.pi)) % 1) - 0.5) < width
        lines_b = np.abs(((frequency * b) % 1) - 0.5) < width
        return np.where(lines_a | lines_b, 1.0, -1.0)
    if kind == "blobs":
        noise = rng.normal(size=(size, size))
        spectrum = np.fft.fft2(noise)
        fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
        spectrum *= np.exp(-(fx ** 2 + fy ** 2) / (2 * (frequency / size / 1.5) ** 2))
        field = np.real(np.fft.ifft2(spectrum))
        return np.sign(field - np.median(field))
    if kind == "zigzag":
        tooth = 2 * np.abs((frequency * b) % 1 - 0.5)  # a triangle wave across the stripes
        return np.sign(np.sin(2 * np.pi * frequency * (a + 0.15 * tooth) + phase))
    if kind == "waves":
        bend = 0.08 * np.sin(2 * np.pi * rng.uniform(1.0, 2.5) * b)
        return np.sign(np.sin(2 * np.pi * frequency * (a + bend) + phase))
    raise ValueError(kind)  # pragma: no cover - the class list is fixed


def make_textures(n_per_class: int, random_state: int = 0):
    """``(X, y)``: procedural grayscale textures, NHWC uint8 ``(N, 32, 32, 1)``; labels index
    :data:`TEXTURE_CLASSES`.

    Each texture is drawn at 4x and averaged down (antialiased), with a random orientation, scale,
    phase, contrast, brightness and brightness gradient, and strong pixel noise: the class is the pattern's structure.
    """
    rng = np.random.default_rng(random_state)
    images, labels = [], []
    for label, kind in enumerate(TEXTURE_CLASSES):
        for _ in range(n_per_class):
            big = _texture(kind, rng, 128)
            small = big.reshape(32, 4, 32, 4).mean(axis=(1, 3))
            contrast, level = rng.uniform(15, 70), rng.uniform(60, 195)
            ramp = rng.uniform(-40, 40) * (np.mgrid[0:32, 0:32][int(rng.integers(0, 2))] / 31 - 0.5)
            pixels = level + ramp + contrast * small + rng.normal(0, 20, small.shape)
            images.append(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)[..., None])
            labels.append(label)
    order = rng.permutation(len(images))
    return np.stack(images)[order], np.asarray(labels)[order]


# ---------------------------------------------------------------------------- CIFAR-10 kinds
def low_resolution(images: np.ndarray, size: int, *, luma: bool) -> np.ndarray:
    """NHWC uint8 images resized to ``size`` (bilinear, antialiased) and, with ``luma``, made luma (BT.601)."""
    import torch
    import torch.nn.functional as F

    out = []
    for start in range(0, len(images), 4096):
        # A copy: the cached dataset is read-only, and torch will not wrap a read-only array without warning.
        part = torch.from_numpy(np.array(images[start:start + 4096])).permute(0, 3, 1, 2).float()
        part = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if luma:
            part = (part * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        out.append(part.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def low_resolution_luma(images: np.ndarray, size: int) -> np.ndarray:
    """NHWC uint8 colour images resized to ``size`` (bilinear, antialiased) and made luma (BT.601)."""
    return low_resolution(images, size, luma=True)


def _cifar10_dev(data_dir: Path):
    """CIFAR-10's training split, labels and each image's position within its class."""
    from ..data.image_folder import load_image_folder

    X, y, _ = load_image_folder(Path(data_dir) / "cifar10-jpg.zip", split="train")
    y = np.asarray(y)
    position = np.zeros(len(y), dtype=int)
    for c in range(10):
        index = np.flatnonzero(y == c)
        position[index] = np.arange(len(index))
    return np.asarray(X), y, position


def load_outlier_exposure(data_dir: str | os.PathLike, n: int | None = None, random_state: int = 0) -> np.ndarray:
    """Tiny-ImageNet-32's training images (``n`` of them drawn at random, all with None)."""
    from ..data.tiny_imagenet import load_tiny_imagenet

    images = np.asarray(load_tiny_imagenet(Path(data_dir) / "tiny-imagenet-32.zip", split="train")[0])
    if n is not None and n < len(images):
        images = images[np.sort(np.random.default_rng(random_state).choice(len(images), n, replace=False))]
    return images


# ---------------------------------------------------------------------------- tasks
def _one_vs_rest(kind, normal_class, names, X_train, y_train, X_eval, y_eval) -> SuiteTask:
    return SuiteTask(kind=kind, normal_class=int(normal_class), class_name=names[normal_class],
                     X_normal=X_train[y_train == normal_class], X_eval=X_eval,
                     y_eval=np.where(y_eval == normal_class, 1, -1))


def make_task(kind: str, normal_class: int, *, data_dir: str | os.PathLike | None = None, n_normal: int = 1000,
              n_eval_per_class: int = 200, seed: int = 0) -> SuiteTask:
    """The one-vs-rest task of ``kind`` with ``normal_class`` normal.

    ``n_normal`` normal training images (the rendered kinds draw them; the CIFAR-10 kinds take the
    first of positions 0..3999 of the class), and ``n_eval_per_class`` evaluation images of every
    class (CIFAR-10: positions 4000 on; rendered: another seed's draw). ``data_dir`` holds
    ``cifar10-jpg.zip`` (for the CIFAR-10 kinds only). ``seed`` selects the rendered kinds' draws.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind.startswith("cifar10"):
        if data_dir is None:
            raise ValueError(f"kind {kind!r} reads cifar10-jpg.zip: pass data_dir=")
        if not 0 <= normal_class < 10:
            raise ValueError(f"normal_class must be in 0..9 for {kind!r}, got {normal_class}")
        X, y, position = _cifar10_dev(Path(data_dir))
        train = (position < min(n_normal, 4000))
        evaluate = (position >= 4000) & (position < 4000 + min(n_eval_per_class, 1000))
        if kind == "cifar10-gray16":
            X = low_resolution_luma(X, 16)
        return _one_vs_rest(kind, normal_class, CIFAR10_CLASSES, X[train], y[train], X[evaluate], y[evaluate])
    make, names = {"glyphs": (make_glyphs, tuple(GLYPH_LETTERS)), "shapes": (make_shapes, SHAPE_CLASSES),
                   "textures": (make_textures, TEXTURE_CLASSES)}[kind]
    if not 0 <= normal_class < len(names):
        raise ValueError(f"normal_class must be in 0..{len(names) - 1} for {kind!r}, got {normal_class}")
    X_train, y_train = make(n_normal, random_state=1000 + seed)
    X_eval, y_eval = make(n_eval_per_class, random_state=2000 + seed)
    return _one_vs_rest(kind, normal_class, names, X_train, y_train, X_eval, y_eval)
