"""Training never returns a silently wrong model (issue 9, part B).

Divergence, threads, checkpoints, module backbones, pickles across versions, parameter ranges and
the state a failed fit leaves. Every fit here is tiny (width 4, 16 random float images, one or a
few steps); random floats are not JPEG-like, so ``jpeg_quality=None``.
"""

import os
import pickle
import threading
import warnings

import numpy as np
import pytest
import torch
from conftest import TINY
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

import skad_transfer
import skad_transfer.losses as losses
import skad_transfer.training.callbacks as callbacks
from skad_transfer import ADIBDetector, ADRADetector, DeepADDetector, HSCDetector, LayerFeatures, resnet26
from skad_transfer.data.corpora import OutlierCorpus
from skad_transfer.data.fitdata import TrainingData
from skad_transfer.persistence import InconsistentVersionWarning
from skad_transfer.objectives import oe_bce_objective
from skad_transfer.training import TrainingDivergedError, TrainSettings, train
from skad_transfer.weights import save_weights

FAST = {**TINY, "batch_size": 32, "jpeg_quality": None, "verbose": False, "precision": "float32"}
"""One step per epoch on 16 images (the batch's normal half takes them all)."""


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((16, 32, 32, 3), dtype=np.float32), rng.random((16, 32, 32, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def theta0_with_head(tmp_path_factory):
    """A theta0 file with a 10-class head, which DOC and EWC use."""
    path = tmp_path_factory.mktemp("theta0") / "theta0.pth"
    return save_weights(resnet26(width=4, num_classes=10), path).path


def _detectors(theta0=None):
    """One detector per code path that draws random numbers in fit (head init, adapters, Fisher, DOC head)."""
    detectors = {
        "adib-random-init": ADIBDetector(**FAST),
        "adra": ADRADetector(**FAST),
        "ewc-fresh-head": DeepADDetector(**FAST, regularizer="ewc"),
        "resnet26-module": ADIBDetector(**{**FAST, "width": None}, backbone=resnet26(width=4, num_classes=3)),
    }
    if theta0 is not None:
        pretrained = {**FAST, "weights": theta0, "width": None}
        detectors["doc"] = DeepADDetector(**pretrained, loss="doc", regularizer=None)
        detectors["ewc-theta0-head"] = DeepADDetector(**pretrained, regularizer="ewc")
    return detectors


class _InterruptAt:
    """The BCE objective, raising KeyboardInterrupt at its ``call``-th call (Ctrl-C during a fit)."""

    def __init__(self, call):
        self.call, self.calls = call, 0

    def __call__(self, network, x_normal, x_outlier):
        self.calls += 1
        if self.calls == self.call:
            raise KeyboardInterrupt
        return oe_bce_objective(network, x_normal, x_outlier)


# ---------------------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("Detector", [ADIBDetector, ADRADetector, HSCDetector])
def test_a_diverging_fit_raises_instead_of_returning_nan_scores(Detector, data):
    # One step per epoch: the loss checked before that step is finite; only its update is not.
    det = Detector(**{**FAST, "lr": 1e6})
    with pytest.raises(TrainingDivergedError, match=r"lr=1e\+06\).*lower lr") as caught:
        det.fit(*data)
    assert isinstance(caught.value, FloatingPointError)
    with pytest.raises(NotFittedError):
        check_is_fitted(det)


def train_one_step(network, objective):
    """One SGD step (lr 0.5, float32) of ``objective`` on 8 random normal and 8 random OE images."""
    rng = np.random.default_rng(0)
    normal = torch.from_numpy(rng.integers(0, 256, (8, 3, 32, 32), dtype=np.uint8))
    corpus = OutlierCorpus(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
    settings = TrainSettings(steps=1, batch_size=16, lr=0.5, precision="float32")
    train(network, TrainingData(normal, corpus, torch.device("cpu"), 32), objective, list(network.parameters()),
          settings, mean=(0.5,) * 3, std=(0.25,) * 3)


def test_training_checks_the_weights_after_the_last_step():
    # A finite loss (sqrt(0) = 0) whose gradient is nan (d sqrt / dx at 0 is inf, times 0): the
    # loss check before each step cannot see it, the weights after the step can.
    def nan_gradient(network, x_normal, x_outlier):
        return oe_bce_objective(network, x_normal, x_outlier) + (0 * network.linears.bias).abs().sqrt().sum()

    network = resnet26(width=4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TrainingDivergedError, match=r"linears\.bias.*non-finite.*epoch 1 \(lr=0\.5\); lower lr"):
        train_one_step(network, nan_gradient)


def _nan_gradient_in_one_weight(network):
    # d sqrt(|0 * w|) / dw is nan at w = weight[0, 5] only: one of its 16 entries goes nan.
    return (0 * network.linears.weight[0, 5]).abs().sqrt()


def _nan_in_one_running_variance(network):
    # A BatchNorm statistic never shows in a train-mode loss; one of its 16 entries goes nan
    # (through .data: the forward pass saved the tensor for its backward pass).
    network.end_bn_relu[0].running_var.data[3] = float("nan")
    return 0.0


@pytest.mark.parametrize("spoil, name", [(_nan_gradient_in_one_weight, r"linears\.weight"),
                                         (_nan_in_one_running_variance, r"end_bn_relu\.0\.running_var")])
def test_the_weight_check_finds_one_non_finite_entry_among_finite_ones(spoil, name):
    # Every entry must be finite, not only some: a tensor with a single nan among finite values
    # (the loss stays finite) stops the fit, naming the tensor.
    def objective(network, x_normal, x_outlier):
        return oe_bce_objective(network, x_normal, x_outlier) + spoil(network)

    network = resnet26(width=4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TrainingDivergedError, match=rf"{name} of the network became non-finite.*epoch 1 \(lr=0\.5\)"):
        train_one_step(network, objective)
    spoiled = dict([*network.named_parameters(), *network.named_buffers()])[name.replace("\\", "")]
    assert (~torch.isfinite(spoiled)).sum() == 1 and spoiled.numel() == 16  # one bad entry among finite ones


def test_a_diverging_refit_keeps_the_previous_model(data):
    X, X_outlier = data
    det = ADIBDetector(**FAST).fit(X, X_outlier)
    scores, attributes = det.score_samples(X), dict(vars(det))
    # Other data too, so that a half-done refit would show in the preprocessing attributes.
    with pytest.raises(TrainingDivergedError, match="lr="):
        det.set_params(lr=1e6).fit(X[:, :16, :16], X_outlier)
    assert det.image_shape_ == attributes["image_shape_"] and det.network_ is attributes["network_"]
    assert set(vars(det)) == set(attributes)
    assert np.array_equal(det.score_samples(X), scores)


# ------------------------------------------------------------------------------------------- threads
@pytest.mark.parametrize("name", ["adib-random-init", "adra", "ewc-fresh-head", "doc", "ewc-theta0-head"])
def test_fits_in_two_threads_equal_the_same_fits_in_sequence(name, data, theta0_with_head, one_torch_thread):
    X, X_outlier = data
    template = _detectors(theta0_with_head)[name]
    seeds = (0, 1)  # different seeds: a shared (global) generator would mix the two fits' draws
    sequential = [clone(template).set_params(random_state=s).fit(X, X_outlier).score_samples(X) for s in seeds]

    results, errors = [None, None], []
    start = threading.Barrier(2)

    def work(i):
        try:
            det = clone(template).set_params(random_state=seeds[i])
            start.wait()
            det.fit(X, X_outlier)
            start.wait()  # both fitted: score at the same time too
            results[i] = det.score_samples(X)
        except BaseException as error:  # surfaced below; a thread's exception is otherwise lost
            errors.append(error)
            start.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for parallel, alone in zip(results, sequential):
        assert np.array_equal(parallel, alone)


@pytest.mark.parametrize("name", ["adib-random-init", "adra", "ewc-fresh-head", "doc", "resnet26-module"])
def test_a_fit_touches_no_global_random_state_or_torch_setting(name, data, theta0_with_head):
    det = _detectors(theta0_with_head)[name]
    settings = lambda: (torch.get_num_threads(), torch.get_num_interop_threads(), torch.get_default_dtype(),
                        torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
                        torch.backends.cudnn.deterministic)
    torch_state, numpy_state, before = torch.get_rng_state(), np.random.get_state(), settings()
    det.fit(*data).score_samples(data[0])
    assert torch.equal(torch.get_rng_state(), torch_state)  # neither reseeded nor advanced
    numpy_after = np.random.get_state()
    assert np.array_equal(numpy_after[1], numpy_state[1]) and numpy_after[2:] == numpy_state[2:]
    assert settings() == before


@pytest.mark.parametrize("seed", [0, 7])
def test_a_seed_builds_the_network_the_global_generator_built(seed):
    # Fits draw from a generator of their own now, not from torch.manual_seed(seed): a seed must
    # still give the network (and so the scores) it always gave.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        expected = resnet26(width=4)
        expected.reset_head(1)
    generator = torch.Generator().manual_seed(seed)
    network = resnet26(width=4, generator=generator)
    network.reset_head(1, generator)
    for name, tensor in expected.state_dict().items():
        assert torch.equal(network.state_dict()[name], tensor), name


# ----------------------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_resumes_a_fit_without_an_explicit_seed(data, tmp_path, monkeypatch):
    X, X_outlier = data
    monkeypatch.setattr(callbacks, "CHECKPOINT_EVERY", 1)  # save after every (one-step) epoch
    params = {**FAST, "epochs": 3, "batch_size": 16}  # 2 steps per epoch, 6 in all
    reference = ADIBDetector(**{**params, "random_state": np.random.RandomState(5)}).fit(X, X_outlier)

    path = tmp_path / "fit.ckpt"
    interrupted = ADIBDetector(**{**params, "random_state": np.random.RandomState(5), "checkpoint": path})
    monkeypatch.setattr(losses, "oe_bce_objective", _InterruptAt(4))  # step 2 of epoch 2
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(X, X_outlier)
    with pytest.raises(NotFittedError):  # an interrupted fit leaves no half-fitted estimator
        check_is_fitted(interrupted)
    assert path.is_file()

    monkeypatch.setattr(losses, "oe_bce_objective", oe_bce_objective)
    # random_state=None draws a new seed; the checkpoint's recorded seed wins, so the fit resumes.
    resumed = ADIBDetector(**{**params, "random_state": None, "checkpoint": path}).fit(X, X_outlier)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3]
    assert np.array_equal(resumed.score_samples(X), reference.score_samples(X))


def test_an_interrupted_fit_with_random_state_none_resumes(data, tmp_path, monkeypatch):
    X, X_outlier = data
    monkeypatch.setattr(callbacks, "CHECKPOINT_EVERY", 1)
    params = {**FAST, "epochs": 3, "batch_size": 16, "random_state": None, "checkpoint": tmp_path / "fit.ckpt"}
    interrupt = _InterruptAt(4)
    monkeypatch.setattr(losses, "oe_bce_objective", interrupt)
    with pytest.raises(KeyboardInterrupt):
        ADIBDetector(**params).fit(X, X_outlier)
    counter = _InterruptAt(0)  # counts the steps, never interrupts
    monkeypatch.setattr(losses, "oe_bce_objective", counter)
    det = ADIBDetector(**params).fit(X, X_outlier)  # used to fail: "belongs to a different fit"
    assert counter.calls == 4  # epochs 2 and 3 only: epoch 1 came from the checkpoint
    assert np.isfinite(det.score_samples(X)).all()


def _a_folder(tmp_path):
    return tmp_path


def _under_a_file(tmp_path):
    (tmp_path / "file.txt").write_text("not a folder")
    return tmp_path / "file.txt" / "fit.ckpt"


def _folder_that_cannot_be_written(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o500)
    return folder / "fit.ckpt"


@pytest.mark.parametrize("where, error", [
    (_a_folder, ValueError), (_under_a_file, OSError), (_folder_that_cannot_be_written, PermissionError),
])
def test_a_bad_checkpoint_path_fails_before_training(where, error, data, tmp_path, monkeypatch):
    never = _InterruptAt(1)  # any training step would raise KeyboardInterrupt instead
    monkeypatch.setattr(losses, "oe_bce_objective", never)
    with pytest.raises(error, match="checkpoint"):
        ADIBDetector(**FAST, checkpoint=where(tmp_path)).fit(*data)
    assert never.calls == 0


def test_a_checkpoint_in_a_missing_folder_creates_it(data, tmp_path):
    path = tmp_path / "new" / "folder" / "fit.ckpt"
    ADIBDetector(**FAST, checkpoint=path).fit(*data)
    assert path.is_file()


_RAN = []


class _Payload:
    """Unpickling it runs code (appends to _RAN), as a malicious pickle would."""

    def __reduce__(self):
        return _RAN.append, ("code ran",)


def _garbage(path):
    path.write_bytes(b"not a checkpoint")


def _code_carrying(path):
    torch.save({"fingerprint": "x", "seed": 0, "payload": _Payload()}, path)


@pytest.mark.parametrize("write", [_garbage, _code_carrying])
def test_an_unreadable_checkpoint_fails_before_training(write, data, tmp_path, monkeypatch):
    path = tmp_path / "fit.ckpt"
    write(path)
    never = _InterruptAt(1)
    monkeypatch.setattr(losses, "oe_bce_objective", never)
    with pytest.raises(OSError, match="checkpoint: could not read"):
        ADIBDetector(**{**FAST, "random_state": None}, checkpoint=path).fit(*data)
    # Checkpoints load with weights_only=True: an object in the file is refused, its code never run.
    assert never.calls == 0 and _RAN == []


def test_the_checkpoint_of_another_fit_is_refused(data, tmp_path):
    path = tmp_path / "fit.ckpt"
    ADIBDetector(**FAST, checkpoint=path).fit(*data)
    with pytest.raises(ValueError, match="checkpoint: .* belongs to a different fit"):
        ADIBDetector(**{**FAST, "lr": 0.02}, checkpoint=path).fit(*data)


# ------------------------------------------------------------------------------------ module backbones
class _Logit(torch.nn.Module):
    """A one-logit module backbone; ``shape`` spoils its output shape in a batch-size dependent way."""

    def __init__(self, shape=None):
        super().__init__()
        self.linear = torch.nn.Linear(3 * 32 * 32, 1)
        self.shape = shape

    def forward(self, x):
        logits = self.linear(x.flatten(1))
        if self.shape == "first-two-rows":
            return logits[:2]
        if self.shape == "batch-mean":
            return logits.mean(0, keepdim=True).expand(2, 1)
        if self.shape == "fixed-reshape":
            return logits.reshape(2, -1)[:, :1]  # raises for an odd batch
        return logits


@pytest.mark.parametrize("shape", ["first-two-rows", "batch-mean", "fixed-reshape"])
def test_a_module_backbone_whose_output_ignores_the_batch_size_fails_at_fit_start(shape, data, monkeypatch):
    never = _InterruptAt(1)
    monkeypatch.setattr(losses, "oe_bce_objective", never)
    with pytest.raises(TypeError, match=r"backbone: .*\(N, 1\) anomaly logits.*N=3"):
        ADIBDetector(**{**FAST, "width": None}, backbone=_Logit(shape)).fit(*data)
    assert never.calls == 0


def test_a_well_formed_module_backbone_still_fits(easy_problem):
    from sklearn.metrics import roc_auc_score

    X_normal, X_outlier, X_test, y_test = easy_problem
    with torch.random.fork_rng(devices=[]):  # the same initial weights whatever ran before
        torch.manual_seed(0)
        backbone = _Logit()
    given = {k: t.clone() for k, t in backbone.state_dict().items()}
    det = ADIBDetector(**{**FAST, "width": None, "match_histograms": False}, backbone=backbone)
    det.fit(X_normal, X_outlier)
    # Trained: a copy of the module, moved away from the given weights (which stay as they were),
    # and it tells the bright-square anomalies from the dark normal images.
    assert isinstance(det.network_, _Logit) and det.network_ is not backbone
    assert all(torch.equal(t, given[k]) for k, t in backbone.state_dict().items())
    assert not torch.equal(det.network_.linear.weight, given["linear.weight"])
    assert len(det.history_) == 1 and det.history_[0]["steps"] == 8  # 128 normal images, 16 a step
    assert roc_auc_score(y_test, det.score_samples(X_test)) > 0.9  # 1.0 here; about 0.5 before the fit


# ---------------------------------------------------------------------------------------- persistence
@pytest.fixture(scope="module")
def fitted(data):
    return {"ADIBDetector": ADIBDetector(**FAST).fit(*data),
            "LayerFeatures": LayerFeatures(weights=None, width=4, device="cpu", random_state=0).fit(data[0])}


@pytest.mark.parametrize("name", ["ADIBDetector", "LayerFeatures"])
def test_a_pickle_records_the_package_version_and_loads_silently_under_it(name, fitted):
    blob = pickle.dumps(fitted[name])
    assert fitted[name].__getstate__()["_skad_transfer_version"] == skad_transfer.__version__
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        loaded = pickle.loads(blob)
    assert not hasattr(loaded, "_skad_transfer_version")


@pytest.mark.parametrize("name", ["ADIBDetector", "LayerFeatures"])
@pytest.mark.parametrize("original", ["0.0.1", None])  # None: pickled before versions were recorded
def test_a_pickle_from_another_version_warns_naming_both_versions(name, original, fitted):
    state = fitted[name].__getstate__()
    if original is None:
        del state["_skad_transfer_version"]
    else:
        state["_skad_transfer_version"] = original
    loaded = type(fitted[name]).__new__(type(fitted[name]))
    with pytest.warns(InconsistentVersionWarning) as caught:
        loaded.__setstate__(state)
    message = str(caught[0].message)
    assert issubclass(InconsistentVersionWarning, UserWarning)
    assert f"version {original or 'unknown'}" in message and skad_transfer.__version__ in message
    assert caught[0].message.original_version == (original or "unknown")


# ----------------------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("param, value", [
    ("steps", 0), ("steps", -3), ("epochs", 0), ("batch_size", 1), ("batch_size", 0),
    ("lr", float("nan")), ("lr", float("inf")), ("lr", 0.0), ("lr", -0.1),
    ("momentum", float("nan")), ("momentum", 1.0), ("weight_decay", -1e-4), ("weight_decay", float("nan")),
    ("alpha", -1.0), ("alpha", float("nan")), ("ewc_lambda", -1.0), ("contamination", float("nan")),
    ("contamination", 0.6),
])
def test_out_of_range_training_parameters_are_refused_by_name(param, value, data):
    with pytest.raises(ValueError, match=f"'{param}' parameter"):  # InvalidParameterError
        ADIBDetector(**{**FAST, param: value}).fit(*data)


def test_a_batch_larger_than_the_data_takes_the_whole_normal_set_each_step(data):
    det = ADIBDetector(**{**FAST, "batch_size": 1024, "epochs": 2}).fit(*data)
    assert [h["steps"] for h in det.history_] == [1, 1]
    assert np.isfinite(det.score_samples(data[0])).all()


def test_a_failed_first_fit_leaves_the_estimator_unfitted(data, tmp_path):
    det = ADIBDetector(**FAST, checkpoint=tmp_path)  # a folder: refused before training
    with pytest.raises(ValueError, match="checkpoint"):
        det.fit(*data)
    assert set(vars(det)) == set(ADIBDetector().get_params())  # no stray fitted attribute
    with pytest.raises(NotFittedError):
        det.score_samples(data[0])
