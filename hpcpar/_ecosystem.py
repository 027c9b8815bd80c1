"""What :mod:`hpcpar.dask`, :mod:`hpcpar.ipyparallel` and :mod:`hpcpar.submitit` share.

Each builds another library's object from hpcpar's resolved configuration, with the same
resolution as ``hpcpar.Executor(profile=...)``: keyword arguments, then ``HPCPAR_*``
variables, then the profile, then defaults (:func:`hpcpar.config.resolve`). This module owns
that step and the checks around it, so the three integrations refuse bad input the same way,
before anything is started or submitted:

* an option that is neither hpcpar's nor the library's own: :class:`~hpcpar.ConfigError`
  with the closest valid name;
* a library option that hpcpar translates (``memory=`` for dask-jobqueue): refused, naming
  hpcpar's option to use (``mem=``), so one value cannot come from two places;
* an hpcpar option given as a keyword argument that the library has no use for
  (``max_retries=``): refused. The same option in a profile or in ``HPCPAR_*`` is ignored,
  because the profile also serves :class:`hpcpar.Executor`;
* a backend the library cannot drive (submitit on PBS): refused, listing the ones it can.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from . import config
from .errors import ConfigError
from .resources import Resources

#: Values these libraries write into job scripts without quoting must be plain tokens; a job
#: name also becomes part of log file names, so it holds no "/".
_PLAIN = re.compile(r"[A-Za-z0-9_.@+,:=/-]+")
_NAME = re.compile(r"[A-Za-z0-9_.@+,:=-]+")


@dataclasses.dataclass(frozen=True)
class Resolved:
    """hpcpar's configuration for one integration, and the library's own keyword arguments.

    Attributes
    ----------
    backend : str
        ``"local"``, ``"slurm"``, ``"pbs"``, ``"lsf"`` or ``"sge"``.
    resources : hpcpar.Resources
        Per job (per array task): bytes and seconds.
    options : hpcpar.config.Options
        hpcpar's other options (``job_name``, ``python``, ``workdir``, ``runs_dir``...).
    extra : dict
        Keyword arguments that belong to the library, passed through unchanged.
    """

    backend: str
    resources: Resources
    options: config.Options
    extra: dict[str, Any]


def require(module: str, extra: str, user: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that names the extra to install.

    Raises
    ------
    ImportError
        ``"hpcpar.dask needs dask_jobqueue: pip install 'hpcpar[dask]'"``, from the original.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{user} needs {module}, which is not installed: "
                          f"pip install 'hpcpar[{extra}]'") from exc


def resolve(library: str, backend: str | None, profile: str | None, options: Mapping[str, Any],
            *, backends: Iterable[str], uses: Mapping[str, Iterable[str]],
            library_names: Callable[[str], Iterable[str]],
            translated: Callable[[str], Mapping[str, str]]) -> Resolved:
    """Resolve hpcpar's configuration for ``library`` and split off the library's own options.

    Parameters
    ----------
    library : str
        Its name, for messages (``"dask-jobqueue"``).
    backend, profile : str or None
        As for :class:`hpcpar.Executor`.
    options : mapping
        The caller's keyword arguments: hpcpar's options and the library's own.
    backends : iterable of str
        The hpcpar backends this library can drive.
    uses : mapping of str to iterable of str
        For ``"local"`` and ``"batch"`` backends, the hpcpar options (beyond resources) that
        are translated. A resource the backend cannot use (``queue`` on local) is ignored.
    library_names : callable
        backend -> the library's own keyword arguments there, passed through unchanged.
    translated : callable
        backend -> {library keyword: the hpcpar option that sets it} (``{"memory": "mem"}``).

    Raises
    ------
    ConfigError
        As listed in the module docstring, or from :func:`hpcpar.config.resolve`.
    """
    ours = {k: v for k, v in options.items() if k in config.ALL_NAMES}
    theirs = {k: v for k, v in options.items() if k not in config.ALL_NAMES}
    name, resources, opts = config.resolve(backend, profile, ours)
    backends = tuple(backends)
    if name not in backends:
        raise ConfigError(f"{library} cannot run on the {name!r} backend; it supports: "
                          f"{', '.join(backends)}")
    names, renamed = set(library_names(name)), translated(name)
    for key in theirs:
        if key in renamed:
            raise ConfigError(f"{key}= is set from hpcpar's {renamed[key]}= for {library}; "
                              f"pass {renamed[key]}= (or set it in the profile) instead")
        if key not in names:
            valid = sorted(set(config.ALL_NAMES) | names)
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown option {key!r} for {library} on {name!r}{hint}: neither "
                              f"an hpcpar option nor one of {library}'s")
    allowed = set(Resources.FIELDS) | set(uses["local" if name == "local" else "batch"])
    for key in ours:
        if key not in allowed:
            raise ConfigError(f"option {key}= has no meaning for {library} on {name!r}; "
                              f"hpcpar options it translates there: {', '.join(sorted(allowed))}")
    if name != "local" and resources.nodes != 1:
        raise ConfigError(f"nodes={resources.nodes}: {library} jobs run on one node each; "
                          "use nodes=1 and more jobs (workers, engines) instead")
    return Resolved(name, resources, opts, theirs)


def signature_names(*callables: Callable) -> set[str]:
    """The named parameters of ``callables`` (not ``self``, ``*args`` or ``**kwargs``)."""
    out: set[str] = set()
    for fn in callables:
        for p in inspect.signature(fn).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                out.add(p.name)
    return out


def plain(field: str, value: str, library: str) -> str:
    """Refuse a value that ``library`` would write into a job script unquoted but needs quoting.

    Raises
    ------
    ConfigError
        When ``value`` holds a space, a quote or another shell or directive metacharacter
        (for ``job_name``, also a ``/``).
    """
    name = field == "job_name"
    if not (_NAME if name else _PLAIN).fullmatch(value):
        allowed = "_ . @ + , : = -" if name else "_ . @ + , : = / -"
        raise ConfigError(f"{field}={value!r}: {library} writes it into the job script without "
                          f"quoting, so it may only hold letters, digits and {allowed}")
    return value


def setup_lines(resources: Resources, options: config.Options) -> list[str]:
    """The shell lines run before a worker starts: ``cd WORKDIR`` (quoted) if set, then ``setup``."""
    lines = [f"cd {shlex.quote(options.workdir)} || exit 1"] if options.workdir else []
    return lines + list(resources.setup)


def private_dir(options: config.Options, name: str) -> Path:
    """``<runs_dir>/<name>``, created private (0700) if missing; the runs folder itself too."""
    root = Path(options.runs_dir).expanduser() if options.runs_dir else config.default_runs_dir()
    path = root / name
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path

