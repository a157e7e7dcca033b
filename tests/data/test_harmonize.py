import numpy as np
import pytest
import torch

from skad_transfer.data.harmonize import LUMA_WEIGHTS, check_jpeg_quality, jpeg_roundtrip, like_source


def natural_like(n, channels=3, seed=0):
    """Smooth images with some texture (JPEG keeps them close, but not bitwise)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, 32)
    base = (ramp[None, :] + ramp[:, None]) / 2
    images = base[None, None] + rng.normal(0, 12, (n, channels, 32, 32))
    return torch.from_numpy(np.clip(images, 0, 255).astype(np.uint8))


def test_none_is_a_no_op():
    images = natural_like(2)
    assert jpeg_roundtrip(images, None) is images


def test_roundtrip_keeps_shape_and_dtype_and_changes_the_pixels():
    images = natural_like(4)
    out = jpeg_roundtrip(images, 75)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert not torch.equal(out, images)
    assert (out.float() - images.float()).abs().mean() < 12  # a re-encoding, not a different image


def test_a_second_roundtrip_at_the_same_quality_changes_far_less_than_the_first():
    # Why harmonising both sides works: images already at quality q barely move, others move more.
    images = natural_like(8)
    once = jpeg_roundtrip(images, 75)
    twice = jpeg_roundtrip(once, 75)
    first = (once.float() - images.float()).abs().mean()
    second = (twice.float() - once.float()).abs().mean()
    assert second < first / 2


def test_each_image_is_encoded_alone():
    images = natural_like(6)
    together = jpeg_roundtrip(images, 60)
    alone = torch.cat([jpeg_roundtrip(images[i:i + 1], 60) for i in range(6)])
    assert torch.equal(together, alone)


def test_float_images_in_0_1_are_quantised_first():
    images = natural_like(3)
    assert torch.equal(jpeg_roundtrip(images.float() / 255, 75), jpeg_roundtrip(images, 75))


@pytest.mark.parametrize("bad", [torch.full((1, 3, 8, 8), 2.0), torch.full((1, 3, 8, 8), -0.5)])
def test_floats_outside_0_1_are_an_error_naming_the_parameter(bad):
    with pytest.raises(ValueError, match=r"jpeg_quality=75 .*0\.\.1.*jpeg_quality=None"):
        jpeg_roundtrip(bad, 75)


def test_grayscale_and_empty_batches():
    gray = natural_like(2, channels=1)
    assert jpeg_roundtrip(gray, 75).shape == (2, 1, 32, 32)
    empty = torch.zeros((0, 3, 32, 32), dtype=torch.uint8)
    assert jpeg_roundtrip(empty, 75).shape == (0, 3, 32, 32)


@pytest.mark.parametrize("quality, error", [(0, ValueError), (101, ValueError), (75.0, TypeError), (True, TypeError),
                                            ("75", TypeError)])
def test_quality_is_checked(quality, error):
    with pytest.raises(error, match="jpeg_quality"):
        check_jpeg_quality(quality)


def test_like_source_is_a_no_op_for_the_same_shape_or_none():
    images = natural_like(3)
    assert like_source(images, None) is images
    assert like_source(images, (3, 32, 32)) is images
    assert like_source(images, (3, 64, 64)) is images  # never resized up: that would only blur


def test_like_source_resizes_down_to_the_normal_images_and_makes_them_luma_for_grayscale():
    images = natural_like(3)
    small = like_source(images, (3, 8, 8))
    assert small.shape == (3, 3, 8, 8) and small.dtype == torch.uint8
    assert not torch.equal(small[:, 0], small[:, 1])  # colour kept
    gray = like_source(images, (1, 8, 16))
    assert gray.shape == (3, 3, 8, 16)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 0], gray[:, 2])
    expected = (small.float() * torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)).sum(1).round()
    assert torch.equal(like_source(images, (1, 8, 8))[:, 0], expected.to(torch.uint8))
    floats = like_source(images.float() / 255, (1, 8, 8))
    assert floats.dtype == torch.float32 and float((floats * 255 - expected[:, None]).abs().max()) < 1.0
