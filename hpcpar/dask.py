"""A dask-jobqueue cluster (or a local dask cluster) from an hpcpar profile.

>>> cluster = hpcpar.dask.cluster(profile="cluster")     # doctest: +SKIP
>>> cluster.scale(jobs=4)                                 # doctest: +SKIP
>>> client = distributed.Client(cluster)                  # doctest: +SKIP

How each hpcpar option becomes a dask-jobqueue keyword (one job = one dask worker job):

==================  ==========================================================================
hpcpar              dask-jobqueue (``SLURMCluster``, ``PBSCluster``, ``LSFCluster``, ``SGECluster``)
==================  ==========================================================================
cpus_per_task       ``cores`` (threads x processes of the job's workers)
mem                 ``memory`` (the workers' limit) and the job's request in hpcpar's units:
                    SLURM ``job_mem`` ``--mem=<MiB>M``; PBS ``resource_spec`` ``mem=<MiB>mb``;
                    LSF ``-M`` in ``mem_unit`` (``lsf_units``) plus ``-R rusage[mem=]``;
                    SGE ``-l h_vmem=`` per slot
walltime            ``walltime``: ``HH:MM:SS`` (LSF ``H:MM``, minutes rounded up); unset:
                    dask-jobqueue's default (``jobqueue.<scheduler>.walltime``, 30 min)
queue, account      ``queue``; ``account`` (SLURM, PBS), ``project`` (LSF ``-P``), ``-A`` (SGE)
qos                 SLURM ``--qos=`` (PBS, LSF, SGE have none: a warning, as hpcpar's backends)
gpus                SLURM ``--gpus-per-task``, PBS ``ngpus``/``gpus``, LSF ``-gpu``, SGE ``-l gpu``
extra_directives    ``job_extra_directives`` (after hpcpar's own, so they win)
setup, workdir      ``job_script_prologue`` (``cd WORKDIR`` first)
job_name, python    ``job_name``, ``python``
runs_dir            ``log_directory`` = ``<runs_dir>/dask`` (private), unless given
dialect, pe         PBS ``resource_spec`` form (``pro``, default: ``select=``; ``torque``:
                    ``nodes=1:ppn=``); SGE parallel environment (``-pe <pe> <cores>``)
==================  ==========================================================================

Sources: dask-jobqueue's API (https://jobqueue.dask.org/en/latest/api.html) and its
``job_script()``; sbatch(1), qsub(1B), bsub, submit(1) for the directives.
"""

from __future__ import annotations

import logging
from typing import Any

from . import _ecosystem as eco
from .errors import ConfigError
from .resources import MIB, ceil_div, format_hms

log = logging.getLogger(__name__)

__all__ = ["cluster", "cluster_kwargs"]

LIBRARY = "dask-jobqueue"
BACKENDS = ("local", "slurm", "pbs", "lsf", "sge")
_CLASSES = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster", "sge": "SGECluster"}
_USES = {"local": ("max_workers",),
         "batch": ("job_name", "python", "workdir", "runs_dir", "dialect", "pe", "mem_unit")}
# dask-jobqueue keywords that hpcpar options set: one value, one place.
_TRANSLATED_BATCH = {
    "memory": "mem", "job_mem": "mem", "cores": "cpus_per_task",
    "job_cpu": "cpus_per_task", "ncpus": "cpus_per_task", "resource_spec": "mem and cpus_per_task",
    "job_script_prologue": "setup", "env_extra": "setup", "job_extra_directives": "extra_directives",
    "job_extra": "extra_directives", "project": "account", "lsf_units": "mem_unit",
}
_TRANSLATED_LOCAL = {"n_workers": "max_workers", "threads_per_worker": "cpus_per_task",
                     "memory_limit": "mem"}
_LSF_UNITS = {"KB": 1, "MB": 2, "GB": 3, "TB": 4, "PB": 5, "EB": 6}


def cluster(profile: str | None = None, *, backend: str | None = None, **options: Any):
    """A dask cluster whose workers get the profile's resources.

    Parameters
    ----------
    profile : str, optional
        A profile of the config file, as for :class:`hpcpar.Executor` (default
        ``$HPCPAR_PROFILE``, else the config's ``default_profile``).
    backend : str, optional
        ``"slurm"``, ``"pbs"``, ``"lsf"``, ``"sge"``: a dask-jobqueue cluster
        (``SLURMCluster``...) with one dask worker job per ``scale(jobs=...)``; ``"local"``: a
        :class:`distributed.LocalCluster` of ``max_workers`` worker processes with
        ``cpus_per_task`` threads and ``mem`` bytes each (``queue``, ``walltime``, ``setup``...
        do not apply there and are ignored). Default as for :class:`hpcpar.Executor`.
    **options
        hpcpar's options (keyword arguments > ``HPCPAR_*`` > profile > defaults; see the
        module docstring for how each is translated), and any keyword argument of the
        dask-jobqueue cluster class (``processes``, ``interface``, ``worker_extra_args``,
        ``scheduler_options``, ``log_directory``...) or of ``LocalCluster``, passed unchanged.

    Returns
    -------
    dask_jobqueue.JobQueueCluster or distributed.LocalCluster
        Started (its scheduler runs in this process), with no worker job submitted yet for the
        batch backends: call ``cluster.scale(jobs=N)`` or ``cluster.adapt(...)``.

    Raises
    ------
    ConfigError
        Before anything starts: an unknown option (neither hpcpar's nor the class's); a class
        keyword that an hpcpar option sets (``memory=``: pass ``mem=``); an hpcpar option with
        no meaning here given as a keyword argument (``max_retries=``); ``nodes`` > 1; no
        ``mem`` for a batch backend (dask-jobqueue needs it) unless dask's config sets
        ``jobqueue.<scheduler>.memory``; a queue, account, job name or python path that
        dask-jobqueue would write unquoted and needs quoting; or any error of
        :func:`hpcpar.config.resolve`.
    ImportError
        dask-jobqueue or distributed missing: ``pip install 'hpcpar[dask]'``.
    """
    name, kwargs = cluster_kwargs(profile, backend=backend, **options)
    if name == "local":
        distributed = eco.require("distributed", "dask", "hpcpar.dask")
        return distributed.LocalCluster(**kwargs)
    jobqueue = eco.require("dask_jobqueue", "dask", "hpcpar.dask")
    return getattr(jobqueue, _CLASSES[name])(**kwargs)


def cluster_kwargs(profile: str | None = None, *, backend: str | None = None,
                   **options: Any) -> tuple[str, dict[str, Any]]:
    """What :func:`cluster` would build, without building it: ``(backend, keyword arguments)``.

    The keyword arguments are for ``distributed.LocalCluster`` (backend ``"local"``) or for the
    dask-jobqueue class of the backend. Creates the log directory (0700) for batch backends.
    Parameters and errors as for :func:`cluster`.
    """
    r = eco.resolve(LIBRARY, backend, profile, options, backends=BACKENDS, uses=_USES,
                    library_names=_library_names, translated=_translated)
    if r.backend == "local":
        return r.backend, _local_kwargs(r)
    return r.backend, _batch_kwargs(r)


def _library_names(backend: str) -> set[str]:
    if backend == "local":
        distributed = eco.require("distributed", "dask", "hpcpar.dask")
        return eco.signature_names(distributed.LocalCluster.__init__)
    jobqueue = eco.require("dask_jobqueue", "dask", "hpcpar.dask")
    cls = getattr(jobqueue, _CLASSES[backend])
    return eco.signature_names(cls.__init__, cls.job_cls.__init__, jobqueue.core.Job.__init__)


def _translated(backend: str) -> dict[str, str]:
    return _TRANSLATED_LOCAL if backend == "local" else _TRANSLATED_BATCH


def _local_kwargs(r: eco.Resolved) -> dict[str, Any]:
    kw: dict[str, Any] = {"threads_per_worker": r.resources.cpus_per_task}
    if r.options.max_workers is not None:
        kw["n_workers"] = r.options.max_workers
    if r.resources.mem is not None:
        kw["memory_limit"] = r.resources.mem
    return {**kw, **r.extra}


def _batch_kwargs(r: eco.Resolved) -> dict[str, Any]:
    import dask  # present with dask_jobqueue (checked by _library_names)

    res, opts, name = r.resources, r.options, r.backend
    kw: dict[str, Any] = {"cores": res.cpus_per_task}
    if res.mem is not None:
        kw["memory"] = f"{ceil_div(res.mem, MIB)}MiB"
    elif dask.config.get(f"jobqueue.{name}.memory", None) is None:
        raise ConfigError(f"dask-jobqueue needs the memory of each worker job: set mem= (in the "
                          f"profile or as an argument), or jobqueue.{name}.memory in dask's config")
    for field in ("queue", "job_name", "python"):
        value = res.queue if field == "queue" else getattr(opts, field)
        if value is not None:
            kw[field] = eco.plain(field, value, LIBRARY)
    if res.walltime is not None:
        kw["walltime"] = format_hms(res.walltime)
    extra: list[str] = []
    account = eco.plain("account", res.account, LIBRARY) if res.account else None
    if res.qos and name != "slurm":
        log.warning("%s: %s has no quality of service; qos=%r is not rendered", LIBRARY, name,
                    res.qos)
    if name == "slurm":
        kw["account"] = account
        if res.mem is not None:
            kw["job_mem"] = f"{ceil_div(res.mem, MIB)}M"
        if res.qos:
            extra.append(f"--qos={eco.plain('qos', res.qos, LIBRARY)}")
        if res.gpus:
            extra.append(f"--gpus-per-task={res.gpus}")
    elif name == "pbs":
        kw["account"] = account
        kw["resource_spec"] = _pbs_resource_spec(res, opts.dialect, extra)
    elif name == "lsf":
        kw["project"] = account
        _lsf(res, opts.mem_unit, kw, extra)
        if res.gpus:
            extra.append(f'-gpu "num={res.gpus}"')
    else:
        _sge(res, opts.pe, kw, extra)
        if account:
            extra.append(f"-A {account}")
    kw["job_extra_directives"] = extra + list(res.extra_directives)
    kw["job_script_prologue"] = eco.setup_lines(res, opts)
    if "log_directory" not in r.extra:
        kw["log_directory"] = str(eco.private_dir(opts, "dask"))
    kw = {k: v for k, v in kw.items() if v is not None}
    return {**kw, **r.extra}


def _pbs_resource_spec(res, dialect: str | None, extra: list[str]) -> str:
    dialect = (dialect or "pro").lower()
    if dialect not in ("pro", "torque"):
        raise ConfigError(f"dialect={dialect!r}: PBS dialects are 'pro' and 'torque'")
    if dialect == "torque":                    # qsub(1) of Torque: -l nodes=1:ppn=P, -l mem=
        if res.mem is not None:
            extra.append(f"-l mem={ceil_div(res.mem, MIB)}mb")
        return f"nodes=1:ppn={res.cpus_per_task}" + (f":gpus={res.gpus}" if res.gpus else "")
    spec = f"select=1:ncpus={res.cpus_per_task}"          # pbs_resources(7B): select chunks
    if res.mem is not None:
        spec += f":mem={ceil_div(res.mem, MIB)}mb"
    return spec + (f":ngpus={res.gpus}" if res.gpus else "")


def _lsf(res, mem_unit: str | None, kw: dict, extra: list[str]) -> None:
    unit = (mem_unit or "MB").upper()
    if unit not in _LSF_UNITS:
        raise ConfigError(f"mem_unit={mem_unit!r} is not an LSF_UNIT_FOR_LIMITS unit; use one "
                          f"of: {', '.join(_LSF_UNITS)}")
    kw["lsf_units"] = unit.lower()
    kw["ncpus"] = res.cpus_per_task
    if res.mem is not None:
        amount = ceil_div(res.mem, 1024 ** _LSF_UNITS[unit])      # LSF counts in 1024s
        # dask-jobqueue prints ceil(mem / 1000**k) for -M: hand it the amount in those terms
        kw["mem"] = amount * 1000 ** _LSF_UNITS[unit]
        extra.append(f'-R "rusage[mem={amount}]"')
    if res.walltime is not None:                   # bsub -W [hour:]minute
        minutes = ceil_div(res.walltime, 60)
        kw["walltime"] = f"{minutes // 60}:{minutes % 60:02d}"


def _sge(res, pe: str | None, kw: dict, extra: list[str]) -> None:
    slots = res.cpus_per_task
    if res.mem is not None:     # h_vmem is per slot (complex(5)): the job's memory / its slots
        kw["resource_spec"] = f"h_vmem={ceil_div(res.mem, slots * MIB)}M"
    if slots > 1:
        extra.append(f"-pe {eco.plain('pe', pe or 'smp', LIBRARY)} {slots}")
    if res.gpus:
        extra.append(f"-l gpu={res.gpus}")
