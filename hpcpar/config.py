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
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import platformdirs

from .errors import ConfigError
from .resources import Resources, check_text

BACKENDS = ("local", "inline", "slurm", "pbs", "lsf", "sge")
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
    #: ``map``/``map_reduce``: an object in the function or the items holding at least this
    #: many bytes of data (a numpy array, a pandas or scipy.sparse object) is stored once per
    #: run and loaded once per worker process (default 1000000; 0 turns it off). Workers see
    #: numpy arrays as read-only memory maps. See :mod:`hpcpar.argstore`.
    max_nbytes: int = 1_000_000
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
    #: Batch backends: seconds an array task may stay pending for a reason that cannot resolve
    #: by itself (SLURM's ``PartitionConfig``, ``InvalidAccount``, ``InvalidQOS``...; each
    #: scheduler spec's ``BLOCKING_REASONS``) before it fails with
    #: :class:`~hpcpar.PendingBlockedError` and its job is cancelled (default 120).
    blocked_grace_s: float = 120.0
    #: Batch backends: seconds a pulling worker (array task) waits, once its run has no chunk
    #: left, for the executor's next ``map``/``map_reduce``/``submit`` to take (warm workers,
    #: see ``hpcpar.pool``); 0: it exits at once. Default 60: idle array tasks hold CPUs
    #: other users queue for, so a worker stays only as long as a user typically takes between
    #: two calls of one script (seconds, not minutes), and at most as long as a single SLURM
    #: scheduling pass on a busy cluster (``sched_interval``, 60 s by default, slurm.conf(5)),
    #: which is what a new submission would cost again. Workers also exit at ``shutdown``, when
    #: the driver is gone, and when their walltime is too short for another chunk.
    keep_workers_s: float = 60.0

    def __post_init__(self) -> None:
        for name, low, inclusive in _RANGES:
            value = getattr(self, name)
            if value is None:
                continue
            ok = math.isfinite(value) and (value >= low if inclusive else value > low)
            if not ok:
                raise ConfigError(f"option {name}={value!r} must be "
                                  f"{'>=' if inclusive else '>'} {low}")
        if self.max_poll_interval_s < self.poll_interval_s:
            raise ConfigError(f"option max_poll_interval_s={self.max_poll_interval_s!r} must be "
                              f">= poll_interval_s={self.poll_interval_s!r}")


# (option, lower limit, limit allowed): checked when Options is made, so a bad value is refused
# in the Executor's constructor, before anything runs.
_RANGES = (
    ("max_workers", 1, True), ("chunksize", 1, True), ("chunks_per_slot", 1, True), ("max_nbytes", 0, True),
    ("max_retries", 0, True), ("max_running", 1, True), ("poll_interval_s", 0, False),
    ("max_poll_interval_s", 0, False), ("submit_linger_s", 0, True), ("signal_s", 0, True),
    ("checkpoint_s", 0, False), ("command_timeout_s", 0, False), ("blocked_grace_s", 0, True),
    ("keep_workers_s", 0, True),
)


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


def usable_runs_root(runs_dir: str | os.PathLike | None) -> Path:
    """The folder run folders go in, made (0700) if missing and checked writable.

    Parameters
    ----------
    runs_dir : str or path-like, optional
        The ``runs_dir`` option; None: :func:`default_runs_dir`.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ConfigError
        The folder cannot be made or written (a regular file, no permission); the message names
        the setting it came from: ``runs_dir=``, ``$HPCPAR_RUNS_DIR`` or the default.
    """
    env = os.environ.get("HPCPAR_RUNS_DIR")
    if runs_dir or env:               # options read HPCPAR_RUNS_DIR as runs_dir: name the one set
        value = str(runs_dir or env)
        root = Path(value).expanduser()
        setting = f"HPCPAR_RUNS_DIR={value!r}" if value == env else f"runs_dir={value!r}"
    else:
        root, setting = default_runs_dir(), f"the default runs folder {str(default_runs_dir())!r}"
    fix = "set runs_dir= (or HPCPAR_RUNS_DIR) to a folder you can write"
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{setting} is not a folder (it is a file): {fix}")
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot make the runs folder ({exc.strerror}): {fix}") from exc
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"{setting}: the runs folder {str(root)!r} is not writable: {fix}")
    return root


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
    """``name`` if it is ``local``, a shipped scheduler or one added with
    :func:`hpcpar.register_scheduler`; else ConfigError listing the valid names."""
    from .backends.registry import backend_names

    valid = backend_names()
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown backend {name!r}{hint}; valid backends: {', '.join(valid)}")
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


@dataclasses.dataclass(frozen=True)
class Resolved:
    """The outcome of :func:`explain`: what :func:`resolve` returns, and where each value came from.

    Attributes
    ----------
    backend : str
    resources : Resources
    options : Options
    profile : str or None
        The profile used, if any.
    sources : dict of str to str
        For ``"backend"``, ``"profile"`` and every option and resource name: ``"keyword
        argument"`` (or the caller's label, e.g. ``"command line"``), ``"HPCPAR_<NAME>"``,
        ``"profile 'P' in FILE"``, ``"default_profile in FILE"`` (for the profile) or ``"default"``.
    config_path : pathlib.Path
        The config file searched for profiles (it may not exist).
    """

    backend: str
    resources: Resources
    options: Options
    profile: str | None
    sources: dict[str, str]
    config_path: Path


def default_profile_name() -> str | None:
    """``default_profile`` of the config file, or None (no file, or no such key)."""
    value = _load_config()[1].get("default_profile")
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"default_profile={value!r} in {config_path()} must be a profile name")
    return value


def explain(backend: str | None, profile: str | None, kwargs: dict[str, Any], *,
            kwarg_label: str = "keyword argument", default_profile_for_backend: bool = False) -> Resolved:
    """:func:`resolve`, also saying where each value came from.

    Parameters
    ----------
    backend, profile, kwargs
        As for :func:`resolve`.
    kwarg_label : str
        How to name the source of ``kwargs`` and of ``backend``/``profile`` (the CLI says
        ``"command line"``).
    default_profile_for_backend : bool
        Also use ``default_profile`` when ``backend`` is given, if that profile's backend is
        the same one (the CLI does this; :class:`hpcpar.Executor` uses ``default_profile``
        only when nothing names a backend).

    Raises
    ------
    ConfigError
        As :func:`resolve`.
    """
    check_names(kwargs, "the keyword arguments" if kwarg_label == "keyword argument" else f"the {kwarg_label}")
    path = config_path()
    env = _env_values()
    sources: dict[str, str] = {}
    if profile:
        sources["profile"] = kwarg_label
    elif os.environ.get("HPCPAR_PROFILE"):
        profile, sources["profile"] = os.environ["HPCPAR_PROFILE"], "HPCPAR_PROFILE"
    elif backend is None and "HPCPAR_BACKEND" not in os.environ:
        profile = default_profile_name()
        if profile:
            sources["profile"] = f"default_profile in {path}"
    elif default_profile_for_backend and backend is not None:
        name = default_profile_name()
        if name and load_profile(name).get("backend", DEFAULT_BACKEND) == backend:
            profile, sources["profile"] = name, f"default_profile in {path} (its backend is {backend})"
    prof: dict[str, Any] = load_profile(profile) if profile else {}
    where = f"profile {profile!r} in {path}"
    if backend:
        name, sources["backend"] = backend, kwarg_label
    elif os.environ.get("HPCPAR_BACKEND"):
        name, sources["backend"] = os.environ["HPCPAR_BACKEND"], "HPCPAR_BACKEND"
    elif prof.get("backend"):
        name, sources["backend"] = prof["backend"], where
    else:
        name, sources["backend"] = DEFAULT_BACKEND, "default"
    prof.pop("backend", None)
    name = check_backend(name)
    given = {k: v for k, v in kwargs.items() if v is not None}
    for key in ALL_NAMES:
        sources[key] = (kwarg_label if key in given else f"HPCPAR_{key.upper()}" if key in env
                        else where if key in prof else "default")
    merged: dict[str, Any] = {**prof, **env, **given}
    res = Resources.from_user({k: v for k, v in merged.items() if k in Resources.FIELDS})
    opts = Options(**{k: _coerce_option(k, v) for k, v in merged.items() if k in OPTION_NAMES})
    for field in ("job_name", "runs_dir", "workdir", "python", "pe", "dialect", "mem_unit"):
        if getattr(opts, field) is not None:
            check_text(field, getattr(opts, field))
    return Resolved(name, res, opts, profile or None, sources, path)


def resolve(backend: str | None, profile: str | None, kwargs: dict[str, Any]) -> tuple[str, Resources, Options]:
    """Merge keyword arguments, environment and profile into (backend, Resources, Options).

    Raises
    ------
    ConfigError
        Unknown backend, option or profile, or a malformed value.
    """
    r = explain(backend, profile, kwargs)
    return r.backend, r.resources, r.options
