"""The local backend: chunks run in a process pool on this machine, in memory.

No run folder and no files: the fast path for debugging and small work. The function payload
is unpickled once per worker process (cached by its SHA-1), not once per chunk. A worker that
dies (segfault, out-of-memory kill) breaks the pool; the chunks it took are rerun on a fresh
pool up to ``max_retries`` times, then fail with :class:`~hpcpar.errors.JobLostError`.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ..errors import JobLostError
from ..rundir import ChunkResult
from ..states import JobState
from .base import Backend, RunHandle, RunRequest, cancel_future

_FN_CACHE: dict[str, dict] = {}


def _fresh_random_state() -> None:
    """Pool initializer: give each forked worker its own numpy global random stream, as each
    array task on a cluster has (forked children otherwise all continue the parent's stream:
    40 draws gave 20 distinct values on 2 workers). CPython reseeds :mod:`random` at fork
    itself; a numpy imported later in the worker seeds itself from the OS."""
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()


def _run_chunk(key: str, fn_payload: bytes, chunk_bytes: bytes, chunk: int) -> ChunkResult:
    """Runs in a pool process."""
    import socket

    from ..worker import run_tasks

    payload = _FN_CACHE.get(key)
    if payload is None:
        if len(_FN_CACHE) > 8:
            _FN_CACHE.clear()
        payload = _FN_CACHE[key] = pickle.loads(fn_payload)
    tasks = pickle.loads(chunk_bytes)
    result = ChunkResult(chunk=chunk, n_tasks=len(tasks), started=time.time(), attempts=1,
                         host=socket.gethostname(), pid=os.getpid())
    return run_tasks(payload, tasks, result)


class LocalBackend(Backend):
    """Process pool on this machine. ``max_workers`` defaults to the CPUs this process may use."""

    name = "local"
    template = "local.sh.j2"

    def __init__(self, resources, options):
        super().__init__(resources, options)
        self._max_workers = options.max_workers or len(os.sched_getaffinity(0))
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._runs = 0

    def slots(self) -> int:
        return self._max_workers

    def _get_pool(self, broken: ProcessPoolExecutor | None = None) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None or self._pool is broken:
                if broken is not None:
                    # Not here: this runs in the broken pool's done callbacks, which Python
                    # 3.12+ calls while holding the pool's shutdown lock, which shutdown()
                    # takes too (a deadlock). A thread reaps it once the lock is free.
                    threading.Thread(target=broken.shutdown, kwargs={"cancel_futures": True},
                                     name="hpcpar-reap-broken-pool", daemon=True).start()
                # fork, not spawn/forkserver: those re-import __main__ in every worker, which
                # re-runs a user's script that lacks a main guard (and fails for stdin or a
                # notebook). Functions travel by value through cloudpickle, so nothing from
                # __main__ is needed. The pool forks once, when first used, and is reused.
                ctx = multiprocessing.get_context("fork")
                self._pool = ProcessPoolExecutor(self._max_workers, mp_context=ctx,
                                                 initializer=_fresh_random_state)
            return self._pool

    def start(self, request: RunRequest) -> RunHandle:
        key = hashlib.sha1(request.fn_payload).hexdigest()
        self._runs += 1
        futures = []
        for i, chunk_bytes in enumerate(request.chunks):
            outer: Future = Future()
            current: list[Future] = []           # the pool future of the latest attempt
            outer.add_done_callback(lambda f, cur=current: f.cancelled() and cur and cur[-1].cancel())  # stop the pool's copy
            self._launch(outer, current, key, request.fn_payload, chunk_bytes, i, attempt=1)
            futures.append(outer)
        return RunHandle(f"local-{os.getpid()}-{self._runs}", futures)

    def _launch(self, outer: Future, current: list, key, fn_payload, chunk_bytes, i, attempt) -> None:
        pool = self._get_pool()
        try:
            inner = pool.submit(_run_chunk, key, fn_payload, chunk_bytes, i)
        except BrokenProcessPool:
            pool = self._get_pool(broken=pool)
            inner = pool.submit(_run_chunk, key, fn_payload, chunk_bytes, i)
        except RuntimeError as exc:            # pool shut down
            if outer.set_running_or_notify_cancel():
                outer.set_exception(exc)
            return

        def done(f: Future) -> None:
            if outer.done():
                return
            if f.cancelled():
                cancel_future(outer)
                return
            exc = f.exception()
            if isinstance(exc, BrokenProcessPool):
                if attempt <= self.options.max_retries:
                    self._get_pool(broken=pool)
                    self._launch(outer, current, key, fn_payload, chunk_bytes, i, attempt + 1)
                    return
                exc = JobLostError(JobState.FAILED, f"local chunk {i}", None,
                                   f"the worker process died ({exc})", attempts=attempt)
            if not outer.set_running_or_notify_cancel():
                return
            if exc is not None:
                outer.set_exception(exc)
            else:
                outer.set_result(f.result())

        current.append(inner)
        inner.add_done_callback(done)

    def shutdown(self, wait: bool = True, cancel: bool = False) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel)
