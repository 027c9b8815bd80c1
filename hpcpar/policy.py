"""The retry policy, as one pure function: what to do with a chunk after one look at it.

The watcher gathers the observation (one status call, one listing of ``results/``, the run
folder's cancel request) and acts on the answer; :func:`decide` does no I/O and reads no
clock, so every "why was this chunk resubmitted?" is one row of ``tests/test_policy.py``.

Rules, first match wins::

    results complete                              -> RESOLVE   (whatever the scheduler says)
    cancel requested (`hpcpar cancel`, shutdown,
      signals, a recorded cancel of this task)    -> CANCELLED (never resubmitted)
    pending for a blocking reason >= blocked_grace_s -> BLOCKED (cancel; PendingBlockedError)
    job live (PENDING, RUNNING, UNKNOWN)          -> WAIT
    final for less than grace_s                   -> WAIT      (results may be in flight on NFS)
    CANCELLED by the scheduler (an external
      cancel), unless resubmit_cancelled          -> CANCELLED (recorded; not a loss)
    pull run, chunk in the pool, no live worker   -> REFILL    (submit workers; a retry only
                                                                if the last workers claimed nothing)
    ... and no retries left                       -> LOST      (workers die before claiming)
    partial, warned of walltime, made progress    -> REQUEUE   (resume; not a retry)
    retries left                                  -> RETRY     (resubmit that index only)
    otherwise                                     -> LOST      (JobLostError)

In a pull run (workers claim chunks, :mod:`hpcpar.claims`) ``status`` is the state of the
chunk's owner (the worker holding its claim), or, for a chunk waiting in the pool, that of
the run's workers (live while any is); REQUEUE and RETRY then void the owner's claim, so the
chunk goes back to the pool, and workers are submitted only if no live one remains. A chunk
whose owner was cancelled outside hpcpar is a recorded cancel like a push run's task (the
watcher refuses its claim, :func:`hpcpar.claims.refuse`, so no worker takes it later); a pool
chunk is CANCELLED when no live worker remains and the run's latest workers were all
cancelled outside hpcpar (``scancel`` of the whole worker array), so no new worker is submitted.

A corrupt results file counts as absent (the watcher moves it aside, so the chunk reruns).
"""

from __future__ import annotations

import dataclasses
import enum

from .states import JobState


class Action(enum.Enum):
    """What the watcher does with a chunk."""

    RESOLVE = "resolve"        #: set the future's result from the complete results file
    WAIT = "wait"              #: nothing yet; look again next poll
    REQUEUE = "requeue"        #: resubmit to resume a checkpointed chunk (not counted as a retry)
    RETRY = "retry"            #: resubmit a chunk lost without results (counted)
    LOST = "lost"              #: fail the future with JobLostError
    CANCELLED = "cancelled"    #: cancel the array task (if live) and the future
    REFILL = "refill"          #: pull: the chunk waits in the pool and no worker is left
    BLOCKED = "blocked"        #: cancel the array task; fail the future with PendingBlockedError


class ResultKind(enum.Enum):
    """What the chunk's results file holds."""

    ABSENT = "absent"
    PARTIAL = "partial"        #: fewer tasks done than the chunk has (a checkpoint)
    COMPLETE = "complete"
    CORRUPT = "corrupt"        #: truncated or altered (fails its length or SHA-256 check)


@dataclasses.dataclass(frozen=True)
class ChunkFacts:
    """The watcher's memory of one chunk.

    Attributes
    ----------
    attempts : int
        Submissions of this chunk so far (initial, requeues and retries).
    retries : int
        Of which were retries after a loss.
    done_at_submit : int
        Tasks finished when the chunk was last submitted (a requeue needs progress beyond it).
    final_since : float or None
        Monotonic seconds at which its array task was first seen final; None while live.
    blocked_since : float or None
        Monotonic seconds since which it has been seen pending for a reason that cannot
        resolve by itself (:attr:`hpcpar.backends.spec.TaskStatus.blocked`); None otherwise.
    """

    attempts: int = 1
    retries: int = 0
    done_at_submit: int = 0
    final_since: float | None = None
    blocked_since: float | None = None


@dataclasses.dataclass(frozen=True)
class ResultFacts:
    """What the chunk's results file says (``kind`` ABSENT: the other fields are unused).

    Attributes
    ----------
    kind : ResultKind
    done : int
        Tasks finished.
    attempts : int
        Attempts that wrote to it (the worker counts them).
    warned : bool
        The last attempt got the scheduler's walltime warning.
    """

    kind: ResultKind = ResultKind.ABSENT
    done: int = 0
    attempts: int = 0
    warned: bool = False

    @classmethod
    def of(cls, result) -> ResultFacts:
        """From a :class:`~hpcpar.rundir.ChunkResult` (or None: absent)."""
        if result is None:
            return cls()
        kind = ResultKind.COMPLETE if result.complete else ResultKind.PARTIAL
        return cls(kind, result.done, result.attempts, result.warned)


ABSENT = ResultFacts()


def decide(chunk: ChunkFacts, status: JobState, result: ResultFacts, now: float, *,
           max_retries: int, grace_s: float, cancel_requested: bool = False,
           claimed: bool | None = None, resubmit_cancelled: bool = False,
           blocked_grace_s: float = float("inf")) -> Action:
    """What to do with one chunk, from what the watcher saw (pure; see the module docstring).

    Parameters
    ----------
    chunk : ChunkFacts
    status : JobState
        Its array task's state (MISSING when the scheduler no longer reports it).
    result : ResultFacts
    now : float
        Monotonic seconds, the same clock as ``chunk.final_since``.
    max_retries : int
        Resubmissions allowed after a loss (the ``max_retries`` option).
    grace_s : float
        Seconds a final job may lack a visible complete result before it counts as lost.
    cancel_requested : bool
        The run folder holds a cancel request (``hpcpar cancel``), the owner cancelled, or
        the chunk (its task, or in a pull run the chunk itself) has a recorded cancel decision.
    claimed : bool or None
        Pull runs: whether a worker holds the chunk's claim (then ``status`` is that worker's),
        or it waits in the pool (``status`` is live while any of the run's workers is, and
        CANCELLED once the run's latest workers all ended CANCELLED).
        None for a run whose array tasks are bound to chunks.
    resubmit_cancelled : bool
        Treat an array task the scheduler reports CANCELLED (someone ran ``scancel``,
        ``qdel``, ``bkill``) as lost, to be retried, instead of as a cancel decision
        (``hpcpar.attach(run, resubmit_cancelled=True)``); in a pull run the chunk then goes
        back to the pool (REFILL, or REQUEUE/RETRY of a claimed one).
    blocked_grace_s : float
        Seconds a task may pend for a blocking reason (the ``blocked_grace_s`` option;
        default: forever).

    Returns
    -------
    Action
    """
    if result.kind is ResultKind.COMPLETE:
        return Action.RESOLVE
    if cancel_requested:
        return Action.CANCELLED
    if (status is JobState.PENDING and chunk.blocked_since is not None
            and now - chunk.blocked_since >= blocked_grace_s):
        return Action.BLOCKED
    if status.is_live:
        return Action.WAIT
    if chunk.final_since is None or now - chunk.final_since < grace_s:
        return Action.WAIT
    if status is JobState.CANCELLED and not resubmit_cancelled:
        return Action.CANCELLED
    if claimed is False:
        return Action.REFILL if chunk.retries < max_retries else Action.LOST
    if (result.kind is ResultKind.PARTIAL and result.warned and result.attempts >= chunk.attempts
            and result.done > chunk.done_at_submit):
        return Action.REQUEUE
    if chunk.retries < max_retries:
        return Action.RETRY
    return Action.LOST


__all__ = ["ABSENT", "Action", "ChunkFacts", "ResultFacts", "ResultKind", "decide"]
