"""A submitit executor from an hpcpar profile.

>>> ex = hpcpar.submitit.executor(profile="cluster")     # doctest: +SKIP
>>> job = ex.submit(fit, 42); job.result()               # doctest: +SKIP

How each hpcpar option becomes a :class:`submitit.AutoExecutor` parameter:

==================  ========================================================================
hpcpar              submitit
==================  ========================================================================
queue               ``slurm_partition``
account, qos        ``slurm_account``, ``slurm_qos``
cpus_per_task       ``cpus_per_task``
mem                 ``slurm_mem`` = ``<MiB>M`` (exact, as hpcpar's ``--mem``) and ``mem_gb``
walltime            ``timeout_min`` (minutes, rounded up)
gpus                ``slurm_gpus_per_task``
setup, workdir      ``slurm_setup`` (``cd WORKDIR`` first)
extra_directives    ``slurm_additional_parameters``: ``"--constraint=avx2"`` becomes
                    ``{"constraint": "avx2"}``, a bare ``"--exclusive"`` ``{"exclusive": True}``
job_name, python    ``name``; ``slurm_python`` (quoted)
runs_dir            the default folder, ``<runs_dir>/submitit/%j`` (private)
==================  ========================================================================

submitit drives SLURM only; ``local`` gives its ``local`` cluster (jobs are processes here,
with ``timeout_min``), and ``backend="inline"`` its ``debug`` cluster (jobs run in this
process when their result is asked for). Sources: submitit's ``AutoExecutor`` and
``SlurmExecutor`` parameters (``submitit/auto/auto.py``, ``submitit/slurm/slurm.py``); sbatch(1).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from . import _ecosystem as eco
from .errors import ConfigError
from .resources import GIB, MIB, ceil_div

__all__ = ["executor"]

LIBRARY = "submitit"
BACKENDS = ("local", "slurm")
_USES = {"local": ("job_name", "runs_dir"),
         "batch": ("job_name", "python", "workdir", "runs_dir")}
_TRANSLATED = {
    "timeout_min": "walltime", "mem_gb": "mem", "name": "job_name", "slurm_partition": "queue",
    "slurm_account": "account", "slurm_qos": "qos", "slurm_mem": "mem", "slurm_time": "walltime",
    "slurm_setup": "setup", "slurm_additional_parameters": "extra_directives",
    "slurm_gpus_per_task": "gpus", "slurm_job_name": "job_name", "slurm_python": "python",
    "slurm_cpus_per_task": "cpus_per_task", "slurm_nodes": "nodes", "cluster": "backend",
}


def executor(folder: str | os.PathLike | None = None, profile: str | None = None, *,
             backend: str | None = None, **options: Any):
    """A :class:`submitit.AutoExecutor` with the profile's resources.

    Parameters
    ----------
    folder : str or path-like, optional
        submitit's folder for job files and logs (``%j`` is replaced by the job id). Default
        ``<runs_dir>/submitit/%j``, its parent created private (0700).
    profile : str, optional
        hpcpar profile, as for :class:`hpcpar.Executor` (default ``$HPCPAR_PROFILE``, else the
        config's ``default_profile``).
    backend : str, optional
        ``"slurm"``; ``"local"`` (submitit's ``local`` cluster: subprocesses here) or
        ``"inline"`` (its ``debug`` cluster: in this process). Default as for
        :class:`hpcpar.Executor`.
    **options
        hpcpar options (keyword arguments > ``HPCPAR_*`` > profile > defaults), translated as
        in the module docstring, and any other :class:`submitit.AutoExecutor` parameter
        (``slurm_signal_delay_s``, ``slurm_array_parallelism``, ``slurm_max_num_timeout``,
        ``stderr_to_stdout``...), passed unchanged.

    Returns
    -------
    submitit.AutoExecutor
        Configured; nothing is submitted until ``submit``/``map_array``.

    Raises
    ------
    ConfigError
        Before anything is submitted: a backend other than ``slurm``, ``local``, ``inline``
        (PBS, LSF, Grid Engine: submitit has no executor for them; use :class:`hpcpar.Executor`
        or :func:`hpcpar.dask.cluster`); an unknown option; a submitit parameter that an hpcpar
        option sets (``slurm_partition=``: pass ``queue=``); an hpcpar option with no meaning
        here given as a keyword argument; ``nodes`` > 1; an extra directive that is not a long
        option (``-C avx2``: write ``--constraint=avx2``); or any error of
        :func:`hpcpar.config.resolve`.
    ImportError
        submitit missing: ``pip install 'hpcpar[submitit]'``.
    """
    submitit = eco.require("submitit", "submitit", "hpcpar.submitit")
    inline = backend == "inline"
    r = eco.resolve(LIBRARY, "local" if inline else backend, profile, options,
                    backends=BACKENDS, uses=_USES, library_names=lambda _: _parameters(submitit),
                    translated=lambda _: _TRANSLATED)
    cluster = "debug" if inline else r.backend
    ctor, params = parameters(r)
    for key, value in r.extra.items():
        (ctor if _is_ctor(submitit, key) else params)[key] = value
    if folder is None:
        folder = eco.private_dir(r.options, "submitit") / "%j"
    ex = submitit.AutoExecutor(folder=Path(folder), cluster=cluster, **ctor)
    ex.update_parameters(**params)
    return ex


def parameters(r: eco.Resolved) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(constructor keyword arguments, update_parameters keyword arguments)`` for ``r``."""
    res, opts = r.resources, r.options
    params: dict[str, Any] = {"cpus_per_task": res.cpus_per_task}
    ctor: dict[str, Any] = {}
    if opts.job_name:
        params["name"] = opts.job_name
    if res.walltime is not None:
        params["timeout_min"] = ceil_div(res.walltime, 60)
    if res.mem is not None:
        params["mem_gb"] = res.mem / GIB
    if r.backend == "local":
        return ctor, params
    if res.mem is not None:
        params["slurm_mem"] = f"{ceil_div(res.mem, MIB)}M"
    for field, key in (("queue", "slurm_partition"), ("account", "slurm_account"),
                       ("qos", "slurm_qos")):
        if getattr(res, field):
            params[key] = getattr(res, field)
    if res.gpus:
        params["slurm_gpus_per_task"] = res.gpus
    setup = eco.setup_lines(res, opts)
    if setup:
        params["slurm_setup"] = setup
    if res.extra_directives:
        params["slurm_additional_parameters"] = additional_parameters(res.extra_directives)
    if opts.python:
        ctor["slurm_python"] = shlex.quote(opts.python)
    return ctor, params


def additional_parameters(directives) -> dict[str, Any]:
    """hpcpar's ``extra_directives`` as submitit's ``slurm_additional_parameters``.

    ``"--constraint=avx2"`` and ``"--constraint avx2"`` give ``{"constraint": "avx2"}``;
    ``"--exclusive"`` gives ``{"exclusive": True}`` (submitit renders it bare).

    Raises
    ------
    ConfigError
        For a directive that is not a long option (``"-C avx2"``).
    """
    out: dict[str, Any] = {}
    for d in directives:
        text = d.strip()
        if not text.startswith("--") or len(text) < 3:
            raise ConfigError(f"extra_directives {d!r}: submitit takes long options only; write "
                              "it as --name=value (e.g. --constraint=avx2)")
        name, sep, value = text[2:].partition("=")
        if not sep:
            name, _, value = name.partition(" ")
        out[name.strip()] = value.strip() or True
    return out


def _parameters(submitit) -> set[str]:
    from submitit.core import plugins

    names = set(submitit.AutoExecutor._valid_parameters())
    for prefix, cls in plugins.get_executors().items():
        names |= {f"{prefix}_{p}" for p in cls._valid_parameters()}
        names |= {f"{prefix}_{p}" for p in eco.signature_names(cls.__init__) - {"folder"}}
    return names


def _is_ctor(submitit, key: str) -> bool:
    from submitit.core import plugins

    prefix, _, name = key.partition("_")
    cls = plugins.get_executors().get(prefix)
    return cls is not None and name in eco.signature_names(cls.__init__) - {"folder"}
