#!/usr/bin/env python3
"""1,000 tiny tasks on SLURM: hpcpar against a bare 2-element array and submitit, in one run.

Measured on the same cluster, one after another:

1. ``sbatch --array=0-1 --wrap true`` until both array tasks have left the queue: the floor
   any SLURM tool pays for one job array with two tasks;
2. ``hpcpar.Executor("slurm").map(square, range(1000))`` (default chunking: about 4 chunks per
   CPU of the partition, one array);
3. submitit's ``AutoExecutor.map_array`` on 50 tasks (one array task per item), extrapolated
   linearly to 1,000, since it has no chunking; 1,000 would take many minutes on a small node.

Prints each wall time and the ratios. Needs a running SLURM and ``pip install submitit``.

    python benchmarks/slurm_vs_submitit.py [--partition debug] [--submitit-tasks 50]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time

import hpcpar


def square(x):
    return x * x


def bare_array(partition: str | None) -> float:
    argv = ["sbatch", "--parsable", "--array=0-1", "--output=/dev/null", "--wrap", "true"]
    if partition:
        argv.insert(1, f"--partition={partition}")
    t0 = time.perf_counter()
    job = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout.strip().split(";")[0]
    while True:
        out = subprocess.run(["squeue", "--noheader", "--array", "--states=all", f"--jobs={job}", "--format=%T"],
                             capture_output=True, text=True, timeout=60).stdout.split()
        if out and all(s in ("COMPLETED", "FAILED", "CANCELLED") for s in out):
            return time.perf_counter() - t0
        time.sleep(0.05)


def hpcpar_map(partition: str | None, n: int, runs_dir: str) -> float:
    t0 = time.perf_counter()
    with hpcpar.Executor("slurm", queue=partition, runs_dir=runs_dir, poll_interval_s=0.25,
                         max_poll_interval_s=1.0) as ex:
        assert list(ex.map(square, range(n))) == [x * x for x in range(n)]
    return time.perf_counter() - t0


def submitit_map(partition: str | None, n: int, folder: str) -> float:
    import submitit

    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params = {"timeout_min": 10}
    if partition:
        params["slurm_partition"] = partition
    ex.update_parameters(**params)
    t0 = time.perf_counter()
    jobs = ex.map_array(square, range(n))
    assert [j.result() for j in jobs] == [x * x for x in range(n)]
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--partition", default=None)
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--submitit-tasks", type=int, default=50)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        floor = bare_array(a.partition)
        ours = hpcpar_map(a.partition, a.tasks, f"{tmp}/runs")
        theirs = submitit_map(a.partition, a.submitit_tasks, f"{tmp}/submitit")
    extrapolated = theirs * a.tasks / a.submitit_tasks
    print(f"SLURM, {a.tasks} tiny tasks (x*x); partition {a.partition or '(default)'}")
    print(f"{'what':48s} {'wall (s)':>9s} {'vs bare array':>14s}")
    print(f"{'sbatch --array=0-1 --wrap true (the floor)':48s} {floor:9.2f} {1.0:14.2f}")
    print(f"{f'hpcpar map, {a.tasks} tasks':48s} {ours:9.2f} {ours / floor:14.2f}")
    print(f"{f'submitit map_array, {a.submitit_tasks} tasks (measured)':48s} {theirs:9.2f} {theirs / floor:14.2f}")
    print(f"{f'submitit map_array, {a.tasks} tasks (x{a.tasks // a.submitit_tasks}, extrapolated)':48s} "
          f"{extrapolated:9.2f} {extrapolated / floor:14.2f}")
    print(f"hpcpar / submitit (extrapolated): {ours / extrapolated:.3f}")


if __name__ == "__main__":
    main()
