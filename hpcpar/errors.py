"""The errors hpcpar raises.

Every error derives from :class:`HpcparError`::

    HpcparError
    ├── ConfigError              bad option, backend, profile or resource value (also a ValueError)
    ├── SchedulerNotFoundError   the scheduler's command is not on PATH
    ├── SchedulerCommandError    a scheduler command failed (argv, exit code, stderr, stdout)
    │   ├── SubmissionError      the scheduler refused a submission, or its answer had no job id
    │   └── StatusError          the status command failed or timed out
    ├── JobLostError             an array task ended without writing its results
    ├── PendingBlockedError      an array task pends for a reason that cannot resolve by itself
    ├── RunFolderError           a run's folder vanished or became unreadable while it ran
    ├── SerializationError       a function or argument cannot be pickled (also a TypeError)
    └── TaskError                a task raised, and its exception could not be sent back as itself

A task that raises an exception which pickles is re-raised in the driver as *that*
exception, with the remote traceback attached as ``__cause__`` (a :class:`RemoteTraceback`),
as :mod:`concurrent.futures` does.
"""

from __future__ import annotations

from collections.abc import Sequence


class HpcparError(Exception):
    """Base class of every hpcpar error."""


class ConfigError(HpcparError, ValueError):
    """An option, backend, profile or resource value is invalid. Raised before anything is submitted."""


class SchedulerNotFoundError(HpcparError, FileNotFoundError):
    """A scheduler command is missing from ``PATH``.

    Parameters
    ----------
    command : str
        The missing executable, e.g. ``"sbatch"``.
    backend : str
        The backend that needed it, e.g. ``"slurm"``.
    """

    def __init__(self, command: str, backend: str):
        self.command = command
        self.backend = backend
        super().__init__(
            f"the {backend!r} backend needs the command {command!r}, which is not on PATH "
            f"(is this a {backend} login node? `hpcpar backends` lists what is available)"
        )


class SchedulerCommandError(HpcparError):
    """A scheduler command failed, timed out, or printed what hpcpar cannot read.

    Parameters
    ----------
    argv : sequence of str
        The command that was run.
    returncode : int or None
        Its exit code; ``None`` if it timed out.
    stderr : str
        What it printed on standard error (the scheduler's own message).
    stdout : str, optional
    reason : str, optional
        What was wrong when the command itself succeeded (e.g. no job id in its output).
    """

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str, stdout: str = "",
                 reason: str | None = None):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        self.reason = reason
        how = "timed out" if returncode is None else f"exited with code {returncode}"
        msg = f"`{' '.join(self.argv)}` {how}"
        if reason:
            msg += f", but {reason}"
            if stdout.strip():
                msg += f"; its output:\n{stdout.strip()}"
        elif stderr.strip():
            msg += f":\n{stderr.strip()}"
        elif stdout.strip():
            msg += f":\n{stdout.strip()}"
        super().__init__(msg)


class SubmissionError(SchedulerCommandError):
    """A scheduler command failed or refused a submission (see :class:`SchedulerCommandError`)."""


class StatusError(SchedulerCommandError):
    """The scheduler's status command failed or timed out (see :class:`SchedulerCommandError`).

    The watcher keeps polling through these for a while (``Watcher.FAIL_AFTER_S``) before it
    fails the unfinished futures with this error.
    """


class JobLostError(HpcparError):
    """An array task ended without writing its results, and the retries are used up.

    Attributes
    ----------
    state : JobState
        The scheduler's verdict (TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, CANCELLED, FAILED...).
    job_id : str
        The array task's job id, e.g. ``"1234_7"``.
    exit_code : int or None
        From accounting, ``scontrol show job`` (SLURM without accounting) or the status call.
    stderr_tail : str
        The last lines of the array task's stderr log, if it exists.
    log_path : str or None
        The array task's stderr log.
    """

    def __init__(self, state, job_id: str, exit_code: int | None = None,
                 stderr_tail: str = "", attempts: int = 1, log_path: str | None = None):
        self.state = state
        self.job_id = job_id
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.attempts = attempts
        self.log_path = log_path
        code = "unknown" if exit_code is None else exit_code
        msg = (f"job {job_id} ended {getattr(state, 'name', state)} without writing its results "
               f"(exit code {code}, {attempts} attempt(s))")
        if log_path:
            msg += f"; log: {log_path}"
        if stderr_tail.strip():
            msg += "; last lines of its stderr:\n" + stderr_tail.rstrip()
        super().__init__(msg)


class RunFolderError(HpcparError):
    """A run's folder vanished or became unreadable while the run was being watched.

    Attributes
    ----------
    path : str
        The run folder.
    """

    def __init__(self, path: str, reason: str):
        self.path = path
        super().__init__(f"run folder {path} {reason}; the run cannot finish (its array tasks "
                         "read their inputs and write their results there)")


class PendingBlockedError(HpcparError):
    """An array task stayed pending longer than the ``blocked_grace_s`` option for a reason
    that cannot resolve by itself (SLURM's ``PartitionConfig``, ``InvalidAccount``...); hpcpar
    cancelled it.

    Attributes
    ----------
    job_id : str
        The array task's id, e.g. ``"1234_7"``.
    reason : str
        The scheduler's pending reason.
    pending_s : float
        Seconds it was seen pending for that reason.
    """

    def __init__(self, job_id: str, reason: str, pending_s: float, backend: str = ""):
        self.job_id = job_id
        self.reason = reason
        self.pending_s = pending_s
        super().__init__(
            f"{backend + ' ' if backend else ''}job {job_id} was pending for {reason!r} for "
            f"{pending_s:.0f} s, a reason that does not resolve by itself; hpcpar cancelled it. "
            "Change the resources, queue, account or qos (or raise the blocked_grace_s option)")


class SerializationError(HpcparError, TypeError):
    """A function or argument cannot be pickled; raised at submit time, naming the object."""


class TaskError(HpcparError):
    """A task raised an exception that could not be sent back as itself (it did not pickle).

    ``str(err)`` holds the original type and message; ``err.remote_traceback`` the traceback.
    """

    def __init__(self, message: str, remote_traceback: str = ""):
        self.remote_traceback = remote_traceback
        super().__init__(message)


class RemoteTraceback(Exception):
    """Carries a traceback formatted where the task ran; set as ``__cause__`` of the re-raised error."""

    def __init__(self, tb: str):
        self.tb = tb

    def __str__(self) -> str:
        return self.tb
