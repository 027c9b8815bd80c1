"""A scheduler spec: everything one batch scheduler needs, as data plus pure parsers.

:class:`~hpcpar.backends.batch.BatchBackend` holds all the logic (run folders, arrays,
polling, retries) and is never subclassed: ``BatchBackend(spec, resources, options)``. A spec
only says how to spell things for its scheduler. Nothing here does I/O, so every parser is
tested on recorded scheduler output under ``tests/data/<scheduler>/``.
:class:`SchedulerSpec` states the whole contract; :func:`hpcpar.register_scheduler` adds one.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError
from ..states import JobState

if TYPE_CHECKING:
    from ..config import Options
    from ..resources import Resources

log = logging.getLogger("hpcpar")


@dataclasses.dataclass(frozen=True)
class TaskStatus:
    """One array task as the scheduler reports it.

    Attributes
    ----------
    state : JobState
    native : str
        The scheduler's own state name.
    exit_code : int or None
    reason : str
        Why the task is in its state, as the scheduler words it (a pending reason such as
        SLURM's ``BeginTime`` or ``Priority``); ``""`` when it gives none.
    blocked : bool
        The reason cannot resolve by itself (the spec's
        :meth:`SchedulerSpec.blocking_reason`, e.g. SLURM's ``PartitionConfig``).
    """

    state: JobState
    native: str = ""
    exit_code: int | None = None
    reason: str = ""
    blocked: bool = False


@dataclasses.dataclass(frozen=True)
class QueueInfo:
    """What the scheduler says about a queue; every number None when unknown.

    Attributes
    ----------
    name : str
    total_cpus : int or None
        CPUs in all.
    max_walltime_s : int or None
        The walltime limit, seconds (None also when unlimited).
    nodes : int or None
        Nodes in the queue.
    cpus_per_node : int or None
        CPUs of its largest node.
    mem_per_node : int or None
        Memory of its largest node, bytes.
    """

    name: str
    total_cpus: int | None = None
    max_walltime_s: int | None = None
    nodes: int | None = None
    cpus_per_node: int | None = None
    mem_per_node: int | None = None


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
    """One batch scheduler, as data plus pure functions: the whole contract a scheduler meets.

    A spec is one object; ``hpcpar.backends.batch.BatchBackend`` drives any spec and is
    never subclassed. :func:`hpcpar.register_scheduler` adds a spec under its :attr:`name`, so
    ``hpcpar.Executor(name)``, :func:`hpcpar.attach` and the ``hpcpar`` command line use it.
    Nothing in a spec runs a command or touches the scheduler: it returns argument lists, and
    parses the text those commands print (test every parser on output recorded from the real
    scheduler or copied from its documentation, under ``tests/data/<scheduler>/``). The one
    exception allowed is reading the job script a submission sends on standard input.

    What a new scheduler provides (after psij-python's ``BatchSchedulerExecutor``):

    Data (class attributes)
        :attr:`name`; :attr:`template` (found in :attr:`template_dir`); :attr:`commands` (checked on PATH before anything is
        written); :attr:`array_index_var` and :attr:`array_index_base` (the variable holding
        the array task index inside a job, and the index of chunk 0); :attr:`STATES`, native
        state -> :class:`~hpcpar.JobState`, each line commented with what the scheduler's
        documentation says (the docs render the table from those comments); :attr:`on_warning`,
        :attr:`script_on_stdin`, :attr:`array_directives_in_runs`, :attr:`supports_qos`;
        :attr:`option_names`, the :class:`~hpcpar.config.Options` fields it reads.
    Submission
        :meth:`submissions` (the submit commands for a set of chunk indices, split where the
        scheduler limits an array) and :meth:`parse_submit` (a submit command's output ->
        ``{chunk index: task id}``; the task ids are stored in ``run.json`` and never
        recomputed). The default :meth:`parse_submit` uses :meth:`parse_job_id` and
        :meth:`task_id`; a scheduler that prints one id per task overrides it.
    Status and cancellation
        :meth:`status_argv` and :meth:`parse_status` (one call for every live job; task id ->
        :class:`TaskStatus`), :meth:`job_id_of` (the id a task's status and cancel go by),
        :meth:`cancel_argv`; optionally :meth:`status_failed_means_gone`,
        :meth:`final_status_argv` and :meth:`parse_final_status` (accounting), :meth:`log_stem`.
    Options, resources and probes
        :meth:`check_options` (refuse a bad option of its own with
        :class:`~hpcpar.ConfigError`), :meth:`template_context` (pure: the extra template
        variables for these resources and options), :meth:`lost_grace_s`; optionally
        :meth:`config_argv`/:meth:`parse_config` (array size limit, accounting),
        :meth:`queue_argv`/:meth:`parse_queue` (the queue's CPUs and walltime limit), and
        :meth:`detect_argv`/:meth:`variant` (a scheduler with dialects picks one).

    What its template (``templates/<template>``, Jinja2, extending ``base.sh.j2``) must do:

    * render every entry of ``array_directives`` as a directive line (the array request, as
      the submit command also passes it) and ``job_name``, and every :class:`~hpcpar.Resources`
      field it supports (others are refused or logged, never silently dropped);
    * with ``log_dir`` set, send the job's standard output and error to
      ``log_dir/<log_stem(task id)>.out`` and ``.err``, one pair per array task;
    * with ``run_dir`` set, ask the scheduler not to requeue the job on its own (hpcpar
      resubmits what is lost), and with ``signal_s`` set, ask for SIGUSR2 that many seconds
      before the walltime if the scheduler can;
    * leave the ``command`` block of ``base.sh.j2`` alone: it runs ``python -m hpcpar.worker``,
      which reads the array index from ``array_index_var`` (plus ``HPCPAR_INDEX_OFFSET`` when
      a submission is shifted), or one line of the array file;
    * pass every value through the ``q`` filter (shell quoting).
    """

    #: backend name, e.g. "slurm"
    name: ClassVar[str]
    #: the job-script template, e.g. "slurm.sh.j2"
    template: ClassVar[str]
    #: a folder with this scheduler's own template (a plugin's), searched after the user's
    #: ``template_dir`` option and before the shipped templates; None: shipped only
    template_dir: ClassVar[str | None] = None
    #: commands that must be on PATH
    commands: ClassVar[tuple[str, ...]]
    #: environment variable with the array task index inside a job
    array_index_var: ClassVar[str]
    #: the array index of chunk 0 (1 where the scheduler counts from 1)
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
    #: False if the scheduler has no quality of service (``qos`` is then logged, not rendered)
    supports_qos: ClassVar[bool] = True
    #: the scheduler-specific :class:`~hpcpar.config.Options` fields this spec reads
    option_names: ClassVar[tuple[str, ...]] = ()
    #: native state -> JobState, with the documentation it comes from in the subclass
    STATES: ClassVar[Mapping[str, JobState]] = {}
    #: pending reasons that cannot resolve by themselves (a task pending for one of them
    #: after the ``blocked_grace_s`` option fails, and its job is cancelled), with sources
    BLOCKING_REASONS: ClassVar[frozenset[str]] = frozenset()

    def blocking_reason(self, reason: str) -> bool:
        """True if a task pending for ``reason`` never starts unless someone changes something
        (default: ``reason`` is one of :attr:`BLOCKING_REASONS`, compared as words)."""
        return bool(reason) and reason.split(",")[0].split()[0].strip("()") in self.BLOCKING_REASONS

    def map_state(self, native: str) -> JobState:
        """The JobState for a native state; UNKNOWN (with a warning) for one not in the table."""
        key = native.strip()
        state = self.STATES.get(key)
        if state is None:
            log.warning("%s: unknown native job state %r, treated as UNKNOWN (still polled)",
                        self.name, native)
            return JobState.UNKNOWN
        return state

    # -- options, variants, templates ---------------------------------------------------------
    def check_options(self, options: Options) -> None:
        """Refuse bad values of this scheduler's own options (:attr:`option_names`).

        Raises
        ------
        ConfigError
            Naming the option, the value and the accepted ones.
        """

    def detect_argv(self, options: Options) -> list[str] | None:
        """A read-only command whose output :meth:`variant` reads, when the options do not
        decide the variant (PBS: ``qstat --version`` without ``dialect``); None: no command."""
        return None

    def variant(self, options: Options, detected: tuple[str, int] | None) -> SchedulerSpec:
        """The spec to use for ``options``: this one, or a dialect's. ``detected`` is the
        output (stdout + stderr) and exit code of :meth:`detect_argv`, or None if it was not
        run (no command, or not on PATH)."""
        return self

    def template_context(self, resources: Resources, options: Options) -> dict[str, Any]:
        """Extra variables for this scheduler's template (pure), e.g. SGE's per-slot memory."""
        return {}

    def lost_grace_s(self, probe: Mapping[str, Any]) -> float:
        """Seconds a task may be final (or gone) without a visible results file before it
        counts as ended: results written just before the job ended may take a moment to show
        over NFS. ``probe`` is what :meth:`parse_config` returned."""
        return 3.0

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

    def parse_submit(self, stdout: str, submission: Submission) -> dict[int, str]:
        """``{chunk index: task id}`` for every chunk ``submission`` submitted, from the
        submit command's standard output.

        Raises
        ------
        ValueError
            The output holds no job id (the engine reports it as a SubmissionError).
        """
        job_id = self.parse_job_id(stdout)
        return {i: self.task_id(job_id, i - submission.offset + self.array_index_base)
                for i in submission.indices}

    def parse_job_id(self, stdout: str) -> str:
        """The job id in the submit command's standard output (used by :meth:`parse_submit`)."""
        raise NotImplementedError

    def task_id(self, job_id: str, array_index: int) -> str:
        """The id under which status output reports array task ``array_index`` of ``job_id``
        (used by :meth:`parse_submit`)."""
        raise NotImplementedError

    def job_id_of(self, task_id: str) -> str:
        """The job a task belongs to: what :meth:`status_argv` is given, and what a whole-run
        cancel names. Default: the task id itself (a scheduler whose tasks are jobs)."""
        return task_id

    def log_stem(self, task_id: str) -> str:
        """File name (without .out/.err) of an array task's logs in the run's ``logs/``."""
        return task_id

    # -- status and cancellation -------------------------------------------------------------
    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """One command reporting every task of ``job_ids``."""
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
        """Task id -> final TaskStatus from :meth:`final_status_argv`'s output."""
        return {}

    def cancel_argv(self, ids: Sequence[str]) -> list[str]:
        """One command cancelling these job ids or task ids."""
        raise NotImplementedError

    def job_record_argv(self, job_id: str) -> list[str] | None:
        """A command showing the scheduler's record of one (array) job, with each task's exit
        code, for a scheduler without accounting; None if it has none. Asked only for tasks
        that ended without results, while the scheduler still remembers them."""
        return None

    def parse_job_record(self, stdout: str) -> dict[str, TaskStatus]:
        """Task id -> final TaskStatus (with exit code) from :meth:`job_record_argv`'s output."""
        return {}

    # -- optional probes, each run at most once per executor ----------------------------------
    def config_argv(self) -> list[str] | None:
        """A command whose output :meth:`parse_config` reads (array size limit, accounting)."""
        return None

    def parse_config(self, stdout: str) -> dict:
        """``{"max_array_size": int or None, "accounting": bool, ...}`` (keys it knows)."""
        return {}

    def queue_argv(self, queue: str | None) -> list[str] | None:
        """A command describing ``queue`` (or the default queue) for :meth:`parse_queue`."""
        return None

    def parse_queue(self, stdout: str, queue: str | None) -> QueueInfo | None:
        """The queue's name, CPUs and walltime limit; None if ``stdout`` does not show it."""
        return None


def check_choice(spec: str, option: str, value: str | None, choices: Iterable[str]) -> None:
    """Refuse ``value`` for ``option`` unless it is one of ``choices`` (case-insensitive)."""
    if value is not None and value.lower() not in {c.lower() for c in choices}:
        raise ConfigError(f"{option}={value!r} is not a valid {spec} {option}; "
                          f"use one of: {', '.join(choices)}")
