"""Chunk futures: the :class:`concurrent.futures.Future` every backend hands the executor for
one chunk, and the one way to cancel such a future (shared by backends, the run state and the
executor, which is why it sits below all of them)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future


def cancel_future(f: Future) -> bool:
    """Cancel ``f`` if it has not started or finished, and notify its waiters (as an executor
    must, or ``concurrent.futures.wait`` never sees it done). Returns True if it is now
    cancelled; False for a running or finished future (``Future.cancel``'s contract)."""
    if f.cancel():
        if f._state == "CANCELLED":          # not yet notified
            f.set_running_or_notify_cancel()
        return True
    return False


def mark_running(f: Future) -> bool:
    """Move a PENDING future to RUNNING (its chunk started); False if it was cancelled (then
    its waiters are notified). A future already RUNNING or finished is left as it is."""
    with f._condition:                        # re-entrant: nothing changes it in between
        if f._state in ("PENDING", "CANCELLED"):
            return f.set_running_or_notify_cancel()
        return f._state in ("RUNNING", "FINISHED")


class ChunkFuture(Future):
    """A chunk's future that tells listeners when its chunk starts, so the futures
    ``Executor.submit`` returns are RUNNING while their task runs (as concurrent.futures'
    are). A listener returning False (its own future was cancelled first) cancels the chunk."""

    def __init__(self) -> None:
        super().__init__()
        self._running_callbacks: list[Callable[[], object]] = []

    def add_running_callback(self, fn: Callable[[], object]) -> None:
        """Call ``fn()`` when the chunk starts, or now if it has started already."""
        with self._condition:
            if self._state == "PENDING":
                self._running_callbacks.append(fn)
                return
            started = self._state in ("RUNNING", "FINISHED")
        if started:
            fn()

    def set_running_or_notify_cancel(self) -> bool:
        with self._condition:              # re-entrant: no cancel() between the two steps
            if self._state == "CANCELLED_AND_NOTIFIED":    # by cancel_future() already
                return False
            if not self.cancelled():
                for fn in self._running_callbacks:
                    if not fn():
                        self.cancel()
            self._running_callbacks = []
            return super().set_running_or_notify_cancel()
