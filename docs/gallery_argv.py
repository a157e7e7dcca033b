"""How the docs build runs the examples, and the command line sphinx-gallery gives each one.

``SKAD_DOCS_RUN_EXAMPLES`` picks the mode (:func:`examples_mode`):

* unset (the README's build command) or ``smoke``: every example runs at the tiny settings of
  ``examples/smoke_args.json``, the ones the test suite runs them with, so each page shows its
  output and figure after seconds of training (a note on the page says so);
* ``1``: every example runs at its own defaults (minutes on a CPU): the figures the examples are for;
* ``0``: the pages show the code only, nothing runs.
"""

import json
import os
from pathlib import Path

SMOKE_ARGS = Path(__file__).resolve().parents[1] / "examples" / "smoke_args.json"
VARIABLE = "SKAD_DOCS_RUN_EXAMPLES"


def examples_mode() -> str:
    """``"smoke"``, ``"full"`` or ``"code"`` (nothing runs), from ``SKAD_DOCS_RUN_EXAMPLES``."""
    value = os.environ.get(VARIABLE, "").strip().lower()
    if value in ("", "smoke"):
        return "smoke"
    if value in ("0", "no", "false", "off"):
        return "code"
    return "full"


def smoke_argv(name: str) -> list[str]:
    """The tiny settings of the example file ``name`` (``quickstart.py``)."""
    return json.loads(SMOKE_ARGS.read_text())[name]


def example_argv(gallery_conf, script_vars) -> list[str]:
    """``sphinx_gallery_conf["reset_argv"]``: the smoke flags in the smoke mode, else none."""
    if examples_mode() != "smoke":
        return []
    return smoke_argv(Path(script_vars["src_file"]).name)
