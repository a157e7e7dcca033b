"""Pinned scores: every preset of the family, every parameter spelled out, a few scores fixed to 1e-5.

These guard refactors of the training core, the losses and the detector classes: the same seeds and
explicit parameters must give the same scores before and after. A default that changes for a
measured reason does not move these numbers (no parameter is left to its default); a deliberate
change of what a parameter does must update the pins in the same commit, and say why.

The pins were computed on a 2-core x86-64 CPU (AVX-512) in float32 with one torch thread, channels_last
(``engine.Precision``). They pin kernels as well as semantics: the six SGD steps of a width-4
network amplify last-bit differences, most of all in DSVDD and HSC. Switching CPU training from
NCHW to channels_last, whose BatchNorm sums its batch statistics in another order, moved ADIB's
pins by at most 4e-4 (relative) but DSVDD's by up to 7% (2e-3 after one step). A CPU whose kernels differ may need its own
pins; a refactor that keeps the kernels must keep these.

On a second CPU (an AMD EPYC with AVX-512 BF16, still float32 and one thread) the ADIB, ADRA and
DSVDD pins held to 1e-5, the HSC and DOC ones moved by up to 4.5e-3 (relative): those cases are
checked to :data:`KERNEL_SENSITIVE_RTOL`, which still catches a change of what they compute (a
changed loss or threshold moves them by far more). The ``offset_`` pins of ``contamination="auto"``
were computed on that second CPU when "auto" became the refitted boundary.
"""

import inspect

import numpy as np
import pytest
import torch

from skad_transfer import (ADIBDetector, ADRADetector, DeepADDetector, DOCDetector, DSVDDDetector, HSCDetector,
                           resnet26)
from skad_transfer.weights import save_weights

COMMON = dict(
    backbone="resnet26", width=None, input_size=None, outlier_exposure=None, steps=6, epochs=None, batch_size=16,
    lr=0.01, momentum=0.9, weight_decay=1e-4, contamination="auto", image_shape=None, device="cpu",
    precision="float32", compile=False, checkpoint=None, validation_fraction=None, early_stopping=False, n_iter_no_change=5,
    warm_start=False, jpeg_quality=75, match_outlier_exposure=True, match_histograms=False, anomaly_score="loss", random_state=0,
    verbose=False,
)
REGULARIZED = dict(regularizer="l2sp", alpha=1e-2, ewc_lambda=400.0)
FAMILY = dict(loss="bce", adapters=False, compactness_weight=0.1)

CASES = {
    "adib": (ADIBDetector, {**REGULARIZED}),
    "adib-l2sp-ref": (ADIBDetector, {**REGULARIZED, "regularizer": "l2sp-ref", "alpha": 0.1}),
    "adib-ewc": (ADIBDetector, {**REGULARIZED, "regularizer": "ewc"}),
    "adib-matched": (ADIBDetector, {**REGULARIZED, "match_histograms": True, "jpeg_quality": None}),
    "adra": (ADRADetector, {}),
    "hsc": (HSCDetector, {**REGULARIZED, "regularizer": None}),
    "hsc-l2sp": (HSCDetector, {**REGULARIZED}),
    "dsvdd": (DSVDDDetector, {**REGULARIZED, "regularizer": None}),
    "doc": (DOCDetector, {**REGULARIZED, "regularizer": None, "compactness_weight": 0.1}),
    "family-random-init": (DeepADDetector, {**REGULARIZED, **FAMILY, "regularizer": None, "weights": None, "width": 4}),
    "family-adapters-l2sp": (DeepADDetector, {**REGULARIZED, **FAMILY, "adapters": True}),
    "family-hsc-ewc": (DeepADDetector, {**REGULARIZED, **FAMILY, "loss": "hsc", "regularizer": "ewc",
                                        "ewc_lambda": 10.0}),
}

KERNEL_SENSITIVE = {"doc", "family-hsc-ewc", "hsc", "hsc-l2sp"}
KERNEL_SENSITIVE_RTOL = 1e-2
OFFSET_RTOL = 1e-4  # offset_ is a root found from 256 training scores, each pinned to 1e-5

# score_samples of X_test[[0, 1, 40, 41]] (two normal, two anomalous) and offset_, per case.
PINNED = {
    "adib": ([-0.076787949, -0.045590755, -0.062742062, -1.49562], -0.39772453),
    "adib-ewc": ([-0.079592288, -0.044861473, -0.06633468, -1.4789231], -0.39318095),
    "adib-l2sp-ref": ([-0.077214435, -0.045683578, -0.063912913, -1.4906272], -0.39426321),
    "adib-matched": ([-0.10538042, -0.13597435, -0.1412205, -4.7629385], -0.43679082),
    "adra": ([-0.080697864, -0.045918636, -0.067103796, -1.4702569], -0.3848152),
    "doc": ([-0.0088368291, -0.0020130193, -0.0065211491, -13.949392], -0.0073124415),
    "dsvdd": ([-0.82130545, -0.9437331, -0.95314103, -2754.2188], -1.0642889),
    "family-adapters-l2sp": ([-0.080698058, -0.045918714, -0.067103982, -1.4702562], -0.38481499),
    "family-hsc-ewc": ([-0.061734676, -0.054964781, -0.061627388, -0.80520117], -0.1340045),
    "family-random-init": ([-0.56739044, -0.53857189, -0.51532447, -1.1582779], -0.81754701),
    "hsc": ([-0.062152982, -0.0548985, -0.061788678, -0.78962827], -0.1338599),
    "hsc-l2sp": ([-0.062191129, -0.054938436, -0.061732411, -0.79040027], -0.13398372),
}


@pytest.fixture(scope="module")
def theta0_path(tmp_path_factory):
    torch.manual_seed(0)
    return save_weights(resnet26(width=4, num_classes=10), tmp_path_factory.mktemp("pinned") / "theta0.pth").path


def build(name, theta0_path):
    Detector, specific = CASES[name]
    params = {**COMMON, "weights": str(theta0_path), **specific}
    expected = set(inspect.signature(Detector.__init__).parameters) - {"self"}
    assert set(params) == expected, f"{name}: spell out every parameter ({sorted(expected ^ set(params))})"
    return Detector(**params)


def fitted_figures(name, theta0_path, problem):
    X_normal, X_outlier, X_test, _ = problem
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        det = build(name, theta0_path).fit(X_normal, X_outlier)
    finally:
        torch.set_num_threads(before)
    return det.score_samples(X_test[[0, 1, 40, 41]]), det.offset_


@pytest.mark.parametrize("name", sorted(CASES))
def test_scores_are_pinned(name, theta0_path, easy_problem):
    scores, offset = fitted_figures(name, theta0_path, easy_problem)
    pinned_scores, pinned_offset = PINNED[name]
    sensitive = name in KERNEL_SENSITIVE
    np.testing.assert_allclose(scores, pinned_scores, rtol=KERNEL_SENSITIVE_RTOL if sensitive else 1e-5, atol=1e-6)
    np.testing.assert_allclose(offset, pinned_offset, rtol=KERNEL_SENSITIVE_RTOL if sensitive else OFFSET_RTOL,
                               atol=1e-6)
