"""The API reference is generated from the docstrings and kept in sync."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_api_reference_is_up_to_date_and_complete():
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "build_api.py"), "--check"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = (ROOT / "docs" / "api.md").read_text()
    for name in ("ADIBDetector", "ADRADetector", "LayerFeatures", "resnet26", "make_intervention_task", "pretrain",
                 "run_grid", "one_vs_rest"):
        assert f"### `{name}`" in text
    assert "(no docstring)" not in text


PAGES = ("README.md", "docs/index.md", "docs/weights.md")


def python_blocks(page: str) -> list[str]:
    text = (ROOT / page).read_text()
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_of_the_user_docs_run_as_pasted(page, tmp_path, monkeypatch, one_torch_thread):
    """Every ```python block of a page, in order and in one namespace, with the names the prose
    says the user has (X_normal, X_outlier, X_test, y_test, X, y, the .npy corpora); fits are cut to
    two steps of 16 images, everything else runs as written."""
    from skad_transfer import weights
    from skad_transfer.detectors.base import TransferDetector

    real_fit = TransferDetector.fit

    def tiny_fit(self, *args, **kwargs):
        self.set_params(steps=2, epochs=None, batch_size=16, device="cpu", verbose=False)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(TransferDetector, "fit", tiny_fit)
    monkeypatch.setattr(weights, "_REGISTRY", dict(weights._REGISTRY))  # what a page registers stays here
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    X_normal = rng.integers(0, 120, (24, 32, 32, 3), dtype=np.uint8)
    X_outlier = rng.integers(100, 256, (24, 32, 32, 3), dtype=np.uint8)
    np.save("tinyimagenet.npy", X_outlier)
    np.save("svhn.npy", X_outlier[::-1].copy())
    if "resnet50" in (ROOT / page).read_text():
        # The ImageNet example, offline: torchvision's file for the weights it names, in a hub cache
        # of the test's own (random values under torchvision's keys; torchvision reads a cached file as is).
        import torch
        from torchvision.models import get_model

        monkeypatch.setattr(weights, "_reachable", lambda url, timeout: False)
        monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
        cached = weights.torchvision_cache_file(weights.resolve_weights("IMAGENET1K_V2", arch="resnet50"))
        cached.parent.mkdir(parents=True)
        torch.save(get_model("resnet50", weights=None).state_dict(), cached)
    X = np.concatenate([X_normal[:20], X_outlier[:20]])
    y = np.r_[np.ones(20, int), -np.ones(20, int)]
    namespace = {"X_normal": X_normal, "X_outlier": X_outlier, "X_test": X, "y_test": y, "X": X, "y": y}
    blocks = python_blocks(page)
    assert blocks, f"{page} has no python block"
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{page}, python block {i + 1}", "exec"), namespace)
        except Exception as error:  # noqa: BLE001 - reported with the block
            pytest.fail(f"{page}, python block {i + 1} fails as pasted: {type(error).__name__}: {error}\n{block}")


def test_docs_site_builds_without_a_warning(tmp_path):
    """The Sphinx site (user guide, API reference from the docstrings, examples gallery) builds with
    warnings as errors, as the README's docs command runs it; the gallery runs every example (at its
    smoke settings) and shows its figure."""
    for module in ("sphinx", "numpydoc", "myst_parser", "sphinx_gallery"):
        pytest.importorskip(module)
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d",
                           str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")],
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "SKAD_DOCS_RUN_EXAMPLES": "smoke", "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr[-3000:]
    reference = (tmp_path / "html" / "generated" / "skad_transfer.ADIBDetector.html").read_text()
    for method in ("fit", "score_samples", "decision_function", "predict"):
        assert f'id="skad_transfer.ADIBDetector.{method}"' in reference
    for example in json.loads((ROOT / "examples" / "smoke_args.json").read_text()):
        page = (tmp_path / "html" / "auto_examples" / example.replace(".py", ".html")).read_text()
        figure = f"sphx_glr_{example[:-3]}_001.png"
        assert figure in page and (tmp_path / "html" / "_images" / figure).is_file(), f"{example}: no figure"
