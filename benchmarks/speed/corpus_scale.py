"""Memory and time against corpus size: fits with OE corpora of 10**4 .. 10**9 items, and scoring
(``score_samples``, ``LayerFeatures.transform``) streamed over memory-mapped image files.

    python benchmarks/speed/corpus_scale.py [--fit-sizes 1e4 1e6 1e8 1e9] [--repeats 3]
                                      [--score-sizes 1e4 1e5 1e6] [--workdir DIR] [--out corpus_scale.json]

Each measurement runs in a fresh process (so that one's memory never counts in another's), with
one thread, float32, and a thread that samples the process's anonymous resident memory
(``RssAnon`` in ``/proc/self/status``) every 5 ms; ``peak_anon_mb`` is its maximum. Pages of a
memory-mapped file are page cache, shared and reclaimable, not anonymous memory: what the column
shows is the memory a fit or a scoring pass itself takes.

* fit: ``ADIBDetector(weights=None, width=8, steps=STEPS, batch_size=64, precision="float32")`` on
  512 random normal images, with an OE corpus of N items: a map-style dataset that synthesises
  item ``i`` (a 32x32x3 uint8 image seeded by ``i``), so no size needs disk. ``ms_per_step`` is the
  training time over the steps (from ``history_``), excluding set-up and the final scoring. The
  sizes run round-robin ``--repeats`` times (so that a slower stretch of the machine does not fall
  on one size); the table shows the median time and the largest peak.
* score: a width-8 detector fitted for two steps scores a ``.npy`` memory map of N random
  32x32x3 uint8 images (written once into ``--workdir``: 3 GB at 10**6), and ``LayerFeatures``
  (width 8, random init, the pooled layer) transforms it. ``img_per_s`` is N over the call's time.

``--out`` writes ``{"provenance": ..., "rows": [...], ...}`` (the record of ``benchmarks/common``,
threads = 1, the measurements' own); the stored ``results/corpus_scale/`` predates the record.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import provenance  # noqa: E402

STEPS = 40


class SynthesisedCorpus:
    """N images made on demand: item ``i`` is uniform noise seeded by ``i`` (a loader corpus)."""

    def __init__(self, n: int):
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)


class AnonymousMemory:
    """Peak ``RssAnon`` of this process while the context is open, sampled every ``interval`` s."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()

    @staticmethod
    def current_kb() -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
        raise RuntimeError("no RssAnon in /proc/self/status (this benchmark needs Linux)")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, self.current_kb())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak_kb = self.current_kb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, self.current_kb())


def _measure_fit(n: int, queue) -> None:
    import torch

    torch.set_num_threads(1)
    from skad_transfer import ADIBDetector

    normal = np.random.default_rng(0).integers(0, 256, (512, 32, 32, 3), dtype=np.uint8)
    detector = ADIBDetector(weights=None, width=8, steps=STEPS, batch_size=64, precision="float32",
                            random_state=0, verbose=False)
    with AnonymousMemory() as memory:
        started = time.perf_counter()
        detector.fit(normal, SynthesisedCorpus(n))
        seconds = time.perf_counter() - started
    training = sum(entry["seconds"] for entry in detector.history_)
    queue.put({"what": "fit", "n": n, "peak_anon_mb": memory.peak_kb / 1024, "fit_s": seconds,
               "ms_per_step": 1000 * training / STEPS})


def _measure_score(path: str, queue) -> None:
    import torch

    torch.set_num_threads(1)
    from skad_transfer import ADIBDetector, LayerFeatures

    images = np.load(path, mmap_mode="r")
    normal = np.random.default_rng(0).integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
    detector = ADIBDetector(weights=None, width=8, steps=2, batch_size=64, precision="float32",
                            random_state=0, verbose=False).fit(normal, normal[::-1].copy())
    features = LayerFeatures(weights=None, width=8, precision="float32").fit(normal)
    for name, call in (("score_samples", detector.score_samples), ("LayerFeatures.transform", features.transform)):
        with AnonymousMemory() as memory:
            started = time.perf_counter()
            out = call(images)
            seconds = time.perf_counter() - started
        assert out.shape[0] == images.shape[0]
        queue.put({"what": name, "n": int(images.shape[0]), "peak_anon_mb": memory.peak_kb / 1024,
                   "seconds": seconds, "img_per_s": images.shape[0] / seconds})


def _in_fresh_process(target, *args) -> list[dict]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    results = []
    while process.is_alive() or not queue.empty():
        try:
            results.append(queue.get(timeout=1))
        except Exception:  # queue.Empty: keep waiting while the child runs
            pass
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"{target.__name__}{args} failed with exit code {process.exitcode}")
    return results


def _image_file(workdir: Path, n: int) -> str:
    path = workdir / f"noise_{n}.npy"
    if not path.exists():
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 32, 32, 3))
        rng = np.random.default_rng(n)
        for start in range(0, n, 65536):
            stop = min(n, start + 65536)
            array[start:stop] = rng.integers(0, 256, (stop - start, 32, 32, 3), dtype=np.uint8)
        array.flush()
        del array
    return str(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit-sizes", type=float, nargs="*", default=[1e4, 1e6, 1e8, 1e9])
    parser.add_argument("--repeats", type=int, default=3, help="round-robin passes over the fit sizes")
    parser.add_argument("--score-sizes", type=float, nargs="*", default=[1e4, 1e5, 1e6])
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the scoring benchmark's .npy files are written (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows, fits = [], []
    for _ in range(args.repeats):
        for n in args.fit_sizes:
            fits += _in_fresh_process(_measure_fit, int(n))
            print(json.dumps(fits[-1]), flush=True)
    for n in args.fit_sizes:
        runs = [row for row in fits if row["n"] == int(n)]
        rows.append({"what": "fit", "n": int(n), "peak_anon_mb": max(r["peak_anon_mb"] for r in runs),
                     "ms_per_step": float(np.median([r["ms_per_step"] for r in runs])),
                     "ms_per_step_runs": [r["ms_per_step"] for r in runs]})
    if args.score_sizes:
        with tempfile.TemporaryDirectory() as scratch:
            workdir = args.workdir or Path(scratch)
            workdir.mkdir(parents=True, exist_ok=True)
            for n in args.score_sizes:
                for row in _in_fresh_process(_measure_score, _image_file(workdir, int(n))):
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print("\n| measurement | items | peak anonymous memory (MB) | time |\n|---|---:|---:|---:|")
    for row in rows:
        timing = (f"{row['ms_per_step']:.0f} ms/step" if row["what"] == "fit"
                  else f"{row['img_per_s']:.0f} img/s")
        print(f"| {row['what']} | {row['n']:.0e} | {row['peak_anon_mb']:.0f} | {timing} |")
    if args.out:
        args.out.write_text(json.dumps({"provenance": provenance("cpu", "float32", threads=1), "rows": rows,
                                        "machine": platform.processor() or platform.machine(),
                                        "cpus": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
