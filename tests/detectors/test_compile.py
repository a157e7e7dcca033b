"""compile=True trains through torch.compile and lands where the eager fit lands."""

import shutil

import numpy as np
import pytest
import torch

from skad_transfer import ADIBDetector

pytestmark = pytest.mark.skipif(not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")),
                                reason="torch.compile's CPU backend needs a C++ compiler")


def test_compiled_training_matches_eager_training(easy_problem, monkeypatch):
    X_normal, X_outlier, X_test, _ = easy_problem
    compiled = []
    real_compile = torch.compile

    def spy(function, *args, **kwargs):
        compiled.append(function)
        return real_compile(function, *args, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    settings = dict(weights=None, width=4, steps=4, batch_size=32, device="cpu", precision="float32", random_state=0,
                    verbose=False)
    eager = ADIBDetector(**settings).fit(X_normal, X_outlier)
    assert compiled == []
    fast = ADIBDetector(**settings, compile=True).fit(X_normal, X_outlier)
    assert len(compiled) == 1 and compiled[0].__name__ == "oe_bce_objective"
    # Inductor fuses and reorders float sums: equal up to rounding after 4 SGD steps, not bitwise.
    np.testing.assert_allclose(fast.score_samples(X_test[:8]), eager.score_samples(X_test[:8]), atol=1e-3)
    assert fast.get_params()["compile"] is True
