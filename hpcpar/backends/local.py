"""The local backend: chunks run in hpcpar's own worker processes on this machine, in memory.

No run folder and no files: the fast path for debugging and small work, and a rehearsal of a
cluster. Each of ``max_workers`` slots owns one worker process (:mod:`hpcpar.localworker`, a
fresh interpreter running the same ``run_tasks`` as an array task) and one driver thread that
hands it one chunk at a time over a pipe::

    start(request) ─► queue of chunks ─► slot thread i ─(pipe)─► worker process i
                                           ▲                         │
                         Future per chunk ◄┴──── ChunkResult ◄───────┘

Because a slot runs one chunk at a time, a worker's death is that chunk's alone: only it is
rerun (up to ``max_retries`` times, as a cluster requeues an array task that ended without
results) and then fails with :class:`~hpcpar.errors.JobLostError` naming the signal or exit
code; the slot starts a fresh worker for the next chunk. As on a cluster:

* ``walltime`` (seconds) bounds each chunk: past it the worker is killed, state TIMEOUT;
* ``mem`` (bytes) bounds each worker (``RLIMIT_DATA``, see :mod:`hpcpar.localworker` for why
  and its limits): past it the chunk ends OUT_OF_MEMORY;
* BLAS/OpenMP pools get ``cpus_per_task`` threads (``OMP_NUM_THREADS`` etc., unless set);
* ``max_workers`` defaults to the CPUs this process may use divided by ``cpus_per_task``.

Fresh interpreters rather than forks: no re-import of ``__main__`` (functions travel by value
through cloudpickle, see :mod:`hpcpar.serialize`), no lock inherited from a driver thread,
independent random streams, and memory measured from a clean process. Workers start once per
executor and are reused (warm) while chunks keep coming; a worker idle for ``keep_workers_s``
seconds exits (0: as soon as the queue is empty), as an array task does on a cluster, and the
next chunk starts a fresh one. Their first start costs about 0.1 s, paid in parallel.

Shutdown: a failing ``with`` block (Ctrl-C too) kills every worker at once
(:meth:`LocalBackend.stop_running`), and so does an unhandled exception at interpreter exit;
``shutdown(cancel_futures=True)`` cancels queued chunks and lets running ones finish, as
concurrent.futures does; a driver killed outright
(SIGTERM, SIGKILL) loses its workers within 0.2 s (each watches its parent). An executor
dropped without ``shutdown`` finishes its queued chunks, then its workers exit.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import weakref
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import NoReturn

from .._futures import ChunkFuture, cancel_future
from ..errors import JobLostError
from ..localworker import CACHE_SIZE, EXIT_OOM
from ..resources import THREAD_VARS
from ..states import JobState
from .base import Backend, RunHandle, RunRequest

log = logging.getLogger("hpcpar")


_BOOTSTRAP = ("import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
              "from hpcpar.localworker import main; main(sys.argv[2:])")


class _Job:
    __slots__ = ("chunk", "chunk_bytes", "fn_payload", "future", "job_id", "key", "n_outcomes",
                 "reserved")

    def __init__(self, future, key, fn_payload, chunk_bytes, chunk, job_id, n_outcomes):
        self.future, self.key, self.fn_payload = future, key, fn_payload
        self.chunk_bytes, self.chunk, self.job_id = chunk_bytes, chunk, job_id
        self.n_outcomes = n_outcomes            # tasks in the chunk; 1 in reduce mode
        self.reserved = False                   # given to an idle slot, RUNNING already


class _Lost(Exception):
    def __init__(self, state: JobState, exit_code: int | None, detail: str):
        super().__init__(detail)
        self.state, self.exit_code, self.detail = state, exit_code, detail


class _Worker:
    """One worker process and its two pipes."""

    def __init__(self, env: dict, mem: int):
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        path = list(sys.path)
        here = os.path.abspath(__file__)                          # .../hpcpar/backends/local.py
        path.append(os.path.dirname(os.path.dirname(os.path.dirname(here))))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, json.dumps(path), str(cmd_r), str(out_w),
                 str(mem), str(os.getpid())],
                pass_fds=(cmd_r, out_w), stdin=subprocess.DEVNULL, env=env)
        except BaseException:
            for fd in (cmd_r, cmd_w, out_r, out_w):
                os.close(fd)
            raise
        finally:
            if hasattr(self, "proc"):
                os.close(cmd_r)
                os.close(out_w)
        self.cmd = Connection(cmd_w, readable=False)
        self.out = Connection(out_r, writable=False)
        # multiprocessing's authkey, as a forked child has it: a Manager's proxies (queues,
        # events) passed to tasks can then connect back (never on the command line)
        self.cmd.send_bytes(bytes(multiprocessing.current_process().authkey))
        self.keys: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.ready = False                              # its b"ready" has been read

    def send(self, job: _Job) -> None:
        payload = None if job.key in self.keys else job.fn_payload
        self.keys[job.key] = None                      # mirror the worker's cache
        self.keys.move_to_end(job.key)
        while len(self.keys) > CACHE_SIZE:
            self.keys.popitem(last=False)
        self.cmd.send_bytes(pickle.dumps((job.key, payload, job.chunk_bytes, job.chunk, job.n_outcomes),
                                         protocol=pickle.HIGHEST_PROTOCOL))

    def receive(self, walltime_s: float | None):
        """The worker's answer to the chunk just sent; raises _Lost if it ends without one.
        The walltime runs from when the worker is up (its interpreter started), not before."""
        if not self.ready:
            try:
                self.out.recv_bytes()                   # b"ready"
            except (EOFError, OSError):
                self._died()
            self.ready = True
        if not self.out.poll(walltime_s):
            self.kill()
            self.proc.wait()
            raise _Lost(JobState.TIMEOUT, self.proc.returncode,
                        f"the chunk ran past its walltime of {walltime_s:g} s; worker "
                        f"process {self.proc.pid} killed")
        try:
            kind, value = pickle.loads(self.out.recv_bytes())
        except (EOFError, OSError):
            self._died()
        if kind == "oom":
            self.proc.wait()
            raise _Lost(JobState.OUT_OF_MEMORY, EXIT_OOM,
                        f"worker process {self.proc.pid}: {value}")
        return value

    def _died(self) -> NoReturn:
        """Raise _Lost for a worker whose pipe closed: by its exit code or signal."""
        code = self.proc.wait()
        if code == EXIT_OOM:
            raise _Lost(JobState.OUT_OF_MEMORY, code, "the worker went over its memory")
        if code < 0:
            raise _Lost(JobState.FAILED, code, f"the worker process {self.proc.pid} died: "
                                               f"killed by signal {_signal_name(-code)} ({-code})")
        raise _Lost(JobState.FAILED, code, f"the worker process {self.proc.pid} died: exit code {code}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass

    def close(self, kill: bool = False) -> None:
        if kill:
            self.kill()
        self.cmd.close()                                # EOF: an idle worker exits
        try:
            self.proc.wait(timeout=None if kill else 5)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
        self.out.close()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class LocalPool:
    """Slots of one thread and one worker process each, fed from one queue of chunks."""

    def __init__(self, n_workers: int, env: dict, mem: int, walltime_s: float | None,
                 max_retries: int, keep_workers_s: float | None = None):
        self.n_workers, self.env, self.mem = n_workers, env, mem
        #: seconds an idle worker process is kept (None: for the pool's life)
        self.keep_workers_s = keep_workers_s
        self.walltime_s, self.max_retries = walltime_s, max_retries
        self.queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.workers: set[_Worker] = set()
        self.closed = False
        self.cancelling = False
        self.free = n_workers             # slots neither running nor promised a chunk
        _POOLS.add(self)

    def put(self, job: _Job) -> None:
        with self.lock:
            if self.closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if not self.threads:
                for i in range(self.n_workers):
                    t = threading.Thread(target=self._serve, name=f"hpcpar-local-slot-{i}",
                                         daemon=True)
                    t.start()
                    self.threads.append(t)
            if self.free > 0:        # a free slot takes it next: RUNNING now, as in
                if not job.future.set_running_or_notify_cancel():   # ProcessPoolExecutor's
                    return                                          # call queue
                self.free -= 1
                job.reserved = True
            self.queue.put(job)

    def _spawn(self) -> _Worker:
        w = _Worker(self.env, self.mem)
        with self.lock:
            self.workers.add(w)
            if self.cancelling:
                w.kill()
        return w

    def _retire(self, w: _Worker, kill: bool = False) -> None:
        with self.lock:
            self.workers.discard(w)
        w.close(kill=kill)

    def _serve(self) -> None:
        worker: _Worker | None = None          # started with the first chunk, then reused
        try:
            while True:
                try:                   # an idle worker exits after keep_workers_s, as on a cluster
                    job = self.queue.get(timeout=self.keep_workers_s if worker is not None
                                         else None)
                except queue.Empty:
                    assert worker is not None
                    self._retire(worker)
                    worker = None
                    continue
                if job is None:
                    break
                if not job.reserved:
                    with self.lock:
                        self.free -= 1
                try:
                    worker = self._run(worker, job)
                finally:
                    with self.lock:
                        self.free += 1
        except BaseException as exc:  # noqa: BLE001 - never leave a slot silently dead
            log.error("hpcpar: a local slot stopped: %r", exc)
        finally:
            if worker is not None:
                self._retire(worker, kill=self.cancelling)

    def _run(self, worker: _Worker | None, job: _Job) -> _Worker | None:
        """Run ``job`` to its end; return the worker to use next (fresh after a death)."""
        if not job.reserved and not job.future.set_running_or_notify_cancel():
            return worker
        if self.cancelling:
            job.future.set_exception(JobLostError(JobState.CANCELLED, job.job_id, None,
                                                  "the executor was stopped", attempts=0))
            return worker
        attempt = 0
        while True:
            attempt += 1
            try:
                if worker is None or not worker.alive():
                    if worker is not None:
                        self._retire(worker)
                    worker = None
                    worker = self._spawn()
                try:
                    worker.send(job)
                except OSError:                       # died while idle: once more, afresh
                    self._retire(worker, kill=True)
                    worker = self._spawn()
                    worker.send(job)
                result = worker.receive(self.walltime_s)
            except _Lost as lost:
                assert worker is not None                 # _Lost comes from a worker's pipe
                self._retire(worker)
                worker = None
                if self.cancelling:
                    job.future.set_exception(JobLostError(JobState.CANCELLED, job.job_id, lost.exit_code,
                                                          "the executor was shut down with cancel",
                                                          attempts=attempt))
                    return None
                if attempt <= self.max_retries:
                    log.warning("hpcpar: local chunk %s ended %s (%s); rerunning (retry %d of %d)",
                                job.job_id, lost.state.name, lost.detail, attempt, self.max_retries)
                    continue
                job.future.set_exception(JobLostError(lost.state, job.job_id, lost.exit_code,
                                                      lost.detail, attempts=attempt))
                return None
            except BaseException as exc:  # noqa: BLE001 - e.g. no process, a result that does
                job.future.set_exception(exc)  # not unpickle (even by SystemExit): the chunk's error
                return worker
            result.attempts = attempt
            job.future.set_result(result)
            return worker

    def shutdown(self, wait: bool = True, cancel: bool = False, kill: bool = False) -> None:
        """No new chunks; ``cancel``: cancel the queued ones; ``kill``: also kill the workers,
        so running chunks end JobLostError CANCELLED; ``wait``: join the slot threads."""
        cancel = cancel or kill
        with self.lock:
            first = not self.closed
            self.closed = True
            if kill:
                self.cancelling = True
                for w in self.workers:
                    w.kill()
            threads = list(self.threads)
        if cancel:
            kept: list[_Job] = []
            while True:
                try:
                    job = self.queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None and job.reserved:
                    kept.append(job)              # RUNNING already: it runs, unless killed
                elif job is not None:
                    cancel_future(job.future)
            for job in kept:
                self.queue.put(job)
        if first or cancel:
            for _ in threads:
                self.queue.put(None)
        if wait:
            me = threading.current_thread()
            for t in threads:
                if t is not me:
                    t.join()


_POOLS: weakref.WeakSet[LocalPool] = weakref.WeakSet()


def _at_exit() -> None:
    """Before the interpreter joins its threads: kill the workers if the main script died of an
    exception (Ctrl-C outside a ``with`` block), else let queued chunks finish, as
    concurrent.futures does."""
    failed = getattr(sys, "last_type", None) is not None
    for pool in list(_POOLS):
        pool.shutdown(wait=not failed, cancel=failed, kill=failed)


try:
    _register_atexit = threading._register_atexit     # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - CPython has it since 3.9
    import atexit

    _register_atexit = atexit.register
_exit_hook_installed = False


class LocalBackend(Backend):
    """Worker processes on this machine. ``max_workers`` defaults to the CPUs this process may
    use divided by ``cpus_per_task``."""

    name = "local"
    template = "local.sh.j2"

    def __init__(self, resources, options):
        super().__init__(resources, options)
        cpus = max(1, resources.cpus_per_task or 1)
        self._max_workers = options.max_workers or max(1, len(os.sched_getaffinity(0)) // cpus)
        env = dict(os.environ)
        for var in THREAD_VARS:
            env.setdefault(var, str(cpus))
        self._pool = LocalPool(self._max_workers, env, resources.mem or 0, resources.walltime,
                               options.max_retries, options.keep_workers_s)
        # dropped without shutdown: finish what is queued, then let the workers go
        self._finalizer = weakref.finalize(self, self._pool.shutdown, False, False)
        self._runs = 0

    def slots(self) -> int:
        return self._max_workers

    def start(self, request: RunRequest) -> RunHandle:
        global _exit_hook_installed
        if not _exit_hook_installed:
            _exit_hook_installed = True
            _register_atexit(_at_exit)
        key = hashlib.sha1(request.fn_payload).hexdigest()
        self._runs += 1
        run_id = f"local-{os.getpid()}-{self._runs}"
        futures: list[Future] = []
        for i, chunk_bytes in enumerate(request.chunks):
            future = ChunkFuture()
            futures.append(future)
            n_outcomes = 1 if request.mode == "reduce" else request.chunk_sizes[i]
            self._pool.put(_Job(future, key, request.fn_payload, chunk_bytes, i, f"{run_id}_{i}",
                                n_outcomes))
        return RunHandle(run_id, futures)

    def stop_running(self) -> None:
        """Kill every worker now and cancel what is queued: the running chunks end with
        JobLostError CANCELLED (for a failing ``with`` block or Ctrl-C, not for a plain
        ``shutdown(cancel_futures=True)``, which lets running tasks finish)."""
        self._pool.shutdown(wait=False, cancel=True, kill=True)

    def owns_thread(self, thread: threading.Thread) -> bool:
        """True for the threads that resolve this backend's futures (run done callbacks)."""
        return thread in self._pool.threads

    def shutdown(self, wait: bool = True, cancel: bool = False) -> None:
        self._finalizer.detach()
        self._pool.shutdown(wait=wait, cancel=cancel)
