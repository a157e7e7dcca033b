"""Bad files, weights and command lines: each is refused with an error that names what was wrong.

Issue 9, part C ("no silent wrong results"): weights records and checkpoints, the decode cache,
image folders and zips, outlier-exposure files, the result store and the ``skad-transfer`` command.
Everything is made under ``tmp_path``; nothing touches the network.
"""

from __future__ import annotations

import json
import os
import re
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import zip_tree
from skad_transfer import ResNet26, WeightsRecord, resnet26
from skad_transfer.bench import report, runner
from skad_transfer.bench.runner import StoreError, load_records, read_record, run_path, summarize
from skad_transfer.cli import DEBUG_ENV, main
from skad_transfer.data import datasets
from skad_transfer.data.corpora import resolve_corpus
from skad_transfer.data.datasets import load_image_folder
from skad_transfer.weights import download_file, read_checkpoint, resolve_weights, save_weights


# --------------------------------------------------------------------------------------------------
# helpers


def write_images(folder: Path, n: int, *, size: int = 8, value: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (size, size), (value, 10 * i, 50)).save(folder / f"{i:03d}.png")



def one_line_error(capsys, command: str) -> str:
    """The CLI's stderr, checked to be exactly one ``skad-transfer <command>: error: ...`` line."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"skad-transfer {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty package home, so that no test reads or fills the user's caches."""
    monkeypatch.setenv("SKAD_TRANSFER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SKAD_TRANSFER_DATA", raising=False)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    return tmp_path / "home"


@pytest.fixture
def tiny_state():
    torch.manual_seed(0)
    return ResNet26(width=4).state_dict()


# --------------------------------------------------------------------------------------------------
# weights records and checkpoints


@pytest.mark.parametrize("field, value, error", [
    ("arch", "vgg16", ValueError),
    ("mean", "abc", ValueError),               # a str of 3 characters is not 3 numbers
    ("mean", (0.5, 0.5), ValueError),           # wrong length
    ("mean", (0.5, float("nan"), 0.5), ValueError),
    ("std", (0.2, 0.0, 0.2), ValueError),       # zero: the images would be divided by it
    ("std", (0.2, -0.1, 0.2), ValueError),
    ("std", None, ValueError),
    ("width", 0, ValueError),
    ("input_size", 64, ValueError),
    ("filename", "../escape.pth", ValueError),  # joined to the cache directory
    ("sha256", "not-a-digest", ValueError),
    ("meta", ["not", "a", "mapping"], TypeError),
    ("torchvision", 5, TypeError),
])
def test_weights_record_rejects_a_bad_field_naming_it(field, value, error):
    with pytest.raises(error, match=rf"WeightsRecord 'theta0': {field}"):
        WeightsRecord(name="theta0", **{field: value})


def test_weights_record_normalises_channel_values_to_hashable_floats():
    record = WeightsRecord(name="theta0", mean=[0, 0.5, np.float32(1)], std=np.array([0.25, 0.5, 1.0]))
    assert record.mean == (0.0, 0.5, 1.0) and record.std == (0.25, 0.5, 1.0)
    assert hash(record) == hash(WeightsRecord(name="theta0", mean=(0, 0.5, 1), std=(0.25, 0.5, 1)))


def test_weights_directory_says_it_is_a_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match=rf"{re.escape(str(tmp_path))} is a directory.*checkpoint file"):
        resolve_weights(tmp_path)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        WeightsRecord(name="theta0", path=str(tmp_path)).locate()


@pytest.mark.parametrize("content, match", [
    ([1, 2, 3], r"does not hold a state dict of tensors \(found list\)"),
    ({"pre_conv.weight": "not a tensor"}, "does not hold a state dict of tensors"),
])
def test_checkpoint_that_is_not_a_state_dict_names_the_file(tmp_path, content, match):
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(ValueError, match=match) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("missing, extra, match", [
    (True, False, "missing keys"),
    (False, True, "unexpected keys: extra.weight"),
])
def test_checkpoint_with_missing_or_extra_keys_names_the_file(tmp_path, tiny_state, missing, extra, match):
    if missing:
        del tiny_state[[k for k in tiny_state if k.endswith(".weight") and k != "pre_conv.weight"][0]]
    if extra:
        tiny_state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "edited.pth"
    torch.save(tiny_state, path)
    with pytest.raises(ValueError, match=match) as info:
        resnet26(weights=path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("fields, match", [
    ({"arch": "vit", "width": 4}, "arch='vit'"),
    ({"width": 4, "std": [0.2, 0.0, 0.2]}, "std must be > 0"),
    ({"width": 4, "mean": "red"}, "mean must be 3 finite numbers"),
    ({"width": 16}, "stores width=16 in its record but its weights have width 4"),
    ("not a record", "stores an invalid record"),
])
def test_checkpoint_with_a_bad_stored_record_names_the_file_and_field(tmp_path, tiny_state, fields, match):
    path = tmp_path / "theta0.pth"
    torch.save({"state_dict": tiny_state, "skad_transfer_weights": fields}, path)
    with pytest.raises(ValueError, match=match) as info:
        resolve_weights(path)
    assert str(path) in str(info.value)


def test_atomic_writes_leave_the_umask_alone_and_apply_it(tmp_path, monkeypatch):
    write_images(tmp_path / "tree" / "cls", 1)
    umask = os.umask(0o027)   # a non-default umask, restored below
    try:
        def no_umask(*args):
            raise AssertionError("os.umask is process-wide state: writers must not change it")

        monkeypatch.setattr(os, "umask", no_umask)
        record = save_weights(ResNet26(width=4), tmp_path / "theta0.pth")
        load_image_folder(tmp_path / "tree", cache_dir=tmp_path / "cache")
    finally:
        monkeypatch.undo()
        os.umask(umask)
    written = [Path(record.path), *(tmp_path / "cache").iterdir()]
    assert len(written) == 4   # theta0, and the cache entry's X.npy, y.npy, json; no temporary left
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


def test_interrupted_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "theta0.pth"
    target.write_bytes(b"the old checkpoint")
    with pytest.raises(OSError, match="could not download"):
        download_file(f"file://{tmp_path}/missing.pth", target)
    assert target.read_bytes() == b"the old checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["theta0.pth"]


# --------------------------------------------------------------------------------------------------
# decode cache


def _x_files(cache: Path) -> set[str]:
    return {p.name for p in cache.glob("*.X.npy")}


def test_cache_eviction_leaves_a_folder_whose_name_extends_another(tmp_path):
    cache = tmp_path / "cache"
    write_images(tmp_path / "a" / "cls", 1)
    write_images(tmp_path / "a-b" / "cls", 1, value=200)
    load_image_folder(tmp_path / "a", cache_dir=cache)
    (own,) = _x_files(cache)
    group = own.rsplit("-", 1)[0]               # "folder-a-all-orig-<path hash>"
    # A folder whose cache group starts with "<group of a>-": what prefix matching evicted.
    sibling = tmp_path / group[len("folder-"):]
    write_images(sibling / "cls", 1, value=100)
    load_image_folder(tmp_path / "a-b", cache_dir=cache)
    load_image_folder(sibling, cache_dir=cache)
    others = _x_files(cache) - {own}
    assert len(others) == 2
    write_images(tmp_path / "a" / "cls", 2)      # a changes: its entry is replaced ...
    X, _, _ = load_image_folder(tmp_path / "a", cache_dir=cache)
    assert len(X) == 2
    assert own not in _x_files(cache)             # ... its old entry goes ...
    assert others <= _x_files(cache)              # ... and nobody else's does
    assert len(load_image_folder(sibling, cache_dir=cache)[0]) == 1


# --------------------------------------------------------------------------------------------------
# image folders and zips


def test_zip_member_larger_than_the_bound_is_refused_before_reading(tmp_path, monkeypatch):
    write_images(tmp_path / "src" / "cls", 2)
    path = zip_tree(tmp_path / "src", tmp_path / "images.zip")
    monkeypatch.setattr(datasets, "MAX_IMAGE_BYTES", 40)
    with pytest.raises(ValueError, match=r"images\.zip: cls/000\.png is \d[\d,]* bytes uncompressed.*MAX_IMAGE_BYTES"):
        load_image_folder(path, cache=False)


def test_zip_bomb_member_is_refused_by_its_compression_ratio(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cls/flat.bmp", b"\0" * (3 << 20))   # 3 MiB of zeros, a few KB compressed
    assert path.stat().st_size < 50_000
    with pytest.raises(ValueError, match=r"bomb\.zip: zip member cls/flat\.bmp expands \d+-fold"):
        load_image_folder(path, cache=False)


def test_folder_file_larger_than_the_bound_is_refused(tmp_path, monkeypatch):
    write_images(tmp_path / "tree" / "cls", 1)
    monkeypatch.setattr(datasets, "MAX_IMAGE_BYTES", 40)
    with pytest.raises(ValueError, match=r"tree: cls/000\.png is \d[\d,]* bytes"):
        load_image_folder(tmp_path / "tree", cache=False)


@pytest.mark.parametrize("as_zip", [False, True])
def test_decompression_bomb_names_the_file_and_archive(tmp_path, monkeypatch, as_zip):
    write_images(tmp_path / "tree" / "cls", 1, size=16)
    source = zip_tree(tmp_path / "tree", tmp_path / "big.zip") if as_zip else tmp_path / "tree"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)   # 256 pixels > 2 x 100: PIL refuses
    with pytest.raises(ValueError, match=r"too large to decode") as info:
        load_image_folder(source, cache=False)
    assert f"{source}/cls/000.png" in str(info.value)


def test_symlink_out_of_the_folder_is_an_error(tmp_path):
    write_images(tmp_path / "outside", 1)
    write_images(tmp_path / "tree" / "cls", 1)
    (tmp_path / "tree" / "cls" / "stolen.png").symlink_to(tmp_path / "outside" / "000.png")
    with pytest.raises(ValueError, match=r"cls/stolen\.png is a symbolic link to .*outside the folder"):
        load_image_folder(tmp_path / "tree", cache=False)


def test_symlinked_class_folder_out_of_the_folder_is_an_error(tmp_path):
    write_images(tmp_path / "elsewhere" / "dogs", 2)
    write_images(tmp_path / "tree" / "cats", 1)
    (tmp_path / "tree" / "dogs").symlink_to(tmp_path / "elsewhere" / "dogs", target_is_directory=True)
    with pytest.raises(ValueError, match=r"dogs is a symbolic link to .*outside the folder"):
        load_image_folder(tmp_path / "tree", cache=False)


def test_symlinks_inside_the_folder_are_read_as_documented(tmp_path):
    write_images(tmp_path / "tree" / "a", 2)
    (tmp_path / "tree" / "b").mkdir()
    (tmp_path / "tree" / "b" / "same.png").symlink_to(tmp_path / "tree" / "a" / "000.png")
    (tmp_path / "tree" / "c").symlink_to(tmp_path / "tree" / "a", target_is_directory=True)
    X, y, classes = load_image_folder(tmp_path / "tree", cache=False)
    # The file link is read; the folder link is not descended (its target is read as "a").
    assert classes == ["a", "b"] and y.tolist() == [0, 0, 1]
    np.testing.assert_array_equal(X[2], X[0])


def _fake_zip(path: Path) -> None:
    path.write_bytes(b"PK but not really a zip")


def _broken_image(path: Path) -> None:
    write_images(path / "cls", 1)
    (path / "cls" / "001.png").write_bytes(b"\x89PNG garbage")


@pytest.mark.parametrize("name, make, match", [
    ("fake.zip", _fake_zip, r"fake\.zip.*neither a directory nor a readable \.zip"),
    ("empty", Path.mkdir, r"empty: expected an image-folder tree.*found no images"),
    ("broken", _broken_image, r"cannot decode image .*broken/cls/001\.png"),
])
def test_unusable_folder_or_zip_names_the_path(tmp_path, name, make, match):
    path = tmp_path / name
    make(path)
    with pytest.raises(ValueError, match=match):
        load_image_folder(path, cache=False)


def test_unreadable_image_inside_a_zip_names_zip_and_member(tmp_path):
    path = tmp_path / "mixed.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cls/bad.jpg", b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match=r"cannot decode image .*mixed\.zip/cls/bad\.jpg"):
        load_image_folder(path, cache=False)


# --------------------------------------------------------------------------------------------------
# outlier-exposure files


@pytest.mark.parametrize("name, write, error, match", [
    ("flat.npy", lambda p: np.save(p, np.zeros(10)), ValueError, r"holds an array of shape \(10,\), not images"),
    ("empty.npy", lambda p: np.save(p, np.zeros((0, 8, 8, 3), np.uint8)), ValueError, "corpus is empty"),
    ("channels.npy", lambda p: np.save(p, np.zeros((2, 8, 8, 7), np.uint8)), ValueError, "channels"),
    ("objects.npz", lambda p: np.savez(p, X=np.array([{"a": 1}], dtype=object)), OSError, "could not read"),
    ("two.npz", lambda p: np.savez(p, a=np.zeros(3), b=np.zeros(3)), ValueError, r"holds arrays \['a', 'b'\]"),
    ("truncated.npy", lambda p: p.write_bytes(b"\x93NUMPY\x01\x00"), OSError, "could not read"),
])
def test_outlier_exposure_file_with_wrong_content_names_the_file(tmp_path, name, write, error, match):
    path = tmp_path / name
    write(path)
    with pytest.raises(error, match=match) as info:
        resolve_corpus(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------------------------------
# the result store


def _record(rid: str, **change) -> dict:
    record = {"run_id": rid, "method": "knn", "protocol": "one-vs-rest", "dataset": "synthetic", "split": "0:circle",
              "seed": 0, "config": {"settings": {}, "method_params": {}, "outlier_exposure": None},
              "metrics": {"auc": 0.5, "ap": 0.5}, "timing": {"fit_seconds": 1.0, "score_seconds": 0.1}}
    record.update(change)
    return record


@pytest.mark.parametrize("stem, text, match", [
    ("0123456789abcdef", '{"run_id": "0123456789abcdef", "meth', "corrupt or truncated JSON"),
    ("0123456789abcdef", "[1, 2]", "a JSON list, not an object"),
    ("0123456789abcdef", json.dumps({"run_id": "0123456789abcdef"}), "missing keys"),
    ("0123456789abcdef", json.dumps(_record("../../../etc/x")), r"holds run_id '\.\./\.\./\.\./etc/x'"),
    ("0123456789abcdef", json.dumps(_record("0123456789abcdef", metrics={"auc": 0.5})), "'metrics' lacks"),
    ("0123456789abcdef", b"\xff\xfe not utf-8", "corrupt or truncated JSON"),
])
def test_damaged_run_record_is_an_error_naming_the_file(tmp_path, stem, text, match):
    path = tmp_path / "runs" / f"{stem}.json"
    path.parent.mkdir()
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(StoreError, match=match) as info:
        summarize(tmp_path)
    assert str(path) in str(info.value)
    with pytest.raises(StoreError):
        read_record(path)


@pytest.mark.parametrize("rid", ["../../etc/passwd", "0123456789ABCDEF", "abc", "", None])
def test_run_ids_that_are_not_hex_are_never_joined_to_a_path(tmp_path, rid):
    with pytest.raises(StoreError, match="is not a run id"):
        run_path(tmp_path, rid)
    assert run_path(tmp_path, "0123456789abcdef", ".npz") == tmp_path / "runs" / "0123456789abcdef.npz"


def _synthetic_run(store: Path) -> dict:
    """A stored interventions run the report can re-create (no fit needed)."""
    meta = {"source": "synthetic", "n_normal": 8, "n_outlier": 8, "n_test": 8, "random_state": 0}
    rid = "00000000000000aa"
    record = _record(rid, protocol="interventions", split="color->blue",
                     config={"settings": {}, "method_params": {}, "outlier_exposure": None, "split_meta": meta})
    (store / "runs").mkdir(parents=True)
    (store / "runs" / f"{rid}.json").write_text(json.dumps(record))
    return record


def test_report_on_a_truncated_scores_file_is_an_error_naming_it(tmp_path):
    store = tmp_path / "store"
    record = _synthetic_run(store)
    npz = store / "runs" / f"{record['run_id']}.npz"
    npz.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(StoreError, match="not a readable scores file") as info:
        report.build_report(store, tmp_path / "out", verbose=False)
    assert str(npz) in str(info.value)


def test_report_files_are_written_atomically(tmp_path):
    store = tmp_path / "store"
    _synthetic_run(store)
    out = tmp_path / "out"
    result = report.build_report(store, out, verbose=False)
    assert result.markdown.is_file() and result.tables
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]
    umask = os.umask(0o022)
    os.umask(umask)
    for path in (result.markdown, *result.tables.values()):   # a plain open's mode, not mkstemp's 0600
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


# --------------------------------------------------------------------------------------------------
# the command line: user errors are one line and status 2


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail loudly (not as a user error) if bench gets as far as building its data."""
    def forbidden(options):
        raise AssertionError("bench built its splits before checking its options")

    monkeypatch.setattr(runner, "build_splits", forbidden)


@pytest.mark.parametrize("argv, names", [
    (["--dataset", "digits", "--protocol", "one-vs-rest", "--classes", "0", "12"], "--classes"),
    (["--dataset", "synthetic", "--protocol", "one-vs-rest", "--classes", "5"], "--classes"),
    (["--protocol", "one-vs-rest", "--classes", "1", "1"], "--classes"),
    (["--methods", "adib", "nope"], "--methods: unknown methods ['nope']"),
    (["--seeds", "-1"], "--seeds"),
    (["--seeds", "3", "3"], "--seeds"),
    (["--epochs", "0"], "--epochs"),
    (["--steps", "-5"], "--steps"),
    (["--lr", "0"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--batch-size", "1"], "--batch-size"),
    (["--n-jobs", "0"], "--n-jobs"),
    (["--n-normal", "0"], "--n-normal"),
    (["--weights", "none", "--width", "0"], "--width"),
    (["--width", "8"], "--width 8: the weights 'default' have width 16"),
    (["--weights", "missing.pth"], "missing.pth does not exist"),
    (["--outlier-exposure", "missing-oe.npy"], "--outlier-exposure missing-oe.npy"),
    (["--protocol", "oe-ablation", "--oe-corpora", "none", "gone.zip"], "--oe-corpora gone.zip"),
    (["--seeds", "x"], "argument --seeds: invalid int value: 'x'"),
    (["--dataset", "imagenet"], "argument --dataset: invalid choice"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_bench_flag_errors_are_one_line_before_any_data(home, tmp_path, monkeypatch, capsys, no_decoding, argv, names):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--store", str(tmp_path / "store"), *argv]) == 2
    assert names in one_line_error(capsys, "bench")
    assert not (tmp_path / "store").exists()


def test_bench_weights_directory_is_one_line(home, tmp_path, capsys, no_decoding):
    assert main(["bench", "--weights", str(tmp_path), "--store", str(tmp_path / "s")]) == 2
    assert f"{tmp_path} is a directory" in one_line_error(capsys, "bench")


def test_bench_store_that_is_a_file_is_one_line(home, tmp_path, capsys, no_decoding):
    (tmp_path / "store").write_text("not a folder")
    assert main(["bench", "--store", str(tmp_path / "store")]) == 2
    assert "--store" in one_line_error(capsys, "bench")


@pytest.mark.parametrize("name, text, match", [
    ("bad.toml", 'methods = ["knn"\nseeds = [0]\n', "invalid TOML"),
    ("bad.json", '{"methods": ["knn"],', "invalid JSON"),
    ("keys.toml", 'methods = ["knn"]\nepoch = 3\nconfig = "other.toml"\n', "unknown keys ['config', 'epoch']"),
    ("list.json", "[1, 2]", "the top level must be a table"),
    ("types.toml", 'seeds = "zero"\n', "--seeds"),
    ("params.toml", "[method_params]\nknn = 3\n", "method_params"),
    ("binary.toml", None, "not a text file"),
])
def test_bench_bad_config_file_is_one_line_naming_it(home, tmp_path, capsys, no_decoding, name, text, match):
    path = tmp_path / name
    path.write_bytes(b"\xff\xfe\x00bad" if text is None else text.encode())
    assert main(["bench", "--config", str(path), "--store", str(tmp_path / "s")]) == 2
    line = one_line_error(capsys, "bench")
    assert match in line
    if match != "--seeds" and match != "method_params":
        assert str(path) in line


def test_bench_config_that_is_a_directory_is_one_line(home, tmp_path, capsys, no_decoding):
    assert main(["bench", "--config", str(tmp_path)]) == 2
    assert f"--config {tmp_path}: is a directory" in one_line_error(capsys, "bench")


def _broken_store(store: Path) -> None:
    (store / "runs").mkdir(parents=True)
    (store / "runs" / "0123456789abcdef.json").write_text('{"truncat')


@pytest.mark.parametrize("setup, argv, match", [
    (lambda t: None, ["missing-store"], "result store not found"),
    (lambda t: (t / "empty").mkdir(), ["empty"], "holds no finished runs"),
    (lambda t: (t / "file").write_text("x"), ["file"], "is a file"),
    (lambda t: _synthetic_run(t / "s"), ["s", "--top-k", "0"], "top_k must be an int >= 1"),
    (lambda t: _synthetic_run(t / "s"), ["s", "--run", "ffffffffffffffff"], "--run 'ffffffffffffffff': no such run"),
    (lambda t: _broken_store(t / "s"), ["s"], "0123456789abcdef.json: not a valid run record"),
])
def test_report_errors_are_one_line(home, tmp_path, monkeypatch, capsys, setup, argv, match):
    monkeypatch.chdir(tmp_path)
    setup(tmp_path)
    assert main(["report", *argv]) == 2
    assert match in one_line_error(capsys, "report")


@pytest.mark.parametrize("argv, match", [
    (["--n-normal", "0"], "argument --n-normal: expected an int >= 2"),
    (["--lr", "-1"], "argument --lr"),
    (["--weights", "nowhere/theta0.pth"], "theta0.pth does not exist"),
    (["--output", "{tmp}"], "is a directory"),
    (["--output", "chart.nosuchformat"], "cannot write 'nosuchformat' files"),
])
def test_demo_errors_are_one_line_before_any_fit(home, tmp_path, monkeypatch, capsys, argv, match):
    from skad_transfer import demo

    def forbidden(*args, **kwargs):
        raise AssertionError("the demo generated data before checking its arguments")

    monkeypatch.setattr(demo, "make_intervention_task", forbidden)
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    weights = [] if "--weights" in argv else ["--weights", "none"]
    assert main(["demo", "--quiet", *weights, *argv]) == 2
    assert match in one_line_error(capsys, "demo")


@pytest.mark.parametrize("argv, match", [
    (["{tmp}/fake.zip", "--output", "{tmp}/t.pth"], "fake.zip"),
    (["{tmp}/data.npz", "--output", "{tmp}/t.pth", "--epochs", "0"], "argument --epochs: expected an int >= 1"),
    (["{tmp}/data.npz", "--output", "{tmp}/t.pth", "--val-fraction", "1"], "argument --val-fraction"),
    (["{tmp}/data.npz", "--output", "{tmp}", "--epochs", "1"], "--output"),
    (["{tmp}/data.npz", "--output", "{tmp}/t.pth", "--epochs", "2", "--warmup-epochs", "3"], "--warmup-epochs 3.0"),
])
def test_pretrain_errors_are_one_line_before_reading_data(home, tmp_path, monkeypatch, capsys, argv, match):
    from skad_transfer import pretrain

    (tmp_path / "fake.zip").write_bytes(b"not a zip at all")
    real = pretrain.load_labelled_data

    def only_for_the_fake_zip(data, **kwargs):
        if not str(data).endswith("fake.zip"):
            raise AssertionError("pretrain read DATA before checking its flags")
        return real(data, **kwargs)

    monkeypatch.setattr(pretrain, "load_labelled_data", only_for_the_fake_zip)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["pretrain", *argv]) == 2
    assert match in one_line_error(capsys, "pretrain")
    assert pretrain.main(argv) == 2                       # python -m skad_transfer.pretrain: the same
    assert match in one_line_error(capsys, "pretrain")


def test_debug_shows_the_traceback_of_a_user_error(home, tmp_path, monkeypatch, capsys):
    argv = ["report", str(tmp_path / "missing")]
    with pytest.raises(FileNotFoundError, match="result store not found"):
        main(["--debug", *argv])
    with pytest.raises(FileNotFoundError):
        main([*argv, "--debug"])                          # after the command too
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(FileNotFoundError):
        main(argv)
    monkeypatch.setenv(DEBUG_ENV, "0")
    assert main(argv) == 2
    one_line_error(capsys, "report")


@pytest.mark.parametrize("error", [RuntimeError("CUDA error: an internal failure"), AssertionError("a bug"),
                                   KeyError("a bug")])
def test_internal_errors_keep_their_traceback(home, tmp_path, monkeypatch, error):
    def broken(args):
        raise error

    monkeypatch.setattr(report, "run", broken)
    with pytest.raises(type(error)):
        main(["report", str(tmp_path)])


def test_records_on_disk_still_load(tmp_path):
    (tmp_path / "runs").mkdir()
    for rid in ("0123456789abcdef", "r1"):   # hand-made stores may use other safe ids
        (tmp_path / "runs" / f"{rid}.json").write_text(json.dumps(_record(rid)))
    (tmp_path / "runs" / ".0123456789abcdef.json.1a2b3c4d.tmp").write_text("{partial")  # a write in progress
    assert [r["run_id"] for r in load_records(tmp_path)] == ["0123456789abcdef", "r1"]


@pytest.mark.parametrize("where", ["parameter", "buffer"])
def test_a_theta0_with_non_finite_values_is_an_error_naming_the_tensor_before_training(
        tmp_path, tiny_state, monkeypatch, where):
    from skad_transfer import ADIBDetector
    import skad_transfer.detectors.base as base

    key = "pre_conv.weight" if where == "parameter" else next(k for k in tiny_state if k.endswith("running_var"))
    tiny_state[key].view(-1)[1] = float("nan")  # one value among many finite ones
    path = tmp_path / "diverged.pth"
    torch.save(tiny_state, path)
    monkeypatch.setattr(base, "train", lambda *a, **k: pytest.fail("training started from a non-finite theta0"))
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
    det = ADIBDetector(weights=str(path), width=4, steps=1, batch_size=4, device="cpu", verbose=False)
    with pytest.raises(ValueError, match=rf"theta0 holds non-finite values \(nan or inf\) in '{re.escape(key)}' "
                                         rf"\(1 of \d+ values\).*pass other weights"):
        det.fit(X, X[::-1].copy())
