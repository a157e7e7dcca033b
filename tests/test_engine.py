import numpy as np
import pytest
import torch

from skad_transfer.data.corpora import OutlierCorpus
from skad_transfer.data.harmonize import jpeg_roundtrip, luminance, match_luminance, reference_indices
from skad_transfer.engine import (
    Precision, TrainingData, TrainingDivergedError, TrainSettings, _epoch_plan, apply_batched, cpu_has_native_bfloat16,
    resolve_device, train,
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
    assert all(Precision.resolve(torch.device("cpu"), p).channels_last for p in ("auto", "float32", "bfloat16"))


@pytest.mark.parametrize("cpuid, env, native", [
    (True, {}, True),
    (False, {}, False),  # no bf16 instructions
    (True, {"ONEDNN_MAX_CPU_ISA": "avx2"}, False),  # oneDNN's convolutions capped below bf16
    (True, {"DNNL_MAX_CPU_ISA": "AVX512_CORE"}, False),  # the cap's former name
    (True, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, True),
    (True, {"ONEDNN_MAX_CPU_ISA": "ALL"}, True),
])
def test_auto_precision_is_bf16_only_where_the_convolutions_may_use_bf16_instructions(monkeypatch, cpuid, env, native):
    # Under a oneDNN cap of AVX2 an AVX512-BF16 CPU trained 11x slower in bf16 than in float32
    # (docs/benchmarks.md): "auto" must read the cap, not only the CPU's flags.
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: cpuid)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cpu_has_native_bfloat16() is native
    assert Precision.resolve(torch.device("cpu"), "auto").name == ("bfloat16" if native else "float32")


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
    import skad_transfer.engine as engine

    monkeypatch.setattr(engine, "CHECKPOINT_EVERY", 1)
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


def test_jpeg_quality_harmonises_normal_oe_and_scored_images_alike():
    normal, corpus = problem()
    data = TrainingData(normal, corpus, torch.device("cpu"), 32, jpeg_quality=75)
    assert not torch.equal(data.normal, normal)  # re-encoded
    assert torch.equal(data.outlier_batch(torch.arange(3)),
                       jpeg_roundtrip(corpus.take(np.arange(3)), 75))
    net = resnet26(width=4).eval()
    kwargs = dict(device=torch.device("cpu"), mean=MEAN, std=STD, input_size=32)
    assert torch.equal(apply_batched(net, normal, jpeg_quality=75, **kwargs), apply_batched(net, data.normal, **kwargs))


def test_match_histograms_gives_oe_images_normal_intensities_with_a_pairing_fixed_per_item():
    normal, corpus = problem()  # normal images in 0..99, OE images in 100..255
    data = TrainingData(normal, corpus, torch.device("cpu"), 32, match_histograms=True, pairing_seed=5)
    batch = data.outlier_batch(torch.tensor([7, 3, 7, 12]))
    # The OE images now have the normal images' brightness (luma ~50, not ~177), colour kept aside.
    assert abs(luminance(batch).mean() - luminance(normal).mean()) < 5
    assert torch.equal(batch[0], batch[2])  # the same item always meets the same reference
    pairs = reference_indices(torch.tensor([7, 3, 12]), len(normal), 5)
    expected = match_luminance(corpus.take([7, 3, 12]), normal[pairs])
    assert torch.equal(batch[[0, 1, 3]], expected)
    data.outliers = None  # read lazily, batch by batch: the same images
    assert torch.equal(data.outlier_batch(torch.tensor([7, 3, 7, 12])), batch)
    assert data.references is normal
    assert TrainingData(normal, corpus, torch.device("cpu"), 32).references is None


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import skad_transfer.engine as engine

    monkeypatch.setattr(engine, "CHECKPOINT_EVERY", 1)  # a checkpoint after every epoch
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


def test_under_ddp_a_non_finite_loss_stops_training_at_the_end_of_its_epoch():
    # DDP ranks must agree to stop, so no step reads the loss back: the reduced epoch loss is the
    # only loss check there (as it is on CUDA between two read-backs, every 25 steps). The loss is
    # nan at the second of three steps while its gradient (and so every weight) stays finite: the
    # weight check cannot see it, only the end-of-epoch loss check can.
    from skad_transfer.engine import Distributed, Progress, Step, run_epochs

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
                       device=torch.device("cpu"), distributed=distributed, progress=Progress(False))
    finally:
        distributed.close()
    assert epochs_started == [0]  # stopped at the end of the epoch, not after the run
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the loss alone showed it


def test_a_training_step_makes_no_tensor_from_python_data():
    # On a GPU such a tensor is a blocking host-to-device copy that drains the stream every step
    # (the normalisation's mean and std were four per step); the engine makes them once per fit.
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


def test_apply_batched_is_invariant_to_batch_composition():
    net = resnet26(width=4).eval()
    images = torch.randint(0, 256, (70, 3, 32, 32), dtype=torch.uint8)
    kwargs = dict(device=torch.device("cpu"), mean=MEAN, std=STD, input_size=32)
    full = apply_batched(net, images, **kwargs)
    parts = torch.cat([apply_batched(net, images[i:i + 9], **kwargs) for i in range(0, 70, 9)])
    assert torch.equal(full, parts)


def test_short_epochs_are_checkpointed_in_groups_and_still_resume_exactly(tmp_path, monkeypatch):
    import skad_transfer.engine as engine

    monkeypatch.setattr(engine, "CHECKPOINT_EVERY", 12)  # 6 steps per epoch: save after epochs 2, 4, 5
    saves = []
    real_save = engine._save
    monkeypatch.setattr(engine, "_save", lambda spec, epoch, *a: (saves.append(epoch), real_save(spec, epoch, *a)))
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
    # NaN marks the padding, whose value is the normalised black the engine pads with: compared
    # where there is image content only.
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4), value=float("nan"))
    moved = 0
    for x in augmented:
        moved += not any(torch.allclose(x, image) for image in images)
        crops = (image[:, top:top + 32, left:left + 32] for image in padded for top in range(9) for left in range(9))
        assert any(torch.allclose(torch.where(view.isnan(), x, view), x) for crop in crops
                   for view in (crop, crop.flip(2))), "an augmented image is no crop/flip of a normal image"
    assert moved >= 12  # P(no shift and no flip) = 1/162 per image


# --------------------------------------------------------------------------
# The core itself: run_epochs with a caller's own steps (as pretraining uses it)
# --------------------------------------------------------------------------


def _regression_core(epochs=4, checkpointing=None, after_epoch=None, evaluate=None, fail_at=None):
    """A linear model fitted by run_epochs on fixed data: 3 steps of 5 samples per epoch."""
    from skad_transfer.engine import Progress, Step, run_epochs, seeded_generator

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

    history = run_epochs(model, optimizer, scheduler, epoch_steps, epochs=epochs, steps_per_epoch=3,
                         device=torch.device("cpu"), checkpointing=checkpointing, after_epoch=after_epoch,
                         evaluate=evaluate, progress=Progress(False))
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
    from skad_transfer.engine import Checkpointing

    spec = Checkpointing(tmp_path / "ckpt.pt", "unit", 0, every=1)
    stopped, history = _regression_core(checkpointing=spec, after_epoch=lambda entry: entry["epoch"] == 2)
    assert [h["epoch"] for h in history] == [1, 2] and history[-1]["stopped_early"] is True
    again, resumed = _regression_core(checkpointing=spec)  # no hook now: the checkpoint says it stopped
    assert resumed == history
    assert torch.equal(again.weight, stopped.weight)


def test_run_epochs_resumes_a_caller_loop_to_the_same_weights(tmp_path):
    from skad_transfer.engine import Checkpointing

    reference, ref_history = _regression_core()
    spec = Checkpointing(tmp_path / "ckpt.pt", "unit", 0, every=1)
    with pytest.raises(KeyboardInterrupt):
        _regression_core(checkpointing=spec, fail_at=(2, 1))
    resumed, history = _regression_core(checkpointing=spec)
    assert torch.equal(resumed.weight, reference.weight) and torch.equal(resumed.bias, reference.bias)
    assert [h["loss"] for h in history] == [h["loss"] for h in ref_history]


def test_a_checkpoint_of_another_kind_is_refused(tmp_path):
    from skad_transfer.engine import Checkpointing

    torch.save({"format": "something/else", "fingerprint": "unit"}, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        _regression_core(checkpointing=Checkpointing(tmp_path / "ckpt.pt", "unit", 0))


def test_seeded_generator_depends_on_its_key_only():
    from skad_transfer.engine import seeded_generator

    draw = lambda *key: torch.randint(0, 10**9, (4,), generator=seeded_generator(*key))
    assert torch.equal(draw(3, 1), draw(3, 1))
    assert not torch.equal(draw(3, 1), draw(3, 2)) and not torch.equal(draw(3, 1), draw("pretrain", 3, 1))


def test_distributed_setting_must_be_none_or_a_bool():
    from skad_transfer.engine import Distributed

    assert not Distributed(False, torch.device("cpu")).enabled
    with pytest.raises(TypeError, match="distributed"):
        Distributed("yes", torch.device("cpu"))
