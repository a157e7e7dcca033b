"""The examples run end to end with tiny settings."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script, args", [
    ("quickstart.py", ["--epochs", "1", "--weights", "none", "--width", "4", "--n-normal", "64"]),
    ("grid_search.py", ["--epochs", "1", "--weights", "none", "--width", "4", "--n", "48"]),
])
def test_example_runs(script, args, tmp_path):
    if script == "grid_search.py":
        args = args + ["--workdir", str(tmp_path)]
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("best_params_" in done.stdout) if script == "grid_search.py" else ("ADRADetector" in done.stdout)
