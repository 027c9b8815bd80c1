"""Torque (Adaptive Computing) 4.x-6.x: ``qsub -t`` arrays, ``qstat -x -t`` (XML) for states.

Sources: Torque 6.1 ``qsub(1)`` (``-t`` array request with ``%`` slot limit, ``-l
nodes=N:ppn=P[:gpus=G]``, ``-l mem``), ``qstat(1)`` (``-x`` XML, ``-t`` subjobs), the
Administrator Guide's "Job exit status" table (``JOB_EXEC_*`` in ``pbs_job.h``) and "Job
states" (``qstat`` S column). Notes: ``tests/data/torque/README.md``.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import ClassVar

from ..states import JobState
from .pbs_common import PbsCommonSpec, pair_ranges
from .spec import Submission, TaskStatus

S = JobState


class TorqueSpec(PbsCommonSpec):
    """Torque (Adaptive Computing) 4.x-6.x."""

    dialect = "torque"
    array_index_var = "PBS_ARRAYID"
    array_index_base = 0

    # Torque qstat(1) job states (Administrator Guide, "qstat" S column). C is final and
    # classified by exit_status.
    STATES: ClassVar[Mapping[str, JobState]] = {
        "Q": S.PENDING,       # queued, eligible to run or be routed
        "H": S.PENDING,       # held
        "W": S.PENDING,       # waiting for its execution time
        "T": S.PENDING,       # being moved to a new location
        "R": S.RUNNING,       # running
        "E": S.RUNNING,       # exiting after having run
        "S": S.RUNNING,       # suspended
        "C": S.COMPLETED,     # completed (kept for keep_completed): refined by exit_status
    }

    # Torque pbs_job.h JOB_EXEC_* (Administrator Guide 6.1, "Job exit status").
    EXEC_CODES: ClassVar[Mapping[int, JobState]] = {
        -1: S.FAILED,        # JOB_EXEC_FAIL1: job exec failed, before files, no retry
        -2: S.FAILED,        # JOB_EXEC_FAIL2: job exec failed, after files, no retry
        -3: S.PENDING,       # JOB_EXEC_RETRY: job execution failed, do retry
        -4: S.NODE_FAIL,     # JOB_EXEC_INITABT: job aborted on MOM initialization
        -5: S.NODE_FAIL,     # JOB_EXEC_INITRST: aborted on MOM init, chkpt, no migrate
        -6: S.NODE_FAIL,     # JOB_EXEC_INITRMG: aborted on MOM init, chkpt, ok migrate
        -7: S.FAILED,        # JOB_EXEC_BADRESRT: job restart failed
        -8: S.FAILED,        # JOB_EXEC_CMDFAIL: exec() of user command failed
        -9: S.FAILED,        # JOB_EXEC_STDOUTFAIL: could not create/open stdout/stderr files
        -10: S.OUT_OF_MEMORY,  # JOB_EXEC_OVERLIMIT_MEM: job exceeded a memory limit
        -11: S.TIMEOUT,      # JOB_EXEC_OVERLIMIT_WT: job exceeded a walltime limit
        -12: S.TIMEOUT,      # JOB_EXEC_OVERLIMIT_CPUT: job exceeded a CPU time limit
    }

    def submissions(self, script, indices, max_running, max_array_size, extra_env=None):
        """One ``qsub -t a-b,c-d[%max]`` (Torque ``-t`` takes a comma list of ranges and a
        ``%`` slot limit)."""
        options = [("-t", pair_ranges(indices) + (f"%{max_running}" if max_running else ""))]
        if extra_env:
            options.append(("-v", ",".join(f"{k}={v}" for k, v in sorted(extra_env.items()))))
        argv = ["qsub", *(w for o in options for w in o), script]
        return [Submission(tuple(argv), tuple(sorted(set(indices))), array_options=tuple(options))]

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """``qstat -x -t IDS``: XML with one ``<Job>`` per array subjob (Torque qstat(1))."""
        return ["qstat", "-x", "-t", *job_ids]

    def parse_status(self, stdout: str) -> dict[str, TaskStatus]:
        """``<Data><Job><Job_Id>747[3].server</Job_Id><job_state>C</job_state>
        <exit_status>0</exit_status>...`` -> TaskStatus per subjob (array summaries skipped);
        a pending one's reason is its ``<comment>`` (set by the scheduler, e.g. Maui/Moab),
        else its state letter's (``H`` held, ``W`` waiting for its start time)."""
        out: dict[str, TaskStatus] = {}
        if not stdout.strip():
            return out
        for job in ET.fromstring(stdout).iter("Job"):
            job_id = (job.findtext("Job_Id") or "").strip()
            if not job_id or "[]" in job_id:
                continue
            native = (job.findtext("job_state") or "").strip()
            raw = (job.findtext("exit_status") or "").strip()
            status = self.classify(native, raw)
            reason, blocked = self.pending_reason(status.state, native, job.findtext("comment") or "")
            out[job_id] = dataclasses.replace(status, reason=reason, blocked=blocked)
        return out

    def classify(self, native: str, raw_exit: str) -> TaskStatus:
        """State letter + exit_status -> TaskStatus. For ``C``: 0 COMPLETED; 1..256 FAILED;
        256+n killed by signal n (qdel sends SIGTERM then SIGKILL: CANCELLED for 9/15, else
        FAILED); negative: :attr:`EXEC_CODES`; missing -> CANCELLED (deleted before it ran)."""
        state = self.map_state(native)
        code = int(raw_exit) if re.fullmatch(r"-?\d+", raw_exit) else None
        if native != "C":
            return TaskStatus(state, native, code)
        label = f"C exit_status={raw_exit or '-'}"
        done = self.finished_without_signal(code, label, "exit_status")
        if done is not None:
            return done
        assert code is not None    # finished_without_signal took the None case
        if code > 256:
            signal = code - 256
            return TaskStatus(S.CANCELLED if signal in (9, 15) else S.FAILED, label, 128 + signal)
        return TaskStatus(S.FAILED, label, code)

    def status_failed_means_gone(self, stderr: str) -> bool:
        return "Unknown Job Id" in stderr
