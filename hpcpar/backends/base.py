"""The executor-facing backend interface."""

from __future__ import annotations

import abc
import dataclasses
import os
import sys
from concurrent.futures import Future
from pathlib import Path

from .. import templates
from .._futures import cancel_future
from ..config import Options
from ..resources import THREAD_VARS, Resources


@dataclasses.dataclass
class RunRequest:
    """One run, ready to execute: everything already pickled by the executor.

    Attributes
    ----------
    fn_payload : bytes
        cloudpickle of ``{"fn": ..., "mode": "map" | "reduce", "reducer": ...}``.
    chunks : list of bytes
        cloudpickle of each chunk's list of ``(args, kwargs)``.
    chunk_sizes : list of int
        Tasks per chunk.
    mode : str
        ``"map"`` or ``"reduce"``.
    kind : str
        What the user called: ``"map"``, ``"map_reduce"`` or ``"submit"`` (recorded in run.json).
    job_name : str
    args_dir : str, optional
        A folder of large objects the payload and chunks reference (:mod:`hpcpar.argstore`):
        a backend with a run folder moves it there (:func:`hpcpar.argstore.adopt`); otherwise
        the executor deletes it when the run is done.
    """

    fn_payload: bytes
    chunks: list[bytes]
    chunk_sizes: list[int]
    mode: str = "map"
    kind: str = "map"
    job_name: str = "hpcpar"
    args_dir: str | None = None


class RunHandle:
    """A started run: one future per chunk, each resolving to a ChunkResult (or an error such
    as JobLostError)."""

    def __init__(self, run_id: str, futures: list[Future]):
        self.run_id = run_id
        self.futures = futures

    def cancel(self) -> None:
        """Cancel the chunks not yet finished (and their jobs, for batch backends)."""
        for f in self.futures:
            cancel_future(f)

    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def describe_unfinished(self) -> str:
        """What the unfinished chunks are waiting for, e.g. ``"PENDING (BeginTime): 2"``, as
        the backend last saw it; ``""`` when it knows nothing more than the futures."""
        return ""


class Backend(abc.ABC):
    """How chunks run. Subclasses set ``name`` and implement :meth:`start` and :meth:`slots`.

    ``name``, ``template``, ``array_index_var``, ``array_index_base`` and ``on_warning`` are
    class attributes of the local backend and instance attributes of a BatchBackend (copied
    from its scheduler spec).
    """

    name: str
    #: seconds that ``Executor.submit`` waits to gather calls into one array
    submit_linger_s: float = 0.0
    #: the job-script template for ``job_script()``
    template: str = "local.sh.j2"
    #: environment variable holding the array task index inside a job
    array_index_var: str = "HPCPAR_ARRAY_INDEX"
    #: array index of chunk 0
    array_index_base: int = 0

    def __init__(self, resources: Resources, options: Options):
        self.resources = resources
        self.options = options

    @abc.abstractmethod
    def slots(self) -> int:
        """How many chunks can run at once (used to size chunks)."""

    @abc.abstractmethod
    def start(self, request: RunRequest) -> RunHandle:
        """Start every chunk of ``request``; return at once."""

    def check(self) -> None:  # noqa: B027 (an optional hook: most backends have nothing to check)
        """Raise if this backend cannot run here (e.g. SchedulerNotFoundError)."""

    def shutdown(self, wait: bool = True, cancel: bool = False) -> None:  # noqa: B027 (optional)
        """Release resources; with ``cancel``, stop what still runs (unless detached)."""

    # -- scripts -----------------------------------------------------------------------------
    def python(self) -> str:
        return self.options.python or sys.executable

    #: what the worker does on the walltime warning (see hpcpar.worker)
    on_warning: str = "stop"

    def worker_command(self, run_dir: str) -> list[str]:
        """``python -P -m hpcpar.worker RUN_DIR ...``; ``-P`` keeps the job's working folder from
        shadowing the installed hpcpar (the driver's code folders are added from run.json)."""
        return [self.python(), "-P", "-m", "hpcpar.worker", run_dir, "--index-var", self.array_index_var,
                "--index-base", str(self.array_index_base),
                "--checkpoint-s", f"{self.options.checkpoint_s:g}", "--on-warning", self.on_warning]

    def script_context(self, job_name: str, command: list[str] | None, run_dir: str | None = None,
                       log_dir: str | None = None, array_file: str | None = None,
                       workdir: str | None = None, **extra) -> dict:
        from .._version import __version__

        return {
            "hpcpar_version": __version__,
            "job_name": job_name,
            "resources": self.resources,
            "command": command or [],
            "run_dir": run_dir,
            "log_dir": log_dir,
            "array_file": array_file,
            "array_index_var": self.array_index_var,
            "array_index_base": self.array_index_base,
            "workdir": workdir,
            "thread_vars": THREAD_VARS,
            "signal_s": None,
            "array_directives": [],
            "options": self.options,
            **extra,
        }

    def render_script(self, context: dict) -> str:
        return templates.render(self.template, context, self.options.template_dir)

    def array_directives(self, n_tasks: int | None, job_name: str,
                         max_array_size: int | None = None, for_run: bool = False) -> list[str]:
        """Directive bodies (after ``#SBATCH`` etc.) asking for an array of ``n_tasks`` tasks;
        none here (no scheduler) or for ``n_tasks`` None. See BatchBackend."""
        return []

    def submit_commands(self, n_tasks: int, job_name: str, script: str = "job.sh",
                        max_array_size: int | None = None) -> list[tuple[str, ...]]:
        """The argv(s) that submit ``script`` as ``n_tasks`` array tasks; none here."""
        return []

    def job_script(self, command: list[str] | None = None, job_name: str | None = None,
                   array_file: str | None = None, run_dir: str | None = None,
                   array_size: int | None = None, for_run: bool = False) -> str:
        """The script this backend would submit (a dry run: nothing is written or submitted).

        With ``command`` (an argv list) the job runs it; with ``array_file`` each array task
        runs one line of that file; otherwise it runs the hpcpar worker of ``run_dir``
        (``"<RUN_DIR>"`` when not given). ``array_size`` (array tasks; default: the lines of
        ``array_file``, else none) adds the array request as directives, exactly as a
        submission asks for it (``#SBATCH --array=0-N%max_running`` ...), so the printed
        script submitted by hand runs every task. ``for_run``: the script as a run writes it
        (see :meth:`array_directives`).
        """
        run_dir_text = run_dir or "<RUN_DIR>"
        if command is None and array_file is None:
            command = self.worker_command(run_dir_text)
        if array_size is None and array_file is not None:
            array_size = count_lines(array_file)
        name = job_name or self.options.job_name or "hpcpar"
        ctx = self.script_context(name, command,
                                  run_dir=run_dir, array_file=array_file,
                                  log_dir=f"{run_dir}/logs" if run_dir else None,
                                  workdir=self.options.workdir,
                                  array_directives=self.array_directives(array_size, name,
                                                                         for_run=for_run))
        return self.render_script(ctx)


def count_lines(path: str) -> int:
    """Lines of an array file (one array task each); see :func:`array_file_lines`."""
    return len(array_file_lines(path))


def array_file_lines(path: str | os.PathLike) -> list[str]:
    """The commands of an array file, one a line (one array task each).

    Raises
    ------
    ConfigError
        Naming ``--array-file``: the file cannot be read, has no lines, or has blank lines
        (each would be an array task that runs nothing and "succeeds"; their line numbers are
        given).
    """
    from ..errors import ConfigError

    try:
        text = Path(path).read_bytes().decode("utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ConfigError(f"--array-file {path}: cannot read it ({exc.strerror})") from exc
    lines = text.splitlines()
    if not lines:
        raise ConfigError(f"--array-file {path} is empty: it needs one command per line")
    blank = [n for n, line in enumerate(lines, 1) if not line.strip()]
    if blank:
        shown = ", ".join(map(str, blank[:10])) + (" ..." if len(blank) > 10 else "")
        raise ConfigError(f"--array-file {path} has {len(blank)} blank line(s) (line {shown}); "
                          "each line is one array task: remove them")
    return lines
