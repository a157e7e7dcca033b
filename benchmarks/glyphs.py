"""A development stand-in for small grayscale character datasets: rendered, jittered letters.

Used to choose defaults for data like scikit-learn's 8x8 handwritten digits *without* looking at
those digits (issue 8, goal 5: the second dataset must not choose defaults). Each image is one
capital letter drawn with Pillow's built-in font (no system fonts) with a random stroke width,
rotation, shear and aspect, made binary, cropped to its bounding box and fitted into a 32x32
bitmap, then reduced the way the UCI digits were: the count of set pixels in each 4x4 block
(0..16), here scaled by 255/16 as the library's digits loader scales them. Output: white on black,
(N, 8, 8, 1) uint8, the format of ``sklearn.datasets.load_digits`` after that scaling.

    from glyphs import make_glyphs
    X, y = make_glyphs(90, letters="ACEFHKLPTX", random_state=0)   # (900, 8, 8, 1) uint8
"""

from __future__ import annotations

import numpy as np


def make_glyphs(n_per_class: int, letters: str = "ACEFHKLPTX", random_state: int = 0):
    """``(X, y)``: ``n_per_class`` images per letter, NHWC uint8 (N, 8, 8, 1), labels 0..len-1."""
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
