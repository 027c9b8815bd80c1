#!/usr/bin/env python3
"""Grid search with 5-fold cross-validation through scikit-learn's own ``n_jobs``, on any backend.

``GridSearchCV(n_jobs=-1)`` inside ``joblib.parallel_config(backend="hpcpar")`` sends every fit
to hpcpar: a process pool here, one job array on a cluster. The script then runs the same
search on joblib's default backend (loky) and checks that both find the same ``best_params_``
and the same mean test scores (to 1e-12), and says how many batch jobs the search used.

    python examples/grid_search.py                    # local backend (process pool)
    python examples/grid_search.py --backend slurm    # the same code as one SLURM job array
    HPCPAR_BACKEND=slurm python examples/grid_search.py

Data: scikit-learn's bundled digits (1,797 8x8 images, real data, no download).
"""

from __future__ import annotations

import argparse
import sys
import time

import joblib
import numpy as np

import hpcpar.joblib

TOLERANCE = 1e-12
GRID = {"C": [1.0, 10.0, 100.0], "gamma": [1e-4, 3e-4, 1e-3]}


def batch_jobs(run_ids: list[str]) -> tuple[list[str], int, int]:
    """Job ids, array tasks and chunks of the runs (none for the local backend, which keeps no
    folder). Array tasks are workers that pull the chunks, so they are at most the slots."""
    from hpcpar.runs import resolve_run, summary

    jobs, tasks, chunks = [], 0, 0
    for run_id in run_ids:
        try:
            info = summary(resolve_run(run_id))
        except FileNotFoundError:            # a local run: process pool, no job
            continue
        jobs += info["job_ids"]
        tasks += info["array_tasks"]
        chunks += info["chunks"]
    return jobs, tasks, chunks


def search(X, y, n_jobs: int):
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    return GridSearchCV(SVC(), GRID, cv=5, n_jobs=n_jobs).fit(X, y)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default=None,
                   help="hpcpar backend (default: $HPCPAR_BACKEND, the profile, else local)")
    p.add_argument("--n-jobs", type=int, default=-1, help="GridSearchCV's n_jobs (default -1)")
    a = p.parse_args(argv)

    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    n_cand = len(GRID["C"]) * len(GRID["gamma"])
    print(f"data: digits, {X.shape[0]} images, {X.shape[1]} features; grid: {n_cand} candidates "
          f"x 5 folds = {5 * n_cand} fits")

    hpcpar.joblib.register()
    t0 = time.perf_counter()
    # digits' X is 0.9 MB, under joblib's 1M max_nbytes: lower it so that X is written once to
    # the run area and memory-mapped by each worker, instead of being pickled into every task.
    with joblib.parallel_config(backend="hpcpar", hpcpar_backend=a.backend, max_nbytes="256K",
                                mem="1GB", walltime="00:20:00") as cfg:
        ours = search(X, y, a.n_jobs)
    wall = time.perf_counter() - t0
    backend = cfg["backend"]

    t0 = time.perf_counter()
    with joblib.parallel_config(backend="loky"):
        loky = search(X, y, a.n_jobs)
    loky_wall = time.perf_counter() - t0

    name = backend.hpcpar_backend
    print(f"backend: hpcpar {name} through joblib.parallel_config(backend='hpcpar'), "
          f"n_jobs={a.n_jobs}")
    print()
    print(f"best_params_: {ours.best_params_}   (loky: {loky.best_params_})")
    print("mean test scores (5-fold CV):")
    print(f"{'C':>8s} {'gamma':>8s} {'hpcpar':>9s} {'loky':>9s}")
    mine, theirs = ours.cv_results_["mean_test_score"], loky.cv_results_["mean_test_score"]
    for params, s1, s2 in zip(ours.cv_results_["params"], mine, theirs, strict=False):
        print(f"{params['C']:8g} {params['gamma']:8g} {s1:9.6f} {s2:9.6f}")
    same_params = ours.best_params_ == loky.best_params_
    same_order = ours.cv_results_["params"] == loky.cv_results_["params"]
    diff = float(np.max(np.abs(mine - theirs)))
    print()
    print(f"same best_params_ as loky: {'yes' if same_params else 'NO'}")
    print(f"largest |mean_test_score - loky's|: {diff:.3g} (tolerance {TOLERANCE:g})")
    stored = ", ".join(f"{n / 1e6:.2f} MB" for _, n in backend.stored) or "nothing"
    print(f"stored once per call: {len(backend.stored)} argument(s) ({stored})")
    jobs, tasks, chunks = batch_jobs(backend.run_ids)
    where = (f"{tasks} array tasks pulling {chunks} chunks, job ids {', '.join(jobs)}" if jobs
             else "local process pool: no batch job")
    print(f"hpcpar runs: {len(backend.run_ids)}; batch jobs used: {len(jobs)} ({where})")
    print(f"wall time: hpcpar {name} {wall:.1f} s, loky {loky_wall:.1f} s")
    return 0 if same_params and same_order and diff <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
