"""benchmarks/speed/engine_speed.py runs end to end at a tiny width, with its steadiness and FLOP figures."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "speed" / "engine_speed.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_repeats_print_each_run_and_the_spread():
    done = run("--width", "4", "--steps", "1", "--scoring-only", "--repeats", "2", "--peak-gflops", "100")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    provenance = json.loads(out.splitlines()[0].removeprefix("provenance: "))  # benchmarks/common's record
    assert provenance["precision"][0] == "float32" and provenance["threads"] == 1
    gflop = float(re.search(r"width 4 \(([\d.]+) GFLOP per training image\)", out).group(1))
    assert 0.01 < gflop < 0.05  # width 4 at 32x32: 0.021 (fwd 1x, bwd 2x the forward's convolutions)
    assert out.count("engine training, precision=float32") == 2 and "run 2 of 2" in out
    ips, gflops, percent = re.search(r"float32 :\s+([\d.]+) img/s\s+([\d.]+) GFLOP/s \((\d+)% of peak\)", out).groups()
    assert abs(float(ips) * gflop - float(gflops)) < 0.1 + 0.01 * float(gflops)
    assert abs(float(gflops) - float(percent)) <= 1  # peak 100 GFLOP/s: the percentage is the GFLOP/s
    assert re.search(r"engine, float32\s+:\s+[\d.]+ /\s+[\d.]+ /\s+[\d.]+\s+\(max/min [\d.]+\)", out)
    assert "reference loop" not in out
    # Each engine run says how much CPU it got (2 runs x float32, auto): busy share, steal, kernel time,
    # and the machine's speed around it; the spread is also given relative to each probe.
    conditions = re.findall(r"\(CPU busy (\d+)% of threads x wall, steal (n/a|[\d.]+%), kernel time \d+% of user "
                            r"time, matmul probe (\d+) GFLOP/s, copy probe ([\d.]+) GB/s\)", out)
    assert len(conditions) == 4
    assert all(0 < int(busy) <= 100 * os.cpu_count() and int(gflops) > 0 and float(gbps) > 0
               for busy, _, gflops, gbps in conditions)
    for probe in ("matmul", "copy"):
        assert re.search(rf"engine, float32 / {probe} probe\s*:\s+[\d.]+ /\s+[\d.]+ /\s+[\d.]+\s+\(max/min", out)


def test_bad_repeats_is_an_argument_error():
    done = run("--scoring-only", "--repeats", "0")
    assert done.returncode == 2 and "--repeats: expected at least 1, got 0" in done.stderr
