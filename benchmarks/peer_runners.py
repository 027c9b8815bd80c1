"""How each peer runs a workload of :mod:`benchmarks.workloads`, timed as issue 10 asks.

Each runner takes a :class:`~benchmarks.workloads.Workload` and the cell's :class:`Cell`
settings, and returns a :class:`Measured`: the results in call order, the wall seconds from
creating the executor (or cluster) to the last result, and the wall-clock windows in which its
scheduler calls count. Runners that keep workers (hpcpar's executor, a dask cluster, a joblib
``Parallel``) run the workload a second time on the same object when ``warm`` is asked.

Only public APIs: ``hpcpar.Executor``, ``hpcpar.dask.cluster`` and ``hpcpar.submitit.executor``
(the peers get the same queue, memory and walltime as hpcpar, translated by hpcpar's own
integration modules), ``distributed.Client``, ``submitit``'s ``map_array``, ``joblib.Parallel``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.workloads import Workload, run_calls

__all__ = ["PEERS", "Cell", "Measured", "Peer"]


@dataclass(frozen=True)
class Cell:
    """One cell's settings: where its files go, its job name, and the SLURM resources every
    batch peer asks for per job (queue, memory as ``"1GB"``, walltime as ``"0:15:00"``)."""

    runs_dir: str
    job_name: str
    queue: str
    mem: str
    walltime: str
    slots: int


@dataclass
class Measured:
    """What a runner measured. Times are seconds; windows are ``(start, end)`` in
    ``time.time()`` seconds, the clock the PATH wrappers log with."""

    results: list
    wall_s: float
    windows: list[tuple[float, float]]
    warm_results: list | None = None
    warm_wall_s: float | None = None
    warm_windows: list[tuple[float, float]] = field(default_factory=list)
    close_s: float | None = None
    run_dir_bytes: int | None = None


@dataclass(frozen=True)
class Peer:
    """A column of the table: a runner and where it runs (``"slurm"`` or ``"local"``)."""

    key: str
    title: str
    where: str
    run: Callable[[Workload, Cell, bool], Measured]
    warm: bool = False          # keeps workers: can run the workload again on them


class _Clock:
    """perf_counter for durations, time.time for the windows the call log is cut by."""

    def __init__(self) -> None:
        self.t0, self.e0 = time.perf_counter(), time.time()

    def since(self) -> float:
        return time.perf_counter() - self.t0

    def window(self) -> tuple[float, float]:
        return self.e0, time.time()


def _du(path: str | Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


# ---- hpcpar -----------------------------------------------------------------------------------

def _hpcpar(backend: str, half: bool) -> Callable[[Workload, Cell, bool], Measured]:
    def run(w: Workload, c: Cell, warm: bool) -> Measured:
        import hpcpar

        cols = w.columns()
        chunksize = max(1, math.ceil(len(w) / 2)) if half else None
        kw: dict[str, Any] = {"runs_dir": c.runs_dir, "job_name": c.job_name}
        if backend == "slurm":
            kw.update(queue=c.queue, mem=c.mem, walltime=c.walltime)
        else:
            kw.update(max_workers=c.slots)
        clock = _Clock()
        with hpcpar.Executor(backend, **kw) as ex:
            results = list(ex.map(w.fn, *cols, chunksize=chunksize))
            m = Measured(results, clock.since(), [clock.window()])
            m.run_dir_bytes = _du(c.runs_dir)
            if warm:
                again = _Clock()
                m.warm_results = list(ex.map(w.fn, *cols, chunksize=chunksize))
                m.warm_wall_s, m.warm_windows = again.since(), [again.window()]
            closing = _Clock()
        m.close_s = closing.since()
        m.windows.append(closing.window())
        return m
    return run


# ---- submitit ---------------------------------------------------------------------------------

def _submitit(chunks: bool) -> Callable[[Workload, Cell, bool], Measured]:
    def run(w: Workload, c: Cell, warm: bool) -> Measured:
        import hpcpar.submitit

        folder = Path(c.runs_dir) / "submitit"
        clock = _Clock()
        ex = hpcpar.submitit.executor(folder / "%j", backend="slurm", queue=c.queue, mem=c.mem,
                                      walltime=c.walltime, job_name=c.job_name)
        if chunks:                           # one array of 2 tasks, each a contiguous half
            calls = list(w.calls())
            half = math.ceil(len(calls) / 2)
            parts = [p for p in (calls[:half], calls[half:]) if p]
            jobs = ex.map_array(run_calls, [w.fn] * len(parts), parts)
            results = [r for j in jobs for r in j.result()]
        else:                                # one array task per call
            jobs = ex.map_array(w.fn, *w.columns())
            results = [j.result() for j in jobs]
        m = Measured(results, clock.since(), [clock.window()])
        m.run_dir_bytes = _du(folder)
        return m
    return run


# ---- dask-jobqueue ----------------------------------------------------------------------------

def _dask_map(client: Any, w: Workload) -> list:
    if w.shared is None:
        futures = client.map(w.fn, *w.columns(), pure=False)
    else:     # dask's way with one big argument: scatter it once, to a worker that holds it
        client.wait_for_workers(1)        # scattered to no worker, it is lost (tasks cancelled)
        # hash=False: a key of its own per run; with the content's hash, a warm run's scatter
        # met the key the cold run was releasing, and distributed 2023.1 cancelled the tasks.
        big = client.scatter(w.shared, broadcast=True, hash=False)
        rest = [list(col) for col in zip(*w.args, strict=True)]
        futures = client.map(w.fn, [big] * len(w), *rest, pure=False)
    return client.gather(futures)


def _dask(w: Workload, c: Cell, warm: bool) -> Measured:
    import distributed

    import hpcpar.dask

    clock = _Clock()
    # One single-core worker job per slot. interface="lo": this single host's workers reach
    # the scheduler on loopback; dashboard on a free port (the host is shared).
    cluster = hpcpar.dask.cluster(backend="slurm", queue=c.queue, mem=c.mem,
                                  walltime=c.walltime, job_name=c.job_name, runs_dir=c.runs_dir,
                                  cpus_per_task=1, interface="lo",
                                  scheduler_options={"dashboard_address": ":0"})
    client = None
    try:
        cluster.scale(jobs=c.slots)
        client = distributed.Client(cluster)
        m = Measured(_dask_map(client, w), clock.since(), [clock.window()])
        if warm:
            again = _Clock()
            m.warm_results = _dask_map(client, w)
            m.warm_wall_s, m.warm_windows = again.since(), [again.window()]
    finally:
        closing = _Clock()
        if client is not None:
            client.close()
        cluster.close()
    m.close_s = closing.since()
    m.windows.append(closing.window())
    return m


# ---- joblib -----------------------------------------------------------------------------------

def _joblib(w: Workload, c: Cell, warm: bool) -> Measured:
    import joblib

    clock = _Clock()
    with joblib.Parallel(n_jobs=c.slots) as par:     # loky; big arrays are memory-mapped
        results = par(joblib.delayed(w.fn)(*a) for a in w.calls())
        m = Measured(results, clock.since(), [clock.window()])
        if warm:
            again = _Clock()
            m.warm_results = par(joblib.delayed(w.fn)(*a) for a in w.calls())
            m.warm_wall_s, m.warm_windows = again.since(), [again.window()]
        closing = _Clock()
    m.close_s = closing.since()
    return m


PEERS: dict[str, Peer] = {p.key: p for p in (
    Peer("hpcpar", "hpcpar default", "slurm", _hpcpar("slurm", half=False), warm=True),
    Peer("hpcpar-half", "hpcpar chunksize=n/2", "slurm", _hpcpar("slurm", half=True), warm=True),
    Peer("submitit-chunks", "submitit, 2 hand-made chunks", "slurm", _submitit(chunks=True)),
    Peer("submitit-array", "submitit map_array", "slurm", _submitit(chunks=False)),
    Peer("dask", "dask-jobqueue", "slurm", _dask, warm=True),
    Peer("hpcpar-local", "hpcpar local", "local", _hpcpar("local", half=False), warm=True),
    Peer("joblib", "joblib (loky)", "local", _joblib, warm=True),
)}
