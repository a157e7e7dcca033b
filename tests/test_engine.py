import numpy as np
import pytest
import torch

from skad_transfer.data.corpora import OutlierCorpus
from skad_transfer.engine import (
    Precision, TrainingData, TrainingDivergedError, TrainSettings, _epoch_plan, apply_batched, resolve_device, train,
)
from skad_transfer.nn import resnet26
from skad_transfer.objectives import oe_bce_objective

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_resolve_device():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    with pytest.raises(ValueError, match="'gpu'"):
        resolve_device("gpu")
    with pytest.raises(TypeError):
        resolve_device(0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_precision():
    assert Precision.resolve(torch.device("cpu"), "float32").autocast_dtype is None
    assert Precision.resolve(torch.device("cpu"), "bfloat16").autocast_dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        Precision.resolve(torch.device("cpu"), "fp8")


@pytest.mark.parametrize("epochs, expected", [(100, [60, 80]), (10, [6, 8]), (5, [3, 4]), (1, [])])
def test_paper_milestones_scale_with_epochs(epochs, expected):
    assert TrainSettings(epochs=epochs).milestone_epochs() == expected


def test_an_epoch_is_one_pass_over_the_normal_set():
    normal, outlier = _epoch_plan(5000, 300, 64, seed=0, epoch=0)
    assert len(normal) == 79  # facts.md: 5,000 normal images -> 79 steps of 64
    assert sorted(torch.cat(normal).tolist()) == list(range(5000))
    assert [len(b) for b in outlier] == [len(b) for b in normal]
    assert torch.cat(outlier).max() < 300
    again, _ = _epoch_plan(5000, 300, 64, seed=0, epoch=0)
    other, _ = _epoch_plan(5000, 300, 64, seed=0, epoch=1)
    assert torch.equal(normal[0], again[0]) and not torch.equal(normal[0], other[0])


def problem():
    rng = np.random.default_rng(0)
    normal = torch.from_numpy(rng.integers(0, 100, (48, 3, 32, 32), dtype=np.uint8))
    corpus = OutlierCorpus(rng.integers(100, 256, (40, 32, 32, 3), dtype=np.uint8))
    return normal, corpus


def run(epochs=2, checkpoint=None, objective=oe_bce_objective, precision="float32"):
    torch.manual_seed(0)
    net = resnet26(width=4)
    normal, corpus = problem()
    settings = TrainSettings(epochs=epochs, batch_size=16, lr=0.05, seed=3, checkpoint=checkpoint,
                             fingerprint="unit", precision=precision)
    history = train(net, TrainingData(normal, corpus, torch.device("cpu"), 32), objective,
                    list(net.parameters()), settings, mean=MEAN, std=STD)
    return net, history


def test_history_and_determinism():
    net_a, history = run()
    net_b, _ = run()
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"loss", "penalty", "lr", "seconds", "images_per_second"} <= set(history[0])
    for a, b in zip(net_a.state_dict().values(), net_b.state_dict().values()):
        assert torch.equal(a, b)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    reference, _ = run(epochs=3)
    calls = {"n": 0}

    def interrupted(network, x_normal, x_outlier):
        calls["n"] += 1
        if calls["n"] == 3 * 2 + 1:  # first step of the second epoch (3 steps per epoch)
            raise KeyboardInterrupt
        return oe_bce_objective(network, x_normal, x_outlier)

    with pytest.raises(KeyboardInterrupt):
        run(epochs=3, checkpoint=tmp_path / "ckpt.pt", objective=interrupted)
    assert (tmp_path / "ckpt.pt").is_file()
    resumed, history = run(epochs=3, checkpoint=tmp_path / "ckpt.pt")
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_of_another_fit_is_refused(tmp_path):
    run(epochs=1, checkpoint=tmp_path / "ckpt.pt")
    net = resnet26(width=4)
    normal, corpus = problem()
    settings = TrainSettings(epochs=1, batch_size=16, checkpoint=tmp_path / "ckpt.pt", fingerprint="other")
    with pytest.raises(ValueError, match="different fit"):
        train(net, TrainingData(normal, corpus, torch.device("cpu"), 32), oe_bce_objective,
              list(net.parameters()), settings, mean=MEAN, std=STD)


def test_nan_loss_stops_training_with_a_clear_error():
    def broken(network, x_normal, x_outlier):
        return oe_bce_objective(network, x_normal, x_outlier) * float("nan")

    with pytest.raises(TrainingDivergedError, match="loss became nan at epoch 1, step 1.*lower lr"):
        run(objective=broken)


def test_bf16_training_runs_and_stays_float32():
    net, history = run(epochs=1, precision="bfloat16")
    assert np.isfinite(history[0]["loss"])
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_apply_batched_is_invariant_to_batch_composition():
    net = resnet26(width=4).eval()
    images = torch.randint(0, 256, (70, 3, 32, 32), dtype=torch.uint8)
    kwargs = dict(device=torch.device("cpu"), mean=MEAN, std=STD, input_size=32)
    full = apply_batched(net, images, **kwargs)
    parts = torch.cat([apply_batched(net, images[i:i + 9], **kwargs) for i in range(0, 70, 9)])
    assert torch.equal(full, parts)
