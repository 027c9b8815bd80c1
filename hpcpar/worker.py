"""Run one chunk of a run: ``python -m hpcpar.worker RUN_DIR [--chunk N | --index-var VAR]``.

The worker never talks to the driver; it only reads and writes files in the run directory::

    chunks/N.pkl ──► [ fn(*args, **kwargs) for each task ] ──► results/N.pkl

The chunk index comes from ``--chunk`` or, inside a job array, from the scheduler's array-index
environment variable named by the job template (``--index-var SLURM_ARRAY_TASK_ID``), minus
``--index-base`` (1 for schedulers that count array tasks from 1, such as SGE).

Robustness:

* A finished chunk is never run again: a complete results file makes the worker exit at once.
* Partial results are checkpointed every ``--checkpoint-s`` seconds (default 10) and when the
  worker is stopped by SIGTERM (cancellation, or the scheduler's kill at walltime). A later
  attempt resumes after the last finished task.
* SIGUSR2 is the scheduler's walltime warning. ``--on-warning checkpoint`` (SLURM, whose
  ``--signal=B:USR2@N`` comes N seconds *before* the limit): save now, keep going, save after
  every task, and let the limit's SIGTERM stop the worker, so a task that fits still finishes
  and a job killed at its limit is reported TIMEOUT. ``--on-warning stop`` (Grid Engine's
  ``-notify`` and LSF, which signal *at* the limit and kill soon after): save and exit now.
  Either way the result is marked ``warned``, and the driver requeues the rest of the chunk
  (not counted as a retry) if the attempt made progress.
* A task's exception is recorded with its traceback and the worker goes on with the next task.
* A damaged results file is moved aside and the chunk starts afresh.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from . import argstore, claims, pool, runstate
from .rundir import ChunkResult, CorruptFileError, RunDir

EXIT_OK = 0
EXIT_STOPPED = 3          # stopped early by a signal; partial results written
EXIT_BAD_INPUT = 2        # the run folder or chunk could not be read


class StopRequested(BaseException):
    """Raised in the worker's main thread by a SIGUSR2/SIGTERM handler (not an Exception,
    so a task's own ``except Exception`` does not swallow it)."""

    def __init__(self, signame: str):
        super().__init__(signame)
        self.signame = signame


class ClaimVoided(Exception):
    """A pulling worker's claim was voided by the driver (it judged the worker dead): the
    worker drops the chunk without writing to it."""


def portable_exception(exc: BaseException, tb: str) -> BaseException:
    """The exception itself if it survives pickling, else a TaskError carrying its text."""
    from .errors import TaskError

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 (any pickling failure: fall back to a TaskError)
        return TaskError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}", tb)


def run_tasks(payload: dict, tasks: list, result: ChunkResult,
              checkpoint: Callable[[ChunkResult], None] | None = None,
              checkpoint_s: float = 10.0, guard: Any = None) -> ChunkResult:
    """Run ``tasks[result.done:]`` into ``result``.

    Parameters
    ----------
    payload : dict
        ``{"fn": callable, "mode": "map" | "reduce", "reducer": callable or None}``.
    tasks : list of (tuple, dict)
        Positional and keyword arguments of each task.
    result : ChunkResult
        Fresh, or a partial result to resume.
    checkpoint : callable, optional
        Called with ``result`` at most every ``checkpoint_s`` seconds (and never after the last task).
    guard : context manager, optional
        Entered around each update of ``result`` so that a stop signal cannot land between
        recording an outcome and counting it.
    """
    guard = guard if guard is not None else contextlib.nullcontext()
    fn, mode, reducer = payload["fn"], payload.get("mode", "map"), payload.get("reducer")
    last = time.monotonic()
    for i in range(result.done, len(tasks)):
        args, kwargs = tasks[i]
        t0 = time.perf_counter()
        try:
            value = fn(*args, **kwargs)
            if mode == "reduce":
                assert reducer is not None            # the driver sends one with mode "reduce"
                value = value if result.done == 0 else reducer(result.outcomes[0][1], value)
            outcome = (True, value, "")
        except (Exception, SystemExit) as exc:  # noqa: BLE001 (the task's own error is its result)
            tb = traceback.format_exc()
            outcome = (False, portable_exception(exc, tb), tb)
        with guard:
            if mode == "reduce":
                result.outcomes[:] = [outcome]
                result.failed = not outcome[0]
            else:
                result.outcomes.append(outcome)
                result.task_seconds.append(time.perf_counter() - t0)
            result.done += 1
        if result.failed:
            break
        if checkpoint is not None and i + 1 < len(tasks) and (
                result.warned or time.monotonic() - last >= checkpoint_s):
            checkpoint(result)
            last = time.monotonic()
    result.finished = time.time()
    return result


class _Signals:
    """SIGUSR2/SIGTERM handling, deferred while a results file is being written.

    SIGTERM, and SIGUSR2 with ``on_warning="stop"``, raise StopRequested in the main thread.
    SIGUSR2 with ``on_warning="checkpoint"`` marks the result ``warned`` and writes it at once.
    """

    def __init__(self, on_warning: str = "stop") -> None:
        self.on_warning = on_warning
        self.pending: str | None = None
        self.critical = False
        self.checkpoint_due = False
        self.rd: RunDir | None = None
        self.result: ChunkResult | None = None
        self.claim: claims.Claim | None = None

    def install(self) -> None:
        for sig in (signal.SIGUSR2, signal.SIGTERM):
            signal.signal(sig, self._handler)

    def _handler(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.result is not None and signum == signal.SIGUSR2:
            self.result.warned = True
            if self.on_warning == "checkpoint":
                print("hpcpar.worker: walltime warning (SIGUSR2): results saved, going on",
                      file=sys.stderr, flush=True)
                if self.critical:
                    self.checkpoint_due = True
                else:
                    self.write()
                return
        self.pending = name
        if not self.critical:
            raise StopRequested(name)

    def __enter__(self) -> Self:
        self.critical = True
        return self

    def __exit__(self, *exc_info) -> None:
        self.critical = False
        if exc_info[0] is not None:
            return
        if self.checkpoint_due:
            self.checkpoint_due = False
            self.write()
        if self.pending:
            raise StopRequested(self.pending)

    def write(self, result: ChunkResult | None = None) -> None:
        rd, res = self.rd, result or self.result
        assert rd is not None and res is not None, "write() before the chunk was set up"
        if self.claim is not None and not res.complete and self.claim.voided():
            raise ClaimVoided(self.claim.chunk)        # the chunk was given to another worker
        with self:
            rd.write_result(res)


def chunk_from_env(var: str, base: int) -> int:
    value = os.environ.get(var)
    if value is None or not value.strip().isdigit():
        raise SystemExit(f"hpcpar.worker: environment variable {var} is {value!r}, "
                         "expected the array task index")
    return int(value) - base + int(os.environ.get("HPCPAR_INDEX_OFFSET", "0") or 0)


def run_chunk(rd: RunDir, chunk: int, checkpoint_s: float = 10.0, on_warning: str = "stop",
              claim: claims.Claim | None = None, cache: dict | None = None) -> int:
    """Run chunk ``chunk`` of run folder ``rd``; returns the process exit code.

    ``claim``: the pulling worker's claim on the chunk (its partial results are not written
    once the driver voided it). ``cache``: a dict kept across a pulling worker's chunks, so
    run.json and the function are read and unpickled once per worker.
    """
    sigs = _Signals(on_warning)
    sigs.rd = rd
    sigs.claim = claim
    sigs.install()
    try:
        prior = rd.read_result(chunk)
    except CorruptFileError as exc:
        moved = rd.quarantine_result(chunk)
        print(f"hpcpar.worker: {exc}; moved to {moved.name}, starting the chunk afresh", file=sys.stderr)
        prior = None
    if prior is not None and prior.complete:
        print(f"hpcpar.worker: chunk {chunk} already complete; nothing to do", file=sys.stderr)
        return EXIT_OK
    cache = {} if cache is None else cache
    try:
        meta = cache.get("meta") or rd.read_meta()
        if "meta" not in cache:
            for entry in meta.get("python_path", []):
                if entry not in sys.path and os.path.isdir(entry):
                    sys.path.append(entry)
            argstore.use_run_dir(rd.path)       # stored arguments moved into the run folder
            cache["meta"] = meta
        tasks = pickle.loads(rd.read_chunk_bytes(chunk))
    except (OSError, CorruptFileError, ValueError, pickle.UnpicklingError) as exc:
        print(f"hpcpar.worker: cannot read chunk {chunk} of {rd.path}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result = prior or ChunkResult(chunk=chunk, n_tasks=len(tasks), started=time.time())
    result.attempts += 1
    result.host, result.pid, result.stopped_by, result.warned = socket.gethostname(), os.getpid(), None, False
    sigs.result = result
    try:
        payload = cache.get("payload") or pickle.loads(rd.read_function_bytes())
        cache["payload"] = payload
    except Exception as exc:  # noqa: BLE001 e.g. a module the function needs is not importable on this node
        tb = traceback.format_exc()
        failure = (False, portable_exception(exc, tb), tb)
        result.outcomes = [failure] * (len(tasks) if meta.get("mode", "map") == "map" else 1)
        result.done, result.failed, result.finished = len(tasks), True, time.time()
        sigs.write()
        return EXIT_OK
    print(f"hpcpar.worker: run {rd.run_id} chunk {chunk}: tasks {result.done}..{len(tasks) - 1} "
          f"on {result.host} (attempt {result.attempts})", file=sys.stderr, flush=True)
    try:
        run_tasks(payload, tasks, result, checkpoint=sigs.write, checkpoint_s=checkpoint_s, guard=sigs)
        sigs.write()
    except ClaimVoided:
        print(f"hpcpar.worker: chunk {chunk} was given to another worker; dropped",
              file=sys.stderr, flush=True)
        return EXIT_OK
    except StopRequested as stop:
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        result.stopped_by = stop.signame
        result.finished = time.time()
        if claim is None or not claim.voided():
            rd.write_result(result)
        print(f"hpcpar.worker: stopped by {stop.signame} after {result.done}/{result.n_tasks} tasks; "
              "partial results written", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    return EXIT_OK


def _heartbeat(current: list[claims.Claim | None], stop: threading.Event) -> None:
    while not stop.wait(claims.HEARTBEAT_S):
        claim = current[0]
        if claim is not None:
            claim.heartbeat()


def pull(rd: RunDir, worker: int, checkpoint_s: float = 10.0, on_warning: str = "stop",
         stats: dict | None = None, may_claim: Callable[[], bool] | None = None) -> int:
    """Claim and run the run's chunks (see :mod:`hpcpar.claims`) until none is left; returns
    the process exit code (that of the first chunk stopped by a signal, else 0).

    While a chunk runs, a thread touches its claim every ``claims.HEARTBEAT_S`` seconds (the
    driver gives the chunk back to the pool if the heartbeat stops). ``stats`` (a warm
    worker's, kept across runs) gets ``ran`` (chunks) and ``longest_s`` (seconds of its
    longest chunk); ``may_claim()`` is asked before each claim (False: stop claiming, e.g.
    too little walltime left).
    """
    stats = {} if stats is None else stats
    try:
        n_chunks = int(rd.read_meta()["n_chunks"])
    except (OSError, ValueError, KeyError) as exc:
        print(f"hpcpar.worker: cannot read {rd.meta_path}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    claimer = claims.Claimer(rd.path, n_chunks, worker)
    cache: dict = {}
    current: list[claims.Claim | None] = [None]
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(current, stop), daemon=True,
                     name="hpcpar-heartbeat").start()

    def done(i: int) -> bool:
        try:
            result = rd.read_result(i)
        except (OSError, CorruptFileError, EOFError, ValueError, pickle.UnpicklingError):
            return False
        return result is not None and result.complete

    ran = 0
    try:
        # a cancel request (`hpcpar cancel`, the owner's cancel) stops claiming even when the
        # driver that would cancel this worker is gone
        while (not runstate.cancel_requested(rd) and (may_claim is None or may_claim())
               and (claim := claimer.next(done)) is not None):
            current[0] = claim
            t0 = time.monotonic()
            code = run_chunk(rd, claim.chunk, checkpoint_s, on_warning, claim=claim, cache=cache)
            stats["longest_s"] = max(stats.get("longest_s", 0.0), time.monotonic() - t0)
            stats["ran"] = stats.get("ran", 0) + 1
            current[0] = None
            ran += 1
            if code != EXIT_OK:
                return code
    finally:
        stop.set()
    print(f"hpcpar.worker: worker {worker} ran {ran} chunk(s); none left", file=sys.stderr, flush=True)
    return EXIT_OK


def _worker_heartbeat(pool_dir: Path, worker: int, stop: threading.Event) -> None:
    with contextlib.suppress(OSError):
        pool.mark_started(pool_dir, worker)
    while True:
        with contextlib.suppress(OSError):
            pool.touch_worker(pool_dir, worker)
        if stop.wait(pool.WORKER_HEARTBEAT_S):
            return


def serve(rd: RunDir, worker: int, pool_dir: Path, keep_s: float,
          walltime_s: float | None = None, started: float | None = None,
          checkpoint_s: float = 10.0, on_warning: str = "stop") -> int:
    """A warm worker (see :mod:`hpcpar.pool`): pull ``rd``'s chunks, then the chunks of each
    run the driver publishes in ``pool_dir`` after it, until :func:`hpcpar.pool.exit_reason`
    gives a reason to exit (printed to stderr). Returns the process exit code.

    Parameters
    ----------
    keep_s : float
        Seconds the worker waits without a chunk before it exits (``keep_workers_s``).
    walltime_s : float, optional
        The job's walltime in seconds (None: unlimited), counted from ``started``.
    started : float, optional
        ``time.time()`` at the job's start (default: now).
    """
    started = time.time() if started is None else started
    stats: dict = {"longest_s": 0.0, "ran": 0}

    def walltime_left() -> float | None:
        return None if not walltime_s else started + walltime_s - time.time()

    def may_claim() -> bool:
        # a worker's first chunk is always taken, as a worker without a pool takes it; the
        # shutdown marker does not stop claiming (a run resubmitted by attach after the
        # executor's shutdown is served by workers of the same job script)
        return stats["ran"] == 0 or pool.walltime_fits(walltime_left(), stats["longest_s"])

    def idle_signal(signum, frame) -> None:
        raise StopRequested(signal.Signals(signum).name)

    stop = threading.Event()
    threading.Thread(target=_worker_heartbeat, args=(pool_dir, worker, stop), daemon=True,
                     name="hpcpar-pool-heartbeat").start()
    try:
        code = pull(rd, worker, checkpoint_s, on_warning, stats=stats, may_claim=may_claim)
        if code != EXIT_OK:
            return code
        # waiting: SIGTERM (cancel, walltime) or SIGUSR2 (walltime warning) ends the worker
        for sig in (signal.SIGUSR2, signal.SIGTERM):
            signal.signal(sig, idle_signal)
        try:
            entries = pool.published(pool_dir)
        except OSError as exc:
            print(f"hpcpar.worker: cannot read the pool {pool_dir}: {exc}; exiting",
                  file=sys.stderr, flush=True)
            return EXIT_OK
        mine = [seq for seq, path in entries if Path(path) == rd.path]
        last = mine[-1] if mine else -1
        idle_since, delay, stamp = time.monotonic(), pool.WAIT_FIRST_S, -1
        while True:
            reason = pool.exit_reason(pool_dir, idle_s=time.monotonic() - idle_since,
                                      keep_s=keep_s, walltime_left_s=walltime_left(),
                                      longest_chunk_s=stats["longest_s"])
            if reason:
                print(f"hpcpar.worker: worker {worker} exits: {reason}", file=sys.stderr,
                      flush=True)
                return EXIT_OK
            try:
                now_stamp = os.stat(pool_dir / "runs").st_mtime_ns
                if now_stamp != stamp:
                    stamp = now_stamp
                    entries = pool.published(pool_dir, after=last)
                    for seq, path in entries:
                        last = seq
                        before = stats["ran"]
                        print(f"hpcpar.worker: worker {worker} takes run {path}",
                              file=sys.stderr, flush=True)
                        code = pull(RunDir(path), worker, checkpoint_s, on_warning,
                                    stats=stats, may_claim=may_claim)
                        if code != EXIT_OK:
                            return code
                        for sig in (signal.SIGUSR2, signal.SIGTERM):
                            signal.signal(sig, idle_signal)
                        if stats["ran"] > before:
                            idle_since = time.monotonic()
                    if entries:
                        delay = pool.WAIT_FIRST_S
                        continue
            except OSError as exc:
                print(f"hpcpar.worker: cannot read the pool {pool_dir}: {exc}; exiting",
                      file=sys.stderr, flush=True)
                return EXIT_OK
            time.sleep(delay)
            delay = min(delay * 1.5, pool.WAIT_MAX_S)
    except StopRequested as stop_signal:       # only while waiting: run_chunk handles its own
        print(f"hpcpar.worker: worker {worker} exits: {stop_signal.signame} while waiting for "
              "a run", file=sys.stderr, flush=True)
        return EXIT_OK
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            pool.worker_path(pool_dir, worker).unlink()


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    p = argparse.ArgumentParser(prog="python -m hpcpar.worker", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="the run folder")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--chunk", type=int, help="chunk index to run")
    g.add_argument("--index-var", help="environment variable holding the array task index")
    p.add_argument("--index-base", type=int, default=0,
                   help="array index of chunk 0 (1 for SGE, default 0)")
    p.add_argument("--checkpoint-s", type=float, default=10.0,
                   help="seconds between partial-result checkpoints (default 10)")
    p.add_argument("--on-warning", choices=("stop", "checkpoint"), default="stop",
                   help="on SIGUSR2 (walltime warning): save and exit, or save and go on (default stop)")
    p.add_argument("--pull", action="store_true",
                   help="the array index names a worker, which claims and runs chunks until "
                        "none is left (see hpcpar.claims)")
    p.add_argument("--pool", help="with --pull: the executor's pool folder; stay warm after "
                                  "the run (see hpcpar.pool)")
    p.add_argument("--keep-workers-s", type=float, default=0.0,
                   help="with --pool: seconds to wait for a new run before exiting (default 0)")
    p.add_argument("--walltime-s", type=float, default=None,
                   help="with --pool: the job's walltime in seconds, to take no chunk that "
                        "would not fit")
    a = p.parse_args(argv)
    chunk = a.chunk if a.chunk is not None else chunk_from_env(a.index_var, a.index_base)
    if a.pull and a.pool:
        return serve(RunDir(a.run_dir), chunk, Path(a.pool), a.keep_workers_s, a.walltime_s,
                     started, a.checkpoint_s, a.on_warning)
    if a.pull:
        return pull(RunDir(a.run_dir), chunk, a.checkpoint_s, a.on_warning)
    return run_chunk(RunDir(a.run_dir), chunk, a.checkpoint_s, a.on_warning)


if __name__ == "__main__":
    sys.exit(main())
