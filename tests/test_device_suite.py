"""benchmarks/speed/device_suite.py --smoke: the GPU session's script runs end to end (on the CPU, tiny sizes)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_device_suite_smoke_writes_every_measurement(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SKAD_REFLOOP"}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed" / "device_suite.py"), "--smoke", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "device_suite.json").read_text())
    # The provenance record of benchmarks/common: commit, versions, device, precisions, threads.
    record = result["provenance"]
    assert record["device"] == "cpu" and record["threads"] == 1 and record["gpu"] is None
    assert set(record["versions"]) == {"skad_transfer", "torch", "torchvision", "numpy", "scikit-learn", "python"}
    assert record["precision"][-1] == "float32" and "commit" in record and record["date"]
    engine = [e for e in result["training"] if e["loop"] == "engine"]
    assert engine and all(e["images_per_second"] > 0 for e in engine)
    # A whole ADIBDetector.fit (penalty, JPEG round trip, harmonisation) is measured beside the engine,
    # and the paper-fit projection comes from it.
    fit = [e for e in result["training"] if e["loop"] == "ADIBDetector.fit (L2-SP)"]
    assert len(fit) == 1 and fit[0]["compile"] is False and fit[0]["images_per_second"] > 0
    assert result["paper_fit_projection"]["images_per_second"] == fit[0]["images_per_second"]
    assert result["training"][0]["error"] == "no --refloop given"  # the reference row says why it is empty
    assert result["paper_fit_projection"]["seconds"] > 0
    assert [s["width"] for s in result["scoring"]] == [4]
    assert result["scoring"][0]["seconds"] > 0 and result["scoring"][0]["n_images"] == 256
    assert result["pretraining"]["images_per_second"] > 0
    table = (tmp_path / "device_suite.md").read_text()
    assert "SMOKE" in table and "| 4 | engine | float32 | no |" in table
    assert re.search(r"\| 4 \| ADIBDetector\.fit \(L2-SP\) \| (float32|bfloat16) \| no \| \d+ \|", table)
