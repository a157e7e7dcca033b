"""Tests for skad_transfer.data.datasets on tiny on-the-fly fixtures (no network)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CIFAR_CLASSES, write_fake_cifar10, zip_tree
from skad_transfer.data import datasets, image_decode, image_tree
from skad_transfer.data.datasets import (
    MPI3D_COLORS,
    MPI3D_FACTOR_NAMES,
    MPI3D_FACTOR_SIZES,
    MPI3D_SHAPES,
    cache_dir,
    load_cifar10,
    load_cifar100,
    load_image_folder,
    load_mpi3d,
    load_stl10,
    load_svhn,
    load_tiny_imagenet,
)


def _pixel(label: int, index: int) -> np.ndarray:
    return np.array([30 * label + 10, 20 * index + 5, 200 - 30 * label], dtype=np.uint8)


def write_tree(root: Path, classes: dict[str, int], *, ext: str = "png", size: int = 8, offset: int = 0) -> None:
    """Solid-colour images whose colour encodes (position of class in sorted order, file index)."""
    for label, cls in enumerate(sorted(classes)):
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(classes[cls]):
            img = np.broadcast_to(_pixel(label + offset, i), (size, size, 3))
            Image.fromarray(np.ascontiguousarray(img)).save(folder / f"{i:04d}.{ext}")



def cache_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.fixture
def cdir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# --------------------------------------------------------------------------
# image folders
# --------------------------------------------------------------------------


def test_directory_tree_shapes_labels_and_order(tmp_path, cdir):
    write_tree(tmp_path / "tree", {"zebra": 2, "ant": 3, "moth": 1})
    X, y, classes = load_image_folder(tmp_path / "tree", cache_dir=cdir)
    assert classes == ["ant", "moth", "zebra"]
    assert X.shape == (6, 8, 8, 3) and X.dtype == np.uint8
    assert y.dtype == np.int64 and y.tolist() == [0, 0, 0, 1, 2, 2]
    # PNG is lossless: pixel colours identify class and the sorted file order.
    expected = [_pixel(label, i) for label, n in enumerate([3, 1, 2]) for i in range(n)]
    np.testing.assert_array_equal(X[:, 3, 3], np.stack(expected))


def test_threaded_chunked_decode_matches_serial(tmp_path, monkeypatch):
    monkeypatch.setattr(image_decode, "_CHUNK", 2)
    write_tree(tmp_path / "t", {"a": 4, "b": 3})
    X1, y1, _ = load_image_folder(tmp_path / "t", cache=False, n_jobs=1, progress=True)
    X2, y2, _ = load_image_folder(tmp_path / "t", cache=False, n_jobs=2)
    np.testing.assert_array_equal(X1, X2)
    assert np.array_equal(y1, y2) and len(X1) == 7


def test_zip_split_selection(tmp_path, cdir):
    write_tree(tmp_path / "src" / "cifar" / "train", {"cat": 3, "dog": 2}, ext="jpg")
    write_tree(tmp_path / "src" / "cifar" / "test", {"cat": 1, "dog": 1}, ext="jpg")
    zp = zip_tree(tmp_path / "src", tmp_path / "data.zip")
    X, y, classes = load_image_folder(zp, split="train", cache_dir=cdir)
    assert X.shape == (5, 8, 8, 3) and y.tolist() == [0, 0, 0, 1, 1] and classes == ["cat", "dog"]
    # JPEG is lossy; solid colours survive within a few levels.
    assert np.abs(X[4, 4, 4].astype(int) - _pixel(1, 1)).max() <= 8
    Xt, yt, _ = load_image_folder(zp, split="test", cache_dir=cdir)
    assert Xt.shape == (2, 8, 8, 3) and yt.tolist() == [0, 1]
    # The same tree extracted to a directory gives the same split.
    Xd, yd, cd = load_image_folder(tmp_path / "src", split="train", cache=False)
    assert cd == classes and np.array_equal(yd, y)
    np.testing.assert_array_equal(Xd, X)


def test_zip_without_split_strips_top_folder(tmp_path, cdir):
    write_tree(tmp_path / "src" / "top", {"b": 1, "a": 2})
    X, y, classes = load_image_folder(zip_tree(tmp_path / "src", tmp_path / "t.zip"), cache_dir=cdir)
    assert classes == ["a", "b"] and y.tolist() == [0, 0, 1]


def test_split_tree_without_split_and_missing_split(tmp_path):
    write_tree(tmp_path / "src" / "d" / "train", {"a": 1})
    write_tree(tmp_path / "src" / "d" / "test", {"a": 1})
    zp = zip_tree(tmp_path / "src", tmp_path / "s.zip")
    with pytest.raises(ValueError, match="pass split="):
        load_image_folder(zp, cache=False)
    with pytest.raises(ValueError, match=r"split='val'.*found folders.*d/train/"):
        load_image_folder(zp, split="val", cache=False)


def test_cache_hit_returns_equal_memmap(tmp_path, cdir):
    write_tree(tmp_path / "src" / "r", {"a": 2, "b": 2})
    zp = zip_tree(tmp_path / "src", tmp_path / "c.zip")
    X1, y1, c1 = load_image_folder(zp, cache_dir=cdir)
    names = cache_files(cdir)
    assert any(n.endswith(".X.npy") for n in names) and any(n.endswith(".json") for n in names)
    X2, y2, c2 = load_image_folder(zp, cache_dir=cdir)
    assert isinstance(X2, np.memmap) and not X2.flags.writeable
    np.testing.assert_array_equal(X1, X2)
    assert np.array_equal(y1, y2) and y2.dtype == np.int64 and c1 == c2
    assert cache_files(cdir) == names


def test_cache_false_decodes_in_memory(tmp_path, cdir):
    write_tree(tmp_path / "t", {"a": 2})
    X, y, _ = load_image_folder(tmp_path / "t", cache=False, cache_dir=cdir)
    assert type(X) is np.ndarray and X.shape == (2, 8, 8, 3)
    assert not cdir.exists()


def test_default_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SKAD_TRANSFER_HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / "data"
    write_tree(tmp_path / "t", {"a": 1})
    load_image_folder(tmp_path / "t")
    assert any(n.endswith(".X.npy") for n in cache_files(tmp_path / "home" / "data"))


def test_cache_invalidates_when_zip_changes(tmp_path, cdir):
    write_tree(tmp_path / "v1" / "r", {"a": 2})
    zp = zip_tree(tmp_path / "v1", tmp_path / "d.zip")
    X1, _, c1 = load_image_folder(zp, cache_dir=cdir)
    write_tree(tmp_path / "v2" / "r", {"a": 1, "b": 2}, offset=3)
    zip_tree(tmp_path / "v2", zp)
    st = zp.stat()
    os.utime(zp, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # coarse-mtime filesystems
    X2, y2, c2 = load_image_folder(zp, cache_dir=cdir)
    assert c2 == ["a", "b"] and X2.shape == (3, 8, 8, 3) and y2.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(X2[0, 0, 0], _pixel(3, 0))
    # The entry of the old zip is evicted rather than left to pile up.
    assert sum(n.endswith(".X.npy") for n in cache_files(cdir)) == 1


def test_cache_invalidates_when_directory_changes(tmp_path, cdir):
    write_tree(tmp_path / "t", {"a": 2, "b": 1})
    X1, _, _ = load_image_folder(tmp_path / "t", cache_dir=cdir)
    assert len(X1) == 3
    write_tree(tmp_path / "t", {"a": 4, "b": 1})
    X2, y2, _ = load_image_folder(tmp_path / "t", cache_dir=cdir)
    assert len(X2) == 5 and y2.tolist() == [0, 0, 0, 0, 1]


def test_interrupted_decode_leaves_no_cache_entry(tmp_path, cdir, monkeypatch):
    write_tree(tmp_path / "t", {"a": 3})
    real = image_decode._decode_one
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(image_decode, "_decode_one", flaky)
    with pytest.raises(KeyboardInterrupt):
        load_image_folder(tmp_path / "t", cache_dir=cdir)
    assert cache_files(cdir) == []
    monkeypatch.setattr(image_decode, "_decode_one", real)
    X, _, _ = load_image_folder(tmp_path / "t", cache_dir=cdir)
    assert X.shape == (3, 8, 8, 3)


def test_corrupt_image_is_named(tmp_path, cdir):
    write_tree(tmp_path / "t", {"a": 2})
    (tmp_path / "t" / "a" / "0001.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="0001.png"):
        load_image_folder(tmp_path / "t", cache_dir=cdir)
    assert not any(n.endswith(".json") for n in cache_files(cdir))


def test_mixed_sizes_raise_unless_resized(tmp_path):
    write_tree(tmp_path / "t", {"a": 1})
    Image.new("L", (5, 7), 128).save(tmp_path / "t" / "a" / "0009.png")  # grayscale, odd size
    with pytest.raises(ValueError, match="0009.png.*image_size"):
        load_image_folder(tmp_path / "t", cache=False)
    X, _, _ = load_image_folder(tmp_path / "t", image_size=6, cache=False)
    assert X.shape == (2, 6, 6, 3)
    np.testing.assert_array_equal(X[1], 128)  # grayscale converted to RGB


def test_missing_path_and_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_image_folder(tmp_path / "nowhere.zip")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.zip"):
        load_image_folder(bad, cache=False)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("stuff/readme.txt", "no images")
    with pytest.raises(ValueError, match=r"expected an image-folder tree.*readme|stuff"):
        load_image_folder(empty, cache=False)


# --------------------------------------------------------------------------
# Tiny-ImageNet
# --------------------------------------------------------------------------


def test_tiny_imagenet_zip_uses_wnids_order(tmp_path, cdir):
    wnids = ["n02", "n01", "n03"]  # deliberately unsorted, as in the real wnids.txt
    src = tmp_path / "src" / "tiny"
    write_tree(src / "train", {"n01": 2, "n02": 1, "n03": 1})
    write_tree(src / "val", {"n01": 1, "n02": 1})
    (src / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (src / "words.txt").write_text("n01\tone\nn02\ttwo\nn03\tthree\n")
    zp = zip_tree(tmp_path / "src", tmp_path / "tiny.zip")
    X, y, classes = load_tiny_imagenet(zp, split="train", cache_dir=cdir)
    assert classes == wnids and X.shape == (4, 8, 8, 3)
    assert y.tolist() == [0, 1, 1, 2]  # grouped in wnids order: n02, n01, n01, n03
    np.testing.assert_array_equal(X[0, 0, 0], _pixel(1, 0))  # n02 is second in sorted order
    Xv, yv, cv = load_tiny_imagenet(zp, split="val", cache_dir=cdir)
    assert cv == wnids and yv.tolist() == [0, 1]
    Xv2, _, _ = load_tiny_imagenet(zp, split="val", cache_dir=cdir)
    assert isinstance(Xv2, np.memmap)
    with pytest.raises(ValueError, match="split"):
        load_tiny_imagenet(zp, split="test")


def test_tiny_imagenet_original_layout(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    for wnid in ("n01", "n02"):
        write_tree(root / "train" / wnid, {"images": 2})
    write_tree(root / "val", {"images": 3})
    (root / "val" / "val_annotations.txt").write_text(
        "0000.png\tn02\t0\t0\t8\t8\n0001.png\tn01\t0\t0\t8\t8\n0002.png\tn02\t0\t0\t8\t8\n"
    )
    X, y, classes = load_tiny_imagenet(root, split="train", cache=False)
    assert classes == ["n01", "n02"] and y.tolist() == [0, 0, 1, 1]
    Xv, yv, cv = load_tiny_imagenet(root, split="val", cache=False)
    assert cv == ["n01", "n02"] and yv.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(Xv[0, 0, 0], _pixel(0, 1))  # 0001.png is the n01 image


# --------------------------------------------------------------------------
# MPI3D
# --------------------------------------------------------------------------

SMALL_GRID = (2, 2, 1, 1, 1, 2, 2)


def _mpi3d_images(n: int) -> np.ndarray:
    return (np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)).copy()


@pytest.mark.parametrize("compressed", [False, True])
def test_mpi3d_factor_grid_and_cache(tmp_path, cdir, compressed):
    images = _mpi3d_images(16)
    path = tmp_path / "mpi3d_toy.npz"
    (np.savez_compressed if compressed else np.savez)(path, images=images)
    X, factors = load_mpi3d(path, factor_sizes=SMALL_GRID, cache_dir=cdir)
    assert isinstance(X, np.memmap) and X.shape == (16, 4, 4, 3) and X.dtype == np.uint8
    np.testing.assert_array_equal(X, images)
    assert factors.shape == (16, len(MPI3D_FACTOR_NAMES)) and factors.dtype == np.int64
    # Row-major grid: the last factor varies fastest.
    assert factors[:5].tolist() == [
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 1, 1],
        [0, 1, 0, 0, 0, 0, 0],
    ]
    assert factors[-1].tolist() == [1, 1, 0, 0, 0, 1, 1]
    assert np.array_equal(np.ravel_multi_index(factors.T, SMALL_GRID), np.arange(16))
    X2, _ = load_mpi3d(path, factor_sizes=SMALL_GRID, cache_dir=cdir)
    assert isinstance(X2, np.memmap)
    np.testing.assert_array_equal(X2, images)
    X3, _ = load_mpi3d(path, factor_sizes=SMALL_GRID, cache=False)
    np.testing.assert_array_equal(X3, images)


def test_mpi3d_errors_and_npy(tmp_path):
    assert MPI3D_FACTOR_SIZES == (6, 6, 2, 3, 3, 40, 40)
    assert MPI3D_COLORS[2] == "red" and MPI3D_SHAPES[0] == "cone"
    path = tmp_path / "m.npz"
    np.savez(path, images=_mpi3d_images(16))
    with pytest.raises(ValueError, match="1036800"):
        load_mpi3d(path, cache=False)  # default grid does not match 16 images
    with pytest.raises(ValueError, match="7 positive ints"):
        load_mpi3d(path, factor_sizes=(4, 4), cache=False)
    other = tmp_path / "o.npz"
    np.savez(other, imgs=_mpi3d_images(16))
    with pytest.raises(ValueError, match="'images'.*imgs"):
        load_mpi3d(other, factor_sizes=SMALL_GRID, cache=False)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_mpi3d(tmp_path / "missing.npz")
    npy = tmp_path / "m.npy"
    np.save(npy, _mpi3d_images(16))
    X, factors = load_mpi3d(npy, factor_sizes=SMALL_GRID)
    assert isinstance(X, np.memmap) and len(factors) == 16


# --------------------------------------------------------------------------
# torchvision wrappers
# --------------------------------------------------------------------------

def test_cifar10_fake_batches(tmp_path, cdir, skip_md5, monkeypatch):
    expected = write_fake_cifar10(tmp_path / "root")
    X, y, classes = load_cifar10(tmp_path / "root", train=True, cache_dir=cdir)
    assert X.shape == (10, 32, 32, 3) and X.dtype == np.uint8
    np.testing.assert_array_equal(X, expected)
    assert y.dtype == np.int64 and y.tolist() == list(range(10))
    assert classes == CIFAR_CLASSES
    Xt, yt, _ = load_cifar10(tmp_path / "root", train=False, cache_dir=cdir)
    assert Xt.shape == (2, 32, 32, 3)

    # A cache hit must not construct the torchvision dataset at all.
    import torchvision.datasets

    def boom(*args, **kwargs):
        raise AssertionError("torchvision called on a cache hit")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "__init__", boom)
    X2, y2, c2 = load_cifar10(tmp_path / "root", train=True, cache_dir=cdir)
    assert isinstance(X2, np.memmap) and np.array_equal(X2, X) and c2 == classes


@pytest.mark.parametrize(
    "loader, kwargs",
    [
        (load_cifar10, {}),
        (load_cifar100, {"train": False}),
        (load_svhn, {"split": "test"}),
        (load_stl10, {"split": "unlabeled"}),
    ],
)
def test_torchvision_missing_files(tmp_path, cdir, loader, kwargs):
    root = tmp_path / "empty-root"
    with pytest.raises(FileNotFoundError) as info:
        loader(root, download=False, cache_dir=cdir, **kwargs)
    message = str(info.value)
    assert str(root) in message and "download=True" in message


def test_svhn_fake_mat(tmp_path, cdir, skip_md5):
    from scipy.io import savemat

    rng = np.random.default_rng(1)
    nhwc = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    # The .mat stores X as (height, width, channel, n) and the digit 0 as 10.
    savemat(tmp_path / "test_32x32.mat", {"X": nhwc.transpose(1, 2, 3, 0), "y": np.array([[10], [1], [9]])})
    X, y, classes = load_svhn(tmp_path, split="test", cache_dir=cdir)
    np.testing.assert_array_equal(X, nhwc)
    assert y.tolist() == [0, 1, 9] and classes == [str(d) for d in range(10)]


def test_stl10_fake_binary(tmp_path, cdir, skip_md5):
    base = tmp_path / "stl10_binary"
    base.mkdir()
    rng = np.random.default_rng(2)
    sets = {}
    for name, n in (("train", 2), ("test", 1), ("unlabeled", 2)):
        nhwc = rng.integers(0, 256, size=(n, 96, 96, 3), dtype=np.uint8)
        # STL-10 binaries are column-major per channel: (n, channel, width, height).
        (base / f"{name}_X.bin").write_bytes(nhwc.transpose(0, 3, 2, 1).tobytes())
        sets[name] = nhwc
    (base / "train_y.bin").write_bytes(bytes([1, 10]))
    (base / "test_y.bin").write_bytes(bytes([3]))
    (base / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)))
    X, y, classes = load_stl10(tmp_path, split="train", cache_dir=cdir)
    np.testing.assert_array_equal(X, sets["train"])
    assert y.tolist() == [0, 9] and classes == [f"c{i}" for i in range(10)]
    Xu, yu, _ = load_stl10(tmp_path, split="unlabeled", cache_dir=cdir)
    np.testing.assert_array_equal(Xu, sets["unlabeled"])
    assert yu.dtype == np.int64 and yu.tolist() == [-1, -1]


# --------------------------------------------------------------------------
# downloads that fail (the network is replaced; nothing leaves the machine)
# --------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch):
    """urllib as on a machine without a network: every URL fails as a DNS lookup does."""
    import socket
    import urllib.error
    import urllib.request

    tried = []

    def urlopen(request, *args, **kwargs):
        tried.append(getattr(request, "full_url", request))
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return tried


@pytest.mark.parametrize(
    "loader, kwargs, archive, layout",
    [
        (load_cifar10, {}, "cifar-10-python.tar.gz", "cifar-10-batches-py"),
        (load_cifar100, {"train": False}, "cifar-100-python.tar.gz", "cifar-100-python"),
        (load_svhn, {"split": "test"}, "test_32x32.mat", None),
        (load_stl10, {"split": "train"}, "stl10_binary.tar.gz", "stl10_binary"),
    ],
)
def test_an_offline_download_names_the_url_the_file_and_where_to_put_it(tmp_path, cdir, offline, loader, kwargs,
                                                                        archive, layout):
    root = tmp_path / "root"
    with pytest.raises(datasets.DownloadError) as info:
        loader(root, download=True, cache_dir=cdir, **kwargs)
    error, message = info.value, str(info.value)
    assert offline and error.url in offline[0] and error.url.endswith(archive)
    # Not a FileNotFoundError: the catalogue would turn that into "fetch it with download=True".
    assert isinstance(error, OSError) and not isinstance(error, FileNotFoundError)
    assert error.path == root / archive
    assert f"could not download {error.url} into {root}: [Errno -2] Name or service not known" in message
    assert f"fetch {archive} from {error.url}" in message and f"put it into {root}" in message
    if layout is not None:
        assert f"so that {root / layout}/ exists" in message
    assert "<urlopen error" not in message
    assert not cache_files(cdir)


def test_a_download_that_fails_torchvision_s_md5_check_says_to_delete_it(tmp_path, cdir, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def truncated(url, filename, chunk_size=None):  # a transfer cut short, without the network
        Path(filename).write_bytes(b"only the first bytes")

    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops=3: url)
    monkeypatch.setattr(tv_utils, "_urlretrieve", truncated)
    root = tmp_path / "root"
    with pytest.raises(datasets.DownloadError, match="fail torchvision's MD5 check") as info:
        load_svhn(root, split="test", download=True, cache_dir=cdir)
    message = str(info.value)
    assert f"delete {root / 'test_32x32.mat'} and retry" in message and "Pass download=True" not in message


def test_a_local_error_during_a_download_keeps_its_own_message(tmp_path, cdir, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def read_only(url, filename, chunk_size=None):
        raise PermissionError(13, "Permission denied", str(filename))

    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops=3: url)
    monkeypatch.setattr(tv_utils, "_urlretrieve", read_only)
    with pytest.raises(PermissionError, match="test_32x32.mat"):
        load_svhn(tmp_path / "root", split="test", download=True, cache_dir=cdir)


def test_datasets_module_keeps_every_name_and_forwards_the_size_limits(monkeypatch):
    """skad_transfer.data.datasets re-exports the loaders from their modules; assigning a size
    limit there changes the one the loaders read (image_tree's)."""
    for name in datasets.__all__ + ["DownloadError"]:
        assert hasattr(datasets, name), name
    assert datasets.load_image_folder.__module__ == "skad_transfer.data.image_folder"
    assert datasets.MAX_IMAGE_BYTES == image_tree.MAX_IMAGE_BYTES
    monkeypatch.setattr(datasets, "MAX_IMAGE_BYTES", 40)
    assert image_tree.MAX_IMAGE_BYTES == 40 and datasets.MAX_IMAGE_BYTES == 40
    monkeypatch.setattr(image_tree, "MAX_COMPRESSION_RATIO", 7)
    assert datasets.MAX_COMPRESSION_RATIO == 7
    assert "MAX_IMAGE_BYTES" in dir(datasets)
