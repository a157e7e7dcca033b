"""Sphinx configuration of the skad-transfer docs site: ``python -m sphinx -W -b html docs docs/_build/html``.

The user guide, the PyOD mapping, design notes, benchmarks and weights pages are the Markdown files
of ``docs/`` (MyST); the API reference is generated from the docstrings (autodoc + autosummary +
numpydoc, ``docs/reference.rst``, one page per class or function, public methods only:
``docs/_templates/autosummary/class.rst``); the examples of ``examples/`` are a sphinx-gallery.

Examples (``docs/gallery_argv.py``): by default they run at the tiny settings of
``examples/smoke_args.json`` (a few minutes for all of them on a 2-core CPU, then cached until an
example or the mode changes); every page shows its output and figure, with a note that they come from
tiny settings. ``SKAD_DOCS_RUN_EXAMPLES=1`` runs them at their own settings (minutes each on a CPU),
``SKAD_DOCS_RUN_EXAMPLES=0`` shows their code only.

Cross-references to Python, NumPy, scikit-learn, PyTorch, torchvision and joblib link through
intersphinx. Their inventories are fetched at every build; without network the build still succeeds
(``-W`` included): each inventory then falls back to an empty one and those references stay plain
text, which Sphinx reports as "encountered some issues with some of the inventories".
"""

import os
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))  # gallery_argv, named by string so the config stays picklable

import skad_transfer  # noqa: E402
from gallery_argv import examples_mode, smoke_argv  # noqa: E402

project = "skad-transfer"
author = "skad-transfer developers"
release = version = skad_transfer.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "contents"
templates_path = ["_templates"]
exclude_patterns = ["_build", "_templates", "sg_execution_times.rst", "auto_examples/sg_execution_times.rst"]
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]
suppress_warnings = ["myst.header"]
# Commands must copy as written: no "--tiny" turned into an en dash, no curly quotes in code-like text.
smartquotes = False

autosummary_generate = True
# Every public member, with or without a docstring (the Methods table lists them all). Members inherited
# from torch.nn.Module, scikit-learn's set_output mixin and Python's exceptions are theirs to document;
# get_params/set_params/fit_predict/fit_transform are documented on each estimator, as scikit-learn does.
_NOT_INHERITED = ("_SetOutputMixin", "Module", "BaseException")
autodoc_default_options = {"members": True, "undoc-members": True, "inherited-members": ",".join(_NOT_INHERITED)}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
    "torchvision": ("https://docs.pytorch.org/vision/stable/", None),
    "joblib": ("https://joblib.readthedocs.io/en/stable/", None),
}
intersphinx_timeout = 10
# Fetch the inventories at every build: with a cached inventory Sphinx would skip the download and
# read the offline fallback below instead (it always reads local inventories).
intersphinx_cache_limit = 0

EXAMPLES_MODE = examples_mode()
GALLERY = ROOT / "docs" / "auto_examples"

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"\.py$",
    "plot_gallery": EXAMPLES_MODE != "code",
    "download_all_examples": False,
    "remove_config_comments": True,
    "reset_argv": "gallery_argv.example_argv",
}

html_theme = "alabaster"
html_title = f"skad-transfer {release}"


def _forget_outputs_of_another_mode() -> None:
    """sphinx-gallery reruns an example only when its source changed: after a build in another mode
    (smoke, full, code only) it would keep that mode's output and figures. Drop them, so that every
    example runs (or shows its code only) as this build's mode says."""
    stamp = GALLERY / ".examples_mode"
    if stamp.is_file() and stamp.read_text() == EXAMPLES_MODE:
        return
    for generated in [*GALLERY.glob("*.py.md5"), *GALLERY.glob("images/sphx_glr_*"),
                      *GALLERY.glob("images/thumb/sphx_glr_*")]:
        generated.unlink()
    GALLERY.mkdir(parents=True, exist_ok=True)
    stamp.write_text(EXAMPLES_MODE)


_forget_outputs_of_another_mode()


def _skip_member(app, what, name, obj, skip, options):
    # scikit-learn's metadata-routing methods cite its own glossary, which this site does not have.
    if (name.startswith("set_") and name.endswith("_request")) or name == "get_metadata_routing":
        return True
    # Methods of the bases autodoc leaves out (torch.nn.Module's, set_output): autosummary's Methods
    # table must not list them either, or it lists names the page does not document.
    if getattr(obj, "__qualname__", "").split(".")[0] in _NOT_INHERITED:
        return True
    # torch.nn.Module's class-level flags, which undoc-members would document on every network.
    if name in ("training", "dump_patches", "call_super_init") and not callable(obj):
        return True
    return None  # autodoc's and autosummary's own rule: public members only


_EMPTY_INVENTORY = (b"# Sphinx inventory version 2\n# Project: none\n# Version: none\n"
                    b"# The remainder of this file is compressed using zlib.\n" + zlib.compress(b""))


def _intersphinx_offline_fallback(app, config):
    """Give every inventory an empty local alternative: when the site cannot be reached, Sphinx
    reports it as information (it had a working alternative) instead of a warning, which ``-W``
    would turn into an error; the references to that project stay plain text."""
    empty = Path(app.doctreedir) / "intersphinx-offline-objects.inv"
    empty.parent.mkdir(parents=True, exist_ok=True)
    if not empty.is_file() or empty.read_bytes() != _EMPTY_INVENTORY:
        empty.write_bytes(_EMPTY_INVENTORY)
    config.intersphinx_mapping = {name: (uri, (None, str(empty)))
                                  for name, (uri, _inventory) in config.intersphinx_mapping.items()}


def _api_md_is_not_in_the_navigation(app, doctree):
    # docs/api.md is the reference as one Markdown page (python docs/build_api.py), read on the
    # repository; on the site it stays reachable from the user guide, but the navigation's
    # "API reference" is reference.rst.
    if app.env.docname == "api":
        app.env.metadata.setdefault("api", {})["orphan"] = True


def _note_how_the_example_ran(app, docname, source):
    if not docname.startswith("auto_examples/") or docname == "auto_examples/index" or EXAMPLES_MODE == "full":
        return
    name = docname.split("/", 1)[1] + ".py"
    if EXAMPLES_MODE == "smoke":
        flags = " ".join(_smoke_flags(name))
        note = (f"This build ran the example at the tiny settings the test suite uses "
                f"(``python examples/{name} {flags}``): tiny networks trained for seconds, so its output and "
                f"figure show what the example draws, not what the method achieves. Build the docs with "
                f"``SKAD_DOCS_RUN_EXAMPLES=1`` to run it at its own settings (minutes on a CPU).")
    else:
        note = ("This build shows the example's code only (``SKAD_DOCS_RUN_EXAMPLES=0``): build the docs "
                "without that variable to see its output and figure.")
    marker = "\n.. GENERATED FROM PYTHON SOURCE LINES"
    at = source[0].find(marker)
    if at >= 0:
        source[0] = source[0][:at] + "\n\n.. note::\n\n   " + note + "\n" + source[0][at:]


def _smoke_flags(name) -> list[str]:
    try:
        return smoke_argv(name)
    except KeyError:
        return []


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("config-inited", _intersphinx_offline_fallback, priority=700)  # before intersphinx reads it (800)
    app.connect("doctree-read", _api_md_is_not_in_the_navigation)
    app.connect("source-read", _note_how_the_example_ran)
