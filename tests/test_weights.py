import pickle

import pytest
import torch

from skad_transfer import ResNet26, WeightsRecord, list_weights, register_weights, resnet26
from skad_transfer.weights import (
    download_file, read_checkpoint, resolve_weights, save_weights, sha256_file, unregister_weights,
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SKAD_TRANSFER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    net = ResNet26(width=4, num_classes=10)
    record = save_weights(net, tmp_path / "theta0.pth", name="tiny", mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5),
                          meta={"dataset": "unit-test", "val_top1": 0.5})
    return net, record


@pytest.fixture
def registered():
    names = []
    yield names
    for name in names:
        unregister_weights(name)


def test_saved_record_describes_the_file(checkpoint):
    net, record = checkpoint
    assert record.sha256 == sha256_file(record.path)
    assert (record.width, record.input_size, record.mean) == (4, 32, (0.1, 0.2, 0.3))
    assert record.meta["val_top1"] == 0.5
    again = resolve_weights(record.path)  # an unregistered file: the record travels inside it
    assert (again.width, again.std, again.meta["dataset"]) == (4, (0.5, 0.5, 0.5), "unit-test")
    loaded = resnet26(weights=record.path, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(loaded(x), net.eval()(x))


def test_registered_name_resolves_from_the_cache_dir(home, checkpoint, registered):
    _, record = checkpoint
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "cached.pth").write_bytes(open(record.path, "rb").read())
    registered.append("unit-cached")
    register_weights(WeightsRecord(name="unit-cached", width=4, filename="cached.pth", sha256=record.sha256))
    assert "unit-cached" in list_weights()
    assert resnet26(weights="unit-cached").width == 4


def test_registered_name_downloads_with_hash_check(home, checkpoint, registered):
    _, record = checkpoint
    url = f"file://{record.path}"
    registered += ["unit-url", "unit-badhash"]
    register_weights(WeightsRecord(name="unit-url", width=4, filename="dl.pth", url=url, sha256=record.sha256))
    net = resnet26(weights="unit-url")
    assert net.width == 4 and (home / "weights" / "dl.pth").is_file()

    register_weights(WeightsRecord(name="unit-badhash", width=4, filename="bad.pth", url=url, sha256="0" * 64))
    with pytest.raises(OSError, match="sha256 mismatch"):
        resnet26(weights="unit-badhash")
    assert not (home / "weights" / "bad.pth").exists()
    assert not [p.name for p in (home / "weights").iterdir() if p.name.startswith(".")]  # no temporary left


def test_unavailable_weights_say_which_file_to_put_where(home):
    with pytest.raises(FileNotFoundError) as info:
        resnet26(weights="transferad-resnet26")
    message = str(info.value)
    assert "resnet26.pth" in message and str(home / "weights") in message and "1uRmyJfs5OW2s0USoue6WbPdr_04MNOFI" in message


def test_cached_file_with_wrong_hash_is_refused(home, checkpoint, registered):
    _, record = checkpoint
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "other.pth").write_bytes(b"x" * 10)
    registered.append("unit-corrupt")
    register_weights(WeightsRecord(name="unit-corrupt", width=4, filename="other.pth", sha256=record.sha256))
    with pytest.raises(OSError, match="corrupt"):
        resnet26(weights="unit-corrupt")


def test_errors_name_what_was_wrong(tmp_path):
    with pytest.raises(ValueError, match="unknown name 'no-such-weights'.*registered names"):
        resolve_weights("no-such-weights")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_weights(tmp_path / "missing.pth")
    with pytest.raises(TypeError, match="WeightsRecord"):
        resolve_weights(3)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(OSError, match="could not read"):
        resolve_weights(corrupt)
    foreign = tmp_path / "foreign.pth"
    torch.save({"a": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match="not a ResNet26 checkpoint"):
        resolve_weights(foreign)


def test_checkpoints_cannot_run_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": {"x": Payload()}}, handle)
    with pytest.raises(OSError, match="could not read"):
        read_checkpoint(path)


def test_ddp_prefix_is_stripped(tmp_path):
    state = {f"module.{k}": v for k, v in ResNet26(width=4).state_dict().items()}
    torch.save(state, tmp_path / "ddp.pth")
    assert resnet26(weights=tmp_path / "ddp.pth").width == 4


def test_download_file_over_file_url(tmp_path):
    source = tmp_path / "blob.bin"
    source.write_bytes(b"abc" * 1000)
    out = download_file(f"file://{source}", tmp_path / "out" / "blob.bin", sha256=sha256_file(source))
    assert out.read_bytes() == source.read_bytes()
    with pytest.raises(OSError, match="could not download"):
        download_file(f"file://{tmp_path}/nope.bin", tmp_path / "out" / "nope.bin")


def test_embedded_default_resolves_offline(monkeypatch, tmp_path):
    from skad_transfer import ADIBDetector
    from skad_transfer.weights import get_weights

    monkeypatch.setenv("SKAD_TRANSFER_HOME", str(tmp_path / "empty-home"))  # no cache, no network
    net = resnet26(weights="default")
    record = get_weights("default")
    assert (net.width, net.input_size, record.width) == (16, 32, 16)
    assert record.sha256 == sha256_file(record.path)
    assert record.meta["val_top1"] > 0.3 and "pretrain" in record.meta["command"]
    assert ADIBDetector().weights == "default" and resnet26().width == 64  # the builder stays random-init
