"""The runner on a local Dask cluster through joblib's dask backend (skipped without dask.distributed)."""

import joblib
import numpy as np
import pytest

from skad_transfer.bench import interventions, make_tasks, run_grid, summarize

distributed = pytest.importorskip("dask.distributed")

TINY = {"epochs": 1, "weights": None, "width": 4, "batch_size": 16, "device": "cpu"}


def test_grid_runs_on_a_local_dask_cluster(tmp_path):
    split = interventions(n_normal=24, n_outlier=24, n_test=16, random_state=0)[0]
    tasks = make_tasks(["adib", "knn"], split, [0, 1], protocol="interventions", dataset="synthetic", settings=TINY)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env={"OMP_NUM_THREADS": "1"}) as cluster, distributed.Client(cluster) as client:
        with joblib.parallel_config(backend="dask"):
            records = run_grid(tasks, store=tmp_path, n_jobs=-1)
        workers = set(client.scheduler_info()["workers"])
    assert len(workers) == 2
    assert len(records) == 4 and all(np.isfinite(r["metrics"]["auc"]) for r in records)
    assert len(list((tmp_path / "runs").glob("*.json"))) == 4
    rows = summarize(tmp_path)
    assert {row["method"] for row in rows} == {"adib", "knn"} and all(row["n_seeds"] == 2 for row in rows)
