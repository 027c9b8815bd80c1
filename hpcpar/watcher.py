"""The watcher: one thread per batch executor that polls every live job with one status call.

Every ``RESULTS_CHECK_S`` (0.05 s) it stats each live run's ``results/`` folder and, when its
mtime changed, lists it and resolves the chunks whose complete results landed: a result is
seen within about 0.05 s, with no scheduler call. Every interval (1 s, backing off x1.5 to
30 s while nothing changes)::

    port.poll(job ids of every live chunk)      one status call for every live array job
    one listing of each live run's results/, one look for its cancel request
    hpcpar.policy.decide(chunk, status, result, now)  ->  resolve | wait | requeue | retry
                                                          | lost | cancelled
    port.final_states(...)                      final states refined by accounting (sacct)
    port.resubmit(run, indices, reason)         one array per run and reason
    port.cancel(task ids)                       one command for all of a poll's cancellations

The policy is :func:`hpcpar.policy.decide` (pure, tested as a table); run and chunk state,
and run.json, belong to :class:`hpcpar.runstate.Run`. The watcher talks to the engine only
through :class:`WatchPort` and imports nothing from :mod:`hpcpar.backends`.

Ownership (as CPython's ``concurrent.futures.process._ExecutorManagerThread``): the watcher
holds its owner (the backend, which is also the port) through a weak reference between
polls. Each live run keeps a strong reference to its port until the run is finished, so
futures already handed out still resolve; once the owner is gone and no run is live, the
thread ends.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from concurrent.futures import InvalidStateError
from typing import Any, NamedTuple, Protocol

from . import claims
from ._futures import mark_running
from .errors import HpcparError, JobLostError, PendingBlockedError, RunFolderError
from .policy import ABSENT, Action, ChunkFacts, ResultFacts, ResultKind, decide
from .rundir import ChunkResult, CorruptFileError
from .runstate import ChunkState, Run
from .states import JobState

log = logging.getLogger("hpcpar")


class _Status(NamedTuple):
    """What the watcher records for an array task the scheduler does not report."""

    state: JobState
    native: str = ""
    exit_code: int | None = None
    reason: str = ""
    blocked: bool = False
    task_id: str = ""          #: pull runs: the worker whose state a pool chunk shows


MISSING = _Status(JobState.MISSING)
IN_POOL = _Status(JobState.PENDING, "waiting in the pool")
CLAIMING = _Status(JobState.RUNNING, "claimed")
#: seconds without a heartbeat after which a claim's owner counts as lost, even while the
#: scheduler still reports it live (a node lost before the scheduler notices)
HEARTBEAT_LOST_S = 6 * claims.HEARTBEAT_S


class WatchPort(Protocol):
    """What the watcher needs from the engine, and nothing more.

    Attributes
    ----------
    name : str
        Backend name, for messages.
    options : hpcpar.config.Options
        Read: ``poll_interval_s``, ``max_poll_interval_s``, ``max_retries`` (seconds, count).
    lost_grace_s : float
        Seconds a final array task may lack a complete results file before it counts as lost.
    """

    @property
    def name(self) -> str: ...

    @property
    def options(self) -> Any: ...

    @property
    def lost_grace_s(self) -> float: ...

    def poll(self, job_ids: Sequence[str]) -> dict:
        """Array task id -> status (``.state``, ``.native``, ``.exit_code``) for every task of
        these jobs, from one status call; a task it does not list is MISSING. Raises
        StatusError if the call fails."""

    def final_states(self, task_ids: Sequence[str]) -> dict:
        """Final states from accounting, one call ({} when the scheduler has none)."""

    def resubmit(self, run: Run, indices: list[int], reason: str) -> None:
        """Submit chunks ``indices`` of ``run`` again, as one array; records it in ``run``."""

    def cancel(self, ids: Sequence[str]) -> None:
        """Cancel these array tasks or jobs, one command; failures are logged."""

    def log_stem(self, task_id: str) -> str:
        """File name (without .out/.err) of an array task's logs."""


class Watcher(threading.Thread):
    """One thread per executor: batched polling, result collection, retries."""

    #: seconds of failing status calls after which the unfinished futures fail
    FAIL_AFTER_S = 600.0
    #: seconds between looks at the live runs' results folders (between status polls)
    RESULTS_CHECK_S = 0.05

    def __init__(self, owner: WatchPort):
        super().__init__(name=f"hpcpar-watcher-{owner.name}", daemon=True)
        self.name_ = owner.name
        self.options = owner.options
        self.grace_s = owner.lost_grace_s
        self.cond = threading.Condition()
        self._owner = weakref.ref(owner, self._owner_gone)
        self.runs: list[tuple[Run, WatchPort]] = []     # each live run keeps its port alive
        self.to_cancel: list[tuple[Run, ChunkState]] = []
        self.stopping = False
        self.status_calls = 0
        self.failures = 0
        self.failing_since: float | None = None
        self._stamps: dict[Run, int] = {}      # run -> mtime (ns) of its results folder

    # -- the owner's side ----------------------------------------------------------------------
    def add(self, run: Run, port: WatchPort | None = None) -> None:
        port = port or self._owner()
        if port is None:
            raise RuntimeError("the watcher's owner is gone")
        with self.cond:
            self.runs.append((run, port))
            self.cond.notify()

    def cancel_later(self, run: Run, c: ChunkState) -> None:
        with self.cond:
            self.to_cancel.append((run, c))
            self.cond.notify()

    def _owner_gone(self, _ref: object) -> None:
        with self.cond:
            self.cond.notify()

    def live_runs(self) -> list[Run]:
        with self.cond:
            return [r for r, _ in self.runs if r.unfinished]

    def stop_when_idle(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()

    # -- the thread ----------------------------------------------------------------------------
    def run(self) -> None:
        # The driver's SIGINT and SIGTERM must reach the main thread, where Python runs their
        # handlers (hpcpar._signals cancels the jobs, then dies). A process-directed signal the
        # kernel hands to this thread instead only trips a flag, and the handler waits until the
        # main thread next runs Python code: after a user's time.sleep(300), 300 s later.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        interval = self.options.poll_interval_s
        next_poll = time.monotonic() + interval
        while True:
            with self.cond:
                if not self.to_cancel and not self._may_end():
                    # a look at the live runs' results folders every RESULTS_CHECK_S between
                    # status polls (none while no run is live)
                    wait_s = next_poll - time.monotonic()
                    if any(r.unfinished for r, _ in self.runs):
                        wait_s = min(self.RESULTS_CHECK_S, wait_s)
                    self.cond.wait(timeout=max(0.0, wait_s))
                cancels, self.to_cancel = self.to_cancel, []
                self.runs = [(r, p) for r, p in self.runs if r.unfinished]
                pairs = list(self.runs)
                if self._may_end() and not cancels:
                    return
            port = pairs[0][1] if pairs else self._owner()
            if port is None:
                continue
            runs = [r for r, _ in pairs]
            full = bool(cancels) or time.monotonic() >= next_poll
            try:
                if cancels:
                    self._cancel(port, cancels)
                if full:
                    changed = self._poll(port, runs) if runs else False
                    interval = (self.options.poll_interval_s if changed
                                else min(interval * 1.5, self.options.max_poll_interval_s))
                    next_poll = time.monotonic() + interval
                elif runs:
                    self._collect(runs)
                self._release_workers(port, runs)
            except Exception as exc:  # noqa: BLE001 - keep watching; fail futures if it persists
                next_poll = time.monotonic() + interval
                self._on_error(runs, exc)
            del port, pairs

    def _may_end(self) -> bool:
        """Stopping (or the owner is gone) and no run is live: checked before each wait, so a
        stop requested while a poll ran ends the thread at once (under ``cond``)."""
        return ((self.stopping or self._owner() is None)
                and not any(r.unfinished for r, _ in self.runs))

    def _release_workers(self, port: WatchPort, runs: list[Run]) -> None:
        """A pull run whose chunks are all finished: cancel its workers still PENDING (they
        would start only to find nothing to do); running ones exit by themselves."""
        for run in runs:
            if not run.pull or run.unfinished or run.meta.get("pool"):
                # warm workers (a pool): a pending worker is kept; once started it serves the
                # executor's next run, or leaves at the idle limit. Cancelling it here raced
                # with the next run adopting it as it started (the adopted worker was killed
                # mid-chunk); the executor cancels the ones still pending at shutdown.
                continue
            idle = [t for t in run.live_workers()
                    if run.worker_status.get(t) is None
                    or run.worker_status[t].state is JobState.PENDING]
            if idle:
                port.cancel(idle)
            for t in idle:
                run.worker_status[t] = _Status(JobState.CANCELLED, "released: no chunk left")

    def _collect(self, runs: list[Run]) -> None:
        """Between status polls: resolve chunks whose complete results have landed. One
        ``stat`` of each run's ``results/`` (its mtime changes when a result is renamed in);
        a listing only when it changed. No scheduler call."""
        for run in runs:
            try:
                stamp = os.stat(run.rd.results_dir).st_mtime_ns
                if self._stamps.get(run) == stamp:
                    continue
                self._stamps[run] = stamp
                mtimes = run.rd.result_mtimes()
            except OSError:
                continue                      # the full poll reports it
            for idx, c in list(run.unfinished.items()):
                mtime = mtimes.get(idx)
                if mtime is None or mtime == c.result_mtime or c.future.cancelled():
                    continue
                c.result_mtime = mtime
                result, facts = self._read(run, idx)
                if result is not None:
                    c.partial = result
                if facts.kind is ResultKind.COMPLETE:
                    self._finish(run, c, result=result)
        for run in [r for r in self._stamps if not r.unfinished]:
            del self._stamps[run]

    def _on_error(self, runs: list[Run], exc: BaseException) -> None:
        """A poll failed (e.g. slurmctld unreachable). Keep trying; fail the futures only once
        polls have failed for ``FAIL_AFTER_S`` seconds in a row (the jobs themselves go on, and
        ``hpcpar.attach`` can collect them later)."""
        self.failures += 1
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        log.warning("%s watcher: %s (failure %d in a row)", self.name_, exc, self.failures)
        if now - self.failing_since >= self.FAIL_AFTER_S:
            for run in runs:
                for c in list(run.unfinished.values()):
                    self._finish(run, c, error=exc)

    def _cancel(self, port: WatchPort, pairs) -> None:
        """Futures cancelled by the user: cancel their array tasks, one command, and record
        the decision (a later attach does not resubmit them)."""
        ids = []
        for run, c in pairs:
            with run.lock:
                if run.unfinished.pop(c.index, None) is None:
                    continue
            if run.pull:            # its worker goes on to other chunks; none takes this one
                self._refuse(run, c)
            else:
                ids.append(c.task_id)
            self._record(run, c, port, cancelled=True)
        port.cancel([i for i in ids if i])
        self._settle(run for run, _ in pairs)

    def _record(self, run: Run, c: ChunkState, port: WatchPort, **fields: Any) -> None:
        """Record chunk ``c``'s latest task's outcome in the run folder (logged if it fails)."""
        if c.task_id:
            stem = run.rd.logs_dir / port.log_stem(c.task_id)
            fields.setdefault("logs", [f"{stem}.out", f"{stem}.err"])
        try:
            run.record_outcome(c, **fields)
        except OSError as exc:
            log.warning("cannot record the outcome of %s in %s: %s", c.task_id, run.rd.path, exc)

    def _refuse(self, run: Run, c: ChunkState) -> None:
        """A pull run's chunk ``c`` is cancelled (a recorded decision): take it out of the pool
        for good (:func:`hpcpar.claims.refuse`), so no worker claims it, now or after attach."""
        try:
            if not claims.refuse(run.rd.path, c.index):
                log.warning("%s: workers kept claiming cancelled chunk %d of %s", self.name_,
                            c.index, run.rd.run_id)
        except OSError as exc:
            log.warning("cannot refuse the claims of chunk %d in %s: %s", c.index, run.rd.path,
                        exc)

    def _folder_gone(self, port: WatchPort, run: Run, exc: OSError) -> None:
        """The run folder vanished or became unreadable: fail every unfinished chunk with an
        error naming it, and cancel its array tasks (unless ``detach``: they are the user's)."""
        reason = ("was deleted" if not run.rd.path.exists()
                  else "was deleted (its run.json is gone)" if not run.rd.meta_path.exists()
                  else f"cannot be read ({exc.strerror or exc}: {exc.filename or run.rd.path})")
        err = RunFolderError(str(run.rd.path), reason)
        log.error("%s", err)
        with run.lock:
            pending = list(run.unfinished.values())
        if not getattr(self.options, "detach", False):
            jobs = sorted({c.job_id for c in pending if c.job_id}
                          | ({run.worker_jobs[t] for t in run.live_workers()} if run.pull
                             else set()))
            if jobs:
                port.cancel(jobs)
        for c in pending:
            self._finish(run, c, error=err)

    # -- one poll ------------------------------------------------------------------------------
    def _poll(self, port: WatchPort, runs: list[Run]) -> bool:
        job_ids = sorted({c.job_id for r in runs for c in list(r.unfinished.values()) if c.job_id}
                         | {r.worker_jobs[t] for r in runs if r.pull for t in r.live_workers()},
                         key=lambda j: (len(j), j))
        self.status_calls += bool(job_ids)
        statuses = port.poll(job_ids) if job_ids else {}
        self.failures, self.failing_since = 0, None
        now = time.monotonic()
        changed = False
        settle: list[tuple[Run, ChunkState]] = []       # final past the grace period
        cancels: list[tuple[Run, ChunkState]] = []
        blocked_pairs: list[tuple[Run, ChunkState]] = []
        for run in runs:
            try:
                mtimes = run.rd.result_mtimes()
                if not run.rd.meta_path.is_file():
                    raise FileNotFoundError(2, "no run.json", str(run.rd.meta_path))
                if run.pull:
                    self._observe_claims(run, statuses)
            except OSError as exc:
                self._folder_gone(port, run, exc)
                changed = True
                continue
            run_cancel = run.cancel_requested()
            for idx, c in list(run.unfinished.items()):
                if c.future.cancelled():
                    continue
                mtime = mtimes.get(idx)
                facts = ResultFacts.of(c.partial)
                if mtime is not None and mtime != c.result_mtime:
                    c.result_mtime = mtime
                    result, facts = self._read(run, idx)
                    if result is not None:
                        c.partial = result
                if not run.pull:
                    c.status = statuses.get(c.task_id or "", MISSING)
                if c.state is JobState.RUNNING and not mark_running(c.future):
                    continue                     # cancelled by its caller before it started
                if c.state.is_live:
                    c.final_since = None
                elif c.final_since is None:
                    c.final_since = now
                    changed = True          # look again soon
                blocked = c.state is JobState.PENDING and getattr(c.status, "blocked", False)
                c.blocked_since = (c.blocked_since or now) if blocked else None
                requested = run_cancel or idx in run.cancelled
                action = self._decide(run, c, facts, now, requested)
                if action is Action.RESOLVE:
                    self._record(run, c, port, results="complete")
                    self._finish(run, c, result=c.partial)
                    changed = True
                elif action is Action.CANCELLED and requested:
                    cancels.append((run, c))
                elif action is Action.BLOCKED:
                    blocked_pairs.append((run, c))
                elif action is not Action.WAIT:
                    settle.append((run, c))
        if cancels:
            changed = True
            self._cancel_requested(port, cancels)
        if blocked_pairs:
            changed = True
            self._fail_blocked(port, blocked_pairs, now)
        if settle:
            changed = True
            self._refine_final(port, settle)
            self._handle_lost(port, settle)
        return changed

    def _decide(self, run: Run, c: ChunkState, facts: ResultFacts, now: float,
                cancel_requested: bool) -> Action:
        claimed = (c.claim is not None and not c.claim.voided) if run.pull else None
        return decide(ChunkFacts(c.attempts, c.retries, c.done_at_submit, c.final_since,
                                 c.blocked_since),
                      c.state, facts, now, max_retries=self.options.max_retries,
                      grace_s=self.grace_s, cancel_requested=cancel_requested, claimed=claimed,
                      resubmit_cancelled=run.resubmit_cancelled,
                      blocked_grace_s=getattr(self.options, "blocked_grace_s", float("inf")))

    def _observe_claims(self, run: Run, statuses: dict) -> None:
        observe_claims(run, statuses)

    def _fail_blocked(self, port: WatchPort, pairs: list[tuple[Run, ChunkState]], now: float) -> None:
        """Tasks pending too long for a reason that cannot resolve: cancel them (one command)
        and fail their futures with PendingBlockedError."""
        ids = [c.task_id for _, c in pairs if c.task_id]
        log.warning("%s: cancelling %d array task(s) pending for a reason that cannot resolve",
                    self.name_, len(ids))
        port.cancel(ids)
        for run, c in pairs:
            self._record(run, c, port, state=JobState.CANCELLED, error=True,
                         native=f"PENDING ({getattr(c.status, 'reason', '')})")
            self._finish(run, c, error=PendingBlockedError(
                c.task_id or "?", getattr(c.status, "reason", ""), now - (c.blocked_since or now),
                self.name_))

    def _read(self, run: Run, idx: int) -> tuple[ChunkResult | None, ResultFacts]:
        """Chunk ``idx``'s results file and what it says; a corrupt one is moved aside."""
        try:
            result = run.rd.read_result(idx)
        except CorruptFileError as exc:
            moved = run.rd.quarantine_result(idx)
            log.warning("%s; moved to %s, the chunk will be rerun", exc, moved.name)
            return None, ResultFacts(ResultKind.CORRUPT)
        except (OSError, EOFError, ValueError) as exc:
            log.warning("cannot read result %d of %s: %s", idx, run.rd.run_id, exc)
            return None, ABSENT
        return result, ResultFacts.of(result)

    def _cancel_requested(self, port: WatchPort, pairs) -> None:
        """Honour a cancel request: cancel the live array tasks in one command, then the futures."""
        ids = []
        for run, c in pairs:
            with run.lock:
                if run.unfinished.pop(c.index, None) is None:
                    continue
            if c.state.is_live and c.task_id:
                ids.append(c.task_id)
            if run.pull and run.cancel_requested():
                ids.extend(run.live_workers())      # the whole run: every worker goes
            elif run.pull:
                self._refuse(run, c)                # one chunk: its worker goes on to others
            self._record(run, c, port, cancelled=True)
            run.cancel_chunk(c)
        if ids:
            log.warning("%s: cancel requested; cancelling %d array task(s)", self.name_, len(ids))
            port.cancel(ids)
        self._settle(run for run, _ in pairs)

    def _refine_final(self, port: WatchPort, settle) -> None:
        """Final states from accounting (sacct), one call, when the scheduler has it."""
        final = port.final_states([c.task_id for _, c in settle if c.task_id])
        for _, c in settle:
            st = final.get(c.task_id or "")
            if st is not None and not st.state.is_live:
                c.status = st

    def _handle_lost(self, port: WatchPort, settle) -> None:
        by_run: dict[Run, dict[str, list[int]]] = {}
        now = time.monotonic()
        for run, c in settle:
            # look once more: the results may have arrived during the grace period
            result, facts = (self._read(run, c.index) if run.rd.result_path(c.index).exists()
                             else (None, ABSENT))
            c.partial = result
            requested = run.chunk_cancel_requested(c)
            action = self._decide(run, c, facts, now, requested)
            kind = facts.kind.value if facts.kind is not ResultKind.CORRUPT else "absent"
            if action is Action.RESOLVE:
                self._record(run, c, port, results="complete")
                self._finish(run, c, result=result)
            elif action is Action.CANCELLED and requested:
                self._cancel_requested(port, [(run, c)])
            elif action in (Action.REQUEUE, Action.RETRY, Action.REFILL):
                if action is Action.RETRY:
                    log.warning("%s: array task %s ended %s without results; resubmitting "
                                "(retry %d of %d)", self.name_, c.task_id, c.state.name,
                                c.retries + 1, self.options.max_retries)
                self._record(run, c, port, results=kind)
                by_run.setdefault(run, {}).setdefault(action.value, []).append(c.index)
            else:       # LOST, or CANCELLED by someone outside hpcpar (a recorded decision)
                external = action is Action.CANCELLED
                self._record(run, c, port, results=kind, cancelled=external)
                if external and run.pull:
                    self._refuse(run, c)         # no worker takes it, now or after attach
                tid = c.task_id or getattr(c.status, "task_id", "") or "?"
                stem = port.log_stem(tid)
                if external:
                    log.warning("%s: array task %s was cancelled outside hpcpar; not "
                                "resubmitted (attach(run, resubmit_cancelled=True) would)",
                                self.name_, tid)
                self._finish(run, c, error=JobLostError(
                    c.state, tid, getattr(c.status, "exit_code", None),
                    run.rd.stderr_tail(stem), attempts=c.attempts,
                    log_path=str(run.rd.logs_dir / f"{stem}.err")))
        for run, reasons in by_run.items():
            for reason, indices in reasons.items():
                try:
                    port.resubmit(run, indices, reason)
                except HpcparError as exc:
                    for i in indices:
                        self._finish(run, run.chunks[i], error=exc)
            self._settle([run])

    def _finish(self, run: Run, c: ChunkState, result: ChunkResult | None = None,
                error: BaseException | None = None) -> None:
        with run.lock:
            if run.unfinished.pop(c.index, None) is None:
                return
            last = not run.unfinished
        if mark_running(c.future):
            try:
                if error is not None:
                    c.future.set_exception(error)
                else:
                    c.future.set_result(result)
            except InvalidStateError:          # a cancel ended it meanwhile
                pass
        if last:
            self._settle([run])

    def _settle(self, runs: Iterable[Run]) -> None:
        for run in set(runs):
            try:
                run.settle()
            except OSError as exc:
                log.warning("cannot update %s: %s", run.rd.meta_path, exc)


def observe_claims(run: Run, statuses: dict) -> None:
    """A pull run: each unfinished chunk's status is its claim owner's (lost once its
    heartbeat stops), or, waiting in the pool, live while any of the run's workers is."""
    for tid in run.live_workers():
        run.worker_status[tid] = statuses.get(tid, MISSING)
    # waiting in the pool: while every live worker pends, a pending worker's status (its
    # reason; blocked if every one pends for a blocking reason)
    live = [run.worker_status[t] for t in run.live_workers() if run.worker_status[t] is not None]
    pending = [s for s in live if s.state is JobState.PENDING]
    blocked = [s for s in pending if getattr(s, "blocked", False)]
    pool = IN_POOL if run.live_workers() else _pool_after_workers(run)
    if live and len(pending) == len(live):
        pool = blocked[0] if len(blocked) == len(live) else pending[0]
    seen = claims.scan(run.rd.path)
    run.claims_seen = sum(info.generation + 1 for info in seen.values())
    wall = time.time()
    for idx, c in list(run.unfinished.items()):
        info = c.claim = seen.get(idx)
        if info is not None and info.refused and not info.voided:
            run.cancelled.add(idx)       # a recorded cancel (maybe by an earlier driver)
        if info is None or info.voided or info.refused:
            c.task_id = c.job_id = None
            c.status = pool
            continue
        c.attempts = max(c.attempts, info.generation + 1)
        owner = run.claim_owners.get(info.name)
        if owner is None:
            owner = run.claim_owners[info.name] = claims.read_owner(run.rd.path, info.name)
        c.task_id = run.workers.get(owner) if owner is not None else None
        c.job_id = run.worker_jobs.get(c.task_id or "")
        st = run.worker_status.get(c.task_id) if c.task_id else CLAIMING
        st = CLAIMING if st is None else st
        if st.state.is_live and wall - info.mtime > HEARTBEAT_LOST_S:
            st = _Status(JobState.MISSING, f"no heartbeat for {wall - info.mtime:.0f} s")
        c.status = st


def _pool_after_workers(run: Run) -> _Status:
    """The state of a pull run's pool once no worker is live: CANCELLED if the latest
    workers were all cancelled outside hpcpar (``scancel`` of the worker array: a recorded
    decision, so the pool's chunks are cancelled, not refilled), else MISSING."""
    latest: list[str] = next((s["task_ids"] for s in reversed(run.meta["submissions"])
                              if s.get("workers") and s.get("task_ids")), [])
    ended = [run.worker_status.get(t) for t in latest]
    if ended and all(st is not None and st.state is JobState.CANCELLED for st in ended):
        return _Status(JobState.CANCELLED, "CANCELLED",
                       reason="every worker was cancelled outside hpcpar", task_id=latest[-1])
    return MISSING
