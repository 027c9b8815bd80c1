"""Warm workers: an executor's pool folder, through which its pulling workers outlive a run.

A batch executor with ``keep_workers_s > 0`` makes one pool folder (0700) the first time it
starts a run, in that run's folder (``RUN/pool/``, named by ``pool`` in each later run's
``run.json``; ``hpcpar clean`` of the first run removes it)::

    runs/000000.json    the executor's runs, published in order by the driver (the run folder's
    runs/000001.json    path); a run given chunks back (a dead worker's) is published again
    driver              touched by the driver every DRIVER_HEARTBEAT_S while the executor is open
    workers/<index>     touched by each live worker every WORKER_HEARTBEAT_S; removed at its exit
    workers/<index>.started  made once by each worker as it starts (kept)
    shutdown            written by ``Executor.shutdown``: every worker exits

A pulling worker (``python -m hpcpar.worker RUN --pull --pool POOL``) runs its own run's chunks,
then, instead of exiting, waits for the next published run and pulls its chunks (same claims,
same results files: exactly-once and ``attach`` are unchanged). It looks at the ``runs/``
folder's mtime (one ``stat``) every 0.05 s, backing off x1.5 to 0.5 s while nothing changes,
and exits (status 0, the reason on its stderr) when :func:`exit_reason` gives one: the shutdown
marker, idle past ``keep_workers_s``, the driver's heartbeat older than ``DRIVER_STALE_S``
(the driver is gone), or less walltime left than twice its longest chunk so far plus
``WALLTIME_MARGIN_S``.

The driver (:class:`hpcpar.backends.batch.BatchBackend`) publishes each new run and, when
workers of this executor are still live (their heartbeat files fresh and the scheduler last
saw them live), records them as the run's workers instead of submitting new ones.

NFS: a client caches a folder's attributes (``acdirmin``, 30 s by default), so on NFS a worker
may see a published run, the shutdown marker or a stale driver heartbeat up to that late; the
driver heartbeat's 30 s limit leaves room for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path

from .rundir import atomic_write

#: seconds between the driver's touches of ``driver`` while the executor is open
DRIVER_HEARTBEAT_S = 5.0
#: a driver heartbeat older than this (3 intervals, and NFS's default ``acdirmax``) means the
#: driver is gone
DRIVER_STALE_S = 30.0
#: seconds between a worker's touches of ``workers/<index>``
WORKER_HEARTBEAT_S = 2.0
#: a worker heartbeat older than this is not taken as a live worker by a new run
WORKER_STALE_S = 3 * WORKER_HEARTBEAT_S
#: seconds of walltime kept free beyond twice the longest chunk a worker has run
WALLTIME_MARGIN_S = 10.0
#: a waiting worker's first and longest pause between looks at the pool (seconds)
WAIT_FIRST_S = 0.05
WAIT_MAX_S = 0.5
SEQ_DIGITS = 6


def create(parent: str | os.PathLike) -> Path:
    """A new pool folder (0700) ``parent/pool`` (the executor's first run folder), with its
    driver heartbeat."""
    pool = Path(parent) / "pool"
    pool.mkdir(mode=0o700)
    (pool / "runs").mkdir(mode=0o700)
    (pool / "workers").mkdir(mode=0o700)
    touch_driver(pool)
    return pool


def _sequence_numbers(pool: Path) -> list[tuple[int, Path]]:
    """``(sequence number, file)`` of every published run file, in order (names only)."""
    out = []
    for p in (pool / "runs").iterdir():
        stem = p.name.removesuffix(".json")
        if p.name.endswith(".json") and stem.isdigit():
            out.append((int(stem), p))
    return sorted(out)


def publish(pool: Path, run_dir: str | os.PathLike) -> int:
    """Publish ``run_dir`` as the pool's next run; returns its sequence number."""
    seq = max((s for s, _ in _sequence_numbers(pool)), default=-1) + 1
    while True:
        path = pool / "runs" / f"{seq:0{SEQ_DIGITS}d}.json"
        if not path.exists():
            atomic_write(path, json.dumps({"run_dir": str(run_dir)}).encode())
            return seq
        seq += 1


def published(pool: Path, after: int = -1) -> list[tuple[int, str]]:
    """``(sequence number, run folder)`` of every run published after sequence number
    ``after`` (default: all), in order; only those files are read."""
    out = []
    for seq, p in _sequence_numbers(pool):
        if seq <= after:
            continue
        try:
            out.append((seq, json.loads(p.read_text())["run_dir"]))
        except (OSError, ValueError, KeyError):
            continue
    return out


def touch_driver(pool: Path) -> None:
    """Touch the driver heartbeat (written first with the driver's host and process id)."""
    path = pool / "driver"
    if not path.exists():
        atomic_write(path, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode())
    path.touch(mode=0o600)


def driver_ended(pool: Path) -> int | None:
    """The driver's process id if the driver ran on this host and its process has ended (a
    worker on the driver's host sees a killed driver at once, not after ``DRIVER_STALE_S``);
    else None."""
    try:
        rec = json.loads((pool / "driver").read_text())
        if rec.get("host") != socket.gethostname():
            return None
        pid = int(rec["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    except OSError:                        # alive, another user's: not ours to judge
        return None
    return None


def driver_age(pool: Path, now: float | None = None) -> float:
    """Seconds since the driver's last heartbeat (infinite if there is none)."""
    try:
        return (time.time() if now is None else now) - (pool / "driver").stat().st_mtime
    except OSError:
        return float("inf")


def request_shutdown(pool: Path) -> None:
    """Tell every worker of the pool to exit (they see it within ``WAIT_MAX_S``)."""
    with contextlib.suppress(OSError):
        (pool / "shutdown").touch(mode=0o600)
        os.utime(pool / "runs")               # the folder workers watch changes too


def shutdown_requested(pool: Path) -> bool:
    return (pool / "shutdown").exists()


def worker_path(pool: Path, index: int) -> Path:
    return pool / "workers" / str(index)


def touch_worker(pool: Path, index: int) -> None:
    worker_path(pool, index).touch(mode=0o600)


def mark_started(pool: Path, index: int) -> None:
    """Worker ``index`` has started (kept after it exits, unlike its heartbeat file)."""
    (pool / "workers" / f"{index}.started").touch(mode=0o600)


def worker_started(pool: Path, index: int) -> bool:
    """True if worker ``index`` ever started (the executor cancels the others at shutdown)."""
    return (pool / "workers" / f"{index}.started").exists()


def worker_fresh(pool: Path, index: int, now: float | None = None) -> bool:
    """True if worker ``index`` touched its heartbeat within ``WORKER_STALE_S``."""
    try:
        age = (time.time() if now is None else now) - worker_path(pool, index).stat().st_mtime
    except OSError:
        return False
    return age <= WORKER_STALE_S


def exit_reason(pool: Path, *, idle_s: float, keep_s: float, walltime_left_s: float | None,
                longest_chunk_s: float, now: float | None = None) -> str | None:
    """Why a waiting worker should exit now, or None to keep waiting.

    Parameters
    ----------
    idle_s : float
        Seconds since the worker last ran a chunk (or started).
    keep_s : float
        The executor's ``keep_workers_s``.
    walltime_left_s : float or None
        Seconds of the job's walltime left (None: no walltime known).
    longest_chunk_s : float
        The longest chunk the worker has run, in seconds.
    """
    if shutdown_requested(pool):
        return "the executor was shut down"
    age = driver_age(pool, now)
    if age > DRIVER_STALE_S:
        return f"the driver is gone (no heartbeat for {age:.0f} s)"
    pid = driver_ended(pool)
    if pid is not None:
        return f"the driver is gone (its process {pid} ended)"
    if idle_s > keep_s:
        return f"idle for {idle_s:.1f} s (keep_workers_s={keep_s:g})"
    if not walltime_fits(walltime_left_s, longest_chunk_s):
        return (f"too little walltime left ({walltime_left_s:.0f} s) for another chunk "
                f"(longest so far {longest_chunk_s:.1f} s)")
    return None


def walltime_fits(walltime_left_s: float | None, longest_chunk_s: float) -> bool:
    """True if ``walltime_left_s`` (None: unlimited) leaves room for one more chunk: twice the
    longest chunk so far, plus ``WALLTIME_MARGIN_S``."""
    return walltime_left_s is None or walltime_left_s >= 2 * longest_chunk_s + WALLTIME_MARGIN_S


class DriverHeartbeat(threading.Thread):
    """The driver's side: touch ``pool/driver`` every ``DRIVER_HEARTBEAT_S`` until stopped
    (a daemon thread: it dies with the driver, and the workers notice)."""

    def __init__(self, pool: Path, interval_s: float = DRIVER_HEARTBEAT_S):
        super().__init__(name="hpcpar-pool-heartbeat", daemon=True)
        self.pool, self.interval_s = pool, interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            with contextlib.suppress(OSError):
                touch_driver(self.pool)

    def stop(self) -> None:
        self.stopped.set()
