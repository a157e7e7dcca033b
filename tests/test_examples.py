"""The examples run end to end with tiny settings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMOKE_ARGS = json.loads((EXAMPLES / "smoke_args.json").read_text())  # also what a smoke docs build runs


def test_every_example_has_smoke_settings():
    assert sorted(SMOKE_ARGS) == sorted(p.name for p in EXAMPLES.glob("*.py"))


@pytest.mark.parametrize("script", ["quickstart.py", "grid_search.py"])
def test_example_runs(script, tmp_path):
    args = SMOKE_ARGS[script]
    if script == "grid_search.py":
        args = args + ["--workdir", str(tmp_path)]
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("best_params_" in done.stdout) if script == "grid_search.py" else ("ADRADetector" in done.stdout)
