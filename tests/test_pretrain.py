"""Tests of skad_transfer.pretrain on tiny synthetic data (width-4 networks, a few seconds each)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from skad_transfer import pretrain as pretrain_module
from skad_transfer.data import labelled
from skad_transfer import resnet26
from skad_transfer.pretrain import _LRFactor, load_labelled_data, pretrain
from skad_transfer.weights import read_checkpoint, sha256_file

FAST = dict(width=4, batch_size=32, device="cpu", verbose=False, precision="float32")


def coloured_noise(n_per_class: int, seed: int = 0, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """3 classes of uniform noise, each with one colour channel lifted: easy, but not trivial at init."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    X = rng.integers(0, 100, (len(y), size, size, 3)).astype(np.uint8)
    for label in range(3):
        X[y == label, :, :, label] += 120
    order = rng.permutation(len(y))
    return X[order], y[order]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks gain nothing from a second thread, and on a busy 2-core machine a thread team
    waiting for a descheduled member makes a width-4 run ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_torch_thread):
    """One 5-epoch run shared by the record and accuracy tests (one torch thread: the thread count
    changes the summation order, and with it the pinned history)."""
    X, y = coloured_noise(40)
    out = tmp_path_factory.mktemp("pretrain") / "theta0.pth"
    network, record = pretrain(X, y, output=out, epochs=5, val_fraction=0.25, dataset_name="noise",
                               classes=["red", "green", "blue"], **{**FAST, "batch_size": 16})
    return X, y, network, record


def test_record_fields_and_file(trained):
    X, _, network, record = trained
    assert Path(record.path).is_file()
    assert record.sha256 == sha256_file(record.path)
    assert (record.arch, record.width, record.input_size) == ("resnet26", 4, 32)
    assert len(record.mean) == 3 and len(record.std) == 3
    expected_mean = X.reshape(-1, 3).mean(0) / 255
    assert np.allclose(record.mean, expected_mean, atol=0.02)  # the hold-out shifts it a little
    meta = record.meta
    for key in ("dataset", "n_classes", "classes", "epochs", "batch_size", "lr", "schedule", "val_top1",
                "train_seconds", "device", "precision", "torch", "command", "history"):
        assert key in meta, key
    assert meta["dataset"] == "noise" and meta["n_classes"] == 3 and meta["classes"] == ["red", "green", "blue"]
    assert meta["precision"] == "float32" and meta["torch"] == torch.__version__
    assert meta["n_train"] + meta["n_val"] == len(X) and meta["n_val"] == 30
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3, 4, 5]
    assert meta["val_top1"] == meta["history"][-1]["val_top1"]
    # The file carries the record too: mean/std and metadata survive a reload.
    _, fields = read_checkpoint(record.path)
    assert tuple(fields["mean"]) == record.mean and fields["meta"]["n_classes"] == 3
    assert not network.training and next(network.parameters()).device.type == "cpu"


def test_pinned_history(trained):
    """The recipe's numbers at fixed settings: a refactor that changes what is trained shows here.

    First recorded from the loop pretrain had before it moved onto the engine's core (commit
    2eae0e0); re-pinned when CPU training went channels_last (a width-4 network at lr 0.1 turns the
    changed summation order of BatchNorm's batch statistics into a 2-20% change of later losses).
    Those pins come from an Intel Xeon (AVX-512); an AMD EPYC (AVX-512 BF16, float32 all the same)
    gave losses up to 2.2% apart and one more misclassified training image at epoch 2, so the losses
    are checked to 5% and the accuracies to one image: what the recipe trains, not which CPU ran it."""
    history = trained[3].meta["history"]
    assert [h["loss"] for h in history] == pytest.approx([1.0251116, 0.4686111, 0.137329, 0.0433497, 0.0305956],
                                                          rel=5e-2)
    assert [h["train_top1"] for h in history] == pytest.approx([41 / 90, 8 / 9, 1.0, 1.0, 1.0], abs=1.01 / 90)
    assert [h["val_top1"] for h in history] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 1.0])
    assert [h["lr"] for h in history] == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * e / 5)) for e in range(5)])
    assert [h["steps"] for h in history] == [6] * 5  # 90 training images (30 held out), 16 per step


def test_weights_load_back_and_reproduce_logits(trained):
    X, _, network, record = trained
    x = torch.randn(5, 3, 32, 32)
    backbone = resnet26(weights=record.path)  # anomaly head (1 output): backbone only
    assert backbone.width == 4 and backbone.num_classes == 1
    assert torch.equal(backbone.pre_conv.weight, network.pre_conv.weight)
    classifier = resnet26(weights=record.path, num_classes=3).eval()
    with torch.no_grad():
        assert torch.equal(classifier(x), network(x))


def test_learns_an_easy_problem(trained):
    *_, record = trained
    # Chance is 1/3; seeds 0-5 all end at 2/3 or 3/3 (one class can lag behind in eval-mode BN).
    assert record.meta["val_top1"] > 0.5
    assert record.meta["history"][-1]["train_top1"] > 0.9
    losses = [h["loss"] for h in record.meta["history"]]
    assert losses[-1] < losses[0]


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    X, y = coloured_noise(20, seed=1)
    kwargs = dict(epochs=2, val_fraction=0.1, **FAST)
    reference, ref_record = pretrain(X, y, output=tmp_path / "reference.pth", **kwargs)

    class Interrupt(Exception):
        pass

    def stop_after_first_epoch(entry):
        if entry["epoch"] == 1:
            raise Interrupt

    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(Interrupt):
        pretrain(X, y, output=tmp_path / "resumed.pth", checkpoint=ckpt, callback=stop_after_first_epoch, **kwargs)
    assert ckpt.is_file() and not (tmp_path / "resumed.pth").exists()

    epochs_run = []
    resumed, record = pretrain(X, y, output=tmp_path / "resumed.pth", checkpoint=ckpt,
                               callback=lambda entry: epochs_run.append(entry["epoch"]), **kwargs)
    assert epochs_run == [2]  # only the missing epoch was trained
    assert same_state(resumed.state_dict(), reference.state_dict())
    strip = lambda history: [{k: v for k, v in h.items() if k not in ("seconds", "images_per_second")} for h in history]
    assert strip(record.meta["history"]) == strip(ref_record.meta["history"])

    # The checkpoint belongs to this run only: other settings must not silently continue it.
    with pytest.raises(ValueError, match="checkpoint"):
        pretrain(X, y, output=tmp_path / "other.pth", checkpoint=ckpt, **{**kwargs, "lr": 0.05})
    # ... unless told to start afresh.
    _, fresh = pretrain(X, y, output=tmp_path / "fresh.pth", checkpoint=ckpt, resume=False, **kwargs)
    assert fresh.meta["history"][0]["epoch"] == 1


def test_memory_mapped_input_matches_in_memory(tmp_path, monkeypatch):
    X, y = coloured_noise(10, seed=2)
    kwargs = dict(epochs=1, val_fraction=0.2, **FAST)
    in_memory, _ = pretrain(X, y, output=tmp_path / "a.pth", **kwargs)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    monkeypatch.setattr(labelled, "IN_MEMORY_BYTES", 0)  # force batch-wise reads from the map
    streamed, _ = pretrain(mapped, y, output=tmp_path / "b.pth", **kwargs)
    assert same_state(in_memory.state_dict(), streamed.state_dict())


def test_explicit_validation_set_and_string_labels(tmp_path):
    X, y = coloured_noise(10, seed=3)
    X_val, y_val = coloured_noise(4, seed=4)
    names = np.array(["r", "g", "b"])
    _, record = pretrain(X, names[y], X_val=X_val, y_val=names[y_val], output=tmp_path / "t.pth",
                         epochs=1, schedule="step", **FAST)
    assert record.meta["n_train"] == 30 and record.meta["n_val"] == 12
    assert record.meta["classes"] == ["b", "g", "r"]  # sorted encoding
    assert record.meta["val_top1"] is not None


@pytest.mark.parametrize("kind", ["cosine", "step"])
def test_schedules(kind):
    factor = _LRFactor(kind, steps_per_epoch=10, epochs=8, warmup_epochs=1)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    if kind == "cosine":
        assert factor(10) == pytest.approx(1.0) and factor(79) < 0.01
        assert factor(45) == pytest.approx(0.5 * (1 + math.cos(math.pi * 35 / 70)))
    else:
        assert factor(39) == 1.0 and factor(40) == pytest.approx(0.1) and factor(60) == pytest.approx(0.01)


@pytest.mark.parametrize("change, match", [
    (dict(y=np.zeros(5)), r"^y: 5 labels for 30 images"),
    (dict(y=np.zeros(30, int)), r"^y: .*at least 2 classes"),
    (dict(y=np.full(30, -1)), r"^y: labels must be >= 0"),
    (dict(X_val=np.zeros((4, 32, 32, 3), np.uint8)), r"X_val and y_val"),
    (dict(X_val=np.zeros((4, 32, 32, 3), np.uint8), y_val=np.zeros(3, int)), r"^y_val: 3 labels for 4 images"),
    (dict(X_val=np.zeros((2, 32, 32, 3), np.uint8), y_val=np.array([0, 7])), r"^y_val: labels \[7\]"),
    (dict(X=np.zeros((30, 32, 32, 5), np.uint8)), r"^X: "),
    (dict(schedule="linear"), r"^schedule"),
    (dict(epochs=0), r"^epochs"),
    (dict(val_fraction=1.0), r"^val_fraction"),
    (dict(input_size=64), r"^input_size"),
    (dict(batch_size=0), r"^batch_size"),
])
def test_bad_input_raises_value_error_naming_the_argument(tmp_path, change, match):
    X, y = coloured_noise(10)
    arguments = dict(X=X, y=y, output=tmp_path / "t.pth", **FAST)
    arguments.update(change)
    with pytest.raises(ValueError, match=match):
        pretrain(**arguments)
    assert not (tmp_path / "t.pth").exists()


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def write_image_tree(root: Path, n_per_class: dict[str, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(("blue", "green", "red")):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(n_per_class[name]):
            image = rng.integers(0, 100, (32, 32, 3)).astype(np.uint8)
            image[..., 2 - label] += 120
            Image.fromarray(image).save(folder / f"{i:03d}.png")


CLI_FAST = ["--width", "4", "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--quiet",
            "--precision", "float32"]


def test_cli_on_an_image_folder_tree(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SKAD_TRANSFER_HOME", str(tmp_path / "home"))
    tree = tmp_path / "shapes"
    write_image_tree(tree / "train", dict(blue=10, green=10, red=10), seed=0)
    write_image_tree(tree / "val", dict(blue=3, green=3, red=3), seed=1)
    out = tmp_path / "theta0.pth"
    rc = pretrain_module.main([str(tree), "--output", str(out), "--val-split", "val", *CLI_FAST])
    printed = capsys.readouterr().out
    assert rc == 0
    assert f"output: {out}" in printed and f"sha256: {sha256_file(out)}" in printed and "val top-1:" in printed
    record = resnet26(weights=out, num_classes=3)
    assert record.num_classes == 3
    _, fields = read_checkpoint(out)
    meta = fields["meta"]
    assert meta["dataset"] == "shapes:train" and meta["classes"] == ["blue", "green", "red"]
    assert meta["n_train"] == 30 and meta["n_val"] == 9
    assert Path(f"{out}.ckpt").is_file()  # default checkpoint next to the output


def test_cli_on_an_npz_with_limit(tmp_path, capsys):
    X, y = coloured_noise(12)
    data = tmp_path / "noise.npz"
    np.savez(data, X=X, y=y, classes=np.array(["r", "g", "b"]))
    out = tmp_path / "theta0.pth"
    rc = pretrain_module.main([str(data), "--output", str(out), "--limit", "8", "--val-fraction", "0.25",
                               "--no-checkpoint", *CLI_FAST])
    assert rc == 0 and "sha256:" in capsys.readouterr().out
    _, fields = read_checkpoint(out)
    assert fields["meta"]["n_train"] + fields["meta"]["n_val"] == 24 and fields["meta"]["n_val"] == 6
    assert fields["meta"]["classes"] == ["r", "g", "b"]
    assert not Path(f"{out}.ckpt").exists()


def test_cli_reports_bad_data(tmp_path, capsys):
    data = tmp_path / "bad.npz"
    np.savez(data, images=np.zeros((4, 32, 32, 3), np.uint8))
    assert pretrain_module.main([str(data), "--output", str(tmp_path / "t.pth"), *CLI_FAST]) == 2
    assert "must hold arrays 'X' and 'y'" in capsys.readouterr().err


def test_router_has_the_subcommand(tmp_path):
    cli = pytest.importorskip("skad_transfer.cli")
    try:
        parser = cli.build_parser()
    except ModuleNotFoundError as error:  # another subcommand's module is not written yet
        pytest.skip(f"the router cannot import every subcommand: {error}")
    args = parser.parse_args(["pretrain", "data.npz", "--output", "t.pth", "--epochs", "3"])
    assert args._run is pretrain_module.run and args.epochs == 3 and args.width == 16


def test_load_labelled_data_detects_tiny_imagenet_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("SKAD_TRANSFER_HOME", str(tmp_path / "home"))
    root = tmp_path / "tiny"
    write_image_tree(root / "train", dict(blue=2, green=2, red=2), seed=0)
    (root / "wnids.txt").write_text("red\ngreen\nblue\n")
    X, y, classes, name = load_labelled_data(root)
    assert classes == ["red", "green", "blue"] and X.shape == (6, 32, 32, 3) and name == "tiny:train"


# --------------------------------------------------------------------------
# DistributedDataParallel
# --------------------------------------------------------------------------


def test_ddp_gloo_two_processes(tmp_path):
    """torchrun with 2 CPU processes (gloo): one loadable theta0, written and reported by rank 0 only."""
    X, y = coloured_noise(16)
    data = tmp_path / "noise.npz"
    np.savez(data, X=X, y=y)
    out = tmp_path / "theta0.pth"
    env = dict(os.environ, OMP_NUM_THREADS="1", SKAD_TRANSFER_HOME=str(tmp_path / "home"))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
               "-m", "skad_transfer.pretrain", str(data), "--output", str(out), *CLI_FAST]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("sha256:") == 1  # only rank 0 prints
    network = resnet26(weights=out, num_classes=3)
    assert network.width == 4
    _, fields = read_checkpoint(out)
    assert fields["meta"]["world_size"] == 2 and fields["meta"]["batch_size"] == 16
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("theta0")) == ["theta0.pth", "theta0.pth.ckpt"]


def test_distributed_true_without_launcher_runs_a_one_process_group(tmp_path):
    X, y = coloured_noise(8)
    _, record = pretrain(X, y, output=tmp_path / "t.pth", epochs=1, distributed=True, **FAST)
    assert record.meta["world_size"] == 1
    assert not torch.distributed.is_initialized()  # the group it made is torn down


def test_a_pretraining_step_makes_no_tensor_from_python_data(tmp_path):
    # On a GPU such a tensor is a blocking host-to-device copy every step (the normalisation's mean
    # and std were two per step); one epoch of 6 steps and one of 18 make the same number.
    from torch.profiler import ProfilerActivity, profile

    def tensors_from_python_data(n_per_class):
        X, y = coloured_noise(n_per_class)
        with profile(activities=[ProfilerActivity.CPU]) as trace:
            pretrain(X, y, output=tmp_path / f"{n_per_class}.pth", epochs=1, val_fraction=0.0,
                     **{**FAST, "batch_size": 16})
        return sum(e.name == "aten::lift_fresh" for e in trace.events())

    assert tensors_from_python_data(32) == tensors_from_python_data(96)
