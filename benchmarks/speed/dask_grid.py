"""A small benchmark grid distributed over a local Dask cluster (joblib's dask backend).

    python benchmarks/speed/dask_grid.py [--workers 2] [--store /tmp/skad_dask_runs]

Synthetic interventions (normal = red small circle), ADIB / ADRA / kNN x 2 seeds, embedded theta0,
2 epochs; the cluster has ``--workers`` single-threaded worker processes. Point ``Client`` at a real
scheduler to run the same code on a cluster (the store must be on a shared file system).
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

import joblib

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for `common` (README.md)
from common import print_provenance  # noqa: E402

from skad_transfer.bench import format_summary, interventions, make_tasks, run_grid, summarize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", default="/tmp/skad_dask_runs")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    print_provenance("cpu", "auto", threads=1)  # the workers' thread count; each stored run records its own
    from dask.distributed import Client, LocalCluster

    shutil.rmtree(args.store, ignore_errors=True)
    splits = interventions(n_normal=500, n_outlier=1000, n_test=200, random_state=0)
    settings = {"epochs": args.epochs, "weights": "default", "device": "cpu"}
    tasks = [t for split in splits for t in make_tasks(["adib", "adra", "knn"], split, [0, 1],
                                                        protocol="interventions", dataset="synthetic",
                                                        settings=settings)]
    started = time.perf_counter()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      env={"OMP_NUM_THREADS": "1"}) as cluster, Client(cluster) as client:
        with joblib.parallel_config(backend="dask"):
            records = run_grid(tasks, store=args.store, n_jobs=-1)
        workers = len(client.scheduler_info()["workers"])
    print(f"{len(records)} runs on a local Dask cluster of {workers} worker processes in "
          f"{time.perf_counter() - started:.0f} s")
    print(format_summary(summarize(args.store)))


if __name__ == "__main__":
    main()
