"""An ipyparallel cluster whose engines are batch jobs with an hpcpar profile's resources.

>>> cluster = hpcpar.ipyparallel.cluster(profile="cluster", n=4)    # doctest: +SKIP
>>> rc = cluster.start_and_connect_sync()                            # doctest: +SKIP
>>> rc[:].map_sync(simulate, params)                                 # doctest: +SKIP

The controller runs here (ipyparallel's ``local`` controller launcher); the engines are started
by ipyparallel's batch engine launcher of the backend (``engine_launcher_class`` ``"slurm"``,
``"pbs"``, ``"lsf"``, ``"sge"``) as **one job array of n array tasks, one engine each**, so
each engine gets the profile's resources, as one hpcpar array task does. The launcher is
configured through its config traits (``queue``; on SLURM also ``account``, ``qos``,
``timelimit``; ``batch_template``, ``batch_file_name``, ``engine_cmd``) in the cluster's
traitlets config: ``cluster.config.SlurmEngineSetLauncher`` shows them. The batch template
holds what no trait covers, in the directives hpcpar's own job scripts use: cpus per task,
memory, walltime, gpus, ``extra_directives``, ``workdir`` and ``setup`` lines.

The engines reach the controller over the network: ipyparallel's default ``controller_ip``
is this host's loopback, enough when the engines run on the same host; on a real cluster pass
``controller_ip="*"`` (or the login node's address on the compute nodes' network).

Sources: ipyparallel's launchers (``ipyparallel/cluster/launcher.py``,
https://ipyparallel.readthedocs.io/en/latest/reference/launchers.html); sbatch(1), qsub(1B),
bsub, submit(1) for the directives.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from . import _ecosystem as eco
from .errors import ConfigError
from .resources import MIB, ceil_div, format_hms

log = logging.getLogger(__name__)

__all__ = ["cluster", "engine_template"]

LIBRARY = "ipyparallel"
BACKENDS = ("local", "slurm", "pbs", "lsf", "sge")
_LAUNCHERS = {"local": "local", "slurm": "slurm", "pbs": "pbs", "lsf": "lsf", "sge": "sge"}
_CONFIG_SECTIONS = {"slurm": "SlurmEngineSetLauncher", "pbs": "PBSEngineSetLauncher",
                    "lsf": "LSFEngineSetLauncher", "sge": "SGEEngineSetLauncher"}
_USES = {"local": ("max_workers",),
         "batch": ("max_workers", "job_name", "python", "workdir", "runs_dir", "dialect", "pe",
                   "mem_unit")}
_TRANSLATED = {"engine_launcher_class": "backend", "engines": "backend"}
_LSF_UNITS = {"KB": 1, "MB": 2, "GB": 3, "TB": 4, "PB": 5, "EB": 6}


def cluster(profile: str | None = None, n: int | None = None, *, backend: str | None = None,
            **options: Any):
    """An :class:`ipyparallel.Cluster` (not started) whose engines get the profile's resources.

    Parameters
    ----------
    profile : str, optional
        hpcpar profile, as for :class:`hpcpar.Executor` (default ``$HPCPAR_PROFILE``, else the
        config's ``default_profile``). ipyparallel's own IPython profile is chosen with
        ``profile_dir=``.
    n : int, optional
        Engines to start: array tasks on a batch backend, processes on ``local``. Default: the
        ``max_workers`` option, else ipyparallel's default (this machine's CPU count).
    backend : str, optional
        ``"local"`` (engines are processes here; resources do not apply and are ignored),
        ``"slurm"``, ``"pbs"``, ``"lsf"`` or ``"sge"``. Default as for :class:`hpcpar.Executor`.
    **options
        hpcpar options (keyword arguments > ``HPCPAR_*`` > profile > defaults): resources,
        ``job_name``, ``python`` (engine interpreter), ``workdir``, ``runs_dir`` (where the
        engines' batch script is written, ``<runs_dir>/ipyparallel``, private), ``dialect``
        (PBS ``pro``, the default, or ``torque``), ``pe`` (SGE), ``mem_unit`` (LSF). Any
        other configurable trait of :class:`ipyparallel.Cluster` (``controller_ip``,
        ``engine_timeout``, ``controller_args``, ``profile_dir``, ``cluster_id``...) is passed
        unchanged.

    Returns
    -------
    ipyparallel.Cluster
        Configured, not started: ``cluster.start_and_connect_sync()`` (or ``async with``)
        starts the controller here and submits the engines' job array.

    Raises
    ------
    ConfigError
        Before anything starts: an unknown option, ``engine_launcher_class=`` (set by the
        backend), an hpcpar option with no meaning here, ``nodes`` > 1, ``n`` < 1 (or ``n``
        = 1 with PBS Pro, whose arrays need two subjobs), a queue or account that ipyparallel
        would write unquoted and needs quoting, or any error of :func:`hpcpar.config.resolve`.
    ImportError
        ipyparallel missing: ``pip install 'hpcpar[ipyparallel]'``.
    """
    ipp = eco.require("ipyparallel", "ipyparallel", "hpcpar.ipyparallel")
    r = eco.resolve(LIBRARY, backend, profile, options, backends=BACKENDS, uses=_USES,
                    library_names=lambda _: _cluster_traits(ipp), translated=lambda _: _TRANSLATED)
    n = r.options.max_workers if n is None else n
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"n={n!r} must be a whole number of engines >= 1")
    kw: dict[str, Any] = {"engine_launcher_class": _LAUNCHERS[r.backend], **r.extra}
    if n is not None:
        kw["n"] = n
    if r.backend == "local":
        return ipp.Cluster(**kw)
    if r.backend == "pbs" and n == 1 and _dialect(r.options.dialect) == "pro":
        raise ConfigError("n=1: a PBS Pro job array (qsub -J) needs at least 2 subjobs; "
                          "use n >= 2 or dialect='torque'")
    traits = launcher_traits(r)      # checks every value before the Cluster exists
    c = ipp.Cluster(**kw)
    section = _CONFIG_SECTIONS[r.backend]
    traits["batch_file_name"] = str(eco.private_dir(r.options, "ipyparallel")
                                    / f"{c.cluster_id or 'engines'}-{r.backend}-engines.sh")
    cfg = copy.deepcopy(c.config)      # never write into a config shared with an IPython app
    for name, value in traits.items():
        setattr(cfg[section], name, value)
    c.config = cfg
    return c


def launcher_traits(r: eco.Resolved) -> dict[str, Any]:
    """The engine launcher's config traits for resolved configuration ``r`` (a batch backend).

    Returns
    -------
    dict
        ``batch_template`` (see :func:`engine_template`), ``queue``, ``engine_cmd`` when
        ``python`` is set; on SLURM ``account``, ``qos`` and ``timelimit`` too.
    """
    res = r.resources
    traits: dict[str, Any] = {"batch_template": engine_template(r)}
    if res.queue:
        traits["queue"] = eco.plain("queue", res.queue, LIBRARY)
    if r.backend == "slurm":
        if res.account:
            traits["account"] = eco.plain("account", res.account, LIBRARY)
        if res.qos:
            traits["qos"] = eco.plain("qos", res.qos, LIBRARY)
        if res.walltime:
            traits["timelimit"] = format_hms(res.walltime, days=res.walltime >= 86400)
    if r.options.python:
        traits["engine_cmd"] = [r.options.python, "-m", "ipyparallel.engine"]
    return traits


def engine_template(r: eco.Resolved) -> str:
    """The batch template of the engines' job array, in ipyparallel's ``{field}`` syntax.

    Holds ``{n}`` (array size), ``{output_file}``, ``{program_and_args}``, and the trait fields
    ``{queue}``, ``{account}``, ``{qos}``, ``{timelimit}`` where the launcher has them; every
    other value is literal, with braces doubled so ``${HOME}`` in a setup line survives.
    """
    res, opts, name = r.resources, r.options, r.backend
    esc = _escape
    job_name = esc(eco.plain("job_name", opts.job_name, LIBRARY)) if opts.job_name else None
    job_name = job_name or "ipengine-{cluster_id}"      # ipyparallel's own default name
    if res.qos and name != "slurm":
        log.warning("%s: %s has no quality of service; qos=%r is not rendered", LIBRARY, name,
                    res.qos)
    account = esc(eco.plain("account", res.account, LIBRARY)) if res.account else None
    if name == "slurm":
        d = ["--export=ALL", f"--job-name={job_name}", "--array=1-{n}", "--ntasks=1",
             f"--cpus-per-task={res.cpus_per_task}"]
        d += [f"--mem={ceil_div(res.mem, MIB)}M"] if res.mem else []
        d += ["--time={timelimit}"] if res.walltime else []
        d += ["--partition={queue}"] if res.queue else []
        d += ["--account={account}"] if res.account else []
        d += ["--qos={qos}"] if res.qos else []
        d += [f"--gpus-per-task={res.gpus}"] if res.gpus else []
        d += ["--output={output_file}", "--open-mode=append"]
        prefix = "#SBATCH"
    elif name == "pbs":
        pro = _dialect(opts.dialect) == "pro"
        d = ["-V", f"-N {job_name}", "-J 1-{n}" if pro else "-t 1-{n}"]
        mem = ceil_div(res.mem, MIB) if res.mem else None
        if pro:
            d.append(f"-l select=1:ncpus={res.cpus_per_task}" + (f":mem={mem}mb" if mem else "")
                     + (f":ngpus={res.gpus}" if res.gpus else ""))
        else:
            d.append(f"-l nodes=1:ppn={res.cpus_per_task}"
                     + (f":gpus={res.gpus}" if res.gpus else ""))
            d += [f"-l mem={mem}mb"] if mem else []
        d += [f"-l walltime={format_hms(res.walltime)}"] if res.walltime else []
        d += ["-q {queue}"] if res.queue else []
        d += [f"-A {account}"] if account else []
        d += ["-j oe", "-o {output_file}"]
        prefix = "#PBS"
    elif name == "lsf":
        unit = (opts.mem_unit or "MB").upper()
        if unit not in _LSF_UNITS:
            raise ConfigError(f"mem_unit={opts.mem_unit!r} is not an LSF_UNIT_FOR_LIMITS unit; "
                              f"use one of: {', '.join(_LSF_UNITS)}")
        d = [f"-J {job_name}[1-{{n}}]", "-env all", f"-n {res.cpus_per_task}",
             '-R "span[hosts=1]"']
        if res.mem:
            amount = ceil_div(res.mem, 1024 ** _LSF_UNITS[unit])
            d += [f"-M {amount}", f'-R "rusage[mem={amount}]"']
        if res.walltime:
            minutes = ceil_div(res.walltime, 60)
            d.append(f"-W {minutes // 60}:{minutes % 60:02d}")
        d += ["-q {queue}"] if res.queue else []
        d += [f"-P {account}"] if account else []
        d += [f'-gpu "num={res.gpus}"'] if res.gpus else []
        d += ["-o {output_file}", "-e {output_file}"]
        prefix = "#BSUB"
    else:
        slots = res.cpus_per_task
        d = ["-V", "-S /bin/bash", f"-N {job_name}", "-t 1-{n}"]
        d += [f"-pe {esc(eco.plain('pe', opts.pe or 'smp', LIBRARY))} {slots}"] if slots > 1 else []
        d += [f"-l h_vmem={ceil_div(res.mem, slots * MIB)}M"] if res.mem else []
        d += [f"-l h_rt={format_hms(res.walltime)}"] if res.walltime else []
        d += [f"-l gpu={res.gpus}"] if res.gpus else []
        d += ["-q {queue}"] if res.queue else []
        d += [f"-A {account}"] if account else []
        d += ["-j y", "-o {output_file}"]
        prefix = "#$"
    d += [esc(x) for x in res.extra_directives]
    lines = ["#!/bin/bash"] + [f"{prefix} {x}" for x in d]
    lines += [esc(x) for x in eco.setup_lines(res, opts)]
    lines.append("exec {program_and_args}")
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _dialect(dialect: str | None) -> str:
    value = (dialect or "pro").lower()
    if value not in ("pro", "torque"):
        raise ConfigError(f"dialect={dialect!r}: PBS dialects are 'pro' and 'torque'")
    return value


def _cluster_traits(ipp) -> set[str]:
    return set(ipp.Cluster.class_trait_names(config=True)) | {
        "profile_dir", "cluster_id", "log_level", "shutdown_atexit", "controller", "config", "parent"}
