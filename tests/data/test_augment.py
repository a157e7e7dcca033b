import torch
import torch.nn.functional as F

from skad_transfer.data.augment import normalize, random_crop_flip


def generator(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_crop_is_a_window_of_the_zero_padded_image_possibly_flipped():
    x = torch.randint(1, 256, (16, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(x, 2, generator=generator())
    padded = F.pad(x, (2, 2, 2, 2))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    for i in range(len(x)):
        windows = [padded[i, :, r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        windows += [w.flip(2) for w in windows]
        assert any(torch.equal(out[i], w) for w in windows)


def test_augmentations_vary_and_are_reproducible():
    x = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8)
    a = random_crop_flip(x, 4, generator=generator(1))
    assert torch.equal(a, random_crop_flip(x, 4, generator=generator(1)))
    assert not torch.equal(a, random_crop_flip(x, 4, generator=generator(2)))
    flipped = sum(torch.equal(a[i], x[i].flip(2)) for i in range(64))
    unchanged = sum(torch.equal(a[i], x[i]) for i in range(64))
    assert 0 < flipped + unchanged < 64


def test_no_padding_no_flip_is_identity():
    x = torch.rand(4, 3, 8, 8)
    assert torch.equal(random_crop_flip(x, 0, flip=False, generator=generator()), x)


def test_normalize_uint8_and_float_agree():
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    expected = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(normalize(x, mean, std), expected)
    assert torch.allclose(normalize(x.float() / 255, mean, std), expected, atol=1e-6)
