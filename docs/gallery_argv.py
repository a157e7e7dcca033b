"""The command line sphinx-gallery gives each example (``sphinx_gallery_conf["reset_argv"]``).

By default none: an example runs at its own defaults (minutes on a CPU). With
``SKAD_DOCS_RUN_EXAMPLES=smoke`` each runs at the tiny settings of ``examples/smoke_args.json``, the
ones the test suite runs them with, so a build can check in seconds that every example renders.
"""

import json
import os
from pathlib import Path

SMOKE_ARGS = Path(__file__).resolve().parents[1] / "examples" / "smoke_args.json"


def example_argv(gallery_conf, script_vars) -> list[str]:
    if os.environ.get("SKAD_DOCS_RUN_EXAMPLES") != "smoke":
        return []
    return json.loads(SMOKE_ARGS.read_text())[Path(script_vars["src_file"]).name]
