"""The dataset catalogue: one named entry per dataset, read from a data root (no network)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import zip_tree
from skad_transfer.data import CATALOGUE, load_dataset
from skad_transfer.data.corpora import resolve_corpus


def write_tree(root, n_per_class=2, size=8, seed=0):
    rng = np.random.default_rng(seed)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SKAD_TRANSFER_HOME", str(tmp_path / "home"))  # decode cache and default data root
    monkeypatch.delenv("SKAD_TRANSFER_DATA", raising=False)


def test_bad_names_splits_and_downloads_are_errors_naming_the_argument(tmp_path):
    with pytest.raises(ValueError, match=r"^dataset: unknown name 'imagenet'"):
        load_dataset("imagenet", root=tmp_path)
    with pytest.raises(ValueError, match=r"^split: cifar10 has splits \['train', 'test'\], got 'val'"):
        load_dataset("cifar10", "val", root=tmp_path)
    with pytest.raises(ValueError, match=r"^download: tinyimagenet cannot be downloaded"):
        load_dataset("tinyimagenet", root=tmp_path, download=True)


@pytest.mark.parametrize("name, hint", [("cifar100", r"load_dataset\('cifar100', download=True\)"),
                                        ("tinyimagenet", r"put it there, or point root")])
def test_a_missing_dataset_says_what_to_put_where(tmp_path, name, hint):
    with pytest.raises(FileNotFoundError, match=rf"dataset '{name}': .* not found under {tmp_path}.*{hint}"):
        load_dataset(name, root=tmp_path)


def test_archives_are_found_under_the_root_and_its_default(tmp_path, monkeypatch):
    write_tree(tmp_path / "tree" / "cifar10-jpg" / "train")
    write_tree(tmp_path / "tree" / "cifar10-jpg" / "test", n_per_class=1, seed=1)
    data = tmp_path / "data"
    data.mkdir()
    zip_tree(tmp_path / "tree", data / "cifar10-jpg.zip")
    X, y, classes = load_dataset("cifar10-jpg", "test", root=data)
    assert X.shape == (2, 8, 8, 3) and y.tolist() == [0, 1] and classes == ["a", "b"]
    monkeypatch.setenv("SKAD_TRANSFER_DATA", str(data))  # the default root
    assert load_dataset("cifar10-jpg")[0].shape == (4, 8, 8, 3)


def test_registered_corpora_are_catalogue_datasets_read_from_the_given_root(tmp_path):
    write_tree(tmp_path / "elsewhere" / "tiny-imagenet-32" / "train")
    corpus = resolve_corpus("tinyimagenet", root=tmp_path / "elsewhere")
    assert len(corpus) == 4 and corpus.take([0]).shape == (1, 3, 8, 8)
    with pytest.raises(FileNotFoundError, match=r"outlier_exposure='tinyimagenet': dataset 'tinyimagenet'"):
        resolve_corpus("tinyimagenet", root=tmp_path / "nowhere")


def test_every_entry_names_its_files_and_splits():
    for name, entry in CATALOGUE.items():
        assert entry.name == name and entry.splits and entry.files


@pytest.fixture
def offline(monkeypatch):
    """urllib as on a machine without a network: every URL fails as a DNS lookup does."""
    import socket
    import urllib.error
    import urllib.request

    def urlopen(request, *args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


def test_an_offline_download_through_the_catalogue_keeps_its_url_and_file(tmp_path, offline):
    from skad_transfer.data.datasets import DownloadError

    with pytest.raises(DownloadError) as info:
        load_dataset("cifar100", "test", root=tmp_path, download=True)
    message = str(info.value)
    # Not turned into "not found ...; fetch it once with download=True", which is what just failed.
    assert message.startswith("cifar100: could not download https://") and "load_dataset(" not in message
    assert f"put it into {tmp_path}" in message and f"{tmp_path / 'cifar-100-python'}/" in message


def test_an_offline_corpus_download_names_the_corpus_the_url_and_the_file(tmp_path, offline):
    from skad_transfer.data.corpora import download_corpus
    from skad_transfer.data.datasets import DownloadError

    with pytest.raises(DownloadError) as info:
        download_corpus("svhn", root=tmp_path)
    message = str(info.value)
    assert message.startswith("outlier_exposure='svhn': svhn: could not download http")
    assert info.value.url in message and info.value.path == tmp_path / "train_32x32.mat"
    assert f"put it into {tmp_path} (as {tmp_path / 'train_32x32.mat'})" in message
