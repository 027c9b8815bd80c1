"""One 200 MB numpy array passed to 16 tasks, locally: hpcpar (argument store on, and off)
against joblib. Each variant runs in a fresh interpreter and prints one JSON line.

    python benchmarks/big_argument.py [--mb 200] [--tasks 16] [--workers 2]

Measured: wall seconds from creating the executor (or joblib's Parallel) to the last result,
the driver's peak resident memory (``ru_maxrss``) before and after, tracemalloc's peak of the
map alone (numpy registers its buffers with tracemalloc), and the largest size the runs folder
reached (sampled every 5 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path


def part_sum(x, i, n):
    return float(x[i::n].sum())


def folder_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def variant(name: str, mb: int, tasks: int, workers: int) -> dict:
    import numpy as np

    runs = Path(tempfile.mkdtemp(prefix="hpcpar-bigarg-"))
    x = np.random.default_rng(0).random(mb * 1_000_000 // 8)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak_folder = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak_folder[0] = max(peak_folder[0], folder_bytes(runs))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    t0 = time.perf_counter()
    if name == "joblib":
        import joblib

        with joblib.parallel_config(temp_folder=str(runs)):
            out = joblib.Parallel(n_jobs=workers)(joblib.delayed(part_sum)(x, i, tasks)
                                                  for i in range(tasks))
    else:
        import hpcpar

        max_nbytes = 0 if name == "hpcpar-store-off" else 1_000_000
        with hpcpar.Executor("local", max_workers=workers, runs_dir=str(runs),
                             max_nbytes=max_nbytes) as ex:
            out = list(ex.map(part_sum, [x] * tasks, range(tasks), [tasks] * tasks))
    wall = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stop.set()
    sampler.join()
    assert abs(sum(out) - float(x.sum())) < 1e-6 * x.size
    return {"variant": name, "array_bytes": int(x.nbytes), "tasks": tasks, "wall_s": round(wall, 3),
            "driver_maxrss_before": rss_before,
            "driver_maxrss_after": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "tracemalloc_peak_of_map": traced_peak, "runs_folder_peak_bytes": peak_folder[0],
            "children_maxrss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=int, default=200)
    p.add_argument("--tasks", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.variant:
        print(json.dumps(variant(a.variant, a.mb, a.tasks, a.workers)))
        return 0
    for name in ("joblib", "hpcpar", "hpcpar-store-off"):
        proc = subprocess.run([sys.executable, __file__, "--variant", name, "--mb", str(a.mb),
                               "--tasks", str(a.tasks), "--workers", str(a.workers)],
                              check=True, capture_output=True, text=True, timeout=600)
        print(proc.stdout.strip(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
