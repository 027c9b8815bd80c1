"""Job states, the scheduler-neutral vocabulary every backend maps its native states to."""

from __future__ import annotations

import enum


class JobState(enum.Enum):
    """The state of a job or array task.

    ``PENDING``, ``RUNNING`` and ``UNKNOWN`` are live; every other state is final.
    ``UNKNOWN`` is what a parser returns for a native state it has no entry for (it logs a
    warning and the watcher keeps polling); ``MISSING`` means the scheduler no longer reports
    the job at all.
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    UNKNOWN = "UNKNOWN"
    MISSING = "MISSING"

    @property
    def is_live(self) -> bool:
        """True while the job may still run (PENDING, RUNNING, UNKNOWN)."""
        return self in (JobState.PENDING, JobState.RUNNING, JobState.UNKNOWN)

    @property
    def is_final(self) -> bool:
        """True once the job has ended: every state but PENDING, RUNNING and UNKNOWN."""
        return not self.is_live
