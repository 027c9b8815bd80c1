#!/usr/bin/env python3
"""What storing large arguments once saves: a grid search on a 40 MB ``X`` through the hpcpar
joblib backend, with the store (joblib's default ``max_nbytes="1M"``) and without it
(``max_nbytes=None``: ``X`` is pickled into every group, that is every array task).

For batch backends it also reports the bytes written to the run folder (the chunk files that
carry the tasks) and to the store. One run of each; the machine may be shared, so read the
times as indications.

    python benchmarks/joblib_store.py [--backend slurm] [--rows 20000] [--cols 250]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np

import hpcpar.joblib


def folder_bytes(path: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default=None)
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--cols", type=int, default=250)
    a = p.parse_args()

    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import GridSearchCV

    rng = np.random.default_rng(0)
    X = rng.standard_normal((a.rows, a.cols))
    y = (X[:, 0] + 0.5 * rng.standard_normal(a.rows) > 0).astype(int)
    grid = {"alpha": [0.1, 1.0, 10.0, 100.0]}
    print(f"X: {X.shape}, {X.nbytes / 1e6:.0f} MB; 4 candidates x 3 folds = 12 fits")
    hpcpar.joblib.register()
    runs_dir = Path(os.environ.get("HPCPAR_RUNS_DIR") or tempfile.mkdtemp(prefix="hpcpar-bench-"))
    os.environ["HPCPAR_RUNS_DIR"] = str(runs_dir)
    scores = []
    for label, max_nbytes in (("stored once (max_nbytes=1M)", "1M"), ("pickled per group (None)", None)):
        t0 = time.perf_counter()
        with joblib.parallel_config(backend="hpcpar", hpcpar_backend=a.backend, max_nbytes=max_nbytes,
                                    mem="2GB", walltime="00:20:00") as cfg:
            gs = GridSearchCV(RidgeClassifier(), grid, cv=3, n_jobs=-1).fit(X, y)
        wall = time.perf_counter() - t0
        b = cfg["backend"]
        scores.append(gs.cv_results_["mean_test_score"])
        chunk_bytes = sum(folder_bytes(runs_dir / r / "chunks", "*") for r in b.run_ids)
        stored = sum(n for _, n in b.stored)
        print(f"{label:30s} {b.hpcpar_backend:6s} wall {wall:6.1f} s   run folders' chunks "
              f"{chunk_bytes / 1e6:7.1f} MB   store {stored / 1e6:5.1f} MB   runs {len(b.run_ids)}")
    print(f"same scores: {np.array_equal(scores[0], scores[1])}")


if __name__ == "__main__":
    main()
