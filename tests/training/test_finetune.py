"""Fine-tuning through the loop: skad_transfer.training.finetune."""

import numpy as np
import pytest
import torch

import skad_transfer.training.callbacks as callbacks
from skad_transfer.data.corpora import OutlierCorpus
from skad_transfer.data.fitdata import TrainingData
from skad_transfer.nn import resnet26
from skad_transfer.objectives import oe_bce_objective
from skad_transfer.training import TrainingDivergedError, TrainSettings, train
from skad_transfer.training.finetune import _epoch_plan

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_training_runs_channels_last_and_hands_back_a_contiguous_network():
    """Training sees channels_last tensors and weights; the fitted network is NCHW again (pickles,
    ONNX export and user code see the default layout)."""
    network = resnet26(width=4)
    seen = []

    def objective(net, x_normal, x_outlier):
        seen.append((x_normal.is_contiguous(memory_format=torch.channels_last),
                     net.pre_conv.weight.is_contiguous(memory_format=torch.channels_last)))
        return oe_bce_objective(net, x_normal, x_outlier)

    rng = np.random.default_rng(0)
    data = TrainingData(torch.from_numpy(rng.integers(0, 256, (16, 3, 32, 32), dtype=np.uint8)),
                        OutlierCorpus(rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)), torch.device("cpu"), 32)
    train(network, data, objective, list(network.parameters()), TrainSettings(steps=2, batch_size=8, precision="float32"),
          mean=(0.5,) * 3, std=(0.25,) * 3)
    assert seen == [(True, True)] * 2
    assert all(p.is_contiguous() for p in network.parameters())


@pytest.mark.parametrize("total, expected", [(100, [60, 80]), (1500, [900, 1200]), (10, [6, 8]), (1, [])])
def test_paper_milestones_are_fractions_of_the_steps(total, expected):
    assert TrainSettings().milestone_steps(total) == expected


def test_training_length_is_a_step_budget_unless_epochs_are_given():
    assert TrainSettings().total_steps(steps_per_epoch=79) == 1500
    assert TrainSettings(steps=10).total_steps(steps_per_epoch=79) == 10
    assert TrainSettings(epochs=3, steps=10).total_steps(steps_per_epoch=79) == 3 * 79


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


def run(epochs=2, checkpoint=None, objective=oe_bce_objective, precision="float32", steps=1500):
    torch.manual_seed(0)
    net = resnet26(width=4)
    normal, corpus = problem()
    settings = TrainSettings(epochs=epochs, steps=steps, batch_size=16, lr=0.05, seed=3, checkpoint=checkpoint,
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


def test_a_step_budget_cuts_the_last_epoch_and_drops_the_lr_at_its_fractions():
    # 48 normal images, 8 per step: 6 steps per epoch; 10 steps = one full epoch and 4 steps.
    _, history = run(epochs=None, steps=10)
    assert [h["steps"] for h in history] == [6, 4]
    assert TrainSettings().milestone_steps(10) == [6, 8]  # 60% and 80% of the steps
    # "lr" is each epoch's first step's: the first drop comes with the second epoch's first step.
    assert history[0]["lr"] == pytest.approx(0.05)
    assert history[1]["lr"] == pytest.approx(0.05 * 0.1)


def test_steps_resume_from_a_checkpoint_to_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "CHECKPOINT_EVERY", 1)
    reference, _ = run(epochs=None, steps=10)
    calls = {"n": 0}

    def interrupted(network, x_normal, x_outlier):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return oe_bce_objective(network, x_normal, x_outlier)

    with pytest.raises(KeyboardInterrupt):
        run(epochs=None, steps=10, checkpoint=tmp_path / "ckpt.pt", objective=interrupted)
    resumed, history = run(epochs=None, steps=10, checkpoint=tmp_path / "ckpt.pt")
    assert [h["steps"] for h in history] == [6, 4]
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_progress_bar_waits_before_it_appears(capsys):
    # verbose fits show a bar, but only once they have run for progress_delay seconds.
    torch.manual_seed(0)
    net = resnet26(width=4)
    normal, corpus = problem()
    data = TrainingData(normal, corpus, torch.device("cpu"), 32)
    quick = TrainSettings(steps=2, batch_size=16, verbose=True, precision="float32", progress_delay=3600)
    train(net, data, oe_bce_objective, list(net.parameters()), quick, mean=MEAN, std=STD)
    assert "fit" not in capsys.readouterr().err
    shown = TrainSettings(steps=2, batch_size=16, verbose=True, precision="float32", progress_delay=0)
    train(net, data, oe_bce_objective, list(net.parameters()), shown, mean=MEAN, std=STD)
    assert "2/2" in capsys.readouterr().err


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "CHECKPOINT_EVERY", 1)  # a checkpoint after every epoch
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


def test_a_training_step_makes_no_tensor_from_python_data():
    # On a GPU such a tensor is a blocking host-to-device copy that drains the stream every step
    # (the normalisation's mean and std were four per step); train makes them once per fit.
    from torch.profiler import ProfilerActivity, profile

    def tensors_from_python_data(steps):
        rng = np.random.default_rng(0)
        normal = torch.from_numpy(rng.integers(0, 256, (64, 3, 32, 32), dtype=np.uint8))
        corpus = OutlierCorpus(rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8))
        network = resnet26(width=4)
        data = TrainingData(normal, corpus, torch.device("cpu"), 32)
        settings = TrainSettings(steps=steps, batch_size=16, precision="float32", device=torch.device("cpu"))
        with profile(activities=[ProfilerActivity.CPU]) as trace:
            train(network, data, oe_bce_objective, list(network.parameters()), settings, mean=MEAN, std=STD)
        return sum(e.name == "aten::lift_fresh" for e in trace.events())

    assert tensors_from_python_data(2) == tensors_from_python_data(6)


def test_bf16_training_runs_and_stays_float32():
    net, history = run(epochs=1, precision="bfloat16")
    assert np.isfinite(history[0]["loss"])
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_short_epochs_are_checkpointed_in_groups_and_still_resume_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "CHECKPOINT_EVERY", 12)  # 6 steps per epoch: save after epochs 2, 4, 5
    saves = []
    real_save = callbacks.save_checkpoint
    monkeypatch.setattr(callbacks, "save_checkpoint",
                        lambda spec, epoch, *a: (saves.append(epoch), real_save(spec, epoch, *a)))
    reference, _ = run(epochs=None, steps=28)
    calls = {"n": 0}

    def interrupted(network, x_normal, x_outlier):
        calls["n"] += 1
        if calls["n"] == 20:  # in the fourth epoch: the last save was after the second
            raise KeyboardInterrupt
        return oe_bce_objective(network, x_normal, x_outlier)

    with pytest.raises(KeyboardInterrupt):
        run(epochs=None, steps=28, checkpoint=tmp_path / "ckpt.pt", objective=interrupted)
    assert saves == [2]
    resumed, history = run(epochs=None, steps=28, checkpoint=tmp_path / "ckpt.pt")
    assert saves == [2, 4, 5] and [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def _seen_normal_batches(**augmentation):
    """The normalised normal batches the objective receives in one epoch (16 images, one step)."""
    rng = np.random.default_rng(1)
    normal = torch.from_numpy(rng.integers(0, 256, (16, 3, 32, 32), dtype=np.uint8))
    seen = []

    def recording(network, x_normal, x_outlier):
        seen.append(x_normal.detach().clone())
        return oe_bce_objective(network, x_normal, x_outlier)

    torch.manual_seed(0)
    net = resnet26(width=4)
    settings = TrainSettings(epochs=1, batch_size=32, seed=0, precision="float32", **augmentation)
    corpus = OutlierCorpus(rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8))
    train(net, TrainingData(normal, corpus, torch.device("cpu"), 32), recording, list(net.parameters()),
          settings, mean=MEAN, std=STD)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return torch.cat(seen), (normal.float() / 255 - mean) / std


def test_the_network_sees_random_crops_and_flips_of_the_normal_images():
    # Without augmentation the batch is the normalised images themselves (in the epoch's order).
    plain, images = _seen_normal_batches(crop_padding=0, flip=False)
    assert all(any(torch.allclose(x, image) for image in images) for x in plain)

    # With it (the default: 4-pixel padded crops and flips), images are moved, yet each is exactly
    # a crop, possibly flipped, of one of the normal images.
    augmented, images = _seen_normal_batches()
    # NaN marks the padding, whose value is the normalised black training pads with: compared
    # where there is image content only.
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4), value=float("nan"))
    moved = 0
    for x in augmented:
        moved += not any(torch.allclose(x, image) for image in images)
        crops = (image[:, top:top + 32, left:left + 32] for image in padded for top in range(9) for left in range(9))
        assert any(torch.allclose(torch.where(view.isnan(), x, view), x) for crop in crops
                   for view in (crop, crop.flip(2))), "an augmented image is no crop/flip of a normal image"
    assert moved >= 12  # P(no shift and no flip) = 1/162 per image
