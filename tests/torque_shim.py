"""The Torque dialect on Debian's ``slurm-wlm-torque`` wrappers over SLURM: a TEST scheduler.

The wrappers are not a PBS, so hpcpar ships no support for them (hpcpar/backends/pbs.py);
this repository's Torque tier (tests/test_torque.py) uses them because they are what Debian
packages. Their ``qstat`` has no ``-x``/``-t`` and prints SLURM ids without the array index,
and ``qdel ID_IDX`` cancels the *whole* array, so this spec submits through the wrapper's
``qsub -t`` (``#PBS`` lines are read by sbatch itself) and polls and cancels with the SLURM
commands under it (``squeue``, ``scancel ID_IDX``), as tests/data/torque/README.md recommends.

It is registered as ``pbs`` (replacing the shipped spec) with :func:`register`, through
:func:`hpcpar.register_scheduler` like any plugin; ``python tests/torque_shim.py ARGS`` runs the
``hpcpar`` command line with it registered.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hpcpar
from hpcpar.backends.pbs import PbsSpec
from hpcpar.backends.pbs_torque import TorqueSpec
from hpcpar.backends.slurm import SlurmSpec


class TorqueSlurmShimSpec(TorqueSpec):
    """Submission: the wrapper's ``qsub -t`` (passed to ``sbatch --array``) with ``-o``/``-e``
    on the command line (the wrapper overrides ``#PBS -o/-e`` with one file per array, which
    every task would truncate). Status and cancellation: ``squeue``/``scancel`` under it, with
    SLURM's ``JOB_TASK`` ids and state table."""

    commands = ("qsub", "squeue", "scancel")
    _slurm = SlurmSpec()
    STATES = SlurmSpec.STATES

    def submissions(self, script, indices, max_running, max_array_size, extra_env=None):
        logs = Path(script).parent / "logs"
        out = []
        for sub in super().submissions(script, indices, max_running, max_array_size, extra_env):
            argv = (*sub.argv[:-1], "-o", str(logs / "%A_%a.out"), "-e", str(logs / "%A_%a.err"),
                    sub.argv[-1])
            out.append(type(sub)(argv, sub.indices, sub.stdin, sub.offset, sub.array_options))
        return out

    def task_id(self, job_id: str, array_index: int) -> str:
        return f"{job_id}_{array_index}"

    def job_id_of(self, task_id: str) -> str:
        return self._slurm.job_id_of(task_id)

    def status_argv(self, job_ids):
        return self._slurm.status_argv(job_ids)

    def parse_status(self, stdout):
        return self._slurm.parse_status(stdout)

    def status_failed_means_gone(self, stderr):
        return self._slurm.status_failed_means_gone(stderr)

    def cancel_argv(self, ids):
        return ["scancel", *ids]


class PbsOverSlurmSpec(PbsSpec):
    """``pbs`` whose Torque dialect is the shim above."""

    def dialects(self):
        return {**super().dialects(), "torque": TorqueSlurmShimSpec()}


def register() -> None:
    hpcpar.register_scheduler(PbsOverSlurmSpec(), replace=True)


def unregister() -> None:
    from hpcpar.backends.registry import unregister_scheduler

    unregister_scheduler("pbs")


if __name__ == "__main__":
    from hpcpar.cli import main

    register()
    sys.exit(main(sys.argv[1:]))
