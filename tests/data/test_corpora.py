import copy
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from skad_transfer import OutlierCorpus, list_corpora, register_corpus
from skad_transfer.data import corpora
from skad_transfer.data.corpora import resolve_corpus


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SKAD_TRANSFER_HOME", str(tmp_path / "home"))


def expected(images, idx):
    return torch.from_numpy(images[idx]).permute(0, 3, 1, 2)


def test_npy_is_memory_mapped_and_rows_come_in_order(tmp_path, images):
    np.save(tmp_path / "oe.npy", images)
    corpus = resolve_corpus(tmp_path / "oe.npy")
    assert isinstance(corpus.source, np.memmap) and not corpus.is_in_memory
    assert len(corpus) == 12
    assert torch.equal(corpus.take([5, 1, 9]), expected(images, [5, 1, 9]))
    assert resolve_corpus(str(tmp_path / "oe.npy")) is corpus  # opened once per process


def test_npz_keys(tmp_path, images):
    np.savez(tmp_path / "a.npz", images=images, labels=np.arange(12))
    assert torch.equal(resolve_corpus(tmp_path / "a.npz").take([0]), expected(images, [0]))
    np.savez(tmp_path / "b.npz", foo=images, bar=images)
    with pytest.raises(ValueError, match="expected one of"):
        resolve_corpus(tmp_path / "b.npz")


def write_folder(root, images):
    for i, image in enumerate(images):
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.png")


def test_image_folder_and_zip(tmp_path, images):
    write_folder(tmp_path / "tree" / "train", images)
    corpus = resolve_corpus(tmp_path / "tree")  # split folders: the train split is the corpus
    assert len(corpus) == 12 and corpus.take([0]).shape == (1, 3, 8, 8)
    with zipfile.ZipFile(tmp_path / "tree.zip", "w") as archive:
        for path in sorted((tmp_path / "tree").rglob("*.png")):
            archive.write(path, path.relative_to(tmp_path))
    assert len(resolve_corpus(tmp_path / "tree.zip")) == 12


def test_registered_name_opens_once(images):
    calls = []

    def opener():
        calls.append(1)
        return OutlierCorpus(images, name="unit")

    register_corpus("unit-corpus", opener, overwrite=True)
    try:
        assert "unit-corpus" in list_corpora()
        assert resolve_corpus("unit-corpus") is resolve_corpus("unit-corpus")
        assert calls == [1]
    finally:
        corpora._REGISTRY.pop("unit-corpus")


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus name 'nosuchcorpus'"):
        resolve_corpus("nosuchcorpus")
    with pytest.raises(FileNotFoundError):
        resolve_corpus(tmp_path / "missing.npy")
    (tmp_path / "oe.txt").write_text("x")
    with pytest.raises(ValueError, match="expected .npy"):
        resolve_corpus(tmp_path / "oe.txt")
    with pytest.raises(ValueError, match="empty"):
        resolve_corpus(np.zeros((0, 3, 8, 8)))
    with pytest.raises(ValueError, match="NaN"):
        resolve_corpus(np.full((3, 3, 8, 8), np.nan))
    with pytest.raises(TypeError):
        resolve_corpus(object())


def test_clone_shares_and_pickle_reopens(tmp_path, images):
    np.save(tmp_path / "oe.npy", images)
    corpus = resolve_corpus(tmp_path / "oe.npy")
    assert copy.deepcopy(corpus) is corpus
    payload = pickle.dumps(corpus)
    assert len(payload) < images.nbytes  # the path travels, not the data
    assert torch.equal(pickle.loads(payload).take([3]), expected(images, [3]))


def test_map_style_dataset_as_loader(images):
    dataset = [(torch.from_numpy(image).permute(2, 0, 1), 0) for image in images]
    corpus = resolve_corpus(OutlierCorpus(dataset))
    assert torch.equal(corpus.take([2, 4]), expected(images, [2, 4]))
    pil = [Image.fromarray(image) for image in images]
    assert torch.equal(OutlierCorpus(pil).take([7]), expected(images, [7]))


def test_a_dataset_with_items_of_mixed_sizes_is_an_error_naming_both_items(images):
    class Mixed:
        def __len__(self):
            return 10

        def __getitem__(self, index):
            return images[index] if index < 5 else images[index][:6, :6]

    corpus = OutlierCorpus(Mixed(), name="outlier_exposure")
    with pytest.raises(ValueError, match=r"outlier_exposure: the dataset's items must all have one size, got "
                                         r"\(8, 8, 3\) \(H, W, C\) at item 0 and \(6, 6, 3\) at item 6; .*Resize\(\(8, 8\)\)"):
        corpus.take([1, 6])
    # Across batches too: each batch of a fit must have the first batch's size.
    with pytest.raises(ValueError, match="at item 0 and .* at item 7"):
        corpus.take([7])


def test_a_dataset_s_own_error_names_the_corpus_and_the_item_and_keeps_its_type(images):
    class Broken:
        def __len__(self):
            return 10

        def __getitem__(self, index):
            if index >= 3:
                raise IndexError("list index out of range")
            return images[index]

    corpus = OutlierCorpus(Broken(), name="X_outlier")
    with pytest.raises(IndexError, match=r"^X_outlier: reading item 4 of Broken \(len 10\) raised IndexError: list "
                                         r"index out of range$") as caught:
        corpus.take([1, 4])
    assert isinstance(caught.value.__cause__, IndexError)


def test_registered_paper_corpora_read_from_the_data_root(tmp_path, monkeypatch, images):
    assert {"tinyimagenet", "cifar100", "svhn", "stl10-unlabeled"} <= set(list_corpora())
    monkeypatch.setenv("SKAD_TRANSFER_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(corpora, "_OPEN", {})
    with pytest.raises(FileNotFoundError, match=r"tiny-imagenet-32\.zip.*SKAD_TRANSFER_DATA"):
        resolve_corpus("tinyimagenet")
    with pytest.raises(FileNotFoundError, match=r"load_dataset\('cifar100', download=True\)"):
        resolve_corpus("cifar100")
    write_folder(tmp_path / "tree" / "tiny-imagenet-32" / "train", images)
    (tmp_path / "data").mkdir()
    with zipfile.ZipFile(tmp_path / "data" / "tiny-imagenet-32.zip", "w") as archive:
        for path in sorted((tmp_path / "tree").rglob("*.png")):
            archive.write(path, path.relative_to(tmp_path / "tree"))
    corpus = resolve_corpus("tinyimagenet")
    assert len(corpus) == 12 and corpus.take([0]).shape == (1, 3, 8, 8)
    payload = pickle.dumps(corpus)
    assert len(payload) < images.nbytes  # the decode cache's memmap travels by file name
    assert torch.equal(pickle.loads(payload).take([5]), corpus.take([5]))
