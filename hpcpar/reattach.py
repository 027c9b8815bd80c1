"""Re-attach to a run whose driver died: ``hpcpar.attach(run_id_or_path)``.

Everything a run needs is in its folder, so a new process can pick it up::

    run = hpcpar.attach("fit_forest-20261120-231502-3fa9c1")    # or a path; `hpcpar runs` lists them
    run.status()                  # {'done': 7, 'running': 2, 'pending': 1, 'lost': 0, ...}
    forests = run.results()       # waits; finished chunks are collected, never rerun

Chunks with a complete results file resolve at once; chunks whose array task is still pending
or running are watched (one status call per poll, as for a live executor); chunks whose job
ended without results are resubmitted (only those indices), counting retries already spent.
A cancel is a recorded decision: a run with a cancel request (``hpcpar cancel``, the driver's
``shutdown(cancel=True)`` or signals) is not resubmitted, and neither is an array task whose
outcome records a cancel (a cancelled future, an external ``scancel``); those chunks raise
:class:`concurrent.futures.CancelledError` or :class:`~hpcpar.JobLostError` (state CANCELLED)
unless ``attach(run, resubmit_cancelled=True)``. Every outcome the watcher learns is recorded in
the run folder, and the run's final phase is written once every chunk has ended, so
``hpcpar runs`` shows it done (or failed, cancelled) afterwards.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import pickle
from concurrent.futures import Future
from typing import Any

from . import aggregate, claims
from .backends import create
from .backends.batch import BatchBackend
from .config import Options
from .errors import ConfigError, HpcparError
from .executor import outcome_value
from .resources import Resources
from .runs import resolve_run
from .runstate import Run, withdraw_cancel
from .watcher import observe_claims


class AttachedRun:
    """Futures (one per chunk) and results of a re-attached run.

    Attributes
    ----------
    run_id : str
    path : pathlib.Path
        The run folder.
    kind : str
        ``"map"``, ``"map_reduce"`` or ``"submit"``.
    futures : list of concurrent.futures.Future
        One per chunk, resolving to its ChunkResult (or JobLostError...).
    """

    def __init__(self, backend: BatchBackend, run: Run):
        self._backend = backend
        self._run = run
        self.run_id = run.rd.run_id
        self.path = run.rd.path
        self.kind = run.meta.get("kind", "map")
        self.futures: list[Future] = run.futures

    def __repr__(self) -> str:
        return f"<hpcpar.AttachedRun {self.run_id} {self.status()}>"

    def status(self) -> dict[str, int]:
        """Chunks by state: ``done``, ``failed``, ``cancelled``, ``pending``, ``running``, ``lost``
        (ended without results, about to be resubmitted). Right after :func:`attach` it shows
        what one status call said (running tasks as running), and recorded cancels."""
        out = {"done": 0, "failed": 0, "cancelled": 0, "pending": 0, "running": 0, "lost": 0}
        for c in self._run.chunks.values():
            f = c.future
            if _cancelled(f):
                out["cancelled"] += 1
            elif f.done():
                out["failed" if f.exception() else "done"] += 1
            elif c.state.name == "COMPLETED" and self._run.rd.result_path(c.index).exists():
                out["done"] += 1                # ended with results, about to be collected
            elif self._run.pull and self._complete(c.index):
                out["done"] += 1                # its worker went on to other chunks
            elif self._run.chunk_cancel_requested(c):
                out["cancelled"] += 1           # a recorded cancel, about to be honoured
            elif c.state.is_live:
                out["running" if c.state.name == "RUNNING" else "pending"] += 1
            else:
                out["lost"] += 1
        return out

    def _complete(self, index: int) -> bool:
        """Chunk ``index`` has a complete results file (a pull run's worker may still run)."""
        if not self._run.rd.result_path(index).exists():
            return False
        try:
            result = self._run.rd.read_result(index)
        except Exception:  # noqa: BLE001 (unreadable for now: the watcher decides)
            return False
        return result is not None and result.complete

    def wait(self, timeout: float | None = None) -> None:
        """Block until every chunk has finished (or ``timeout`` seconds pass); once all have,
        the run's final phase is in run.json when this returns."""
        done, _ = concurrent.futures.wait(self.futures, timeout=timeout)
        if len(done) == len(self.futures):
            with self._run.lock:
                live = bool(self._run.unfinished)
            if not live:
                try:
                    self._run.settle()
                except OSError:
                    pass            # the folder is gone: the futures say why

    def results(self, timeout: float | None = None) -> Any:
        """The run's results, as the original call would have returned them.

        ``map``/``submit``: a list, one value per item or call, in order (a task's exception is
        raised, with its remote traceback). ``map_reduce``: the folded value, as the original call
        returns it (see :meth:`hpcpar.Executor.map_reduce`).
        """
        self.wait(timeout)
        cancelled = [i for i, f in enumerate(self.futures) if _cancelled(f)]
        if cancelled:
            raise concurrent.futures.CancelledError(
                f"run {self.run_id}: chunk(s) {cancelled} were cancelled (a recorded cancel: "
                f"`hpcpar cancel`, shutdown or a signal) and are not resubmitted; "
                f"hpcpar.attach({self.run_id!r}, resubmit_cancelled=True) runs them again")
        chunks = [f.result(timeout=0) for f in self.futures]
        if self.kind != "map_reduce":
            return [outcome_value(o) for r in chunks for o in r.outcomes]
        payload = pickle.loads(self._run.rd.read_function_bytes())
        partials = [outcome_value(r.outcomes[0]) for r in chunks]
        fold = payload["reducer"]
        if isinstance(fold, aggregate.Fold):        # initializer and combiner are recorded
            return aggregate.combine(partials, payload["combiner"], fold)
        return functools.reduce(fold, partials)

    def cancel(self) -> None:
        """Cancel the run's unfinished array tasks."""
        self._backend.cancel_run(self._run)


def attach(run: str | os.PathLike, runs_dir: str | os.PathLike | None = None, *,
           resubmit_cancelled: bool = False, **options: Any) -> AttachedRun:
    """Re-attach to the run ``run`` (a run id or a run folder path).

    Parameters
    ----------
    run : str or path
        Run id (looked up in ``runs_dir``, default ``$HPCPAR_RUNS_DIR`` or the user data dir) or path.
    resubmit_cancelled : bool, default False
        Run the cancelled chunks again: withdraw the run's cancel request, forget the recorded
        cancels, and retry tasks the scheduler reports CANCELLED (within ``max_retries``).
        Without it, cancelled chunks are never resubmitted and raise.
    **options
        Executor options to override those recorded in ``run.json`` (e.g. ``max_retries``,
        ``poll_interval_s``).

    Raises
    ------
    FileNotFoundError
        No such run.
    ConfigError
        The run was not made by a batch backend's executor (e.g. ``hpcpar submit`` commands).
    """
    rd = resolve_run(run, runs_dir)
    meta = rd.read_meta()
    if meta.get("kind") not in ("map", "map_reduce", "submit") or not rd.function_path.is_file():
        raise ConfigError(f"run {rd.run_id} ({meta.get('kind')}) has no results to collect; "
                          f"use `hpcpar status {rd.run_id}` and `hpcpar logs {rd.run_id}`")
    recorded = {k: v for k, v in meta.get("options", {}).items()
                if k in {f.name for f in dataclasses.fields(Options)}}
    recorded.update(options)
    res = dict(meta.get("resources", {}))
    res["extra_directives"] = tuple(res.get("extra_directives", ()))
    res["setup"] = tuple(res.get("setup", ()))
    backend = create(meta["backend"], Resources(**res), Options(**recorded))
    if not isinstance(backend, BatchBackend):
        raise ConfigError(f"run {rd.run_id} used the {meta['backend']!r} backend, which keeps "
                          "nothing on disk")
    batch_run = Run.reopen(rd, backend.spec.job_id_of)
    if resubmit_cancelled:
        withdraw_cancel(rd)
        batch_run.cancelled.clear()
        batch_run.resubmit_cancelled = True
        if batch_run.pull:              # cancelled chunks go back to the pool
            claims.release_refused(rd.path)
    elif batch_run.pull:                # chunks the driver took out of the pool (cancelled)
        batch_run.cancelled |= {i for i, info in claims.scan(rd.path).items()
                                if info.refused and not info.voided}
    _first_look(backend, batch_run)
    backend.watch(batch_run)
    attached = AttachedRun(backend, batch_run)
    return attached


def _cancelled(f: Future) -> bool:
    """Cancelled, or failed by a cancel while it ran (a running chunk's future cannot be
    cancelled, so it fails with CancelledError)."""
    return f.cancelled() or (f.done() and isinstance(f.exception(), concurrent.futures.CancelledError))


def _first_look(backend: BatchBackend, run: Run) -> None:
    """One status call before watching, so :meth:`AttachedRun.status` shows running tasks as
    running at once (not pending until the watcher's first poll)."""
    jobs = sorted({c.job_id for c in run.chunks.values() if c.job_id}
                  | {run.worker_jobs[t] for t in run.live_workers()}, key=lambda j: (len(j), j))
    if not jobs:
        return
    try:
        statuses = backend.poll(jobs)
    except HpcparError:
        return                      # the watcher retries, and reports a lasting failure
    if run.pull:                    # chunks show the state of the worker holding their claim
        with contextlib.suppress(OSError):
            observe_claims(run, statuses)
        return
    for c in run.chunks.values():
        st = statuses.get(c.task_id or "")
        if st is not None:
            c.status = st


__all__ = ["AttachedRun", "attach"]
