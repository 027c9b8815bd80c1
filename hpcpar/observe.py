"""What a process other than the run's driver learns of a run, and records (``hpcpar status``,
``hpcpar clean``).

A run outlives its driver (``hpcpar submit`` has none at all), and the scheduler forgets a job
soon after it ends (SLURM: ``MinJobAge``, 300 s by default, and ``sacct`` only where accounting
runs). So whoever looks records what it sees: :func:`observe` asks the scheduler once for the
run's latest array tasks, asks for the exit codes of those that ended (accounting, else
``scontrol show job``, else the exit code a command run's job script recorded itself in
``outcomes/line-<i>.exit``), records each ended task's outcome in the run folder
(:func:`hpcpar.runstate.record_outcome`: state, exit code, log paths, the command line of a
command array's task), and the run's final phase once every task has ended
(:func:`hpcpar.runstate.record_observed_end`). What is recorded is shown after the scheduler
has forgotten the jobs.

A run with a driver (``map``, ``submit``, ``map_reduce``) gets its final phase from here only
when its driver is known to be gone (same host, process gone): a live driver may still
resubmit a lost task.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import socket
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import runstate
from .rundir import CorruptFileError, RunDir
from .states import JobState


class _Status(NamedTuple):
    """A final state learnt other than from the scheduler (the job script's own record)."""

    state: JobState
    native: str = ""
    exit_code: int | None = None


@dataclasses.dataclass(frozen=True)
class TaskView:
    """One chunk's latest array task, as shown by ``hpcpar status``.

    Attributes
    ----------
    index : int
        Chunk index (the line of a command array, from 0).
    task_id : str
    state : str
        The scheduler's state now, else the recorded one, else ``"UNKNOWN"``.
    exit_code : int or None
    logs : list of str
        Standard output and error log paths.
    command : str or None
        A command array's line.
    recorded : bool
        The state comes from the run folder's record (the scheduler no longer reports it).
    cancelled : bool
    reason : str
        Why a live task waits, when the scheduler's status call says (SLURM ``%r``, e.g.
        ``BeginTime``); empty otherwise.
    """

    index: int
    task_id: str
    state: str
    exit_code: int | None
    logs: list[str]
    command: str | None
    recorded: bool
    cancelled: bool
    reason: str = ""

    @property
    def failed(self) -> bool:
        return (self.state not in ("PENDING", "RUNNING", "UNKNOWN", "COMPLETED")
                or self.exit_code not in (None, 0))


def driver_gone(meta: Mapping[str, Any]) -> bool:
    """True if the run has no driver (``hpcpar submit``) or its driver ran on this host and
    its process is gone; False if it may be alive (or runs elsewhere)."""
    driver = meta.get("driver")
    if meta.get("kind") == "command" or not driver:
        return True
    if driver.get("host") not in (os.uname().nodename, socket.gethostname()):
        return False
    try:
        os.kill(int(driver["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, TypeError, KeyError):
        return False
    return False


def command_of(rd: RunDir, meta: Mapping[str, Any], index: int) -> str | None:
    """The command line of chunk ``index`` of a command run (its line of the array file)."""
    if meta.get("kind") != "command":
        return None
    array_file = rd.path / "commands.txt"
    if array_file.is_file():
        with open(array_file, errors="replace") as fh:
            for i, line in enumerate(fh):
                if i == index:
                    return line.rstrip("\n")
        return None
    command = meta.get("command")
    return shlex.join(command) if command else None


def _results_kind(rd: RunDir, index: int) -> str:
    try:
        result = rd.read_result(index)
    except (CorruptFileError, OSError, EOFError, ValueError):
        return "absent"
    if result is None:
        return "absent"
    return "complete" if result.complete else "partial"


def observe(rd: RunDir, backend: Any) -> dict[str, Any]:
    """Ask the scheduler about ``rd``'s latest array tasks (one status call), record what
    ended, and the run's end; returns ``{task id: TaskStatus}`` as the scheduler reported.

    ``backend`` is a batch backend for the run (its ``spec``, ``poll`` and ``final_states``).

    Raises
    ------
    hpcpar.StatusError
        The status command failed.
    OSError
        The run folder cannot be read or written.
    """
    meta = runstate.read(rd)
    if meta.get("pull"):
        return _observe_workers(rd, meta, backend)
    latest = runstate.latest_tasks(meta)
    outcomes = runstate.read_outcomes(rd)
    todo = {i: t for i, t in latest.items() if not runstate.task_ended(outcomes.get(t))}
    statuses: dict[str, Any] = {}
    if todo:
        spec = backend.spec
        jobs = sorted({spec.job_id_of(t) for t in todo.values()}, key=lambda j: (len(j), j))
        statuses = backend.poll(jobs)
        ended = [t for t in todo.values() if t in statuses and not statuses[t].state.is_live]
        exact = backend.final_states(ended) if ended else {}
        for i, t in todo.items():
            st = exact.get(t) or statuses.get(t)
            kind = _results_kind(rd, i) if meta.get("kind") != "command" else None
            own = runstate.read_exit_record(rd, i) if meta.get("kind") == "command" else None
            if st is None and own is not None:      # forgotten: the job script's own record
                st = _Status(JobState.COMPLETED if own == 0 else JobState.FAILED, "", own)
                by = "job script"
            else:
                by = "status"
            if st is not None and not st.state.is_live and st.exit_code is None and own is not None:
                st = _Status(st.state, st.native, own)
            if st is None and kind != "complete":
                continue                        # forgotten, and nothing says how it ended
            if st is not None and st.state.is_live and kind != "complete":
                continue
            stem = rd.logs_dir / spec.log_stem(t)
            final = st if st is not None and not st.state.is_live else None
            runstate.record_outcome(
                rd, i, t, state=final.state if final else None,
                native=final.native if final else "", exit_code=final.exit_code if final else None,
                observed_by=by, logs=[f"{stem}.out", f"{stem}.err"],
                command=command_of(rd, meta, i), results=kind)
    if driver_gone(meta):
        runstate.record_observed_end(rd)
    return statuses


def _observe_workers(rd: RunDir, meta: Mapping[str, Any], backend: Any) -> dict[str, Any]:
    """:func:`observe` for a pull run: its array tasks are workers (:mod:`hpcpar.claims`), so
    each ended worker's own end is recorded (its record's ``chunks`` are the driver's to
    fill), and the run's end once every worker has ended."""
    outcomes = runstate.read_outcomes(rd)
    todo = {w: t for w, t in runstate.worker_tasks(meta).items()
            if not runstate.task_ended(outcomes.get(t))}
    statuses: dict[str, Any] = {}
    if todo:
        spec = backend.spec
        jobs = sorted({spec.job_id_of(t) for t in todo.values()}, key=lambda j: (len(j), j))
        statuses = backend.poll(jobs)
        ended = [t for t in todo.values() if t in statuses and not statuses[t].state.is_live]
        exact = backend.final_states(ended) if ended else {}
        for t in ended:
            st = exact.get(t) or statuses[t]
            stem = rd.logs_dir / spec.log_stem(t)
            runstate.record_outcome(rd, None, t, state=st.state, native=st.native,
                                    exit_code=st.exit_code, observed_by="status",
                                    logs=[f"{stem}.out", f"{stem}.err"], worker=True)
    if driver_gone(meta):
        runstate.record_observed_end(rd)
    return statuses


def task_views(rd: RunDir, statuses: Mapping[str, Any], spec: Any) -> list[TaskView]:
    """Every chunk's latest array task (a pull run: every worker, ``index`` its worker index):
    the scheduler's state if it reports it, else the recorded outcome."""
    meta = runstate.read(rd)
    outcomes = runstate.read_outcomes(rd)
    out = []
    tasks = runstate.worker_tasks(meta) if meta.get("pull") else runstate.latest_tasks(meta)
    for i, t in sorted(tasks.items()):
        st, rec = statuses.get(t), outcomes.get(t) or {}
        stem = rd.logs_dir / spec.log_stem(t)
        if st is not None:
            state, recorded = st.state.name, False
            code = st.exit_code if st.exit_code is not None else rec.get("exit_code")
        elif rec:
            state = rec.get("state") or ("COMPLETED" if rec.get("results") == "complete" else "UNKNOWN")
            code, recorded = rec.get("exit_code"), True
        else:
            state, code, recorded = "UNKNOWN", None, False
        reason = (getattr(st, "reason", "") or "") if st is not None and st.state.is_live else ""
        out.append(TaskView(i, t, state, code, rec.get("logs") or [f"{stem}.out", f"{stem}.err"],
                            rec.get("command") or command_of(rd, meta, i), recorded,
                            bool(rec.get("cancelled")), reason))
    return out


__all__ = ["TaskView", "command_of", "driver_gone", "observe", "task_views"]
