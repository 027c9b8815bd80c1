"""The registry of schedulers: backend name -> :class:`~hpcpar.backends.spec.SchedulerSpec`.

The shipped specs are imported lazily, on first use of their name; :func:`register_scheduler`
adds one at run time (a plugin, or a fake scheduler in a test). Nothing registers on import.
"""

from __future__ import annotations

import difflib
import importlib
import threading

from ..errors import ConfigError
from .spec import SchedulerSpec

#: the shipped schedulers: name -> (module, spec class)
BUILTIN = {
    "slurm": ("hpcpar.backends.slurm", "SlurmSpec"),
    "pbs": ("hpcpar.backends.pbs", "PbsSpec"),
    "lsf": ("hpcpar.backends.lsf", "LsfSpec"),
    "sge": ("hpcpar.backends.sge", "SgeSpec"),
}
#: backends that are not schedulers (they keep nothing on disk)
NOT_SCHEDULERS = ("local", "inline")

_registered: dict[str, SchedulerSpec] = {}
_lock = threading.Lock()


def register_scheduler(spec: SchedulerSpec, *, replace: bool = False) -> None:
    """Make a scheduler available as a backend, under ``spec.name``.

    After this, ``hpcpar.Executor(spec.name)``, :func:`hpcpar.attach` of its runs and the
    ``hpcpar`` command line (``script``, ``submit``, ``status``, ``logs``, ``cancel``) in this
    process use ``spec``. A new scheduler needs its spec (one module), its job-script template
    (``templates/<name>.sh.j2``, found through the ``template_dir`` option) and tests of its
    parsers on recorded output; nothing under ``hpcpar/`` changes.

    Parameters
    ----------
    spec : hpcpar.backends.spec.SchedulerSpec
        The scheduler, as data plus pure parsers; its docstring states the contract.
    replace : bool, optional
        Replace a scheduler already known under this name, shipped or registered
        (default False).

    Raises
    ------
    ConfigError
        ``spec`` is not a SchedulerSpec, lacks a name, template or command, names ``local``,
        or its name is taken and ``replace`` is False.

    Examples
    --------
    >>> from hpcpar.backends.slurm import SlurmSpec
    >>> class SiteSlurm(SlurmSpec):
    ...     name = "site-slurm"
    >>> hpcpar.register_scheduler(SiteSlurm())         # doctest: +SKIP
    >>> hpcpar.Executor("site-slurm", queue="short")   # doctest: +SKIP
    """
    if not isinstance(spec, SchedulerSpec):
        raise ConfigError(f"register_scheduler takes a SchedulerSpec instance, not {spec!r}")
    for attr in ("name", "template", "commands", "array_index_var"):
        if not getattr(spec, attr, None):
            raise ConfigError(f"scheduler spec {type(spec).__name__} has no {attr}")
    name = spec.name
    if name in NOT_SCHEDULERS:
        raise ConfigError(f"{name!r} is not a scheduler name that can be registered")
    with _lock:
        if not replace and (name in _registered or name in BUILTIN):
            raise ConfigError(f"a scheduler named {name!r} exists; pass replace=True to replace it")
        _registered[name] = spec


def unregister_scheduler(name: str) -> None:
    """Forget a scheduler added by :func:`register_scheduler` (a shipped one comes back)."""
    with _lock:
        _registered.pop(name, None)


def scheduler_names() -> tuple[str, ...]:
    """Every scheduler's name: the shipped ones, then the registered ones."""
    with _lock:
        extra = tuple(n for n in _registered if n not in BUILTIN)
    return tuple(BUILTIN) + extra


def backend_names() -> tuple[str, ...]:
    """Every backend name: ``local`` and the schedulers."""
    return NOT_SCHEDULERS + scheduler_names()


def get_scheduler(name: str) -> SchedulerSpec:
    """The spec registered under ``name``.

    Raises
    ------
    ConfigError
        No such scheduler (the message lists the known ones).
    """
    with _lock:
        spec = _registered.get(name)
    if spec is not None:
        return spec
    if name not in BUILTIN:
        names = scheduler_names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown scheduler {name!r}{hint}; known: {', '.join(names)}")
    module, cls = BUILTIN[name]
    return getattr(importlib.import_module(module), cls)()
