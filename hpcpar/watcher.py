"""The watcher: one thread per batch executor that polls every live job with one status call.

Every interval (1 s, backing off x1.5 to 30 s while nothing changes)::

    one status call for every live array job        (spec.status_argv / parse_status)
    one listing of each live run's results/
    complete results file         -> resolve the chunk's future
    job final, no complete result -> after a grace period (results may be in flight over NFS):
        warned of its walltime and made progress -> requeue the rest (not a retry)
        retries left                             -> resubmit, only those indices
        else                                     -> JobLostError (state, exit code, stderr tail)
    final states refined by accounting (sacct) when the scheduler has it, in one call

Resubmissions of one poll go out together as one array; cancellations, as one command.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

from .backends.base import cancel_future
from .backends.spec import TaskStatus
from .errors import HpcparError, JobLostError, SubmissionError
from .policy import ABSENT, Action, ChunkFacts, ResultFacts, ResultKind, decide
from .rundir import ChunkResult, CorruptFileError, RunDir
from .states import JobState

if TYPE_CHECKING:
    from .backends.batch import BatchBackend

log = logging.getLogger("hpcpar")


@dataclasses.dataclass
class ChunkState:
    index: int
    future: Future
    size: int
    job_id: str | None = None
    task_id: str | None = None
    attempts: int = 0            # submissions of this chunk
    retries: int = 0             # of which were retries after a loss
    done_at_submit: int = 0      # tasks finished when last submitted (requeue needs progress)
    result_mtime: float | None = None
    partial: ChunkResult | None = None
    status: TaskStatus = TaskStatus(JobState.PENDING)
    final_since: float | None = None


class BatchRun:
    """The watcher's view of one run."""

    def __init__(self, rd: RunDir, chunks: dict[int, ChunkState], meta: dict):
        self.rd = rd
        self.chunks = chunks
        self.unfinished = dict(chunks)
        self.meta = meta
        self.lock = threading.Lock()

    def cancel_requested(self) -> bool:
        """True once the run folder holds a cancel request (``hpcpar cancel``)."""
        return self.rd.cancel_request_path.exists()

    @property
    def futures(self) -> list[Future]:
        return [self.chunks[i].future for i in sorted(self.chunks)]



class Watcher(threading.Thread):
    """One thread per executor: batched polling, result collection, retries."""

    #: seconds of failing status calls after which the unfinished futures fail
    FAIL_AFTER_S = 600.0

    def __init__(self, backend: "BatchBackend"):
        super().__init__(name=f"hpcpar-watcher-{backend.name}", daemon=True)
        self.backend = backend
        self.runs: list[BatchRun] = []
        self.cond = threading.Condition()
        self.to_cancel: list[tuple[BatchRun, ChunkState]] = []
        self.stopping = False
        self.status_calls = 0
        self.failures = 0
        self.failing_since: float | None = None

    def add(self, run: BatchRun) -> None:
        with self.cond:
            self.runs.append(run)
            self.cond.notify()

    def cancel_later(self, run: BatchRun, c: ChunkState) -> None:
        with self.cond:
            self.to_cancel.append((run, c))
            self.cond.notify()

    def live_runs(self) -> list[BatchRun]:
        with self.cond:
            return [r for r in self.runs if r.unfinished]

    def stop_when_idle(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()

    def run(self) -> None:
        opts = self.backend.options
        interval = opts.poll_interval_s
        while True:
            with self.cond:
                if not self.to_cancel:
                    self.cond.wait(timeout=interval)
                cancels, self.to_cancel = self.to_cancel, []
                self.runs = [r for r in self.runs if r.unfinished]
                runs = list(self.runs)
                if self.stopping and not runs and not cancels:
                    return
            try:
                if cancels:
                    self._cancel(cancels)
                changed = self._poll(runs) if runs else False
            except Exception as exc:  # noqa: BLE001 - keep watching; fail futures if it persists
                changed = False
                self._on_error(runs, exc)
            interval = opts.poll_interval_s if changed else min(interval * 1.5, opts.max_poll_interval_s)

    def _on_error(self, runs, exc) -> None:
        """A poll failed (e.g. slurmctld unreachable). Keep trying; fail the futures only once
        polls have failed for ``FAIL_AFTER_S`` seconds in a row (the jobs themselves go on, and
        ``hpcpar.attach`` can collect them later)."""
        self.failures += 1
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        log.warning("%s watcher: %s (failure %d in a row)", self.backend.name, exc, self.failures)
        if now - self.failing_since >= self.FAIL_AFTER_S:
            for run in runs:
                for c in list(run.unfinished.values()):
                    self._finish(run, c, error=exc)

    def _cancel(self, pairs) -> None:
        ids = []
        for run, c in pairs:
            with run.lock:
                if run.unfinished.pop(c.index, None) is not None:
                    ids.append(c.task_id)
        self.backend.cancel_ids(ids)
        self.update_meta({run for run, _ in pairs})

    # -- one poll ----------------------------------------------------------------------------
    def query(self, job_ids: list[str]) -> dict[str, TaskStatus]:
        spec = self.backend.spec
        self.status_calls += 1
        proc = self.backend.run_cmd(spec.status_argv(job_ids), check=False)
        if proc.returncode != 0:
            if spec.status_failed_means_gone(proc.stderr):
                return {}
            raise SubmissionError(spec.status_argv(job_ids), proc.returncode, proc.stderr, proc.stdout)
        return spec.parse_status(proc.stdout)

    def _poll(self, runs: list[BatchRun]) -> bool:
        job_ids = sorted({c.job_id for r in runs for c in list(r.unfinished.values()) if c.job_id},
                         key=lambda j: (len(j), j))
        statuses = self.query(job_ids) if job_ids else {}
        self.failures, self.failing_since = 0, None
        now = time.monotonic()
        changed = False
        settle: list[tuple[BatchRun, ChunkState]] = []     # final past the grace period
        cancels: list[tuple[BatchRun, ChunkState]] = []
        for run in runs:
            try:
                mtimes = run.rd.result_mtimes()
            except OSError as exc:
                log.warning("cannot list %s: %s", run.rd.results_dir, exc)
                continue
            cancel_requested = run.cancel_requested()
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
                c.status = statuses.get(c.task_id or "", TaskStatus(JobState.MISSING))
                if c.status.state.is_live:
                    c.final_since = None
                elif c.final_since is None:
                    c.final_since = now
                    changed = True          # look again soon
                action = self._decide(c, facts, now, cancel_requested)
                if action is Action.RESOLVE:
                    self._finish(run, c, result=c.partial)
                    changed = True
                elif action is Action.CANCELLED:
                    cancels.append((run, c))
                elif action is not Action.WAIT:
                    settle.append((run, c))
        if cancels:
            changed = True
            self._cancel_requested(cancels)
        if settle:
            changed = True
            self._refine_final(settle)
            self._handle_lost(settle)
        return changed

    def _decide(self, c: ChunkState, facts: ResultFacts, now: float,
                cancel_requested: bool) -> Action:
        return decide(ChunkFacts(c.attempts, c.retries, c.done_at_submit, c.final_since),
                      c.status.state, facts, now, max_retries=self.backend.options.max_retries,
                      grace_s=self.backend.lost_grace_s, cancel_requested=cancel_requested)

    def _read(self, run: BatchRun, idx: int) -> tuple[ChunkResult | None, ResultFacts]:
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

    def _cancel_requested(self, pairs) -> None:
        """Honour a cancel request: cancel the live array tasks in one command, then the futures."""
        ids = []
        for run, c in pairs:
            with run.lock:
                if run.unfinished.pop(c.index, None) is None:
                    continue
            if c.status.state.is_live and c.task_id:
                ids.append(c.task_id)
            cancel_future(c.future)
        if ids:
            log.warning("%s: cancel requested; cancelling %d array task(s)", self.backend.name, len(ids))
        self.backend.cancel_ids(ids)
        self.update_meta({run for run, _ in pairs})

    def _refine_final(self, settle) -> None:
        """Final states from accounting (sacct), one call, when the scheduler has it."""
        spec = self.backend.spec
        if not self.backend.probe().get("accounting"):
            return
        ids = [c.task_id for _, c in settle if c.task_id]
        argv = spec.final_status_argv(ids)
        if not argv:
            return
        proc = self.backend.run_cmd(argv, check=False)
        if proc.returncode != 0:
            log.warning("%s: %s exited %d: %s", self.backend.name, argv[0], proc.returncode, proc.stderr.strip())
            return
        final = spec.parse_final_status(proc.stdout)
        for _, c in settle:
            st = final.get(c.task_id or "")
            if st is not None and not st.state.is_live:
                c.status = st

    def _handle_lost(self, settle) -> None:
        opts = self.backend.options
        by_run: dict[BatchRun, dict[str, list[int]]] = {}
        now = time.monotonic()
        for run, c in settle:
            # look once more: the results may have arrived during the grace period
            result, facts = (self._read(run, c.index) if run.rd.result_path(c.index).exists()
                             else (None, ABSENT))
            c.partial = result
            action = self._decide(c, facts, now, run.cancel_requested())
            if action is Action.RESOLVE:
                self._finish(run, c, result=result)
            elif action is Action.CANCELLED:
                self._cancel_requested([(run, c)])
            elif action is Action.REQUEUE:
                by_run.setdefault(run, {}).setdefault("requeue", []).append(c.index)
            elif action is Action.RETRY:
                log.warning("%s: array task %s ended %s without results; resubmitting (retry %d of %d)",
                            self.backend.name, c.task_id, c.status.state.name, c.retries + 1, opts.max_retries)
                by_run.setdefault(run, {}).setdefault("retry", []).append(c.index)
            elif action is Action.LOST:
                stem = self.backend.spec.log_stem(c.task_id or "")
                self._finish(run, c, error=JobLostError(
                    c.status.state, c.task_id or "?", c.status.exit_code,
                    run.rd.stderr_tail(stem), attempts=c.attempts))
        for run, reasons in by_run.items():
            for reason, indices in reasons.items():
                try:
                    self.backend.submit_chunks(run, indices, reason)
                except HpcparError as exc:
                    for i in indices:
                        self._finish(run, run.chunks[i], error=exc)
            self.update_meta([run])

    def _finish(self, run: BatchRun, c: ChunkState, result: ChunkResult | None = None,
                error: BaseException | None = None) -> None:
        with run.lock:
            if run.unfinished.pop(c.index, None) is None:
                return
            last = not run.unfinished
        if c.future.set_running_or_notify_cancel():
            if error is not None:
                c.future.set_exception(error)
            else:
                c.future.set_result(result)
        if last:
            self.update_meta([run])

    def update_meta(self, runs) -> None:
        for run in runs:
            state = "running" if run.unfinished else (
                "failed" if any(c.future.done() and not c.future.cancelled() and c.future.exception()
                                for c in run.chunks.values()) else
                "cancelled" if any(c.future.cancelled() for c in run.chunks.values()) else "done")
            try:
                run.rd.update_meta(state=state, submissions=run.meta["submissions"])
            except OSError as exc:
                log.warning("cannot update %s: %s", run.rd.meta_path, exc)
