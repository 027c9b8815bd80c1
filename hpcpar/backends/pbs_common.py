"""What the two PBS dialects share (see :mod:`hpcpar.backends.pbs` for the sources)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import ClassVar

from ..states import JobState
from .spec import SchedulerSpec, TaskStatus, compress_ranges

S = JobState
log = logging.getLogger("hpcpar")


def pair_ranges(indices: Sequence[int]) -> str:
    """``[0,1,2,5]`` -> ``"0-2,5-5"`` (pairs only: Torque before 2.3 read a lone ``N`` as a count)."""
    return ",".join(f"{a}-{b}" for a, b in compress_ranges(indices))



def hms_s(text: str) -> int | None:
    m = re.fullmatch(r"\s*(\d+):(\d+):(\d+)\s*", text)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3)) if m else None



class PbsCommonSpec(SchedulerSpec):
    """What PBS Professional/OpenPBS and Torque share: commands, job ids, qdel."""

    name = "pbs"
    #: Negative exit statuses (the server's ``JOB_EXEC_*`` codes) -> state; each dialect's own.
    EXEC_CODES: ClassVar[Mapping[int, JobState]] = {}
    template = "pbs.sh.j2"
    commands = ("qsub", "qstat", "qdel")
    supports_qos = False
    option_names = ("dialect",)
    #: ``"pro"`` or ``"torque"``
    dialect: str = ""

    def parse_job_id(self, stdout: str) -> str:
        """qsub prints the job id: ``1234.server``, ``1235[].server`` for an array (PBS Pro and
        Torque), a bare ``747`` on the slurm-wlm-torque shim."""
        text = stdout.strip().splitlines()[-1].strip() if stdout.strip() else ""
        if not re.fullmatch(r"\d+(\[\])?(\.[\w.-]+)?", text):
            raise ValueError(f"qsub printed {stdout!r}, not a job id")
        return text

    def task_id(self, job_id: str, array_index: int) -> str:
        """``1235[].server`` -> ``1235[3].server``; a plain job (no ``[]``) is its own task."""
        return job_id.replace("[]", f"[{array_index}]", 1) if "[]" in job_id else job_id

    def job_id_of(self, task_id: str) -> str:
        """``1235[3].server`` -> ``1235[].server`` (the array); a plain job is its own job."""
        return re.sub(r"\[\d+\]", "[]", task_id, count=1)

    def template_context(self, resources, options) -> dict:
        """``dialect``: which of ``pbs.sh.j2``'s two resource syntaxes to render."""
        return {"dialect": self.dialect}

    #: pending reasons from the state letter when the server gives no ``comment``: qstat(1B)
    #: "Job Status in Default Format" and Torque qstat(1) (H held, W waiting for its
    #: execution time set with ``qsub -a``, T being moved)
    REASON_LETTERS: ClassVar[Mapping[str, str]] = {"H": "held", "W": "waiting for its start time (-a)",
                                         "T": "being moved"}

    def pending_reason(self, state: JobState, native: str, comment: str) -> tuple[str, bool]:
        """A pending task's reason and whether it is blocking: the job's ``comment`` attribute
        as the scheduler set it (``Not Running: Insufficient amount of resource: ncpus ...``;
        pbs_job_attributes(7B) ``comment``), else the state letter's (:attr:`REASON_LETTERS`).
        A comment starting ``Can Never Run`` is blocking: PBS Professional's scheduler writes
        it when no node of the complex could ever satisfy the job (Administrator's Guide,
        "Job Comments", §4.9.24 in 2021.1)."""
        if state is not JobState.PENDING:
            return "", False
        reason = comment.strip() or self.REASON_LETTERS.get(native, "")
        return reason, reason.startswith("Can Never Run")

    def cancel_argv(self, ids: Sequence[str]) -> list[str]:
        """``qdel`` takes subjob ids such as ``1235[3].server`` (qdel(1B), Torque qdel(1))."""
        return ["qdel", *ids]

    def finished_without_signal(self, code: int | None, label: str, field: str) -> TaskStatus | None:
        """The parts of the exit-status rules both dialects share: no exit status (deleted
        before it ran) -> CANCELLED, 0 -> COMPLETED, negative -> :attr:`EXEC_CODES` (the
        ``JOB_EXEC_*`` codes); None for a positive code, which each dialect reads itself."""
        if code is None:
            return TaskStatus(S.CANCELLED, label, None)
        if code == 0:
            return TaskStatus(S.COMPLETED, label, 0)
        if code < 0:
            st = self.EXEC_CODES.get(code)
            if st is None:
                log.warning("pbs: unknown negative %s %d, treated as UNKNOWN", field, code)
                st = S.UNKNOWN
            return TaskStatus(st, label, code)
        return None
