import numpy as np
import pytest
import scipy.sparse
import torch

from skad_transfer.data.images import as_image_batch, resize_images


@pytest.fixture
def nhwc():
    return np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)


def test_every_layout_gives_the_same_canonical_batch(nhwc):
    expected = torch.from_numpy(nhwc).permute(0, 3, 1, 2)
    nchw = nhwc.transpose(0, 3, 1, 2)
    forms = [nhwc, nchw, nchw.reshape(5, -1), torch.from_numpy(nhwc), list(nhwc)]
    for form in forms:
        # Flattened colour rows say they are channel-major (they could be flattened NHWC).
        batch = as_image_batch(form, image_shape=(3, 8, 8) if form is forms[2] else None)
        assert batch.data.dtype == torch.uint8
        assert torch.equal(batch.data, expected)
        assert batch.source_shape == (3, 8, 8)


def test_grayscale_is_replicated(nhwc):
    gray = nhwc[..., 0]
    for form in (gray, gray[:, None], gray[..., None], gray.reshape(5, 64)):
        batch = as_image_batch(form)
        assert batch.data.shape == (5, 3, 8, 8) and batch.source_shape == (1, 8, 8)
        assert torch.equal(batch.data[:, 1], torch.from_numpy(gray))


def test_dtypes():
    floats = np.random.default_rng(0).random((2, 3, 4, 4))
    assert as_image_batch(floats).data.dtype == torch.float32
    ints = (floats * 255).astype(np.int64)
    assert as_image_batch(ints).data.dtype == torch.uint8
    assert as_image_batch(torch.from_numpy(floats).bfloat16()).data.dtype == torch.float32


def test_image_shape_with_free_dimension():
    rows = np.arange(14, dtype=np.float32).reshape(2, 7) / 13  # intensities in [0, 1]
    batch = as_image_batch(rows, image_shape=(1, 1, -1))
    assert batch.data.shape == (2, 3, 1, 7) and batch.source_shape == (1, 1, 7)


@pytest.mark.parametrize("X, error, match", [
    (np.zeros((0, 3, 8, 8)), ValueError, "0 sample"),
    (np.full((2, 3, 4, 4), np.nan), ValueError, "NaN"),
    (np.full((2, 3, 4, 4), np.inf), ValueError, "infinity"),
    (np.zeros((2, 8, 8, 5)), ValueError, "1 or 3 channels"),
    (np.zeros((2, 1, 3, 8, 8)), ValueError, "shape"),
    (np.zeros(5), ValueError, "got one axis"),
    (np.zeros((2, 7)), ValueError, "image_shape"),
    (np.full((2, 3, 4, 4), 300, dtype=np.int32), ValueError, "0..255"),
    (np.array([["a", "b"]], dtype=object), ValueError, "X"),
    (None, TypeError, "got None"),
    ("images.npy", TypeError, "str"),
    (scipy.sparse.csr_matrix(np.ones((2, 4))), TypeError, "sparse"),
])
def test_malformed_input_errors(X, error, match):
    with pytest.raises(error, match=match):
        as_image_batch(X)


def test_bad_image_shape():
    with pytest.raises(ValueError, match="image_shape"):
        as_image_batch(np.zeros((2, 12)), image_shape=(2, 2, 3))
    with pytest.raises(ValueError, match="holds 27"):
        as_image_batch(np.zeros((2, 12)), image_shape=(3, 3, 3))


def test_resize_keeps_dtype_and_range():
    x = torch.randint(0, 256, (3, 3, 24, 24), dtype=torch.uint8)
    out = resize_images(x, 32)
    assert out.shape == (3, 3, 32, 32) and out.dtype == torch.uint8
    assert resize_images(x, 24) is x
    constant = torch.full((1, 3, 10, 10), 0.25)
    assert torch.allclose(resize_images(constant, 32), torch.full((1, 3, 32, 32), 0.25))


def test_take_rows_reads_a_memory_map_in_any_order(tmp_path):
    from skad_transfer.data.images import take_rows

    array = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    np.save(tmp_path / "a.npy", array)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    rows = [7, 2, 2, 9, 0]
    assert np.array_equal(take_rows(mapped, rows), array[rows])
    assert np.array_equal(take_rows(torch.from_numpy(array), rows), array[rows])
    assert take_rows(mapped, []).shape == (0, 2, 2, 3)


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "gray"])
def test_a_memory_map_is_viewed_not_copied(tmp_path, layout, recwarn):
    from skad_transfer.data.images import is_memory_mapped

    shape = {"nhwc": (6, 4, 5, 3), "nchw": (6, 3, 4, 5), "gray": (6, 4, 5)}[layout]
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "a.npy", array)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert is_memory_mapped(mapped) and is_memory_mapped(np.asarray(mapped)[1:]) and not is_memory_mapped(array)
    batch = as_image_batch(mapped)
    # The batch reads the file itself (so scoring a file larger than memory costs one batch)...
    assert np.shares_memory(batch.data.numpy(), mapped)
    # ...and holds what a copy in memory would.
    assert torch.equal(batch.data, as_image_batch(array).data) and batch.source_shape == as_image_batch(array).source_shape
    assert not [w for w in recwarn if "writable" in str(w.message)]
