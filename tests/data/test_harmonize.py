import numpy as np
import pytest
import torch

from skad_transfer.data.harmonize import (
    LUMA_WEIGHTS,
    check_jpeg_quality,
    jpeg_roundtrip,
    like_source,
    intensity_quantiles,
    intensity_separability,
    match_histograms,
    match_luminance,
    reference_indices,
)


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


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("quality", [30, 75, 90])
def test_the_round_trip_makes_the_pixels_torchvision_s_deprecated_codec_made(channels, quality):
    # Pillow replaced torchvision's encode_jpeg/decode_jpeg (deprecated in 0.29); both wrap
    # libjpeg-turbo, and every stored result and pinned score relies on the pixels being the same.
    import warnings

    io = pytest.importorskip("torchvision.io")
    if not hasattr(io, "encode_jpeg"):
        pytest.skip("torchvision no longer ships its JPEG codec")
    images = natural_like(16, channels=channels, seed=quality)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = torch.stack(io.decode_jpeg(io.encode_jpeg(list(images), quality=quality)))
    assert torch.equal(jpeg_roundtrip(images, quality), reference)


def test_the_round_trip_calls_no_deprecated_api():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        jpeg_roundtrip(natural_like(2), 75)
        jpeg_roundtrip(natural_like(2, channels=1), 75)


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


def sorted_values(images):
    return images.reshape(images.shape[0], images.shape[1], -1).sort(dim=-1).values


def test_match_histograms_gives_each_image_its_references_values_in_its_own_rank_order():
    g = torch.Generator().manual_seed(0)
    images = torch.stack([torch.randperm(64, generator=g).view(1, 8, 8) * 3 for _ in range(4)]).to(torch.uint8)
    references = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8, generator=g)
    matched = match_histograms(images, references)
    assert matched.dtype == torch.uint8 and matched.shape == images.shape
    assert torch.equal(sorted_values(matched), sorted_values(references))  # no ties: the exact histogram
    flat = lambda t: t.reshape(4, -1).float()  # noqa: E731
    # Monotone: a brighter pixel never becomes darker than a dimmer one.
    order = flat(images).argsort(dim=-1)
    assert (flat(matched).gather(-1, order).diff(dim=-1) >= 0).all()


def test_match_histograms_keeps_equal_pixels_equal_and_takes_the_middle_quantile_of_a_run():
    reference = torch.arange(0, 160, 10, dtype=torch.uint8).view(1, 1, 4, 4)  # 0, 10, ..., 150
    flat = torch.full((1, 1, 4, 4), 7, dtype=torch.uint8)
    assert (match_histograms(flat, reference) == 80).all()  # the median, not the maximum
    half = torch.tensor([0] * 8 + [200] * 8, dtype=torch.uint8).view(1, 1, 4, 4)
    out = match_histograms(half, reference).flatten()
    assert (out[:8] == 40).all() and (out[8:] == 120).all()


def test_match_histograms_works_per_channel_across_sizes_and_dtypes():
    images = natural_like(3).float() / 255  # float 0..1, 32x32
    references = torch.stack([torch.full((3, 8, 8), v, dtype=torch.uint8) for v in (0, 128, 255)])
    references[:, 1] = 255 - references[:, 1]
    out = match_histograms(images, references)
    assert out.dtype == torch.float32 and out.shape == images.shape
    torch.testing.assert_close(out[:, 0].amax(dim=(1, 2)), torch.tensor([0.0, 128 / 255, 1.0]))
    torch.testing.assert_close(out[:, 1].amax(dim=(1, 2)), torch.tensor([1.0, 127 / 255, 0.0]))
    # Different pixel counts: the reference's quantiles are read at the image's quantiles.
    ramp = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8) * 4
    larger = match_histograms(natural_like(1, channels=1), ramp)
    assert larger.min() >= 0 and larger.max() <= 252 and len(larger.unique()) > 32


def test_match_histograms_names_the_shapes_it_needs():
    with pytest.raises(ValueError, match="one .* reference per image"):
        match_histograms(natural_like(2), natural_like(3))
    with pytest.raises(ValueError, match="one .* reference per image"):
        match_histograms(natural_like(2)[0], natural_like(2)[0])


def test_reference_indices_are_a_fixed_in_range_pairing_whatever_the_read_order():
    indices = torch.arange(10_000)
    pairs = reference_indices(indices, 90, seed=3)
    assert pairs.min() >= 0 and pairs.max() < 90
    assert torch.equal(reference_indices(indices.flip(0), 90, seed=3), pairs.flip(0))
    assert torch.equal(reference_indices(indices[5000:], 90, seed=3), pairs[5000:])
    counts = torch.bincount(pairs, minlength=90)
    assert counts.min() > 0.8 * counts.float().mean()  # every reference is used, about equally
    assert not torch.equal(reference_indices(indices, 90, seed=4), pairs)
    assert reference_indices(torch.tensor([10**9]), 7).item() in range(7)  # no overflow at huge corpora
    with pytest.raises(ValueError, match="n_references"):
        reference_indices(indices, 0)


def test_intensity_quantiles_describe_the_histogram_on_a_unit_scale():
    ramp = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).repeat(2, 3, 1, 1) * 4
    q = intensity_quantiles(ramp, n_quantiles=3)
    assert q.shape == (2, 9)
    torch.testing.assert_close(q[0, :3], torch.tensor([0.0, 128 / 255, 252 / 255]))
    torch.testing.assert_close(intensity_quantiles(ramp.float() / 255, n_quantiles=3), q)


def test_intensity_separability_finds_an_intensity_shortcut_and_only_that():
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.integers(0, 256, (200, 3, 8, 8), dtype=np.uint8))
    assert 0.3 < intensity_separability(noise[:100], noise[100:]) < 0.7
    dark = noise[:100] // 4  # the same images made dark: separable by intensities alone
    assert intensity_separability(dark, noise[100:]) > 0.99
    # Same histograms, different layouts: intensity statistics cannot tell them apart.
    shuffled = noise[:100].reshape(100, 3, -1)[..., torch.randperm(64)].reshape(100, 3, 8, 8)
    assert intensity_separability(noise[:100], shuffled) < 0.7
    assert np.isnan(intensity_separability(noise[:1], noise[100:]))


def test_match_luminance_keeps_colour_and_equals_match_histograms_on_grayscale():
    g = torch.Generator().manual_seed(0)
    references = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8, generator=g).expand(-1, 3, -1, -1)
    gray = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8, generator=g).expand(-1, 3, -1, -1)
    assert torch.equal(match_luminance(gray, references), match_histograms(gray, references))
    # A colour image keeps its colour differences; its luma takes the reference's histogram.
    red = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    red[:, 0] = torch.arange(64, dtype=torch.uint8).view(8, 8) + 100
    matched = match_luminance(red, references[:1])
    assert (matched[:, 0].int() >= matched[:, 1].int()).all() and torch.equal(matched[:, 1], matched[:, 2])
    floats = match_luminance(red.float() / 255, references[:1])
    assert floats.dtype == torch.float32 and 0 <= floats.min() and floats.max() <= 1
    with pytest.raises(ValueError, match="match_luminance needs"):
        match_luminance(red[:, :1], references[:1, :1])
