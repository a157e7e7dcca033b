"""compile=True (or a torch.compile mode) trains through torch.compile and lands where the eager fit lands."""

import shutil

import numpy as np
import pytest
import torch

from skad_transfer import ADIBDetector

needs_compiler = pytest.mark.skipif(not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")),
                                    reason="torch.compile's CPU backend needs a C++ compiler")


@needs_compiler
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


@needs_compiler
def test_reduce_overhead_mode_compiles_and_marks_every_training_step(easy_problem, monkeypatch):
    X_normal, X_outlier, X_test, _ = easy_problem
    modes, marks = [], []
    real_compile = torch.compile

    def spy(function, *args, **kwargs):
        modes.append(kwargs.get("mode"))
        return real_compile(function, *args, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    settings = dict(weights=None, width=4, steps=4, batch_size=32, device="cpu", precision="float32", random_state=0,
                    verbose=False)
    eager = ADIBDetector(**settings).fit(X_normal, X_outlier)
    graphed = ADIBDetector(**settings, compile="reduce-overhead").fit(X_normal, X_outlier)
    # CUDA graphs only exist on a GPU: on the CPU the mode compiles as "default" does, and each of
    # the 4 training steps still tells torch that a new step begins.
    assert modes == ["reduce-overhead"] and len(marks) == 4
    np.testing.assert_allclose(graphed.score_samples(X_test[:8]), eager.score_samples(X_test[:8]), atol=1e-3)


def test_compile_names_its_modes_when_given_another(easy_problem):
    from skad_transfer.training import compiled

    X_normal, X_outlier, _, _ = easy_problem
    with pytest.raises(ValueError, match="'compile' parameter .*'reduce-overhead'.*Got 'fast'"):
        ADIBDetector(weights=None, width=4, steps=1, compile="fast").fit(X_normal, X_outlier)
    with pytest.raises(ValueError, match=r"compile must be True, False or one of .*got 'fast'"):
        compiled(len, "fast")
    assert compiled(len, False) is len


def test_compile_without_a_cpp_compiler_is_an_error_naming_compile_false_before_training(easy_problem, monkeypatch):
    import torch._inductor.cpp_builder as cpp_builder

    import skad_transfer.training.finetune as finetune

    def no_compiler():
        raise RuntimeError("No working C++ compiler found in torch._inductor.config.cpp.cxx: (None, 'g++')")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    monkeypatch.setattr(finetune, "run_epochs", lambda *a, **k: pytest.fail("training started"))
    X_normal, X_outlier, _, _ = easy_problem
    det = ADIBDetector(weights=None, width=4, steps=2, batch_size=16, device="cpu", compile=True, verbose=False)
    with pytest.raises(RuntimeError, match=r"^compile=True: torch.compile on the CPU needs a working C\+\+ compiler "
                                           r".*No working C\+\+ compiler found.*fit with compile=False"):
        det.fit(X_normal, X_outlier)


def test_a_failure_inside_torch_compile_names_compile_false(monkeypatch):
    import torch._dynamo.exc as dynamo_exc

    from skad_transfer.training import compiled

    def broken(function, **kwargs):
        def step(*args):
            raise dynamo_exc.TorchRuntimeError("inductor could not lower aten.foo\nmore details")
        return step

    monkeypatch.setattr(torch, "compile", broken)
    step = compiled(lambda x: x, "default")  # no device: no compiler check
    with pytest.raises(RuntimeError, match=r"^compile='default': torch.compile could not build the training step "
                                           r"\(TorchRuntimeError: inductor could not lower aten.foo\); fit with "
                                           r"compile=False$"):
        step(1)
    monkeypatch.setattr(torch, "compile", lambda function, **kwargs: function)
    with pytest.raises(ZeroDivisionError):  # other errors of a step pass unchanged
        compiled(lambda x: 1 / x, "default")(0)
