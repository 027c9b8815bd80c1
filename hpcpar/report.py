"""Run reports: what happened to each chunk of a batch run, read from its run folder.

``hpcpar report RUN`` prints :func:`summary_text` and writes a timeline picture
(:mod:`hpcpar.report_figure`, needs the ``[report]`` extra). Everything comes from what the
run folder already records (:mod:`hpcpar.rundir`); nothing is asked of the scheduler::

    run.json  "created"                   time zero of the report
              "submissions"[].time        when each sbatch/qsub/bsub returned, and which chunks
              "submissions"[].reason      "initial", "retry" (lost, resubmitted) or "requeue"
    results/N.pkl  ChunkResult.started    the worker's start of the chunk's first attempt
                   ChunkResult.finished   its last write; host: where the last attempt ran
    claims/N.G     a pull run's claims: which worker (so which submission) took chunk N

So *queue wait* is first submission to the worker's start (scheduling, job launch, Python
start-up; in a pull run also the claiming worker's earlier chunks), and *run time* is the
worker's start to its last write. What the run folder does not record, and the report
therefore cannot show: the start of a retried chunk's later attempts (its bar spans every
attempt), the hosts of earlier attempts, and the scheduler's final state
(TIMEOUT, OUT_OF_MEMORY, ...) of a chunk that never wrote a result. The ``local`` backend keeps
no run folder, so only batch runs have reports.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import statistics
import time
from collections import Counter
from pathlib import Path

from . import claims
from .rundir import ChunkResult, CorruptFileError, RunDir, unseal
from .runs import resolve_run

#: chunk outcomes, in legend order
OUTCOMES = ("ok", "task error", "partial", "no result")


@dataclasses.dataclass(frozen=True)
class ChunkTimeline:
    """One chunk's history. Times are seconds since the run was created; None if unknown.

    Attributes
    ----------
    index : int
        Chunk index (= array task index of its first submission).
    n_tasks, done : int
        Tasks in the chunk, and how many finished (0 and 0 if there is no result).
    outcome : str
        One of :data:`OUTCOMES`: ``"ok"`` (every task returned), ``"task error"`` (a task
        raised), ``"partial"`` (a result with unfinished tasks: stopped, lost or still running),
        ``"no result"`` (no readable results file: queued, lost, cancelled or not submitted).
    host : str
        Host of the last attempt ("" if unknown).
    submitted, started, finished : float or None
        First submission naming the chunk (a pull run: submission of the first worker that
        claimed it); worker's start of the first attempt; last write.
    submissions, retries, requeues : int
        Submissions naming the chunk (a pull run: claims of it, each by a worker of one
        submission), and how many of them were retries after a loss or requeues after a
        walltime warning.
    task_seconds : tuple of float
        Wall seconds of each finished task (map runs).
    resubmitted : tuple of float
        Times of the submissions after the first (retries, requeues).
    note : str
        Why data is missing (corrupt or unreadable results file), else "".
    """

    index: int
    n_tasks: int
    done: int
    outcome: str
    host: str
    submitted: float | None
    started: float | None
    finished: float | None
    submissions: int
    retries: int
    requeues: int
    task_seconds: tuple[float, ...] = ()
    resubmitted: tuple[float, ...] = ()
    note: str = ""

    @property
    def queue_wait_s(self) -> float | None:
        """Seconds from the first submission to the worker's start (>= 0: the submission time
        is taken when the submit command returns, which can be after the job started)."""
        if self.submitted is None or self.started is None:
            return None
        return max(0.0, self.started - self.submitted)

    @property
    def run_s(self) -> float | None:
        """Seconds from the worker's first start to its last write."""
        if self.started is None or self.finished is None:
            return None
        return max(0.0, self.finished - self.started)


@dataclasses.dataclass(frozen=True)
class RunTimeline:
    """A run's chunks over time (see :func:`load_timeline`).

    Attributes
    ----------
    run_id, backend, kind, job_name, state : str
        From run.json.
    path : pathlib.Path
        The run folder.
    created : float
        Epoch seconds of the run's creation, time zero of every ``ChunkTimeline``.
    end_s : float
        Seconds from creation to the last thing recorded (last result or run.json update).
    chunks : tuple of ChunkTimeline
        One per chunk, by index.
    """

    run_id: str
    path: Path
    backend: str
    kind: str
    job_name: str
    state: str
    created: float
    end_s: float
    chunks: tuple[ChunkTimeline, ...]

    def slowest(self, n: int = 5) -> list[ChunkTimeline]:
        """The ``n`` chunks with the longest run time, longest first."""
        timed = [(c.run_s, c) for c in self.chunks if c.run_s is not None]
        return [c for _, c in sorted(timed, key=lambda t: (-t[0], t[1].index))][:n]


class _Placeholder:
    """Stands in for a class in a result that cannot be imported here (a user's own type)."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


class _TimingUnpickler(pickle.Unpickler):
    """Reads a ChunkResult even when its task values are of classes this process cannot
    import: the report needs only the timing fields and each outcome's ok flag."""

    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Placeholder,), {"__module__": "hpcpar.report.unimportable"})


def _read_result(rd: RunDir, i: int) -> tuple[ChunkResult | None, str]:
    path = rd.result_path(i)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None, ""
    try:
        result = _TimingUnpickler(io.BytesIO(unseal(blob, str(path)))).load()
    except CorruptFileError as exc:
        return None, f"corrupt results file ({exc})"
    except Exception as exc:  # noqa: BLE001 - a value whose unpickling fails; say so, go on
        return None, f"unreadable results file ({type(exc).__name__}: {exc})"
    if not isinstance(result, ChunkResult):
        return None, f"results file holds a {type(result).__name__}, not a ChunkResult"
    return result, ""


def _outcome(r: ChunkResult | None) -> str:
    if r is None:
        return "no result"
    if r.failed or any(not o[0] for o in r.outcomes):
        return "task error"
    return "ok" if r.complete else "partial"


def _pull_submissions(rd: RunDir, meta: dict) -> dict[int, list[dict]]:
    """A pull run's chunks are not submitted: workers claim them. Chunk -> the submissions of
    the workers that claimed it, one per claim (generation) in order, marked ``"retry"`` for
    every claim after the first (the earlier owner died and the chunk went back to the pool)."""
    of_worker = {int(w): sub for sub in meta.get("submissions", []) for w in sub.get("workers", [])}
    out: dict[int, list[dict]] = {}
    try:
        found = ((claims.parse_claim_name(p.name), p.name)
                 for p in claims.claims_dir(rd.path).iterdir())
        named = sorted((parsed, name) for parsed, name in found if parsed is not None)
    except OSError:                      # (voids and cancel refusals parse to None)
        return out
    for (chunk, _gen), name in named:    # by chunk, then generation
        owner = claims.read_owner(rd.path, name)
        sub = of_worker.get(owner) if owner is not None else None
        if sub is None:
            continue
        mine = out.setdefault(chunk, [])
        mine.append({**sub, "reason": "retry" if mine else sub.get("reason", "initial")})
    return out


def load_timeline(run: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> RunTimeline:
    """Read a run folder into a :class:`RunTimeline`.

    Parameters
    ----------
    run : str or path
        Run id (looked up in ``runs_dir``, default ``$HPCPAR_RUNS_DIR`` or the user data dir)
        or the run folder's path.
    runs_dir : str or path, optional
        Where to look a run id up.

    Raises
    ------
    FileNotFoundError
        No such run folder.
    ValueError
        run.json has no ``created`` time or no chunk count.
    """
    rd = resolve_run(run, runs_dir)
    meta = rd.read_meta()
    if "created" not in meta or meta.get("n_chunks") is None:
        raise ValueError(f"{rd.meta_path} has no 'created' time or 'n_chunks'; not a run hpcpar made?")
    t0 = float(meta["created"])
    subs: dict[int, list[dict]] = {}
    if meta.get("pull"):
        subs = _pull_submissions(rd, meta)
    else:
        for sub in meta.get("submissions", []):
            for i in sub.get("indices", []):
                subs.setdefault(int(i), []).append(sub)
    chunks = []
    ends = [rd.meta_path.stat().st_mtime - t0]
    for i in range(int(meta["n_chunks"])):
        result, note = _read_result(rd, i)
        mine = subs.get(i, [])
        times = sorted(float(s["time"]) - t0 for s in mine if "time" in s)
        started = finished = None
        if result is not None:
            started = result.started - t0 if result.started else None
            finished = result.finished - t0 if result.finished else None
            ends.append(finished or 0.0)
        ends.extend(times)
        chunks.append(ChunkTimeline(
            index=i, n_tasks=result.n_tasks if result else 0, done=result.done if result else 0,
            outcome=_outcome(result), host=result.host if result else "",
            submitted=times[0] if times else None, started=started, finished=finished,
            submissions=len(mine), retries=sum(s.get("reason") == "retry" for s in mine),
            requeues=sum(s.get("reason") == "requeue" for s in mine),
            task_seconds=tuple(result.task_seconds) if result else (),
            resubmitted=tuple(times[1:]), note=note))
    return RunTimeline(run_id=rd.run_id, path=rd.path, backend=str(meta.get("backend", "?")),
                       kind=str(meta.get("kind", "?")), job_name=str(meta.get("job_name", "?")),
                       state=str(meta.get("state", "?")), created=t0, end_s=max(ends),
                       chunks=tuple(chunks))


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _spread(values: list[float]) -> str:
    if not values:
        return "unknown (no chunk has both times)"
    return (f"median {statistics.median(values):.1f} s, max {max(values):.1f} s, "
            f"min {min(values):.1f} s over {len(values)} chunk(s)")


def summary_text(tl: RunTimeline, slowest: int = 5, max_rows: int = 50) -> str:
    """The report's text: totals, queue wait, run time, retries, hosts, a table of chunks
    (at most ``max_rows`` rows) and the ``slowest`` slowest chunks."""
    created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(tl.created))
    n = len(tl.chunks)
    outcomes = Counter(c.outcome for c in tl.chunks)
    hosts = Counter(c.host for c in tl.chunks if c.host)
    tasks = [t for c in tl.chunks for t in c.task_seconds]
    retried = [c for c in tl.chunks if c.retries]
    lines = [
        f"run         {tl.run_id}",
        f"            {tl.backend} backend, {tl.kind}, job name {tl.job_name}, state {tl.state}",
        f"created     {created}; last record {tl.end_s:.1f} s later",
        f"chunks      {n}: " + ", ".join(f"{k} {outcomes[k]}" for k in OUTCOMES if outcomes[k]),
        f"queue wait  {_spread([c.queue_wait_s for c in tl.chunks if c.queue_wait_s is not None])}",
        f"run time    {_spread([c.run_s for c in tl.chunks if c.run_s is not None])}",
    ]
    if tasks:
        lines.append(f"tasks       {len(tasks)} finished, median {statistics.median(tasks):.2f} s, "
                     f"max {max(tasks):.2f} s each")
    lines.append(f"retries     {sum(c.retries for c in tl.chunks)} (chunks "
                 f"{', '.join(str(c.index) for c in retried) or 'none'}); requeues after a "
                 f"walltime warning {sum(c.requeues for c in tl.chunks)}")
    lines.append("hosts       " + (", ".join(f"{h} ({k})" for h, k in sorted(hosts.items()))
                                   or "none recorded"))
    header = (f"{'chunk':>5} {'tasks':>7} {'host':<16} {'submit_s':>8} {'wait_s':>7} "
              f"{'run_s':>7} {'subs':>4}  outcome")
    lines += ["", header]
    for c in tl.chunks[:max_rows]:
        tasks_col = f"{c.done}/{c.n_tasks}" if c.n_tasks else "-"
        lines.append(f"{c.index:>5} {tasks_col:>7} {(c.host or '-')[:16]:<16} {_s(c.submitted):>8} "
                     f"{_s(c.queue_wait_s):>7} {_s(c.run_s):>7} {c.submissions:>4}  {c.outcome}"
                     + (f" ({c.note})" if c.note else ""))
    if n > max_rows:
        lines.append(f"... {n - max_rows} more chunk(s); see the picture, or --rows {n}")
    top = tl.slowest(slowest)
    if top:
        lines += ["", f"slowest {len(top)} chunk(s) by run time:"]
        lines += [f"  chunk {c.index}: {c.run_s:.1f} s on {c.host or '?'}, {c.done} task(s)"
                  + (f", {c.submissions} submissions" if c.submissions > 1 else "") for c in top]
    notes = []
    if retried:
        notes.append("a retried chunk's run time spans all its attempts: only the first "
                     "attempt's start is recorded")
    if outcomes["no result"]:
        notes.append(f"{outcomes['no result']} chunk(s) have no readable result: never started, "
                     "still queued, lost or cancelled (the scheduler's final state is not recorded)")
    if tl.kind == "command":
        notes.append("`hpcpar submit` runs your command, not hpcpar's worker, so no results are "
                     "written; only submissions are known")
    if notes:
        lines += [""] + [f"note: {x}" for x in notes]
    return "\n".join(lines) + "\n"


__all__ = ["OUTCOMES", "ChunkTimeline", "RunTimeline", "load_timeline", "summary_text"]
