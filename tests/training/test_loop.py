"""The training loop and its callbacks: skad_transfer.training.loop, .callbacks, .checkpoints."""

import pytest
import torch

from skad_transfer.training import (Callback, Checkpoint, Checkpointing, Distributed, DivergenceGuard, EarlyStopping,
                                    EpochEnd, EpochScores, Step, TrainingDivergedError, run_epochs, seeded_generator)


def test_under_ddp_a_non_finite_loss_stops_training_at_the_end_of_its_epoch():
    # DDP ranks must agree to stop, so no step reads the loss back: the reduced epoch loss is the
    # only loss check there (as it is on CUDA between two read-backs, every 25 steps). The loss is
    # nan at the second of three steps while its gradient (and so every weight) stays finite: the
    # weight check cannot see it, only the end-of-epoch loss check can.
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    X = torch.randn(15, 2, generator=torch.Generator().manual_seed(1))
    y = X @ torch.tensor([[2.0], [-1.0]])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3)
    epochs_started = []

    def epoch_steps(network, epoch):
        epochs_started.append(epoch)
        for step in range(3):
            loss = ((network(X[step * 5:(step + 1) * 5]) - y[step * 5:(step + 1) * 5]) ** 2).mean()
            yield Step(loss + (float("nan") if (epoch, step) == (0, 1) else 0.0), 5)

    distributed = Distributed(True, torch.device("cpu"))  # a one-process gloo group: the DDP path
    try:
        with pytest.raises(TrainingDivergedError, match=r"loss became nan at epoch 1, step 3 \(lr=0\.1\); lower lr"):
            run_epochs(model, optimizer, scheduler, epoch_steps, epochs=2, steps_per_epoch=3,
                       device=torch.device("cpu"), distributed=distributed, callbacks=[DivergenceGuard()])
    finally:
        distributed.close()
    assert epochs_started == [0]  # stopped at the end of the epoch, not after the run
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the loss alone showed it


# --------------------------------------------------------------------------
# The core itself: run_epochs with a caller's own steps (as pretraining uses it)
# --------------------------------------------------------------------------


def _regression_core(epochs=4, checkpointing=None, after_epoch=None, evaluate=None, fail_at=None, extra=()):
    """A linear model fitted by run_epochs on fixed data: 3 steps of 5 samples per epoch."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    X = torch.randn(15, 2, generator=torch.Generator().manual_seed(1))
    y = X @ torch.tensor([[2.0], [-1.0]])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)  # per step: halves every epoch

    def epoch_steps(network, epoch):
        order = torch.randperm(15, generator=seeded_generator("test", epoch))
        for step in range(3):
            if fail_at == (epoch, step):
                raise KeyboardInterrupt
            rows = order[step * 5:(step + 1) * 5]
            error = network(X[rows]) - y[rows]
            yield Step((error ** 2).mean(), 5, {"big_errors": (error.abs() > 1).sum()})

    # In the order train() and pretrain() use: what an epoch adds, then the save, then the caller's hook.
    callbacks = [DivergenceGuard(), *([EpochScores(evaluate)] if evaluate else []),
                 *extra, *([Checkpoint(checkpointing)] if checkpointing else []),
                 *([EpochEnd(after_epoch)] if after_epoch else [])]
    history = run_epochs(model, optimizer, scheduler, epoch_steps, epochs=epochs, steps_per_epoch=3,
                         device=torch.device("cpu"), callbacks=callbacks)
    return model, history


def test_run_epochs_history_reports_per_image_means_first_step_lr_and_evaluation():
    _, history = _regression_core(evaluate=lambda network: {"weight0": network.weight.detach()[0, 0].item()})
    assert [h["epoch"] for h in history] == [1, 2, 3, 4] and [h["steps"] for h in history] == [3] * 4
    assert [h["lr"] for h in history] == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    counts = [h["big_errors"] * 15 for h in history]  # a count over 15 samples, reported per sample
    assert all(c == pytest.approx(round(c)) and 0 <= round(c) <= 15 for c in counts)
    assert counts[-1] < counts[0]  # fewer big errors as the fit improves
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["weight0"] > history[0]["weight0"]  # moving toward the true weight, 2


def test_after_epoch_can_stop_training_and_a_resumed_run_stops_there_too(tmp_path):
    spec = Checkpointing(tmp_path / "ckpt.pt", "unit", 0, every=1)
    stopped, history = _regression_core(checkpointing=spec, after_epoch=lambda entry: entry["epoch"] == 2)
    assert [h["epoch"] for h in history] == [1, 2] and history[-1]["stopped_early"] is True
    again, resumed = _regression_core(checkpointing=spec)  # no hook now: the checkpoint says it stopped
    assert resumed == history
    assert torch.equal(again.weight, stopped.weight)


def test_run_epochs_resumes_a_caller_loop_to_the_same_weights(tmp_path):
    reference, ref_history = _regression_core()
    spec = Checkpointing(tmp_path / "ckpt.pt", "unit", 0, every=1)
    with pytest.raises(KeyboardInterrupt):
        _regression_core(checkpointing=spec, fail_at=(2, 1))
    resumed, history = _regression_core(checkpointing=spec)
    assert torch.equal(resumed.weight, reference.weight) and torch.equal(resumed.bias, reference.bias)
    assert [h["loss"] for h in history] == [h["loss"] for h in ref_history]


def test_a_checkpoint_of_another_kind_is_refused(tmp_path):
    torch.save({"format": "something/else", "fingerprint": "unit"}, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        _regression_core(checkpointing=Checkpointing(tmp_path / "ckpt.pt", "unit", 0))


def test_seeded_generator_depends_on_its_key_only():
    draw = lambda *key: torch.randint(0, 10**9, (4,), generator=seeded_generator(*key))
    assert torch.equal(draw(3, 1), draw(3, 1))
    assert not torch.equal(draw(3, 1), draw(3, 2)) and not torch.equal(draw(3, 1), draw("pretrain", 3, 1))


def test_distributed_setting_must_be_none_or_a_bool():
    assert not Distributed(False, torch.device("cpu")).enabled
    with pytest.raises(TypeError, match="distributed"):
        Distributed("yes", torch.device("cpu"))


# --------------------------------------------------------------------------
# Callbacks: the order of the hooks, stopping, early stopping's best weights
# --------------------------------------------------------------------------


class _Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, run):
        self.calls.append("train_begin")

    def on_epoch_begin(self, run):
        self.calls.append(f"epoch_begin {run.epoch}")

    def on_step_end(self, run, step):
        self.calls.append(f"step {run.epoch}.{step}")

    def on_epoch_end(self, run, entry):
        self.calls.append(f"epoch_end {entry['epoch']}")
        entry["recorded"] = True

    def on_early_stop(self, run, entry):
        self.calls.append("early_stop")

    def on_train_end(self, run):
        self.calls.append("train_end")

    def on_close(self, run):
        self.calls.append("close")


def test_callbacks_are_notified_at_each_point_in_order_and_may_add_to_the_history():
    recorder = _Recorder()
    _, history = _regression_core(epochs=2, extra=[recorder])
    assert recorder.calls == ["train_begin", "epoch_begin 0", "step 0.0", "step 0.1", "step 0.2", "epoch_end 1",
                              "epoch_begin 1", "step 1.0", "step 1.1", "step 1.2", "epoch_end 2", "train_end", "close"]
    assert all(h["recorded"] for h in history)


def test_a_failed_run_closes_its_callbacks_but_does_not_end_them():
    recorder = _Recorder()
    with pytest.raises(KeyboardInterrupt):
        _regression_core(epochs=2, fail_at=(1, 0), extra=[recorder])
    assert recorder.calls[-2:] == ["epoch_begin 1", "close"]


def test_a_stop_request_ends_training_after_that_epoch_and_marks_it():
    class StopAfterFirst(Callback):
        def on_epoch_end(self, run, entry):
            run.request_stop()

    recorder = _Recorder()
    _, history = _regression_core(epochs=4, extra=[StopAfterFirst(), recorder])
    assert [h["epoch"] for h in history] == [1] and history[0]["stopped_early"] is True
    assert recorder.calls[-4:] == ["epoch_end 1", "early_stop", "train_end", "close"]


def test_a_stop_requested_in_the_last_epoch_marks_nothing():
    _, history = _regression_core(epochs=2, after_epoch=lambda entry: entry["epoch"] == 2)
    assert [h["epoch"] for h in history] == [1, 2] and "stopped_early" not in history[-1]


def test_early_stopping_keeps_the_best_epochs_weights():
    # A monitored value that is best at epoch 2 of 5: training stops after 2 epochs without a
    # better one (epoch 4), and the network ends with epoch 2's weights, not epoch 4's.
    values = iter([3.0, 1.0, 2.0, 2.0, 0.5])
    weights = {}

    def record(network):
        value = next(values)
        weights[value] = network.weight.detach().clone()
        return {"val_loss": value}

    stopping = EarlyStopping(patience=2)
    model, history = _regression_core(epochs=5, evaluate=record, extra=[stopping])
    assert [h["epoch"] for h in history] == [1, 2, 3, 4] and history[-1]["stopped_early"] is True
    assert stopping.best_epoch == 2
    assert torch.equal(model.weight, weights[1.0]) and not torch.equal(model.weight, weights[2.0])
