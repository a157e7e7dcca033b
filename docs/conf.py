"""Sphinx configuration of the skad-transfer docs site: ``python -m sphinx -W -b html docs docs/_build/html``.

The user guide, design notes, benchmarks and weights pages are the Markdown files of ``docs/`` (MyST);
the API reference is generated from the docstrings (autodoc + numpydoc, ``docs/reference.rst``); the
examples of ``examples/`` are a sphinx-gallery, executed with their figures when
``SKAD_DOCS_RUN_EXAMPLES=1`` (they train networks: minutes on a CPU), at tiny settings when
``SKAD_DOCS_RUN_EXAMPLES=smoke`` (seconds; ``docs/gallery_argv.py``), and shown as code otherwise.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))  # gallery_argv, named by string so the config stays picklable

import skad_transfer  # noqa: E402

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
exclude_patterns = ["_build", "sg_execution_times.rst", "auto_examples/sg_execution_times.rst"]
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]
suppress_warnings = ["myst.header"]

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": "BaseEstimator,OutlierMixin,TransformerMixin,_SetOutputMixin,Module"}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

intersphinx_mapping = {}

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"\.py$",
    "plot_gallery": os.environ.get("SKAD_DOCS_RUN_EXAMPLES", "") not in ("", "0"),
    "download_all_examples": False,
    "remove_config_comments": True,
    "reset_argv": "gallery_argv.example_argv",
}

html_theme = "alabaster"


def _skip_routing_setters(app, what, name, obj, skip, options):
    # scikit-learn's metadata-routing methods cite its own glossary, which this site does not have.
    if (name.startswith("set_") and name.endswith("_request")) or name == "get_metadata_routing":
        return True
    return skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_routing_setters)
html_title = f"skad-transfer {release}"
