"""The API reference is generated from the docstrings and kept in sync."""

import json
import os
import re
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


PAGES = ("README.md", "docs/index.md", "docs/weights.md", "docs/pyod.md")


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
        from skad_transfer.nn import torchvision_cache_file

        cached = torchvision_cache_file(weights.resolve_weights("IMAGENET1K_V2", arch="resnet50"))
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


@pytest.mark.parametrize("examples", [
    "0",  # the default suite: code-only gallery (the examples run at smoke settings in test_examples.py)
    pytest.param(None, marks=pytest.mark.slow),  # exactly the README's command: examples at smoke settings
])
def test_docs_site_builds_without_a_warning(tmp_path, examples):
    """The Sphinx site (user guide, API reference from the docstrings, examples gallery) builds with
    warnings as errors, as the README's docs command runs it (no SKAD_DOCS_RUN_EXAMPLES, and no
    network: intersphinx falls back to empty inventories); the gallery runs every example at its
    smoke settings and shows its figure. The pages read as scikit-learn's: a class page lists its
    public methods only, every page is in the navigation once, commands keep their two hyphens."""
    for module in ("sphinx", "numpydoc", "myst_parser", "sphinx_gallery"):
        pytest.importorskip(module)
    env = {name: value for name, value in os.environ.items() if name != "SKAD_DOCS_RUN_EXAMPLES"}
    if examples is not None:
        env["SKAD_DOCS_RUN_EXAMPLES"] = examples
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d",
                           str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")],
                          capture_output=True, text=True, timeout=900, env={**env, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr[-3000:]
    html = tmp_path / "html"
    reference = (html / "generated" / "skad_transfer.ADIBDetector.html").read_text()
    for method in ("fit", "score_samples", "decision_function", "predict", "get_params", "set_params"):
        assert f'id="skad_transfer.ADIBDetector.{method}"' in reference
    listed = methods_table(reference)
    assert set(listed) == {"decision_function", "fit", "fit_predict", "get_params", "predict", "predict_proba",
                           "score_samples", "set_params"}, listed
    for page in ("skad_transfer.ResNet26.html", "skad_transfer.nn.TorchvisionResNet.html",
                 "skad_transfer.LayerFeatures.html", "skad_transfer.KNNDetector.html"):
        listed = methods_table((html / "generated" / page).read_text())
        assert listed and not [name for name in listed if name.startswith("_")], (page, listed)
        assert not {"cuda", "zero_grad", "set_output", "set_fit_request"} & set(listed), (page, listed)
    entries = navigation(html / "contents.html")
    sidebar = re.findall(r'<li class="toctree-l1[^"]*"><a class="reference internal" href="[^"]*">([^<]*)</a>',
                         reference)
    assert len(sidebar) == len(set(sidebar)) == len(entries), sidebar
    assert [href for href, _ in entries] == ["index.html", "pyod.html", "reference.html", "auto_examples/index.html",
                                             "weights.html", "benchmarks.html", "design.html"], entries
    assert "roc_auc_score(y01, -det.score_samples(X_test))" in re.sub(r"<[^>]+>", "", (html / "pyod.html").read_text())
    for example in json.loads((ROOT / "examples" / "smoke_args.json").read_text()):
        page = (html / "auto_examples" / example.replace(".py", ".html")).read_text()
        assert "\u2013" not in page, example
        if examples is None:
            figure = f"sphx_glr_{example[:-3]}_001.png"
            assert figure in page and (html / "_images" / figure).is_file(), f"{example}: no figure"
            assert "tiny settings the test suite uses" in page, example
    assert "motivation_lenet.py --tiny" in (html / "auto_examples" / "motivation_lenet.html").read_text()


def methods_table(page: str) -> list[str]:
    """The names in a class page's Methods table (autosummary)."""
    table = page.split(">Methods<", 1)[1].split("</table>", 1)[0]
    return [re.sub(r"<[^>]+>", "", cell).split("(")[0].strip()
            for cell in re.findall(r"<tr[^>]*>\s*<td>(.*?)</td>", table, flags=re.S)]


def navigation(contents: Path) -> list[tuple[str, str]]:
    """(href, title) of the top-level entries of the site's table of contents (the root page's toctree)."""
    toctree = contents.read_text().split('<div class="toctree-wrapper compound">', 1)[1].split("</div>", 1)[0]
    return re.findall(r'<li class="toctree-l1"><a class="reference internal" href="([^"#]*)">([^<]*)</a>', toctree)


def test_every_docs_page_is_in_the_navigation_once_and_pyod_is_linked():
    """Cheap guards for the site's structure, without building it: one toctree entry per page (the
    Markdown API page, api.md, stays off the navigation), the PyOD page linked from the README and
    the user guide, commands that copy (smartquotes off), the CPU-only install line."""
    toctree = [line.strip() for line in (ROOT / "docs" / "contents.rst").read_text().splitlines()
               if line.startswith("   ") and not line.strip().startswith(":")]
    assert len(toctree) == len(set(toctree)) and "pyod" in toctree and "api" not in toctree, toctree
    assert "](docs/pyod.md)" in (ROOT / "README.md").read_text()
    assert "](pyod.md)" in (ROOT / "docs" / "index.md").read_text()
    assert re.search(r"^smartquotes = False$", (ROOT / "docs" / "conf.py").read_text(), flags=re.M)
    cpu_only = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
    assert cpu_only in (ROOT / "README.md").read_text() and cpu_only in (ROOT / "docs" / "index.md").read_text()


@pytest.mark.parametrize(("value", "mode"), [(None, "smoke"), ("", "smoke"), ("smoke", "smoke"), ("1", "full"),
                                             ("0", "code")])
def test_examples_mode_of_the_docs_build(value, mode, monkeypatch):
    """The README's docs command (no variable) runs the examples at their smoke settings."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gallery_argv", ROOT / "docs" / "gallery_argv.py")
    gallery_argv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gallery_argv)
    if value is None:
        monkeypatch.delenv("SKAD_DOCS_RUN_EXAMPLES", raising=False)
    else:
        monkeypatch.setenv("SKAD_DOCS_RUN_EXAMPLES", value)
    assert gallery_argv.examples_mode() == mode
    argv = gallery_argv.example_argv({}, {"src_file": str(ROOT / "examples" / "motivation_lenet.py")})
    assert argv == (["--tiny"] if mode == "smoke" else [])
