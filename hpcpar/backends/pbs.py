"""PBS, two dialects behind one backend name: PBS Professional/OpenPBS (``pro``) and Torque.

:class:`PbsSpec` is the one spec registered as ``pbs``; it narrows itself to the dialect's spec
(:class:`~hpcpar.backends.pbs_pro.PbsProSpec`, :class:`~hpcpar.backends.pbs_torque.TorqueSpec`;
what both share is in :mod:`hpcpar.backends.pbs_common`). Choose with the ``dialect`` option
(``"pro"`` or ``"torque"``); without it ``qstat --version`` runs once (cheap, no server round
trip) and its answer decides:

=====================================  ===================================================
``pbs_version = 2022.1.3``             PBS Professional / OpenPBS -> ``pro``
``Version: 6.1.3``                     Torque -> ``torque``
``Unknown option: version`` + squeue   Debian's ``slurm-wlm-torque`` wrappers over SLURM ->
                                       ``torque``, with a warning (below)
no ``qstat`` on PATH / anything else   ``pro`` (scripts can still be rendered)
=====================================  ===================================================

Sources. PBS Pro/OpenPBS: ``qsub(1B)``, ``qstat(1B)``, ``pbs_job_attributes(7B)``,
``pbs_resources(7B)`` (size units ``kb mb gb``, 1024-based; walltime ``HH:MM:SS``), PBS
Professional Reference Guide 2021.1 §8.1 "Job States", Administrator's Guide §"Job Exit Status
Codes". Torque 6.1: ``qsub(1)``, ``qstat(1)``, the Administrator Guide's "Job exit status" and
"Job states". Notes: ``tests/data/pbspro/README.md``, ``tests/data/torque/README.md``.

The ``slurm-wlm-torque`` wrappers are not a PBS: their ``qstat`` has no ``-x``/``-t`` and
``qdel ID_IDX`` cancels the whole array, so hpcpar cannot follow a run through them (use the
``slurm`` backend there). This repository's Torque tests drive them with a spec of their own,
``tests/torque_shim.py``, registered with :func:`hpcpar.register_scheduler`.

Log files: the job script redirects its own output to ``logs/<PBS_JOBID>.out``/``.err``
(PBS only copies ``-o``/``-e`` files back when a job ends, and names array subjob files in
its own way), so ``log_stem`` is the task id.
"""

from __future__ import annotations

import logging
import re
import shutil

from .pbs_common import PbsCommonSpec
from .pbs_pro import PbsProSpec
from .pbs_torque import TorqueSpec
from .spec import SchedulerSpec, check_choice

log = logging.getLogger("hpcpar")

#: accepted ``dialect`` values -> dialect
DIALECTS = {"pro": "pro", "pbspro": "pro", "openpbs": "pro", "torque": "torque"}


def detect_dialect(output: str, returncode: int, has_squeue: bool) -> tuple[str, bool]:
    """``(dialect, on_slurm_shim)`` from ``qstat --version`` (stdout + stderr, exit code)."""
    if re.search(r"pbs_version\s*=", output):
        return "pro", False
    if re.search(r"^\s*Version:\s*\d", output, flags=re.MULTILINE):
        return "torque", False
    if returncode != 0 and "Unknown option" in output and has_squeue:
        return "torque", True
    return "pro", False


class PbsSpec(PbsProSpec):
    """The ``pbs`` scheduler: PBS Professional/OpenPBS unless the ``dialect`` option or
    ``qstat --version`` says Torque (see the module docstring). Used as it is, it is the
    ``pro`` dialect; :meth:`variant` gives the dialect's own spec."""

    def dialects(self) -> dict[str, PbsCommonSpec]:
        """Dialect -> its spec (a test or plugin may return other specs for them)."""
        return {"pro": PbsProSpec(), "torque": TorqueSpec()}

    def check_options(self, options) -> None:
        check_choice("PBS", "dialect", options.dialect, DIALECTS)

    def detect_argv(self, options) -> list[str] | None:
        """``qstat --version``, only when no ``dialect`` is given."""
        return None if options.dialect else ["qstat", "--version"]

    def variant(self, options, detected) -> SchedulerSpec:
        if options.dialect:
            dialect = DIALECTS[options.dialect.lower()]
        elif detected is None:
            dialect = "pro"
        else:
            dialect, shim = detect_dialect(detected[0], detected[1], shutil.which("squeue") is not None)
            if shim:
                log.warning("pbs: qstat here is Debian's slurm-wlm-torque wrapper over SLURM, "
                            "which hpcpar cannot follow (no qstat -x/-t); use the slurm backend")
        return self.dialects()[dialect]


__all__ = ["DIALECTS", "PbsProSpec", "PbsSpec", "TorqueSpec", "detect_dialect"]
