"""Run state: the one owner of a run's and its chunks' state, and of ``run.json``.

Nothing else writes ``run.json``. In a driver (an executor, :func:`hpcpar.attach`, or
``hpcpar submit``) one :class:`Run` holds the run's record in memory and writes it whole,
atomically, under a lock, each time it changes: no read-modify-write, so two threads (the
watcher, and the main thread cancelling) never undo each other. Everyone else reads it.

Other processes *ask* through the run folder instead of rewriting it: ``hpcpar cancel``
writes ``cancel-requested`` (:func:`request_cancel`); the run's watcher, in a live driver or
a later :func:`hpcpar.attach`, cancels the unfinished chunks and records ``cancelled``.

Outcomes. Whoever learns how an array task ended (a driver's watcher, ``attach``,
``hpcpar status``) records it with :func:`record_outcome` in ``outcomes/<task id>.json``, one
small file per array task, written once and atomically (an observation is a fact: a later one
only fills the fields an earlier one lacked). Separate files, not run.json, because several
processes observe at once and run.json is written whole by its driver: no lost updates, no
locks. A run whose recorded phase is not final is shown with the phase its outcomes imply
(:func:`observed_phase`), and :func:`record_observed_end` writes that final phase into
run.json under a lock (``.run.lock``) that :meth:`Run.save` takes too, so ``hpcpar runs``,
``status`` and ``clean`` tell the truth after the driver is gone and after the scheduler
forgets the jobs.

A cancel is a recorded decision: ``cancel-requested`` for the whole run (``hpcpar cancel``,
``shutdown(cancel=True)``, the driver's signals), or an outcome with ``"cancelled": true`` for
one array task (a cancelled future, an external cancel that left no result). Later watchers
and :func:`hpcpar.attach` never resubmit those unless asked (``resubmit_cancelled=True``).

``run.json`` (schema, version 1)::

    run_id, created (epoch s), state (a RunPhase value), backend, kind, mode, job_name,
    n_chunks, chunk_sizes, resources, options, python, python_path, driver {host, pid},
    accounting, submissions: [{job_id, job_ids, indices, task_ids, offset, reason, time}]
    (``task_ids[k]`` is the array task id of chunk ``indices[k]``, as the scheduler named it
    at submission; runs written before task ids were recorded have none)

    A pull run (``pull: true``; its array tasks are workers that claim chunks, see
    :mod:`hpcpar.claims`) records ``workers`` in each submission instead: ``task_ids[k]`` is
    worker ``workers[k]``'s array task, and ``indices`` are the chunks given back to the pool
    (reason ``retry``, ``requeue`` or ``refill``) that the submission is for; a return to the
    pool while live workers remain is recorded with no workers, ``job_id`` naming the job that
    lost the chunks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import TYPE_CHECKING, Any

from ._futures import ChunkFuture, cancel_future
from .errors import ConfigError
from .rundir import RunDir, atomic_write
from .states import JobState

if TYPE_CHECKING:
    from pathlib import Path

    from .rundir import ChunkResult


class RunPhase(enum.StrEnum):
    """A run's state, as ``run.json`` records it (``state``)."""

    CREATED = "created"
    SUBMITTED = "submitted"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUBMIT_FAILED = "submit-failed"

    @property
    def finished(self) -> bool:
        """True for DONE, FAILED, CANCELLED and SUBMIT_FAILED: nothing of the run runs any more."""
        return self in _FINISHED

    def __str__(self) -> str:
        return self.value


_FINISHED = frozenset({RunPhase.DONE, RunPhase.FAILED, RunPhase.CANCELLED, RunPhase.SUBMIT_FAILED})


class SubmitReason(enum.StrEnum):
    """Why chunks were submitted (``submissions[].reason``)."""

    INITIAL = "initial"
    REQUEUE = "requeue"      #: resume a checkpointed chunk warned of its walltime; not a retry
    RETRY = "retry"          #: a chunk lost without results
    REFILL = "refill"        #: pulling workers for chunks waiting with no live worker left
    WARM = "warm"            #: live workers of an earlier run of the executor, not submitted

    def __str__(self) -> str:
        return self.value


# -- reading, and the few writes outside a driver ------------------------------------------------
def _write(rd: RunDir, meta: Mapping[str, Any]) -> None:
    atomic_write(rd.meta_path, (json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n").encode())


def create_run(root: str | os.PathLike, prefix: str = "run",
               meta: Mapping[str, Any] | None = None) -> RunDir:
    """Make a new run: a private folder under ``root`` (:meth:`RunDir.create`) and its first
    ``run.json`` (run id, creation time, phase CREATED, then ``meta``).

    Raises
    ------
    OSError
        The folder cannot be made.
    """
    rd = RunDir.create(root, prefix)
    _write(rd, {"run_id": rd.run_id, "created": time.time(),
                "state": RunPhase.CREATED.value, **(meta or {})})
    return rd


def read(rd: RunDir) -> dict:
    """``run.json`` as a dict."""
    return json.loads(rd.meta_path.read_text())


def phase_of(meta: Mapping[str, Any]) -> RunPhase:
    """The recorded :class:`RunPhase` (CREATED if absent; ValueError for an unknown value)."""
    return RunPhase(meta.get("state", RunPhase.CREATED.value))


def request_cancel(rd: RunDir) -> bool:
    """Ask the run's driver to cancel it: create ``cancel-requested`` (atomically, once).

    Returns
    -------
    bool
        False if a cancel was already requested.
    """
    try:
        fd = os.open(rd.cancel_request_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps({"time": time.time(), "host": os.uname().nodename, "pid": os.getpid()}) + "\n")
    return True


def cancel_requested(rd: RunDir) -> bool:
    return rd.cancel_request_path.exists()


def withdraw_cancel(rd: RunDir) -> bool:
    """Remove the run's cancel request (``attach(..., resubmit_cancelled=True)``); False if none."""
    try:
        rd.cancel_request_path.unlink()
    except FileNotFoundError:
        return False
    return True


# -- outcomes: one record per array task, by whoever observes its end ----------------------------
def outcomes_dir(rd: RunDir) -> Path:
    return rd.path / "outcomes"


def _outcome_path(rd: RunDir, task_id: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "._-[]" else "_" for ch in task_id)
    return outcomes_dir(rd) / f"{safe}.json"


def record_outcome(rd: RunDir, index: int | None, task_id: str, *,
                   state: JobState | None = None,
                   native: str = "", exit_code: int | None = None, observed_by: str = "",
                   logs: Sequence[str] = (), command: str | None = None,
                   results: str | None = None, error: bool = False,
                   cancelled: bool = False, worker: bool = False) -> dict:
    """Record how array task ``task_id`` (of chunk ``index``) ended, in ``outcomes/``.

    An existing record keeps the fields it has; this one fills the others (the first observer
    of a final state is right, a later one may only add an exit code or a cancel).

    A pull run's array task is a worker (:mod:`hpcpar.claims`) that holds many chunks over its
    life, so with ``worker=True`` the record is the worker's: ``index`` is None, and what is
    said of chunk ``index`` (``results``, ``error``, ``cancelled``) goes into its ``chunks``
    map (chunk index as a string -> those fields), which names every chunk the worker held
    that an observer recorded.
    ``index`` None records the worker's own end only (``hpcpar status``, which does not know
    which chunks it held).

    Parameters
    ----------
    state : JobState or None
        The scheduler's final verdict (None: not known, e.g. results complete while running).
    exit_code : int or None
        From accounting, ``scontrol show job`` or the status call.
    observed_by : str
        ``"watcher"``, ``"attach"``, ``"status"``...
    logs : sequence of str
        Paths of the task's standard output and error logs.
    command : str or None
        The command line of a command array's task.
    results : str or None
        ``"complete"``, ``"partial"`` or ``"absent"``.
    error : bool
        The task (or one of the chunk's tasks) raised.
    cancelled : bool
        A cancel decision: the task is not to be resubmitted.
    worker : bool
        ``task_id`` is a pulling worker (a pull run), and ``index`` one chunk it held.

    Returns
    -------
    dict
        The record as written.

    Raises
    ------
    OSError
        The run folder is gone or not writable.
    """
    path = _outcome_path(rd, task_id)
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    per_chunk = {"results": results, "error": error or None, "cancelled": cancelled or None}
    new = {"index": None if worker else index, "task_id": task_id,
           "state": state.value if state is not None else None, "native": native or None,
           "exit_code": exit_code, "observed_by": observed_by, "logs": list(logs) or None,
           "command": command, **({} if worker else per_chunk), "time": time.time()}
    merged = {**new, **{k: v for k, v in old.items() if v is not None}}
    if worker:
        held = {str(k): dict(v) for k, v in (old.get("chunks") or {}).items()}
        if index is not None:
            mine = held.setdefault(str(index), {})
            mine.update({k: v for k, v in per_chunk.items() if v is not None and k not in mine})
            if cancelled:
                mine["cancelled"] = True
        merged["chunks"] = held
    elif cancelled:
        merged["cancelled"] = True
    if merged == old:
        return old
    outcomes_dir(rd).mkdir(mode=0o700, exist_ok=True)
    atomic_write(path, (json.dumps(merged, sort_keys=True) + "\n").encode())
    return merged


def exit_record_path(rd: RunDir, index: int) -> Path:
    """``outcomes/line-<index>.exit``: the exit code a command run's job script wrote for its
    line ``index`` (``hpcpar submit``), the record that outlives the scheduler's memory even
    when nobody looked while it remembered."""
    return outcomes_dir(rd) / f"line-{index}.exit"


def read_exit_record(rd: RunDir, index: int) -> int | None:
    """The exit code the job script recorded for line ``index``; None if none (yet)."""
    try:
        text = exit_record_path(rd, index).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def read_outcomes(rd: RunDir) -> dict[str, dict]:
    """Task id -> its outcome record (unreadable records are skipped)."""
    out: dict[str, dict] = {}
    try:
        paths = sorted(outcomes_dir(rd).glob("*.json"))
    except OSError:
        return out
    for p in paths:
        try:
            rec = json.loads(p.read_text())
            out[str(rec["task_id"])] = rec
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def latest_tasks(meta: Mapping[str, Any]) -> dict[int, str]:
    """Chunk index -> the task id of its latest submission (empty for an old run.json)."""
    try:
        return {i: tasks[-1][0] for i, tasks in recorded_tasks(dict(meta)).items()}
    except ConfigError:
        return {}


def worker_tasks(meta: Mapping[str, Any]) -> dict[int, str]:
    """A pull run's workers: worker index -> its array task id, as run.json recorded them at
    submission (empty for a run whose array tasks are bound to chunks)."""
    out: dict[int, str] = {}
    for sub in meta.get("submissions", []):
        for w, tid in zip(sub.get("workers", ()), sub.get("task_ids", ()), strict=False):
            out[int(w)] = str(tid)
    return out


def _observed_pull_phase(rd: RunDir, meta: Mapping[str, Any],
                         outcomes: Mapping[str, Mapping[str, Any]]) -> RunPhase | None:
    """A pull run's final phase, once every worker has a recorded end: CANCELLED if a chunk
    was cancelled, DONE if every chunk has a results file (whichever worker wrote it; a
    worker lost after its chunk went to another is no failure of the run), else FAILED."""
    workers = worker_tasks(meta)
    recs = [outcomes.get(t) for t in workers.values()]
    if not workers or not all(task_ended(r) for r in recs):
        return None
    ended = [r for r in recs if r]
    if any(held.get("cancelled") for r in ended for held in (r.get("chunks") or {}).values()):
        return RunPhase.CANCELLED
    try:
        results = len(rd.result_mtimes())
    except OSError:
        return None
    n = int(meta.get("n_chunks") or 0)
    if results >= n:
        return RunPhase.DONE
    return RunPhase.FAILED


def task_ended(rec: Mapping[str, Any] | None) -> bool:
    """True if an outcome record says its task ended (final state, complete results, cancel)."""
    if not rec:
        return False
    if rec.get("cancelled") or rec.get("results") == "complete":
        return True
    state = rec.get("state")
    return state is not None and state not in ("PENDING", "RUNNING", "UNKNOWN")


def _failed(rec: Mapping[str, Any]) -> bool:
    if rec.get("error"):
        return True
    if rec.get("results") == "complete":
        return False
    if rec.get("exit_code") not in (None, 0):
        return True
    return rec.get("state") not in (None, "COMPLETED")


def observed_phase(rd: RunDir, meta: Mapping[str, Any],
                   outcomes: Mapping[str, Mapping[str, Any]] | None = None) -> RunPhase | None:
    """The final phase the recorded outcomes imply: DONE, FAILED or CANCELLED once the latest
    array task of every chunk has an outcome that ended it (a pull run: every worker); None
    while any has not."""
    if meta.get("pull"):
        return _observed_pull_phase(rd, meta, read_outcomes(rd) if outcomes is None else outcomes)
    latest = latest_tasks(meta)
    n = int(meta.get("n_chunks") or 0)
    if not latest or len(latest) < n:
        return None
    outcomes = read_outcomes(rd) if outcomes is None else outcomes
    recs = [outcomes.get(tid) for tid in latest.values()]
    if not all(task_ended(r) for r in recs):
        return None
    ended = [r for r in recs if r]
    if any(r.get("cancelled") for r in ended):
        return RunPhase.CANCELLED
    if any(_failed(r) for r in ended):
        return RunPhase.FAILED
    return RunPhase.DONE


@contextlib.contextmanager
def _locked(rd: RunDir) -> Iterator[None]:
    """An exclusive lock on the run's ``.run.lock`` (fcntl, as NFSv4 supports) while run.json
    is written, so an observer's phase never interleaves with its driver's write."""
    with open(rd.path / ".run.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def record_observed_end(rd: RunDir) -> RunPhase | None:
    """Write the phase the outcomes imply into run.json if the recorded one is not final
    (the driver is gone, or has not seen the end yet). Returns the phase written, or None.

    Raises
    ------
    OSError
        run.json cannot be read or written.
    """
    with _locked(rd):
        meta = read(rd)
        if shown_phase(rd, meta, observed=False).finished:
            return None
        phase = observed_phase(rd, meta)
        if phase is None:
            return None
        meta["state"] = phase.value
        meta["ended_by"] = "observer"
        _write(rd, meta)
        return phase


def shown_phase(rd: RunDir, meta: Mapping[str, Any], observed: bool = True) -> RunPhase:
    """The phase to show a user: the recorded one if final; else, with ``observed``, the final
    phase the recorded outcomes imply (:func:`observed_phase`); else CANCELLED once a cancel is
    requested (its driver may be gone, and cannot record it); else the recorded one."""
    try:
        recorded = phase_of(meta)
    except ValueError:
        recorded = RunPhase.CREATED
    if recorded.finished:
        return recorded
    seen = observed_phase(rd, meta) if observed else None
    if seen is not None:
        return seen
    if cancel_requested(rd):
        return RunPhase.CANCELLED
    return recorded


# -- the owner, in a driver -----------------------------------------------------------------------
@dataclasses.dataclass
class ChunkState:
    """What the driver knows of one chunk."""

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
    status: Any = None           # the last TaskStatus polled (None: PENDING, not polled yet)
    final_since: float | None = None
    claim: Any = None            # pull: the newest hpcpar.claims.ClaimInfo of this chunk
    blocked_since: float | None = None   # seen pending for a blocking reason since (monotonic s)

    @property
    def state(self) -> JobState:
        """The array task's last polled state (PENDING before the first poll)."""
        return self.status.state if self.status is not None else JobState.PENDING


class Run:
    """One run's state in its driver, and the only writer of its ``run.json``.

    Attributes
    ----------
    rd : RunDir
    chunks : dict of int to ChunkState
    unfinished : dict of int to ChunkState
        The chunks whose future is not resolved yet.
    meta : dict
        The record, as written to ``run.json``.
    lock : threading.Lock
        Guards ``unfinished``.
    """

    def __init__(self, rd: RunDir, chunks: dict[int, ChunkState], meta: dict):
        self.rd = rd
        self.chunks = chunks
        self.unfinished = dict(chunks)
        self.meta = meta
        self.meta.setdefault("submissions", [])
        self.lock = threading.Lock()
        self._write_lock = threading.RLock()      # guards meta (and the file) while changed or written
        #: pull runs (``pull`` in run.json): array tasks are workers that claim chunks
        #: (hpcpar.claims); worker index -> array task id, task id -> job id, task id -> status
        self.pull = bool(self.meta.get("pull"))
        self.workers: dict[int, str] = {}
        self.worker_jobs: dict[str, str] = {}
        self.worker_status: dict[str, Any] = {}
        self.claim_owners: dict[str, int | None] = {}     # claim file name -> worker index
        self.claims_seen = 0                 # claims made so far (the watcher's last count)
        self.claims_at_submit = 0            # ... when workers were last submitted
        for sub in self.meta["submissions"]:
            for w, tid in zip(sub.get("workers", ()), sub.get("task_ids", ()), strict=False):
                self.workers[w] = tid
                self.worker_jobs[tid] = sub["job_id"]
        #: chunks whose latest array task has a recorded cancel decision (never resubmitted)
        self.cancelled: set[int] = set()
        #: treat tasks the scheduler reports CANCELLED as lost, to retry (attach's option)
        self.resubmit_cancelled = False

    @classmethod
    def reopen(cls, rd: RunDir, job_id_of: Callable[[str], str]) -> Run:
        """A run from its folder (for :func:`hpcpar.attach`): chunks, task ids and attempts as
        ``run.json`` recorded them at submission (never recomputed); ``job_id_of(task_id)`` is
        the job an array task belongs to (the spec's).

        Raises
        ------
        ConfigError
            A submission without task ids (a run made by an hpcpar that did not record them).
        """
        meta = read(rd)
        sizes = meta.get("chunk_sizes") or [0] * meta["n_chunks"]
        chunks = {i: ChunkState(i, ChunkFuture(), size) for i, size in enumerate(sizes)}
        for i, tasks in recorded_tasks(meta).items():
            c = chunks[i]
            c.task_id = tasks[-1][0]
            c.job_id = job_id_of(c.task_id)
            c.attempts = len(tasks)
            c.retries = sum(reason == SubmitReason.RETRY for _, reason in tasks)
        run = cls(rd, chunks, meta)
        outcomes = read_outcomes(rd)
        run.cancelled = {i for i, c in chunks.items()
                         if (outcomes.get(c.task_id or "") or {}).get("cancelled")}
        if run.pull:            # a worker's record names the chunks it held (and their cancels)
            run.cancelled = {int(i) for rec in outcomes.values()
                             for i, held in (rec.get("chunks") or {}).items()
                             if held.get("cancelled") and str(i).isdigit() and int(i) in chunks}
        return run

    def chunk_cancel_requested(self, c: ChunkState) -> bool:
        """True if the whole run, or chunk ``c``'s latest task, has a recorded cancel."""
        return c.index in self.cancelled or self.cancel_requested()

    def record_outcome(self, c: ChunkState, observed_by: str = "watcher", **fields: Any) -> None:
        """Record how chunk ``c``'s latest array task ended (:func:`record_outcome`; in a pull
        run, in the record of the worker holding ``c``'s claim, if any); a ``cancelled=True``
        record also joins :attr:`cancelled`. OSError (the run folder is gone) is the caller's
        to handle."""
        if fields.get("cancelled"):
            self.cancelled.add(c.index)
        if not c.task_id:
            return
        st = c.status
        fields.setdefault("state", st.state if st is not None and not st.state.is_live else None)
        fields.setdefault("native", getattr(st, "native", "") or "")
        fields.setdefault("exit_code", getattr(st, "exit_code", None))
        record_outcome(self.rd, c.index, c.task_id, observed_by=observed_by, worker=self.pull,
                       **fields)

    @property
    def futures(self) -> list[Future]:
        return [self.chunks[i].future for i in sorted(self.chunks)]

    def cancel_requested(self) -> bool:
        """True once the run folder holds a cancel request (``hpcpar cancel``)."""
        return cancel_requested(self.rd)

    # -- changes -------------------------------------------------------------------------------
    def record_submission(self, job_id: str, task_ids: Mapping[int, str], reason: str,
                          offset: int = 0,
                          job_id_of: Callable[[str], str] | None = None) -> None:
        """Chunks ``task_ids`` (chunk index -> array task id) were submitted as job ``job_id``;
        ``job_id_of(task_id)``, when given, names each task's own job (a scheduler whose one
        submission makes several jobs)."""
        why = SubmitReason(reason)
        job_of = job_id_of or (lambda _tid: job_id)
        for i, tid in task_ids.items():
            c = self.chunks[i]
            c.job_id, c.task_id = job_of(tid), tid
            c.attempts += 1
            c.retries += why is SubmitReason.RETRY
            c.done_at_submit = c.partial.done if c.partial else 0
            c.status, c.final_since, c.blocked_since = None, None, None   # pending until polled
        job_ids = list(dict.fromkeys(job_of(t) for t in task_ids.values())) or [job_id]
        with self._write_lock:
            self.meta["submissions"].append({
                "job_id": job_id, "job_ids": job_ids, "indices": list(task_ids),
                "task_ids": list(task_ids.values()), "offset": offset, "reason": why.value,
                "time": time.time()})

    def record_workers(self, job_id: str, task_ids: Mapping[int, str], reason: str,
                       offset: int = 0, job_id_of: Callable[[str], str] | None = None,
                       indices: Sequence[int] = ()) -> None:
        """Pulling workers ``task_ids`` (worker index -> array task id, possibly none) were
        submitted as job ``job_id``, for chunks ``indices`` given back to the pool (none for
        the first workers). A pull run's submissions record ``workers``; a return of chunks
        to the pool with no new worker (live ones remain) is recorded with no ``workers`` and
        ``job_id`` the job that lost them."""
        why = SubmitReason(reason)
        job_of = job_id_of or (lambda _tid: job_id)
        if task_ids:
            self.claims_at_submit = self.claims_seen
        for w, tid in task_ids.items():
            self.workers[w] = tid
            self.worker_jobs[tid] = job_of(tid)
            self.worker_status[tid] = None           # pending until polled
        job_ids = list(dict.fromkeys(job_of(t) for t in task_ids.values()))
        with self._write_lock:
            self.meta["submissions"].append({
                "job_id": job_id, "job_ids": job_ids, "indices": list(indices),
                "workers": list(task_ids),
                "task_ids": list(task_ids.values()), "offset": offset, "reason": why.value,
                "time": time.time()})

    def next_worker_index(self) -> int:
        """The array index of the next submitted worker: after this run's workers, and after
        ``first_worker`` in run.json (the executor's earlier runs' workers, which may serve
        this run warm: indices stay unique among an executor's workers)."""
        return max(max(self.workers, default=-1) + 1, int(self.meta.get("first_worker", 0)))

    def live_workers(self) -> list[str]:
        """Task ids of workers not known final (pending until first polled)."""
        return [t for t in self.workers.values()
                if self.worker_status.get(t) is None or self.worker_status[t].state.is_live]

    def cancel_chunk(self, c: ChunkState) -> bool:
        """The run's chunk ``c`` is being cancelled (its array task with it): a pending future is
        cancelled (:func:`~hpcpar._futures.cancel_future`); a running one, whose task will never
        finish, fails with :class:`~concurrent.futures.CancelledError`. Returns True if the
        future ended here (False: it had a result already)."""
        with self.lock:
            self.unfinished.pop(c.index, None)
        if cancel_future(c.future):
            return True
        try:
            c.future.set_exception(CancelledError(
                f"chunk {c.index} of run {self.rd.run_id} was cancelled while it ran"))
        except InvalidStateError:                 # finished meanwhile: its result stands
            return False
        return True

    def set_phase(self, phase: RunPhase) -> None:
        """Record ``phase`` and write ``run.json``."""
        with self._write_lock:
            self.meta["state"] = RunPhase(phase).value
            self.save()

    def settle(self) -> RunPhase:
        """Record the phase the futures show (RUNNING while any is unfinished, else FAILED,
        CANCELLED or DONE) and write ``run.json``."""
        with self.lock:
            live = bool(self.unfinished)
        futures = [c.future for c in self.chunks.values()]
        ended = [f for f in futures if f.done()]
        cancelled = [f for f in ended if _was_cancelled(f)]
        failed = any(f.exception() is not None for f in ended if f not in cancelled)
        phase = (RunPhase.RUNNING if live else RunPhase.FAILED if failed else
                 RunPhase.CANCELLED if cancelled else RunPhase.DONE)
        self.set_phase(phase)
        return phase

    def save(self) -> None:
        """Write the record to ``run.json`` (atomically; the whole record, never merged), under
        the run's file lock (an observer may be recording the end)."""
        with self._write_lock, _locked(self.rd):
            _write(self.rd, self.meta)

    def submitted_job_ids(self) -> Sequence[str]:
        return [s["job_id"] for s in self.meta["submissions"]]


def _was_cancelled(f: Future) -> bool:
    """Cancelled before it ran, or while it ran (:meth:`Run.cancel_chunk`'s CancelledError)."""
    return f.cancelled() or isinstance(f.exception(), CancelledError)


__all__ = [
    "ChunkState",
    "Run",
    "RunPhase",
    "SubmitReason",
    "cancel_requested",
    "create_run",
    "exit_record_path",
    "latest_tasks",
    "observed_phase",
    "outcomes_dir",
    "phase_of",
    "read",
    "read_exit_record",
    "read_outcomes",
    "record_observed_end",
    "record_outcome",
    "recorded_tasks",
    "request_cancel",
    "shown_phase",
    "task_ended",
    "withdraw_cancel",
    "worker_tasks",
]


def recorded_tasks(meta: dict) -> dict[int, list[tuple[str, str]]]:
    """Chunk index -> ``(task id, reason)`` of each submission of it, oldest first, as
    run.json recorded them at submission (the task ids are never recomputed).

    Raises
    ------
    ConfigError
        A submission without task ids (a run made by hpcpar 0.1 before they were recorded).
    """
    out: dict[int, list[tuple[str, str]]] = {}
    for sub in meta.get("submissions", []):
        if "workers" in sub:                 # a pull run's workers are bound to no chunk
            continue
        tasks = sub.get("task_ids")
        if tasks is None or len(tasks) != len(sub["indices"]):
            raise ConfigError(f"run.json records no task ids for job {sub.get('job_id')}; the run "
                              "was made by an older hpcpar: follow it with that version")
        for i, task_id in zip(sub["indices"], tasks, strict=False):
            out.setdefault(i, []).append((task_id, sub.get("reason", "initial")))
    return out
