"""A scheduler spec: what one batch scheduler needs, as data plus pure parsers.

:class:`~hpcpar.backends.batch.BatchBackend` holds all the logic (run folders, arrays,
polling, retries); a spec only says how to spell things for its scheduler. Nothing here does
I/O, so every parser is tested on recorded scheduler output under ``tests/data/<scheduler>/``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar

from ..states import JobState

log = logging.getLogger("hpcpar")


@dataclasses.dataclass(frozen=True)
class TaskStatus:
    """One array task as the scheduler reports it."""

    state: JobState
    native: str = ""
    exit_code: int | None = None


@dataclasses.dataclass(frozen=True)
class QueueInfo:
    """What the scheduler says about a queue: its name, CPUs in all (None if unknown) and its
    walltime limit in seconds (None if unlimited or unknown)."""

    name: str
    total_cpus: int | None = None
    max_walltime_s: int | None = None


@dataclasses.dataclass(frozen=True)
class Submission:
    """One scheduler command that submits some chunks as one array job.

    ``argv`` runs with ``stdin`` as standard input (LSF reads the script from stdin). Chunk
    ``i`` of ``indices`` becomes array index ``i - offset + array_index_base``.

    ``array_options`` are the options of ``argv`` that ask for the array (each a tuple of the
    flag and its value, e.g. ``("--array=0-9%2",)`` or ``("-t", "1-10")``). The first
    submission's are also rendered into the job script as directives (a scheduler reads the
    same option from a directive line), so a script submitted by hand asks for the same array;
    on the command line they override the directives (each scheduler's precedence rule), which
    is how resubmissions of a few indices reuse the script.
    """

    argv: tuple[str, ...]
    indices: tuple[int, ...]
    stdin: str | None = None
    offset: int = 0
    array_options: tuple[tuple[str, ...], ...] = ()


def compress_ranges(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, de-duplicated indices as inclusive ``(first, last)`` runs: [1,2,3,7] -> [(1,3),(7,7)]."""
    runs: list[tuple[int, int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def range_text(runs: Sequence[tuple[int, int]], sep: str = ",") -> str:
    """``[(0,9),(12,12)]`` -> ``"0-9,12"``."""
    return sep.join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs)


class SchedulerSpec:
    """Base class of the scheduler specs. Subclasses fill in the class attributes and parsers."""

    #: backend name, e.g. "slurm"
    name: ClassVar[str]
    #: the job-script template, e.g. "slurm.sh.j2"
    template: ClassVar[str]
    #: commands that must be on PATH
    commands: ClassVar[tuple[str, ...]]
    #: environment variable with the array task index, and the index of chunk 0
    array_index_var: ClassVar[str]
    array_index_base: ClassVar[int] = 0
    #: what the worker does on SIGUSR2, the walltime warning: "checkpoint" (save and go on,
    #: when the warning comes before the limit) or "stop" (save and exit, when it comes at it)
    on_warning: ClassVar[str] = "stop"
    #: True if a run's job.sh may carry the array request as directives: every resubmission
    #: (of a few lost indices, reusing job.sh) then puts its own array options on the command
    #: line, which override the directives
    array_directives_in_runs: ClassVar[bool] = True
    #: True if the submit command reads the script on stdin (LSF's ``bsub < job.sh``)
    script_on_stdin: ClassVar[bool] = False
    #: native state -> JobState, with the documentation it comes from in the subclass
    STATES: ClassVar[Mapping[str, JobState]] = {}

    def map_state(self, native: str) -> JobState:
        """The JobState for a native state; UNKNOWN (with a warning) for one not in the table."""
        key = native.strip()
        state = self.STATES.get(key)
        if state is None:
            log.warning("%s: unknown native job state %r, treated as UNKNOWN (still polled)",
                        self.name, native)
            return JobState.UNKNOWN
        return state

    # -- submission --------------------------------------------------------------------------
    def submissions(self, script: str, indices: Sequence[int], max_running: int | None,
                    max_array_size: int | None, extra_env: Mapping[str, str] | None = None) -> list[Submission]:
        """The commands that submit array tasks for ``indices`` (chunk indices)."""
        raise NotImplementedError

    def planned_submissions(self, indices: Sequence[int], max_running: int | None,
                            max_array_size: int | None, job_name: str,
                            script: str = "job.sh") -> list[Submission]:
        """:meth:`submissions` for a script not written yet (a dry run, or the array directives
        of the script about to be written); pure. ``job_name`` is the script's job name."""
        return self.submissions(script, indices, max_running, max_array_size)

    def parse_job_id(self, stdout: str) -> str:
        """The job id in the submit command's standard output."""
        raise NotImplementedError

    def task_id(self, job_id: str, array_index: int) -> str:
        """The id under which status output reports array task ``array_index`` of ``job_id``."""
        raise NotImplementedError

    def log_stem(self, task_id: str) -> str:
        """File name (without .out/.err) of an array task's logs in the run's ``logs/``."""
        return task_id

    # -- status and cancellation -------------------------------------------------------------
    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def parse_status(self, stdout: str) -> dict[str, TaskStatus]:
        """Array task id -> TaskStatus for every task in the status command's output."""
        raise NotImplementedError

    def status_failed_means_gone(self, stderr: str) -> bool:
        """True if a failing status command only says the jobs are unknown (finished long ago)."""
        return False

    def final_status_argv(self, task_ids: Sequence[str]) -> list[str] | None:
        """A command giving final states from accounting (None if the scheduler has none)."""
        return None

    def parse_final_status(self, stdout: str) -> dict[str, TaskStatus]:
        return {}

    def cancel_argv(self, ids: Sequence[str]) -> list[str]:
        raise NotImplementedError

    # -- optional probes, each run at most once per executor ----------------------------------
    def config_argv(self) -> list[str] | None:
        """A command whose output :meth:`parse_config` reads (array size limit, accounting)."""
        return None

    def parse_config(self, stdout: str) -> dict:
        return {}

    def queue_argv(self, queue: str | None) -> list[str] | None:
        """A command describing ``queue`` (or the default queue) for :meth:`parse_queue`."""
        return None

    def parse_queue(self, stdout: str, queue: str | None) -> QueueInfo | None:
        return None
