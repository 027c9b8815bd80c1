#!/usr/bin/env python3
"""A seeded Monte Carlo parameter sweep through ``hpcpar.Executor.map``: same numbers everywhere.

The sweep prices European call options by simulation over a grid of volatilities and strikes
(geometric Brownian motion, ``S_T = S_0 exp((r - sigma^2/2) T + sigma sqrt(T) Z)``) and prints
each estimate with its standard error beside the Black-Scholes closed form, so the
simulation is checked against an exact answer. Each grid point is one task with its own
random stream: ``numpy.random.SeedSequence(seed).spawn(n_points)[i]``, the independent child
streams NumPy recommends for parallel work. The results therefore do not depend on the
backend, the chunking or the order in which tasks run, and the printed SHA-256 of the result
array is the same on ``local``, ``slurm`` and a plain sequential loop (``--sequential``).

    python examples/simulation.py                      # local backend (process pool)
    python examples/simulation.py --backend slurm      # the same code on SLURM
    python examples/simulation.py --sequential         # a plain loop, without hpcpar
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import sys
import time

import numpy as np

import hpcpar

S0, RATE, MATURITY = 100.0, 0.03, 1.0          # spot price, risk-free rate per year, years
VOLATILITIES = (0.1, 0.2, 0.3, 0.4)
STRIKES = (80.0, 90.0, 100.0, 110.0, 120.0)


def black_scholes_call(sigma: float, strike: float) -> float:
    """The exact price of the European call that :func:`simulate` estimates."""
    d1 = (math.log(S0 / strike) + (RATE + sigma**2 / 2) * MATURITY) / (sigma * math.sqrt(MATURITY))
    d2 = d1 - sigma * math.sqrt(MATURITY)
    return S0 * normal_cdf(d1) - strike * math.exp(-RATE * MATURITY) * normal_cdf(d2)


def normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def simulate(sigma: float, strike: float, seed: np.random.SeedSequence,
             paths: int) -> tuple[float, float]:
    """Monte Carlo price of the call and its standard error, from ``paths`` draws of ``seed``."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(paths)
    s_t = S0 * np.exp((RATE - sigma**2 / 2) * MATURITY + sigma * math.sqrt(MATURITY) * z)
    payoff = math.exp(-RATE * MATURITY) * np.maximum(s_t - strike, 0.0)
    return float(payoff.mean()), float(payoff.std(ddof=1) / math.sqrt(paths))


def sweep_tasks(root_seed: int, paths: int) -> list[tuple[float, float, np.random.SeedSequence, int]]:
    """One ``(sigma, strike, seed, paths)`` per grid point, each with its own child seed."""
    grid = list(itertools.product(VOLATILITIES, STRIKES))
    seeds = np.random.SeedSequence(root_seed).spawn(len(grid))
    return [(sigma, strike, seed, paths) for (sigma, strike), seed in zip(grid, seeds, strict=False)]


def digest(results: list[tuple[float, float]]) -> str:
    """SHA-256 of the results as float64 bytes: equal digests mean bit-identical results."""
    return hashlib.sha256(np.asarray(results, dtype=np.float64).tobytes()).hexdigest()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default=None,
                   help="hpcpar backend (default: $HPCPAR_BACKEND, the profile, else local)")
    p.add_argument("--sequential", action="store_true",
                   help="run the sweep as a plain loop in this process, without hpcpar")
    p.add_argument("--paths", type=int, default=200_000, help="paths per grid point (default 200000)")
    p.add_argument("--seed", type=int, default=20240917, help="root seed (default 20240917)")
    a = p.parse_args(argv)
    if a.paths < 2:
        p.error("--paths must be >= 2")
    if a.sequential and a.backend:
        p.error("--sequential runs without hpcpar; drop --backend")

    tasks = sweep_tasks(a.seed, a.paths)
    print(f"sweep: {len(VOLATILITIES)} volatilities x {len(STRIKES)} strikes = {len(tasks)} tasks, "
          f"{a.paths} paths each, root seed {a.seed}")
    t0 = time.perf_counter()
    if a.sequential:
        where = "sequential loop, no hpcpar"
        results = [simulate(*t) for t in tasks]
    else:
        with hpcpar.Executor(a.backend, job_name="mc-sweep", mem="1GB", walltime="00:10:00") as ex:
            where = f"hpcpar {ex.backend_name}"
            results = list(ex.map(simulate, *zip(*tasks, strict=False)))
    wall = time.perf_counter() - t0

    print(f"{'sigma':>5s} {'strike':>6s} {'MC price':>10s} {'std err':>8s} {'exact':>10s} {'z':>6s}")
    worst = 0.0
    for (sigma, strike, _, _), (price, err) in zip(tasks, results, strict=False):
        exact = black_scholes_call(sigma, strike)
        z = (price - exact) / err
        worst = max(worst, abs(z))
        print(f"{sigma:5.2f} {strike:6.1f} {price:10.6f} {err:8.6f} {exact:10.6f} {z:6.2f}")
    print(f"largest |MC - exact| / std err: {worst:.2f}")
    print(f"ran as: {where}, {wall:.2f} s")
    print(f"results sha256: {digest(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
