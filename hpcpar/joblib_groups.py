"""joblib batches in, groups out: the dispatching half of :mod:`hpcpar.joblib`.

joblib hands its backend one batch at a time (``submit``) and expects a future per batch. Here
the batches of a call are buffered, cut into contiguous groups and each group goes out as one
``Executor.submit`` (one array task; submits made together are one job array)::

    add(batch) ──► buffer ── flush() (joblib collects results, or FLUSH_IDLE_S without a batch)
                                │  open_call() → (executor, wanted groups, prepare)
                                ▼
                     chunk_sizes(n, min(n, wanted)) groups ── Executor.submit(run_group, [...])
                                                                   │ group done
                                                                   ▼
                     each batch's future resolved in order, joblib's callback called

Locks: ``_lock`` guards the buffer and is never held while calling out (joblib's callbacks take
joblib's own lock, which joblib holds while it calls ``submit``); ``_flush_lock`` makes flushes
run one at a time and is never taken by :meth:`GroupDispatcher.add`.
"""

from __future__ import annotations

import functools
import pickle
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import Any

from .errors import TaskError
from .executor import Executor, chunk_sizes, outcome_value

#: seconds without a new batch after which the buffer is submitted even if joblib has not
#: started collecting results (a ``return_as="generator"`` call not yet iterated)
FLUSH_IDLE_S = 0.1


def run_group(batches: list) -> list[tuple]:
    """Runs in the worker: each joblib batch in turn, ``(ok, value, traceback)`` for each;
    stops at the first that raises (joblib abandons the call then)."""
    outcomes: list[tuple] = []
    for batch in batches:
        try:
            outcomes.append((True, batch(), None))
        except Exception as exc:  # noqa: BLE001 - sent back to the driver
            tb = traceback.format_exc()
            try:
                pickle.dumps(exc)
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                exc = TaskError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}", tb)
            outcomes.append((False, exc, tb))
            break
    return outcomes


class GroupDispatcher:
    """The buffer and the groups of one joblib backend.

    Parameters
    ----------
    open_call : callable
        Called at each flush: returns the executor, how many groups to aim for, and a function
        preparing a batch for sending (e.g. replacing large arguments by references).
    """

    def __init__(self, open_call: Callable[[], tuple[Executor, int, Callable[[Any], Any]]]):
        self._open_call = open_call
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._buffer: list[tuple[Any, Future, Any]] = []
        self._groups: list[Future] = []
        self._timer: threading.Timer | None = None
        self._last_add = 0.0
        self.aborted = False

    def reset(self) -> None:
        """A new joblib call begins."""
        with self._lock:
            self.aborted = False
            self._groups = []

    def add(self, batch: Any, callback: Any) -> Future:
        """Buffer one joblib batch; returns the future joblib waits on."""
        fut: Future = Future()
        with self._lock:
            self._buffer.append((batch, fut, callback))
            self._last_add = time.monotonic()
            if self._timer is None:
                self._arm(FLUSH_IDLE_S)
        return fut

    def _arm(self, delay: float) -> None:
        self._timer = threading.Timer(delay, self._on_timer)
        self._timer.daemon = True
        self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            idle = time.monotonic() - self._last_add
            if self._buffer and idle < FLUSH_IDLE_S:
                self._arm(FLUSH_IDLE_S - idle)
                return
        self.flush()

    def flush(self) -> None:
        """Submit the buffered batches as groups; failures go to the batches' futures."""
        with self._flush_lock:
            with self._lock:
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                pending, self._buffer = self._buffer, []
                aborted = self.aborted
            if not pending:
                return
            if aborted:
                _settle_all(pending, CancelledError())
                return
            try:
                ex, wanted, prepare = self._open_call()
            except Exception as exc:  # noqa: BLE001 - reported through every batch's future
                _settle_all(pending, exc)
                return
            start = 0
            for size in chunk_sizes(len(pending), min(len(pending), max(1, wanted))):
                part, start = pending[start:start + size], start + size
                try:
                    group = ex.submit(run_group, [prepare(batch) for batch, _, _ in part])
                except Exception as exc:  # noqa: BLE001 - e.g. an argument that does not pickle
                    _settle_all(part, exc)
                    continue
                with self._lock:
                    self._groups.append(group)
                group.add_done_callback(functools.partial(_resolve_group, part))

    def cancel(self) -> None:
        """Cancel every buffered batch and every group not finished (their array tasks too)."""
        with self._lock:
            self.aborted = True
            pending, self._buffer = self._buffer, []
            groups, self._groups = self._groups, []
        for _, fut, _ in pending:
            fut.cancel()
        for group in groups:
            group.cancel()


def _settle_all(part: list, exc: BaseException) -> None:
    for _, fut, callback in part:
        _settle(fut, callback, exc)


def _settle(fut: Future, callback: Any, exc: BaseException) -> None:
    if fut.set_running_or_notify_cancel():
        fut.set_exception(exc)
    if callback is not None:
        callback(fut)


def _resolve_group(part: list, group: Future) -> None:
    """A group finished: resolve each of its joblib batches and tell joblib."""
    if group.cancelled():
        failure: BaseException | None = CancelledError()
    else:
        failure = group.exception()
    outcomes = [] if failure is not None else group.result()
    for i, (_, fut, callback) in enumerate(part):
        if failure is not None:
            _settle(fut, callback, failure)
        elif i >= len(outcomes):
            _settle(fut, callback, CancelledError("not run: an earlier batch of its group failed"))
        elif fut.set_running_or_notify_cancel():
            try:
                fut.set_result(outcome_value(outcomes[i]))
            except Exception as exc:  # noqa: BLE001 - the task's own exception
                fut.set_exception(exc)
            if callback is not None:
                callback(fut)
