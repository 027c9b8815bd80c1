"""Resources a job asks for, parsed once at the edge into bytes and seconds.

Each scheduler spec renders a :class:`Resources` in its own units; nothing below this module
handles strings such as ``"4GB"`` or ``"1:30:00"``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError

KIB = 1024
MIB = 1024**2
GIB = 1024**3

MEM_FORMS = ('an int (bytes), or a number with a unit: "500M", "4G", "4GB", "1.5GiB", "512MB", '
             '"2T" (K/M/G/T, with or without B or iB; all binary, 1G = 1024 MiB, as schedulers count)')
WALLTIME_FORMS = ('an int (seconds), "SS", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS" '
                  '(as sbatch --time), or a duration such as "90min", "2h", "1h30m", "45s", "1d"')

_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)
_MEM_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_DURATION_RE = re.compile(
    r"^\s*(?:(?P<d>\d+(?:\.\d+)?)\s*(?:d|days?))?\s*(?:(?P<h>\d+(?:\.\d+)?)\s*(?:h|hrs?|hours?))?"
    r"\s*(?:(?P<m>\d+(?:\.\d+)?)\s*(?:m|mins?|minutes?))?\s*(?:(?P<s>\d+(?:\.\d+)?)\s*(?:s|secs?|seconds?))?\s*$",
    re.IGNORECASE,
)
_CLOCK_RE = re.compile(r"^\s*(?:(?P<d>\d+)-)?(?P<rest>\d+(?::\d+){0,2})\s*$")


#: thread-pool sizes each task gets capped to ``cpus_per_task`` unless the user set them: the
#: job templates (``templates/base.sh.j2``) and the local backend's workers. OpenMP, OpenBLAS,
#: MKL, Apple Accelerate, numexpr, and joblib/loky's process count (which a bare
#: ``multiprocessing.Pool()`` does not read: that one sees the allocation through
#: ``os.sched_getaffinity`` where the scheduler binds CPUs).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "LOKY_MAX_CPU_COUNT")


def parse_mem(value: int | str | None, field: str = "mem") -> int | None:
    """Parse a memory amount into bytes.

    Parameters
    ----------
    value : int, str or None
        An int is bytes. A string is a number and a binary unit, as schedulers read them
        (``"4G"`` = ``"4GB"`` = ``"4GiB"`` = 4 * 1024**3 bytes); see ``MEM_FORMS``.
    field : str
        The option's name, used in the error message.

    Returns
    -------
    int or None
        Bytes, or None when ``value`` is None.

    Raises
    ------
    ConfigError
        (a ``ValueError``) naming the field, the value and the accepted forms; also for amounts
        under 1 MiB, which no scheduler allocates and usually mean a missing unit.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{field}={value!r} is not a memory amount; use {MEM_FORMS}")
    if isinstance(value, int):
        nbytes = value
    elif isinstance(value, float) and value.is_integer():
        nbytes = int(value)
    elif isinstance(value, str):
        m = _MEM_RE.match(value)
        if not m:
            raise ConfigError(f"{field}={value!r} is not a memory amount; use {MEM_FORMS}")
        number, unit = float(m.group(1)), m.group(2).lower()
        nbytes = round(number * KIB ** _MEM_POWERS[unit])
    else:
        raise ConfigError(f"{field}={value!r} is not a memory amount; use {MEM_FORMS}")
    if nbytes < MIB:
        raise ConfigError(
            f"{field}={value!r} is {nbytes} bytes, below 1 MiB, which no scheduler allocates; "
            f"did you leave out the unit (e.g. '{value}M')? Use {MEM_FORMS}")
    return nbytes


def parse_walltime(value: float | str | None, field: str = "walltime") -> int | None:
    """Parse a walltime into whole seconds (rounded up).

    Parameters
    ----------
    value : int, float, str or None
        A number is seconds. A string is a clock (``"1:30:00"``, ``"2-00:00:00"``, as in
        sbatch(1) ``--time``, except that a bare number is seconds, not minutes) or a
        duration (``"90min"``, ``"1h30m"``); see ``WALLTIME_FORMS``.

    Returns
    -------
    int or None
        Seconds (> 0), or None when ``value`` is None.

    Raises
    ------
    ConfigError
        (a ``ValueError``) naming the field, the value and the accepted forms.
    """
    if value is None:
        return None
    bad = ConfigError(f"{field}={value!r} is not a walltime; use {WALLTIME_FORMS}")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        clock = _parse_clock(value)
        if clock is not None:
            seconds = clock
        else:
            m = _DURATION_RE.match(value)
            if not m or not any(m.groupdict().values()):
                raise bad
            parts = {k: float(v) if v else 0.0 for k, v in m.groupdict().items()}
            seconds = parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    else:
        raise bad
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{field}={value!r} must be a positive walltime; use {WALLTIME_FORMS}")
    return math.ceil(seconds)


def _parse_clock(text: str) -> float | None:
    m = _CLOCK_RE.match(text)
    if not m:
        return None
    fields = [int(x) for x in m.group("rest").split(":")]
    days = int(m.group("d") or 0)
    if m.group("d") is not None:          # D-HH, D-HH:MM, D-HH:MM:SS
        fields += [0] * (3 - len(fields))
        h, mi, s = fields
    elif len(fields) == 3:
        h, mi, s = fields
    elif len(fields) == 2:                # MM:SS
        h, (mi, s) = 0, fields
    else:                                 # bare number: seconds
        h, mi, s = 0, 0, fields[0]
    return days * 86400 + h * 3600 + mi * 60 + s


def format_hms(seconds: int, days: bool = False) -> str:
    """Render seconds as ``HH:MM:SS`` (hours may exceed 24), or ``D-HH:MM:SS`` if ``days``."""
    if days:
        d, rem = divmod(seconds, 86400)
        h, rem = divmod(rem, 3600)
        return f"{d}-{h:02d}:{rem // 60:02d}:{rem % 60:02d}"
    h, rem = divmod(seconds, 3600)
    return f"{h:02d}:{rem // 60:02d}:{rem % 60:02d}"


def format_bytes(n: int) -> str:
    """Bytes in the largest binary unit that keeps one decimal: ``107374182400`` -> ``"100.0 GiB"``."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"


def ceil_div(n: int, unit: int) -> int:
    """Smallest whole number of ``unit`` that holds ``n`` (memory is never rounded down)."""
    return -(-n // unit)


def check_text(field: str, value: str) -> str:
    """Refuse control characters (newlines above all) in a value rendered into a job script.

    A newline inside a directive value would end the ``#SBATCH`` comment and start a shell
    command, so such values are refused rather than escaped.
    """
    if not isinstance(value, str):
        raise ConfigError(f"{field}={value!r} must be a string")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{field}={value!r} holds a control character (newline, tab...), "
                          "which cannot go into a job script directive")
    return value


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one array task asks the scheduler for.

    Build one with :meth:`Resources.from_user`, which parses the strings users type.

    Attributes
    ----------
    cpus_per_task : int
        CPU cores for each array task (default 1).
    mem : int or None
        Memory per array task, bytes (default None: the scheduler's default).
    walltime : int or None
        Walltime per array task, seconds (default None: the queue's default).
    gpus : int
        GPUs per array task (default 0).
    nodes : int
        Nodes per array task (default 1).
    queue, account, qos : str or None
        Queue (rendered as ``--partition`` on SLURM), account to charge, quality of service.
    extra_directives : tuple of str
        Raw scheduler options, each rendered as one directive line after the prefix
        (e.g. ``"--constraint=avx2"`` for SLURM).
    setup : tuple of str
        Shell lines run before the worker, e.g. ``"module load python/3.11"``. They are the
        user's own shell code and are rendered verbatim.
    """

    cpus_per_task: int = 1
    mem: int | None = None
    walltime: int | None = None
    gpus: int = 0
    nodes: int = 1
    queue: str | None = None
    account: str | None = None
    qos: str | None = None
    extra_directives: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()

    FIELDS = ("cpus_per_task", "mem", "walltime", "gpus", "nodes", "queue", "account", "qos",
              "extra_directives", "setup")

    def __post_init__(self) -> None:
        for name in ("cpus_per_task", "nodes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name}={v!r} must be a whole number >= 1")
        if not isinstance(self.gpus, int) or isinstance(self.gpus, bool) or self.gpus < 0:
            raise ConfigError(f"gpus={self.gpus!r} must be a whole number >= 0")
        for name in ("queue", "account", "qos"):
            v = getattr(self, name)
            if v is not None:
                check_text(name, v)
                if not v.strip():
                    raise ConfigError(f"{name}={v!r} is empty")
        for line in self.extra_directives:
            check_text("extra_directives", line)
        for line in self.setup:
            check_text("setup", line)

    @classmethod
    def from_user(cls, values: Mapping[str, Any]) -> Resources:
        """Build from user-typed values (strings allowed), with clear errors.

        Raises
        ------
        ConfigError
            For an unknown field (the message lists the valid ones) or a malformed value.
        """
        unknown = set(values) - set(cls.FIELDS)
        if unknown:
            raise ConfigError(f"unknown resource(s) {sorted(unknown)}; valid: {', '.join(cls.FIELDS)}")
        kw: dict[str, Any] = {}
        for name, v in values.items():
            if v is None:
                continue
            if name == "mem":
                kw[name] = parse_mem(v)
            elif name == "walltime":
                kw[name] = parse_walltime(v)
            elif name in ("cpus_per_task", "gpus", "nodes"):
                kw[name] = _parse_int(name, v)
            elif name in ("extra_directives", "setup"):
                kw[name] = _as_lines(name, v)
            else:
                kw[name] = str(v)
        return cls(**kw)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["extra_directives"] = list(self.extra_directives)
        d["setup"] = list(self.setup)
        return d


def _parse_int(name: str, v: Any) -> int:
    try:
        if isinstance(v, bool):
            raise ValueError  # noqa: TRY004 (caught below and reported as a ConfigError)
        if isinstance(v, str):
            v = v.strip()
        return int(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={v!r} must be a whole number") from None


def _as_lines(name: str, v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        return (v,)
    if isinstance(v, Iterable):
        return tuple(str(x) for x in v)
    raise ConfigError(f"{name}={v!r} must be a string or a list of strings")
