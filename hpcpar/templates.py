"""Render job scripts from the Jinja2 templates in ``templates/`` (shipped as ``hpcpar/templates``).

Rendering is strict (:class:`jinja2.StrictUndefined`: a missing variable is an error, never an
empty string) and every value that reaches the script passes a quoting filter:

``q``
    :func:`shlex.quote` for a shell word; a directive value with a control character is refused.
``qjoin``
    a list of arguments, each quoted, joined by spaces (a command line).
``mib``, ``gib``, ``mb_ceil``, ``hms``, ``dhms``, ``hmm``
    memory (bytes) and walltime (seconds) in the units schedulers read.

A user copies a template into a folder of their own and points ``template_dir`` at it; that
folder is searched first, the shipped templates second (so ``{% extends "base.sh.j2" %}`` works).
"""

from __future__ import annotations

import functools
import os
import shlex
from pathlib import Path
from typing import Any

import jinja2

from .errors import ConfigError
from .resources import ceil_div, check_text, format_hms

_HERE = Path(__file__).resolve().parent


def shipped_template_dir() -> Path:
    """Where the shipped templates are: ``hpcpar/templates`` when installed, ``templates/``
    beside the package in a source checkout."""
    for candidate in (_HERE / "templates", _HERE.parent / "templates"):
        if (candidate / "base.sh.j2").is_file():
            return candidate
    raise FileNotFoundError(f"hpcpar's job-script templates are missing (looked in {_HERE / 'templates'} "
                            f"and {_HERE.parent / 'templates'}); reinstall hpcpar")


def q(value: Any) -> str:
    """Quote one shell word; refuse control characters (they would break a directive line)."""
    if isinstance(value, bool):
        raise ConfigError(f"cannot render boolean {value!r} into a job script")
    if isinstance(value, int):
        return str(value)
    return shlex.quote(check_text("job script value", str(value)))


def qjoin(args: Any) -> str:
    """Quote each argument of a command line (newlines allowed: they stay inside quotes)."""
    return " ".join(shlex.quote(str(a)) for a in args)


def _mib(nbytes: int) -> int:
    return ceil_div(nbytes, 1024**2)


def _gib(nbytes: int) -> int:
    return ceil_div(nbytes, 1024**3)


def _hmm(seconds: int) -> str:
    """LSF ``-W [HH:]MM``: minutes rounded up."""
    minutes = ceil_div(seconds, 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


@functools.lru_cache(maxsize=16)
def environment(template_dir: str | None = None, spec_dir: str | None = None) -> jinja2.Environment:
    """Templates from ``template_dir`` (the user's), then ``spec_dir`` (a registered
    scheduler's own folder), then the shipped ones."""
    search = [shipped_template_dir()]
    if spec_dir:
        search.insert(0, Path(spec_dir))
    if template_dir:
        user = Path(template_dir).expanduser()
        if not user.is_dir():
            raise ConfigError(f"template_dir={template_dir!r} is not a folder")
        search.insert(0, user)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(p) for p in search]),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(q=q, qjoin=qjoin, mib=_mib, gib=_gib, hms=format_hms,
                       dhms=functools.partial(format_hms, days=True), hmm=_hmm)
    return env


def render(name: str, context: dict[str, Any], template_dir: str | os.PathLike | None = None,
           spec_dir: str | os.PathLike | None = None) -> str:
    """Render template ``name`` (e.g. ``"slurm.sh.j2"``) with ``context``; ``template_dir``
    and ``spec_dir`` are searched first (see :func:`environment`).

    Raises
    ------
    ConfigError
        If the template is missing, a variable it uses is undefined, or a value is refused.
    """
    env = environment(str(template_dir) if template_dir else None, str(spec_dir) if spec_dir else None)
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(f"no job-script template {name!r} in {getattr(env.loader, 'searchpath', '?')}") from exc
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"template {name!r}: {exc.message}") from exc
