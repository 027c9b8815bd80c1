"""The inline backend: every chunk runs at once, in the driver's own thread, one task at a time.

For debugging, as submitit's ``DebugExecutor``: ``breakpoint()`` inside a task stops in the
terminal that runs the driver, a debugger's breakpoints in the task's file are hit, and a
task's exception keeps its frames (``pdb.pm()`` after the failing ``result()`` walks into the
task). Each ``submit`` and each ``map`` chunk runs before the call returns, so a ``map`` runs
whole before its first result is yielded.

The function and its arguments still go through the same pickling as on any other backend
(the task gets copies, and what would not pickle fails here too), and the same
:func:`hpcpar.worker.run_tasks` runs them. Nothing else of a cluster is rehearsed: ``mem``,
``walltime`` and ``cpus_per_task`` are not enforced, and a task that crashes the process or
calls ``os._exit`` ends the driver.
"""

from __future__ import annotations

import os
import pickle
import socket
import time
from concurrent.futures import Future

from ..rundir import ChunkResult
from .base import Backend, RunHandle, RunRequest


class InlineBackend(Backend):
    """Run every chunk in the calling thread, at once (see the module docstring)."""

    name = "inline"
    template = "local.sh.j2"
    #: what ``hpcpar backends`` says about it
    where = "in the driver, one task at a time, for debugging"

    def __init__(self, resources, options):
        super().__init__(resources, options)
        self._runs = 0

    def slots(self) -> int:
        return 1

    def start(self, request: RunRequest) -> RunHandle:
        from ..worker import run_tasks

        self._runs += 1
        payload = pickle.loads(request.fn_payload)
        futures = []
        for i, chunk_bytes in enumerate(request.chunks):
            future: Future = Future()
            future.set_running_or_notify_cancel()
            tasks = pickle.loads(chunk_bytes)
            result = ChunkResult(chunk=i, n_tasks=len(tasks), started=time.time(), attempts=1,
                                 host=socket.gethostname(), pid=os.getpid())
            future.set_result(run_tasks(payload, tasks, result))
            futures.append(future)
        return RunHandle(f"inline-{os.getpid()}-{self._runs}", futures)
