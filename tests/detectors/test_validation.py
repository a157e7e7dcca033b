"""validation_fraction: held-out images scored every epoch, thresholds from them, early stopping."""

import numpy as np
import pytest
import torch

from conftest import TINY
from skad_transfer import ADIBDetector, DSVDDDetector
from skad_transfer.data.corpora import OutlierCorpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = {**TINY, "batch_size": 16, "precision": "float32", "verbose": False}


def test_history_holds_validation_loss_and_auc_and_the_threshold_comes_from_held_out_images(easy_problem):
    X_normal, X_outlier, X_test, y_test = easy_problem
    det = ADIBDetector(validation_fraction=0.25, contamination=0.1, **{**FAST, "epochs": 3}).fit(X_normal, X_outlier)
    assert det.n_validation_ == 32 and len(det.validation_indices_) == 32
    assert [h["epoch"] for h in det.history_] == [1, 2, 3] and all(h["val_loss"] > 0 for h in det.history_)
    # An AUC over the 32 held-out normal and 32 held-out OE images (a multiple of 1/2048: ties count
    # half), which ranks the normal ones above the easy anomalies by the end (a flipped sign: < 0.1).
    assert all((h["val_auc"] * 32 * 32 * 2).is_integer() for h in det.history_)
    assert det.history_[-1]["val_auc"] > 0.9
    held_out = det.score_samples(X_normal[det.validation_indices_])
    assert det.offset_ == pytest.approx(np.percentile(held_out, 10.0))
    trained = np.setdiff1d(np.arange(len(X_normal)), det.validation_indices_)
    assert det.offset_ != pytest.approx(np.percentile(det.score_samples(X_normal[trained]), 10.0))
    # The same held-out rows for the same seed; without validation_fraction nothing is held out.
    again = ADIBDetector(validation_fraction=0.25, **{**FAST, "epochs": 1}).fit(X_normal, X_outlier)
    assert np.array_equal(again.validation_indices_, det.validation_indices_)
    plain = ADIBDetector(**FAST).fit(X_normal, X_outlier)
    assert plain.n_validation_ == 0 and not hasattr(plain, "validation_indices_") and "val_loss" not in plain.history_[0]


def test_auto_threshold_of_the_logit_is_refitted_on_held_out_normal_and_oe_images(easy_problem, monkeypatch):
    from skad_transfer.losses import OutlierExposureBCE

    X_normal, X_outlier, _, _ = easy_problem
    seen = []
    real = OutlierExposureBCE.auto_offset

    def recording(self, normal_scores, outlier_scores):
        seen.append((normal_scores(), outlier_scores()))
        return real(self, lambda: seen[-1][0], lambda: seen[-1][1])

    monkeypatch.setattr(OutlierExposureBCE, "auto_offset", recording)
    logit = {**FAST, "anomaly_score": "loss"}
    det = ADIBDetector(validation_fraction=0.25, **logit).fit(X_normal, X_outlier)
    normal, outlier = seen[-1]
    assert np.array_equal(normal, det.score_samples(X_normal[det.validation_indices_]))
    assert len(outlier) == 32  # as many held-out OE images as normal ones
    assert det.offset_ == pytest.approx(real(OutlierExposureBCE(), lambda: normal, lambda: outlier))
    # Without validation_fraction: the training images and as many corpus images (here all 128).
    plain = ADIBDetector(**logit).fit(X_normal, X_outlier)
    normal, outlier = seen[-1]
    assert np.array_equal(normal, plain.score_samples(X_normal)) and len(outlier) == len(X_outlier)


def test_auto_threshold_of_the_default_score_is_refitted_on_held_out_normal_and_oe_images(easy_problem, monkeypatch):
    import skad_transfer.detectors.base as base

    X_normal, X_outlier, _, _ = easy_problem
    seen = []
    real = base.refitted_boundary

    def recording(normal_scores, outlier_scores):
        seen.append((normal_scores, outlier_scores))
        return real(normal_scores, outlier_scores)

    monkeypatch.setattr(base, "refitted_boundary", recording)
    det = ADIBDetector(validation_fraction=0.25, **FAST).fit(X_normal, X_outlier)
    assert det.anomaly_score_ == "loss+knn" and len(seen) == 1
    normal, outlier = seen[-1]
    assert np.array_equal(normal, det.score_samples(X_normal[det.validation_indices_]))
    assert len(outlier) == 32  # as many held-out OE images as normal ones
    assert det.offset_ == pytest.approx(real(normal, outlier))
    plain = ADIBDetector(**FAST).fit(X_normal, X_outlier)
    normal, outlier = seen[-1]
    assert np.array_equal(normal, plain.score_samples(X_normal)) and len(outlier) == len(X_outlier)


def test_held_out_images_are_never_trained_on(easy_problem, monkeypatch):
    X_normal, X_outlier, _, _ = easy_problem
    from skad_transfer.data.fitdata import TrainingData

    seen = {}
    real = TrainingData.__init__

    def recording(self, normal, corpus, *args, **kwargs):
        seen["normal"], seen["corpus"] = normal.clone(), corpus
        real(self, normal, corpus, *args, **kwargs)

    monkeypatch.setattr(TrainingData, "__init__", recording)
    det = ADIBDetector(validation_fraction=0.25, **FAST).fit(X_normal, X_outlier)
    trained = {tuple(x.flatten().tolist()) for x in seen["normal"]}
    held_out = torch.from_numpy(X_normal[det.validation_indices_]).permute(0, 3, 1, 2)
    assert not any(tuple(x.flatten().tolist()) in trained for x in held_out)
    assert len(seen["corpus"]) == len(X_outlier) - 32  # as many OE images held out as normal ones


def test_early_stopping_stops_and_restores_the_best_epoch(easy_problem):
    from sklearn.metrics import roc_auc_score
    from sklearn.utils import check_random_state

    X_normal, X_outlier, _, _ = easy_problem
    # lr 1.5 makes the validation loss jump about; patience 1 stops at the first epoch that is no better.
    # The history scores the logit (the training objective's own score), so the fitted detector is
    # asked for the same score to recompute it.
    det = ADIBDetector(validation_fraction=0.25, early_stopping=True, n_iter_no_change=1, match_histograms=False,
                       anomaly_score="loss", **{**FAST, "epochs": 12, "lr": 1.5, "regularizer": None})
    det.fit(X_normal, X_outlier)
    losses = [h["val_loss"] for h in det.history_]
    assert len(losses) < 12 and det.history_[-1]["stopped_early"] is True and det.n_iter_ == len(losses)
    assert det.best_epoch_ == 1 + int(np.argmin(losses)) and det.best_epoch_ < len(losses)
    # The weights are the best epoch's, not the last one's: its held-out AUC and loss (BCE of the
    # logits, score = -logit: normal -> 0, OE -> 1), recomputed from the fitted detector's scores.
    seed = int(check_random_state(0).randint(np.iinfo(np.int32).max))
    oe_rows = np.sort(np.random.default_rng([seed, 3]).choice(len(X_outlier), size=32, replace=False))
    normal, outlier = det.score_samples(X_normal[det.validation_indices_]), det.score_samples(X_outlier[oe_rows])
    auc = roc_auc_score(np.r_[np.ones(32), np.zeros(32)], np.r_[normal, outlier])
    assert auc == pytest.approx(det.history_[det.best_epoch_ - 1]["val_auc"], abs=1e-9)
    loss = np.mean(np.r_[np.logaddexp(0, -normal), np.logaddexp(0, outlier)])
    assert loss == pytest.approx(det.history_[det.best_epoch_ - 1]["val_loss"], rel=1e-4)
    assert loss != pytest.approx(det.history_[-1]["val_loss"], rel=1e-2)


def test_one_class_detectors_report_validation_loss_without_auc(easy_problem):
    X_normal, _, _, _ = easy_problem
    det = DSVDDDetector(validation_fraction=0.2, **FAST).fit(X_normal)
    assert det.history_[0]["val_auc"] is None and det.history_[0]["val_loss"] > 0


@pytest.mark.parametrize("fraction, message", [(0.001, "holds out 0 of the 128"), (0.999, "holds out 128 of the 128")])
def test_a_fraction_that_leaves_one_side_empty_is_an_error(easy_problem, fraction, message):
    X_normal, X_outlier, _, _ = easy_problem
    with pytest.raises(ValueError, match=f"validation_fraction={fraction} {message}"):
        ADIBDetector(validation_fraction=fraction, **FAST).fit(X_normal, X_outlier)


def test_corpus_without_rows_is_a_view_that_skips_them():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(8, axis=1).repeat(8, axis=2).repeat(3, axis=3)
    view = OutlierCorpus(images).without([7, 2, 2, 9])
    assert len(view) == 7
    assert view.take(np.arange(7))[:, 0, 0, 0].tolist() == [0, 1, 3, 4, 5, 6, 8]
    assert view.all().data[:, 0, 0, 0].tolist() == [0, 1, 3, 4, 5, 6, 8]
    with pytest.raises(ValueError, match="no image"):
        OutlierCorpus(images).without(range(10))


def test_warm_start_continues_from_the_fitted_weights_with_theta0_still_the_anchor(easy_problem):
    X_normal, X_outlier, _, _ = easy_problem
    settings = {**FAST, "lr": 0.1}
    det = ADIBDetector(**settings).fit(X_normal, X_outlier)
    first = det.score_samples(X_normal[:8])
    det.set_params(warm_start=True).fit(X_normal, X_outlier)
    assert [h["epoch"] for h in det.history_] == [1, 2] and det.n_iter_ == 2
    assert not np.allclose(det.score_samples(X_normal[:8]), first)
    # The second epoch starts where the first ended, away from theta0, so its L2-SP pull is larger
    # than a fresh first epoch's (which starts at theta0, where the penalty is 0).
    assert det.history_[1]["penalty"] > det.history_[0]["penalty"] > 0
    # Without warm_start the same call starts from theta0 again.
    cold = ADIBDetector(**settings).fit(X_normal, X_outlier)
    assert np.allclose(cold.score_samples(X_normal[:8]), first) and cold.n_iter_ == 1


def test_warm_start_with_another_network_is_an_error(easy_problem):
    X_normal, X_outlier, _, _ = easy_problem
    det = ADIBDetector(**FAST).fit(X_normal, X_outlier)
    with pytest.raises(ValueError, match="^warm_start: the fitted network does not match"):
        det.set_params(warm_start=True, width=8).fit(X_normal, X_outlier)
    assert det.width == 8 and det.n_iter_ == 1  # the fitted state is kept when the fit fails


def test_early_stopping_without_held_out_images_is_an_error(easy_problem):
    X_normal, X_outlier, _, _ = easy_problem
    with pytest.raises(ValueError, match="^early_stopping=True needs held-out images"):
        ADIBDetector(early_stopping=True, **FAST).fit(X_normal, X_outlier)


def test_warm_start_across_a_change_of_loss_is_an_error_keeping_the_fitted_state(easy_problem):
    from skad_transfer import DeepADDetector

    X_normal, X_outlier, _, _ = easy_problem
    det = DeepADDetector(loss="bce", **FAST).fit(X_normal, X_outlier)
    scores = det.score_samples(X_normal[:8])
    with pytest.raises(ValueError, match=r"^warm_start: the last fit trained loss='bce' and this one would train "
                                         r"loss='dsvdd'.*warm_start=False"):
        det.set_params(warm_start=True, loss="dsvdd").fit(X_normal)
    assert det.n_iter_ == 1 and np.array_equal(det.score_samples(X_normal[:8]), scores)
    det.set_params(loss="bce").fit(X_normal, X_outlier)  # the same loss continues
    assert det.n_iter_ == 2


def test_fits_callbacks_see_every_epoch_after_validation_and_their_additions_are_kept(easy_problem):
    from skad_transfer.training import Callback

    class GradientNorm(Callback):
        """Records what a user might watch: validation's numbers and the head's weight norm."""

        def __init__(self):
            self.seen = []

        def on_epoch_end(self, run, entry):
            self.seen.append(entry["val_loss"])  # validation ran before: its entry is filled
            entry["head_norm"] = float(run.network.head.weight.detach().norm())

    X_normal, X_outlier, _, _ = easy_problem
    watcher = GradientNorm()
    det = ADIBDetector(validation_fraction=0.25, **{**FAST, "epochs": 2})
    det.fit(X_normal, X_outlier, callbacks=[watcher])
    assert watcher.seen == [h["val_loss"] for h in det.history_] and len(watcher.seen) == 2
    assert all(h["head_norm"] > 0 for h in det.history_)
    # Through a Pipeline, as a fit parameter of its step.
    from sklearn.pipeline import make_pipeline

    again = GradientNorm()
    make_pipeline(ADIBDetector(validation_fraction=0.25, **{**FAST, "epochs": 1})).fit(
        X_normal, X_outlier, adibdetector__callbacks=[again])
    assert len(again.seen) == 1


def test_callbacks_must_be_callback_instances(easy_problem):
    X_normal, X_outlier, _, _ = easy_problem
    with pytest.raises(TypeError, match=r"^callbacks: expected skad_transfer.training.Callback instances, got "
                                        r"function; subclass Callback"):
        ADIBDetector(**FAST).fit(X_normal, X_outlier, callbacks=[lambda run: None])
    with pytest.raises(TypeError, match=r"^callbacks: expected a list of .*Callback instances, got GradientNorm"):
        from skad_transfer.training import Callback

        class GradientNorm(Callback):
            pass

        ADIBDetector(**FAST).fit(X_normal, X_outlier, callbacks=GradientNorm())
