"""Where options come from: keyword arguments, then ``HPCPAR_*`` variables, then a profile, then defaults.

The config file is TOML at ``platformdirs.user_config_dir("hpcpar")/config.toml``
(``~/.config/hpcpar/config.toml`` on Linux), or ``$HPCPAR_CONFIG``::

    default_profile = "cluster"          # used when neither profile= nor HPCPAR_PROFILE is given

    [profiles.cluster]
    backend = "slurm"
    queue = "debug"
    cpus_per_task = 2
    mem = "4GB"
    walltime = "00:30:00"
    setup = ["module load python/3.11"]

Environment variables: ``HPCPAR_BACKEND``, ``HPCPAR_PROFILE``, ``HPCPAR_CONFIG``,
``HPCPAR_RUNS_DIR``, and ``HPCPAR_<OPTION>`` for any option below (``HPCPAR_QUEUE=gpu``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from pathlib import Path
from typing import Any

import platformdirs

from .errors import ConfigError
from .resources import Resources, check_text

BACKENDS = ("local", "slurm", "pbs", "lsf", "sge")
DEFAULT_BACKEND = "local"


@dataclasses.dataclass(frozen=True)
class Options:
    """Executor options that are not resources, each documented where it is defined below.

    Every option is also read from ``HPCPAR_<NAME>`` and from a profile. Units are in the
    names: seconds (``_s``).
    """

    #: Local backend: worker processes (default: the CPUs this process may use,
    #: ``os.sched_getaffinity``). Ignored by batch backends.
    max_workers: int | None = None
    #: Tasks per chunk; one chunk is one array task (default: about ``chunks_per_slot``
    #: chunks per slot, see below). ``map(..., chunksize=)`` overrides it for one call.
    chunksize: int | None = None
    #: Without ``chunksize``: chunks per slot the backend offers (default 4). Slots are
    #: ``max_workers`` locally; on a batch queue, its CPUs divided by ``cpus_per_task`` (8 if the
    #: queue cannot be read), at most ``max_running`` and at most 250.
    chunks_per_slot: int = 4
    #: Batch backends: folder for run folders (default ``$HPCPAR_RUNS_DIR``, else
    #: ``platformdirs.user_data_dir("hpcpar")/runs``). Must be on a filesystem the compute
    #: nodes share.
    runs_dir: str | None = None
    #: A folder of job-script templates searched before the shipped ones.
    template_dir: str | None = None
    #: Job name shown by the scheduler (default: the function's ``__name__``; ``"hpcpar"`` for
    #: ``hpcpar script``/``submit`` and ``job_script()``). Also the prefix of the run id.
    job_name: str | None = None
    #: Resubmissions of an array task that ended without results (default 2); locally,
    #: reruns of a chunk whose worker process died. A task whose own code raised is not retried.
    max_retries: int = 2
    #: Array tasks allowed to run at once (default: no limit): ``%N`` in SLURM's
    #: ``--array``, PBS's ``-J``/``-t`` and LSF's ``-J``; ``-tc N`` on Grid Engine.
    max_running: int | None = None
    #: A tqdm progress bar for ``map``/``map_reduce`` (default: only when stderr is a terminal).
    progress: bool | None = None
    #: Leave jobs running when the ``with`` block raises or the driver gets SIGINT/SIGTERM,
    #: for a later :func:`hpcpar.attach` (default False).
    detach: bool = False
    #: Seconds between the watcher's status calls at first and after any change (default 1).
    poll_interval_s: float = 1.0
    #: The watcher backs off (x1.5 per quiet poll) up to this many seconds (default 30).
    max_poll_interval_s: float = 30.0
    #: ``submit`` gathers calls made within this many seconds into one array (default:
    #: 0 for ``local``, 0.2 for batch backends).
    submit_linger_s: float | None = None
    #: Batch backends: ask for a walltime warning (SIGUSR2) this many seconds before the
    #: walltime, at most half of it (default 60; 0 turns it off). Rendered as SLURM's
    #: ``--signal=B:USR2@N``; Grid Engine (``-notify``) and LSF signal at the limit instead.
    signal_s: int = 60
    #: Seconds between a worker's partial-result checkpoints (default 10).
    checkpoint_s: float = 10.0
    #: Python interpreter the job runs the worker with (default: this one, ``sys.executable``);
    #: it must exist on the compute nodes and have hpcpar installed.
    python: str | None = None
    #: Folder the job ``cd``\ s into before the setup lines (default: the driver's working
    #: folder for runs; none for ``job_script()``).
    workdir: str | None = None
    #: Seconds each scheduler command (``sbatch``, ``squeue``, ``qsub``...) may take before it
    #: counts as failed (default 60): a :class:`~hpcpar.SubmissionError` with ``returncode``
    #: None.
    command_timeout_s: float = 60.0
    #: PBS only: ``"pro"`` (PBS Professional/OpenPBS; aliases ``"pbspro"``, ``"openpbs"``) or
    #: ``"torque"``. Default: detected once from ``qstat --version``.
    dialect: str | None = None
    #: Grid Engine only: the parallel environment for ``-pe PE SLOTS`` when a task asks for more
    #: than one slot (default ``"smp"``).
    pe: str | None = None
    #: LSF only: the site's ``LSF_UNIT_FOR_LIMITS`` (``lsf.conf``), the unit of ``-M`` and
    #: ``rusage[mem=]``: ``KB``, ``MB``, ``GB``, ``TB``, ``PB`` or ``EB`` (default ``MB``).
    mem_unit: str | None = None


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(Options))
ALL_NAMES = OPTION_NAMES + Resources.FIELDS
_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}


def config_path() -> Path:
    """The config file read for profiles: ``$HPCPAR_CONFIG`` or the platformdirs user config path."""
    env = os.environ.get("HPCPAR_CONFIG")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir("hpcpar")) / "config.toml"


def default_runs_dir() -> Path:
    """``$HPCPAR_RUNS_DIR``, else ``platformdirs.user_data_dir("hpcpar")/runs``.

    On a cluster this must be on a filesystem the compute nodes share (home usually is).
    """
    env = os.environ.get("HPCPAR_RUNS_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("hpcpar")) / "runs"


def _load_config() -> tuple[Path, dict]:
    path = config_path()
    if not path.is_file():
        return path, {}
    try:
        with open(path, "rb") as fh:
            return path, tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def load_profile(name: str) -> dict[str, Any]:
    """The values of profile ``name``.

    Raises
    ------
    ConfigError
        If the profile (or the config file) does not exist; the message names the path searched.
    """
    path, data = _load_config()
    profiles = data.get("profiles", {})
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        where = f"{path}" if path.is_file() else f"{path} (which does not exist)"
        raise ConfigError(f"no profile {name!r} in {where}; profiles there: {known}. "
                          "Set HPCPAR_CONFIG to use another file.")
    values = dict(profiles[name])
    check_names(values, f"profile {name!r} in {path}", extra=("backend",))
    return values


def check_names(values: dict, where: str, extra: tuple[str, ...] = ()) -> None:
    valid = ALL_NAMES + extra
    for key in values:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown option {key!r} in {where}{hint}; valid options: "
                              f"{', '.join(sorted(valid))}")


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        close = difflib.get_close_matches(name, BACKENDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown backend {name!r}{hint}; valid backends: {', '.join(BACKENDS)}")
    return name


def _env_values() -> dict[str, str]:
    out = {}
    for name in ALL_NAMES:
        v = os.environ.get(f"HPCPAR_{name.upper()}")
        if v is not None and v != "":
            out[name] = v
    return out


def _coerce_option(name: str, value: Any) -> Any:
    field = {f.name: f for f in dataclasses.fields(Options)}[name]
    typ = str(field.type)
    if value is None:
        return None
    try:
        if typ.startswith("bool"):
            if isinstance(value, str):
                low = value.strip().lower()
                if low in _BOOL_TRUE:
                    return True
                if low in _BOOL_FALSE:
                    return False
                raise ValueError
            return bool(value)
        if typ.startswith("int"):
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if typ.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"option {name}={value!r} must be of type {typ}") from None


def resolve(backend: str | None, profile: str | None, kwargs: dict[str, Any]) -> tuple[str, Resources, Options]:
    """Merge keyword arguments, environment and profile into (backend, Resources, Options).

    Raises
    ------
    ConfigError
        Unknown backend, option or profile, or a malformed value.
    """
    check_names(kwargs, "the keyword arguments")
    env = _env_values()
    profile = profile or os.environ.get("HPCPAR_PROFILE") or None
    prof: dict[str, Any] = {}
    if profile is None and backend is None and "HPCPAR_BACKEND" not in os.environ:
        _, data = _load_config()
        profile = data.get("default_profile")
    if profile:
        prof = load_profile(profile)
    name = backend or os.environ.get("HPCPAR_BACKEND") or prof.pop("backend", None) or DEFAULT_BACKEND
    prof.pop("backend", None)
    name = check_backend(name)
    merged: dict[str, Any] = {**prof, **env, **{k: v for k, v in kwargs.items() if v is not None}}
    res = Resources.from_user({k: v for k, v in merged.items() if k in Resources.FIELDS})
    opts = Options(**{k: _coerce_option(k, v) for k, v in merged.items() if k in OPTION_NAMES})
    for field in ("job_name", "runs_dir", "workdir", "python", "pe", "dialect", "mem_unit"):
        if getattr(opts, field) is not None:
            check_text(field, getattr(opts, field))
    return name, res, opts
