"""Operators dispatched per training step of ``ADIBDetector.fit``, with and without the L2-SP penalty.

    python benchmarks/speed/step_ops.py

On a GPU a step of 128 small images is bound by kernel launches, not arithmetic (the device suite's
width-16 and width-64 engines ran at the same img/s), so the operator count per step is what a
step costs there. This counts leaf ``aten::`` operators (those that call no other operator) in a
``torch.profiler`` trace on the CPU, per step: the difference between a 12-step and a 4-step fit,
divided by 8 (setup and scoring cancel). On the CPU, foreach operators fall back to one operator
per tensor; on CUDA they run as a few multi-tensor kernels.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import numpy as np
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import print_provenance  # noqa: E402

from skad_transfer import ADIBDetector  # noqa: E402


def leaf_operators(steps: int, **params) -> collections.Counter:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
    outliers = rng.integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
    detector = ADIBDetector(steps=steps, batch_size=16, verbose=False, random_state=0, match_outlier_exposure=False,
                            **params)
    with profile(activities=[ProfilerActivity.CPU]) as trace:
        detector.fit(X, outliers)
    return collections.Counter(e.name for e in trace.events() if e.name.startswith("aten::") and not e.cpu_children)


def per_step(**params) -> collections.Counter:
    short, long = leaf_operators(4, **params), leaf_operators(12, **params)
    return collections.Counter({name: (long[name] - short[name]) / 8 for name in long})


def main() -> None:
    print_provenance("auto", "auto")
    with_penalty, without = per_step(), per_step(alpha=0.0)
    print(f"leaf operators per step: ADIB defaults {sum(with_penalty.values()):.0f}, "
          f"alpha=0 (no penalty) {sum(without.values()):.0f}")
    extra = {name: with_penalty[name] - without[name] for name in with_penalty}
    print("added by the penalty:", ", ".join(f"{name} {count:.0f}" for name, count in
                                              sorted(extra.items(), key=lambda item: -item[1]) if count >= 1))


if __name__ == "__main__":
    main()
