"""The API reference is generated from the docstrings and kept in sync."""

import subprocess
import sys
from pathlib import Path

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
