"""Backends: how chunks of a run get executed and watched.

The executor talks to a :class:`~hpcpar.backends.base.Backend` through one method,
``start(RunRequest) -> RunHandle`` (a future per chunk). Two families implement it:

* :mod:`.local` runs chunks in a process pool on this machine, in memory; :mod:`.inline`
  runs them in the driver's thread, for debugging.
* :mod:`.batch` writes a run folder and submits one job array through a scheduler *spec*
  (data plus pure parsers: :mod:`.slurm`, :mod:`.pbs`, :mod:`.lsf`, :mod:`.sge`); a
  :class:`~hpcpar.watcher.Watcher` thread polls all live jobs with one status call.

Backends are imported lazily, by name.
"""

from __future__ import annotations

import importlib

from ..config import BACKENDS, check_backend

_MODULES = {
    "local": ("hpcpar.backends.local", "LocalBackend"),
    "inline": ("hpcpar.backends.inline", "InlineBackend"),
    "slurm": ("hpcpar.backends.slurm", "SlurmBackend"),
    "pbs": ("hpcpar.backends.pbs", "PbsBackend"),
    "lsf": ("hpcpar.backends.lsf", "LsfBackend"),
    "sge": ("hpcpar.backends.sge", "SgeBackend"),
}


def backend_class(name: str):
    """The Backend class registered under ``name``; ConfigError lists the valid names."""
    check_backend(name)
    module, cls = _MODULES[name]
    return getattr(importlib.import_module(module), cls)


def create(name: str, resources, options):
    return backend_class(name)(resources, options)


__all__ = ["BACKENDS", "backend_class", "create"]
