import argparse
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
    with pytest.raises(OSError, match=r"could not read .*the safe \(weights-only\) load refused it .*state dict") as info:
        read_checkpoint(path)
    assert "weights_only` set to `False" not in str(info.value)  # never torch's advice to load it unsafely
    torch.save({"x": torch.zeros(1), "extra": argparse.Namespace()}, path)
    with pytest.raises(OSError, match=r"refused it \(Unsupported global: GLOBAL argparse.Namespace\)") as info:
        read_checkpoint(path)
    assert "weights_only` set to `False" not in str(info.value)


def test_a_torchvision_weight_name_for_resnet26_names_the_backbone_it_belongs_to():
    with pytest.raises(ValueError, match=r"'IMAGENET1K_V1' names torchvision weights of resnet18, .*not of "
                                         r"backbone='resnet26'; pass backbone='resnet18'"):
        resolve_weights("IMAGENET1K_V1", arch="resnet26")
    with pytest.raises(ValueError, match=r"'ResNet50_Weights.IMAGENET1K_V2' names torchvision weights of resnet50, not"):
        resolve_weights("ResNet50_Weights.IMAGENET1K_V2", arch="resnet26")


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


# ---------------------------------------------------------------- torchvision's weights, offline
@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache, and no network: torchvision's server is never reachable."""
    import skad_transfer.weights as weights_module

    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setattr(weights_module, "_reachable", lambda url, timeout: False)
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


@pytest.mark.parametrize("arch, spec, expected", [
    ("resnet18", "IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1"),
    ("resnet18", "default", "ResNet18_Weights.IMAGENET1K_V1"),
    ("resnet50", "DEFAULT", "ResNet50_Weights.IMAGENET1K_V2"),
    ("resnet50", "ResNet50_Weights.IMAGENET1K_V1", "ResNet50_Weights.IMAGENET1K_V1"),
    ("wide_resnet50_2", "default", "Wide_ResNet50_2_Weights.IMAGENET1K_V2"),
])
def test_torchvision_weight_names_resolve_through_torchvision(arch, spec, expected):
    from torchvision.models import get_weight

    record = resolve_weights(spec, arch=arch)
    entry = get_weight(expected)
    assert record.name == record.torchvision == expected and record.arch == arch
    assert record.url == entry.url and record.filename == entry.url.rsplit("/", 1)[1]
    transforms = entry.transforms()
    assert record.input_size == transforms.crop_size[0] == 224
    assert record.mean == tuple(transforms.mean) and record.std == tuple(transforms.std)
    assert resolve_weights(entry, arch=arch) == record  # the enum member itself


def test_torchvision_weights_of_another_network_are_an_error():
    from torchvision.models import ResNet50_Weights

    with pytest.raises(ValueError, match="not weights for backbone='resnet18'"):
        resolve_weights(ResNet50_Weights.IMAGENET1K_V1, arch="resnet18")
    with pytest.raises(ValueError, match="not weights for backbone='resnet18'"):
        resolve_weights("ResNet50_Weights.IMAGENET1K_V1", arch="resnet18")
    with pytest.raises(ValueError, match="torchvision has no weights 'ResNet18_Weights.NOPE'"):
        resolve_weights("ResNet18_Weights.NOPE", arch="resnet18")
    with pytest.raises(ValueError, match="unknown name"):
        resolve_weights("IMAGENET1K_V9", arch="resnet18")  # neither torchvision's nor registered


def test_offline_torchvision_weights_say_which_file_to_put_where_at_once(hub):
    import time

    record = resolve_weights("IMAGENET1K_V1", arch="resnet18")
    started = time.perf_counter()
    with pytest.raises(FileNotFoundError) as caught:
        record.load_state_dict()
    assert time.perf_counter() - started < 5
    message = str(caught.value)
    assert record.url in message and str(hub / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "weights=" in message  # the other way out: a local copy


def test_torchvision_weights_in_the_hub_cache_are_read_by_torchvision(hub):
    from torchvision.models import get_model

    from skad_transfer.nn import build_backbone

    state = get_model("resnet18", weights=None).state_dict()
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(state, hub / "checkpoints" / "resnet18-f37072fd.pth")
    record = resolve_weights("default", arch="resnet18")
    loaded = record.load_state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    net = build_backbone("resnet18", record=record, num_classes=1)
    assert torch.equal(net.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert net.fc.out_features == 1  # theta0's 1000-way head does not fit a one-logit head: left fresh


def test_a_local_torchvision_state_dict_is_weights(tmp_path):
    from torchvision.models import get_model

    state = get_model("resnet34", weights=None).state_dict()
    torch.save(state, tmp_path / "r34.pth")
    record = resolve_weights(tmp_path / "r34.pth", arch="resnet34")
    assert record.arch == "resnet34" and record.input_size == 224 and record.mean == (0.485, 0.456, 0.406)
    assert record.torchvision is None and record.path == str(tmp_path / "r34.pth")
    with pytest.raises(ValueError, match="are for resnet26, not for backbone='resnet18'"):
        resolve_weights(save_weights(resnet26(width=4), tmp_path / "r26.pth").path, arch="resnet18")
    torch.save(resnet26(width=4).state_dict(), tmp_path / "flat.pth")  # no record inside
    with pytest.raises(ValueError, match="not a torchvision resnet18 state dict"):
        resolve_weights(tmp_path / "flat.pth", arch="resnet18")
    with pytest.raises(ValueError, match="are for resnet26, not for backbone='resnet50'"):
        resolve_weights(resolve_weights("default"), arch="resnet50")
    from skad_transfer.nn import build_backbone

    with pytest.raises(ValueError, match="are for resnet34, not for backbone='resnet18'"):
        build_backbone("resnet18", record=record)
    torch.save(get_model("resnet18", weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="do not fit this TorchvisionResNet: missing keys: layer1.2"):
        build_backbone("resnet34", record=resolve_weights(tmp_path / "r18.pth", arch="resnet34"))


def test_reachable_opens_a_connection_with_a_timeout():
    import socket

    from skad_transfer.weights import _reachable

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert _reachable(f"http://127.0.0.1:{port}/x.pth", 2.0)
    assert not _reachable(f"http://127.0.0.1:{port}/x.pth", 2.0)  # closed now
    assert not _reachable("not a url", 2.0)
