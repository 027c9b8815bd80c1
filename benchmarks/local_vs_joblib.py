#!/usr/bin/env python3
"""hpcpar's local backend against joblib's loky backend, measured in one process run.

Two workloads, each with 2 workers:

* 10,000 tiny tasks (``x * x``): scheduling overhead; target ratio hpcpar/joblib <= 1.0;
* 40 tasks sleeping 0.5 s: load balance; the ideal is 40 * 0.5 / 2 = 10 s, target within 5 %.

Both pools are warmed up first (worker start-up is paid once per executor by both), then each
workload runs ``--repeat`` times and the best time counts. Prints the ratio hpcpar/joblib.

    python benchmarks/local_vs_joblib.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import joblib

import hpcpar


def square(x):
    return x * x


def nap(seconds):
    time.sleep(seconds)
    return seconds


def best_of(repeat, fn):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    n_tiny, n_sleep, nap_s = 10_000, 40, 0.5
    ideal = n_sleep * nap_s / a.workers

    with hpcpar.Executor("local", max_workers=a.workers) as ex, \
            joblib.Parallel(n_jobs=a.workers, backend="loky") as par:
        expected = [x * x for x in range(n_tiny)]
        assert list(ex.map(square, range(100))) == expected[:100]                 # warm up
        assert par(joblib.delayed(square)(x) for x in range(100)) == expected[:100]

        def hp_tiny():
            assert list(ex.map(square, range(n_tiny))) == expected

        def jl_tiny():
            assert par(joblib.delayed(square)(x) for x in range(n_tiny)) == expected

        def hp_sleep():
            assert sum(ex.map(nap, [nap_s] * n_sleep)) == n_sleep * nap_s

        def jl_sleep():
            assert sum(par(joblib.delayed(nap)(nap_s) for _ in range(n_sleep))) == n_sleep * nap_s

        rows = [("10,000 tiny tasks", best_of(a.repeat, hp_tiny), best_of(a.repeat, jl_tiny), None),
                (f"{n_sleep} x {nap_s} s sleeps", best_of(1, hp_sleep), best_of(1, jl_sleep), ideal)]

    print(f"hpcpar {hpcpar.__version__} local vs joblib {joblib.__version__} loky, {a.workers} workers, "
          f"best of {a.repeat} (sleeps: 1 run)")
    print(f"{'workload':22s} {'hpcpar (s)':>11s} {'joblib (s)':>11s} {'hpcpar/joblib':>14s} {'hpcpar/ideal':>13s}")
    for name, hp, jl, ideal_s in rows:
        vs_ideal = f"{hp / ideal_s:13.3f}" if ideal_s else f"{'':13s}"
        print(f"{name:22s} {hp:11.3f} {jl:11.3f} {hp / jl:14.3f} {vs_ideal}")


if __name__ == "__main__":
    main()
