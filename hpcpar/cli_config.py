"""How the ``hpcpar`` command line resolves its configuration, and ``hpcpar config``.

The CLI resolves options as :class:`hpcpar.Executor` does (command line, then ``HPCPAR_*``,
then the profile, then defaults; :func:`hpcpar.config.explain`), with two differences:

* ``default_profile`` of the config file applies when no profile is named, also when a backend
  is named on the command line, if that profile's backend is the one named;
* ``--walltime``/``--time``/``-t`` reads a bare number (and LSF's ``H:MM``) as the named
  scheduler's own submit command does (:func:`cli_walltime`), since the flags copy theirs.
  In the Python API and in config files a bare number stays seconds.
"""

from __future__ import annotations

import dataclasses
import re

from .config import OPTION_NAMES, Resolved, explain
from .errors import ConfigError
from .resources import Resources, format_hms, parse_walltime

#: what a bare number given to --walltime means, per backend, and where the scheduler says so
BARE_NUMBER = {
    "slurm": (60, "minutes, as sbatch --time (sbatch(1))"),
    "lsf": (60, "minutes, as bsub -W [hour:]minute (bsub, IBM Spectrum LSF 10.1)"),
    "pbs": (1, "seconds, as qsub -l walltime (pbs_resources(7B); Torque qsub(1))"),
    "sge": (1, "seconds, as qsub -l h_rt (sge_types(1) time_specifier)"),
}
WALLTIME_HELP = ('walltime per array task: "1:30:00", "2-00:00:00", "90min", "2h". A bare number '
                 "follows the scheduler's own submit command: minutes on slurm (sbatch -t 90) and "
                 "lsf (bsub -W, where H:MM is hours:minutes too), seconds on pbs and sge (qsub); "
                 "refused on local (give a unit). Config files and the Python API read a bare "
                 "number as seconds")


def cli_walltime(text: str, backend: str) -> int:
    """Seconds for a ``--walltime`` value given on the command line for ``backend``.

    Parameters
    ----------
    text : str
        What the user typed.
    backend : str
        The resolved backend name.

    Returns
    -------
    int
        Seconds (> 0).

    Raises
    ------
    ConfigError
        A bare number for ``local`` (no scheduler convention to follow), zero (sbatch reads
        ``-t 0`` as "no limit"; hpcpar asks for leaving the option out instead), or any form
        :func:`hpcpar.resources.parse_walltime` refuses.
    """
    t = text.strip()
    if re.fullmatch(r"\d+", t):
        if int(t) == 0:
            raise ConfigError(f"--walltime {text}: zero is not a walltime (sbatch reads it as no "
                              "limit); leave --walltime out to get the queue's default")
        if backend not in BARE_NUMBER:
            raise ConfigError(f"--walltime {text}: a bare number is minutes to sbatch and bsub but "
                              f"seconds to qsub, and the {backend} backend has no convention; "
                              f"give a unit: '{t}min', '{t}s' or a clock such as '1:30:00'")
        return int(t) * BARE_NUMBER[backend][0]
    m = re.fullmatch(r"(\d+):(\d+)", t)
    if backend == "lsf" and m:                          # bsub -W [hour:]minute
        seconds = int(m.group(1)) * 3600 + int(m.group(2)) * 60
        if seconds <= 0:
            raise ConfigError(f"--walltime {text} must be a positive walltime")
        return seconds
    parsed = parse_walltime(t, "--walltime")
    assert parsed is not None                           # t is not None
    return parsed


def walltime_note(text: str, backend: str) -> str:
    """How a command-line walltime was read, for ``hpcpar config``."""
    t = text.strip()
    if re.fullmatch(r"\d+", t) and backend in BARE_NUMBER:
        return f"bare number: {BARE_NUMBER[backend][1]}"
    if backend == "lsf" and re.fullmatch(r"\d+:\d+", t):
        return "H:MM, as bsub -W"
    return ""


def resolve_cli(backend: str | None, profile: str | None, kwargs: dict) -> Resolved:
    """Resolve the CLI's options: walltime read per :func:`cli_walltime` for the backend the
    rest resolves to, ``default_profile`` honoured (see the module docstring)."""
    kwargs = dict(kwargs)
    walltime = kwargs.pop("walltime", None)
    first = explain(backend, profile, kwargs, kwarg_label="command line", default_profile_for_backend=True)
    if walltime is None:
        return first
    kwargs["walltime"] = cli_walltime(walltime, first.backend)
    r = explain(backend, profile, kwargs, kwarg_label="command line", default_profile_for_backend=True)
    note = walltime_note(walltime, r.backend)
    r.sources["walltime"] = f"command line ({walltime!r}; {note})" if note else "command line"
    return r


def _show(name: str, value) -> str:
    if value is None or value == ():
        return "-"
    if name == "mem":
        return f"{value / 1024**2:g} MiB ({value} bytes)"
    if name == "walltime":
        return f"{format_hms(value, days=True)} ({value} s)"
    if isinstance(value, tuple):
        return "; ".join(value)
    return str(value)


def describe(r: Resolved) -> str:
    """The text ``hpcpar config`` prints: every resolved option, its value and its source."""
    exists = "" if r.config_path.is_file() else " (does not exist)"
    rows = [("config file", f"{r.config_path}{exists}", ""),
            ("backend", r.backend, r.sources["backend"]),
            ("profile", r.profile or "-", r.sources.get("profile", "none named"))]
    lines = [f"{k:22s} {v:28s}  {src}".rstrip() for k, v, src in rows]
    lines += ["", "resources (per array task)"]
    for name in Resources.FIELDS:
        lines.append(f"  {name:20s} {_show(name, getattr(r.resources, name)):28s}  {r.sources[name]}")
    lines += ["", "options"]
    values = dataclasses.asdict(r.options)
    for name in OPTION_NAMES:
        lines.append(f"  {name:20s} {_show(name, values[name]):28s}  {r.sources[name]}")
    return "\n".join(lines) + "\n"
