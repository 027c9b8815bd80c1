"""hpcpar: one map/reduce for a laptop, SLURM, PBS, LSF, SGE.

>>> import hpcpar
>>> with hpcpar.Executor() as ex:          # "local" unless HPCPAR_BACKEND / HPCPAR_PROFILE say otherwise
...     squares = list(ex.map(pow, range(4), [2] * 4))
>>> squares
[0, 1, 4, 9]
"""

from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, as_completed, wait

from ._version import __version__ as __version__
from .backends.registry import register_scheduler
from .errors import (
    ConfigError,
    HpcparError,
    JobLostError,
    PendingBlockedError,
    RunFolderError,
    SchedulerCommandError,
    SchedulerNotFoundError,
    SerializationError,
    StatusError,
    SubmissionError,
    TaskError,
)
from .executor import Executor
from .resources import Resources, parse_mem, parse_walltime
from .states import JobState

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "ConfigError",
    "Executor",
    "HpcparError",
    "JobLostError",
    "JobState",
    "PendingBlockedError",
    "Resources",
    "RunFolderError",
    "SchedulerCommandError",
    "SchedulerNotFoundError",
    "SerializationError",
    "StatusError",
    "SubmissionError",
    "TaskError",
    "as_completed",
    "attach",
    "parse_mem",
    "parse_walltime",
    "register_scheduler",
    "wait",
]


def attach(run, runs_dir=None, **options):
    """Re-attach to a run whose driver died; see :func:`hpcpar.reattach.attach`."""
    from .reattach import attach as _attach

    return _attach(run, runs_dir, **options)
