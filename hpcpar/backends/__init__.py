"""Backends: how chunks of a run get executed and watched.

The executor talks to a :class:`~hpcpar.backends.base.Backend` through one method,
``start(RunRequest) -> RunHandle`` (a future per chunk). Two families implement it:

* :mod:`.local` runs chunks in worker processes on this machine, in memory; :mod:`.inline`
  runs them in the driver's thread, for debugging.
* :class:`~hpcpar.backends.batch.BatchBackend` writes a run folder and submits one job array
  through a scheduler *spec* (data plus pure parsers: :mod:`.slurm`, :mod:`.pbs`, :mod:`.lsf`,
  :mod:`.sge`, or one added with :func:`register_scheduler`); a
  :class:`~hpcpar.watcher.Watcher` thread polls all live jobs with one status call.

Specs are imported lazily, by name (:mod:`.registry`).
"""

from __future__ import annotations

from ..config import BACKENDS, check_backend
from .registry import backend_names, get_scheduler, register_scheduler, scheduler_names


def create(name: str, resources, options):
    """The backend ``name`` for these resources and options: a LocalBackend, or a
    BatchBackend driving the scheduler spec registered under ``name``.

    Raises
    ------
    ConfigError
        Unknown backend, or an option the scheduler refuses.
    """
    check_backend(name)
    if name == "local":
        from .local import LocalBackend

        return LocalBackend(resources, options)
    if name == "inline":
        from .inline import InlineBackend

        return InlineBackend(resources, options)
    from .batch import BatchBackend

    return BatchBackend(get_scheduler(name), resources, options)


__all__ = ["BACKENDS", "backend_names", "create", "get_scheduler", "register_scheduler",
           "scheduler_names"]
