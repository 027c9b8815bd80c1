"""The retry policy as a table: every job state x results file x walltime warning x retries
left x cancel request x grace period elapsed x resubmit_cancelled x claim (pull runs: held by a
worker, waiting in the pool, or None for a run whose array tasks are bound to chunks), each case
checked against the rule table below.

The rule table is the specification (first matching row wins; ``*`` matches anything). It is
written independently of :func:`hpcpar.policy.decide`'s code, as rows a reader can audit.
"""

from __future__ import annotations

import itertools

import pytest

from hpcpar.policy import Action, ChunkFacts, ResultFacts, ResultKind, decide
from hpcpar.states import JobState

A, K, S = Action, ResultKind, JobState
LIVE = {S.PENDING, S.RUNNING, S.UNKNOWN}
ANY = "*"

#: (job states, result kinds, warned, retries left, cancel requested, grace elapsed,
#:  resubmit_cancelled, claimed) -> action; in a pull run the state is the claim owner's, or the
#:  pool's (live while any worker is) for a chunk not claimed
RULES = [
    (ANY,   {K.COMPLETE}, ANY,   ANY,   ANY,   ANY,   ANY,   ANY,   A.RESOLVE),
    (ANY,   ANY,          ANY,   ANY,   True,  ANY,   ANY,   ANY,   A.CANCELLED),   # never resubmitted
    (LIVE,  ANY,          ANY,   ANY,   ANY,   ANY,   ANY,   ANY,   A.WAIT),
    (ANY,   ANY,          ANY,   ANY,   ANY,   False, ANY,   ANY,   A.WAIT),
    ({S.CANCELLED}, ANY,  ANY,   ANY,   ANY,   ANY,   False, ANY,   A.CANCELLED),   # an external cancel
    (ANY,   ANY,          ANY,   True,  ANY,   ANY,   ANY,   False, A.REFILL),      # no worker left
    (ANY,   ANY,          ANY,   False, ANY,   ANY,   ANY,   False, A.LOST),        # none ever claims
    (ANY,   {K.PARTIAL},  True,  ANY,   ANY,   ANY,   ANY,   ANY,   A.REQUEUE),     # not a retry
    (ANY,   ANY,          ANY,   True,  ANY,   ANY,   ANY,   ANY,   A.RETRY),
    (ANY,   ANY,          ANY,   False, ANY,   ANY,   ANY,   ANY,   A.LOST),
]

MAX_RETRIES = 2
GRACE_S = 3.0
NOW = 1000.0


def expected(state, kind, warned, retries_left, cancel, grace_elapsed, resubmit_cancelled,
             claimed) -> Action:
    case = (state, kind, warned, retries_left, cancel, grace_elapsed, resubmit_cancelled, claimed)
    for *pattern, action in RULES:
        if all(p == ANY or (v in p if isinstance(p, set) else v == p) for p, v in zip(pattern, case, strict=False)):
            return action
    raise AssertionError(f"no rule for {case}")


def facts(state, kind, warned, retries_left, grace_elapsed):
    final_since = None if state in LIVE else (NOW - GRACE_S - 1 if grace_elapsed else NOW - 1)
    chunk = ChunkFacts(attempts=2, retries=MAX_RETRIES - 1 if retries_left else MAX_RETRIES,
                       done_at_submit=3, final_since=final_since)
    # a partial result written by the latest attempt, past the checkpoint it was submitted from
    result = ResultFacts(kind, done={K.COMPLETE: 10, K.PARTIAL: 5}.get(kind, 0),
                         attempts=2 if kind in (K.PARTIAL, K.COMPLETE) else 0,
                         warned=warned and kind in (K.PARTIAL, K.COMPLETE))
    return chunk, result


CASES = list(itertools.product(list(JobState), list(ResultKind), (False, True), (False, True),
                               (False, True), (False, True), (False, True), (None, False, True)))


def test_the_table_has_every_case():
    assert len(CASES) == 11 * 4 * 2 * 2 * 2 * 2 * 2 * 3 == 4224


@pytest.mark.parametrize(
    "state,kind,warned,retries_left,cancel,grace_elapsed,resubmit_cancelled,claimed", CASES,
    ids=lambda v: getattr(v, "name", str(v)))
def test_decide(state, kind, warned, retries_left, cancel, grace_elapsed, resubmit_cancelled,
                claimed):
    chunk, result = facts(state, kind, warned, retries_left, grace_elapsed)
    got = decide(chunk, state, result, NOW, max_retries=MAX_RETRIES, grace_s=GRACE_S,
                 cancel_requested=cancel, resubmit_cancelled=resubmit_cancelled, claimed=claimed)
    assert got is expected(state, kind, warned, retries_left, cancel, grace_elapsed,
                           resubmit_cancelled, claimed)


def test_a_cancelled_task_is_never_resubmitted():
    """The bug of issue 9: `hpcpar cancel` made the tasks end CANCELLED, and the watcher retried."""
    chunk = ChunkFacts(attempts=1, retries=0, final_since=NOW - 60)
    for state in JobState:
        for kind in (K.ABSENT, K.PARTIAL, K.CORRUPT):
            got = decide(chunk, state, ResultFacts(kind, done=1, attempts=1, warned=True), NOW,
                         max_retries=5, grace_s=GRACE_S, cancel_requested=True)
            assert got is A.CANCELLED


def test_requeue_needs_progress_by_the_latest_attempt():
    final = ChunkFacts(attempts=2, retries=0, done_at_submit=5, final_since=NOW - 60)
    kw = {"max_retries": 1, "grace_s": GRACE_S}
    no_progress = ResultFacts(K.PARTIAL, done=5, attempts=2, warned=True)
    stale = ResultFacts(K.PARTIAL, done=7, attempts=1, warned=True)     # written by attempt 1
    progress = ResultFacts(K.PARTIAL, done=7, attempts=2, warned=True)
    assert decide(final, S.TIMEOUT, no_progress, NOW, **kw) is A.RETRY
    assert decide(final, S.TIMEOUT, stale, NOW, **kw) is A.RETRY
    assert decide(final, S.TIMEOUT, progress, NOW, **kw) is A.REQUEUE
    assert decide(final, S.TIMEOUT, no_progress, NOW, max_retries=0, grace_s=GRACE_S) is A.LOST


def test_an_externally_cancelled_task_is_a_cancel_unless_resubmit_cancelled():
    """`scancel JOB_IDX` by hand (no cancel request in the run folder) is a decision (issue 13),
    retried only when the user asks (``attach(run, resubmit_cancelled=True)``)."""
    chunk = ChunkFacts(attempts=1, retries=0, final_since=NOW - 60)
    assert decide(chunk, S.CANCELLED, ResultFacts(), NOW, max_retries=2, grace_s=GRACE_S) is A.CANCELLED
    assert decide(chunk, S.CANCELLED, ResultFacts(), NOW, max_retries=2, grace_s=GRACE_S,
                  resubmit_cancelled=True) is A.RETRY


def test_a_result_complete_is_resolved_even_if_the_job_failed_or_was_cancelled():
    chunk = ChunkFacts(final_since=None)
    done = ResultFacts(K.COMPLETE, done=4, attempts=1)
    assert decide(chunk, S.FAILED, done, NOW, max_retries=0, grace_s=GRACE_S) is A.RESOLVE
    assert decide(chunk, S.RUNNING, done, NOW, max_retries=0, grace_s=GRACE_S,
                  cancel_requested=True) is A.RESOLVE


# -- pending for a reason that cannot resolve by itself (blocked_grace_s) ------------------------
@pytest.mark.parametrize("state,kind,cancel,blocked_for,expect", [
    (S.PENDING, K.ABSENT, False, 61.0, A.BLOCKED),
    (S.PENDING, K.ABSENT, False, 59.0, A.WAIT),          # within the grace
    (S.PENDING, K.ABSENT, False, None, A.WAIT),          # not blocked
    (S.RUNNING, K.ABSENT, False, 61.0, A.WAIT),          # started after all
    (S.PENDING, K.COMPLETE, False, 61.0, A.RESOLVE),     # results win
    (S.PENDING, K.ABSENT, True, 61.0, A.CANCELLED),      # a cancel request wins
])
def test_blocked_rows(state, kind, cancel, blocked_for, expect):
    chunk = ChunkFacts(blocked_since=None if blocked_for is None else NOW - blocked_for)
    got = decide(chunk, state, ResultFacts(kind), NOW, max_retries=MAX_RETRIES, grace_s=GRACE_S,
                 cancel_requested=cancel, blocked_grace_s=60.0)
    assert got is expect


def test_blocked_never_without_a_grace():
    chunk = ChunkFacts(blocked_since=0.0)
    assert decide(chunk, S.PENDING, ResultFacts(), NOW, max_retries=0, grace_s=0) is A.WAIT
