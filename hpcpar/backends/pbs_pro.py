"""PBS Professional / OpenPBS: ``qsub -J`` arrays, ``qstat -f -F json -x -t`` for states.

Sources: ``qsub(1B)`` (``-J X-Y[:Z][%max]``, ``-l select=``, ``-v``), ``qstat(1B)`` (``-f -F json
-x -t``), ``pbs_job_attributes(7B)`` (``job_state``, ``Exit_status``, ``substate``), PBS
Professional Reference Guide 2021.1 §8.1 "Job States", Administrator's Guide §"Job Exit Status
Codes" and OpenPBS ``src/include/job.h`` (``JOB_EXEC_*``). Notes: ``tests/data/pbspro/README.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import ClassVar

from ..states import JobState
from .pbs_common import PbsCommonSpec, hms_s
from .spec import Submission, TaskStatus, compress_ranges

S = JobState


_NOT_RUN = ("Not Running", "Can Never Run")


class PbsProSpec(PbsCommonSpec):
    """PBS Professional / OpenPBS."""

    dialect = "pro"
    array_index_var = "PBS_ARRAY_INDEX"
    array_index_base = 0
    #: a one-index (re)submission is a plain job: qsub refuses ``-J X-X`` (OpenPBS
    #: ``chk_Jrange``: start < end), and no command-line option cancels an embedded ``#PBS -J``,
    #: so a run's job.sh leaves ``-J`` to the command line (scripts from ``hpcpar script`` and
    #: ``hpcpar submit``, never resubmitted, carry it)
    array_directives_in_runs = False

    # qstat(1B) "Job Status in Default Format", pbs_job_attributes(7B) job_state, Reference
    # Guide 2021.1 §8.1 "Job States". F and X are final and classified by Exit_status.
    STATES: ClassVar[Mapping[str, JobState]] = {
        "Q": S.PENDING,       # queued, eligible to run or be routed
        "H": S.PENDING,       # held
        "W": S.PENDING,       # waiting for its execution time (or stage-in failed)
        "T": S.PENDING,       # transiting: being routed or moved
        "M": S.UNKNOWN,       # moved to another server (history): follow it there
        "B": S.RUNNING,       # array parent: at least one subjob began
        "R": S.RUNNING,       # running
        "E": S.RUNNING,       # exiting after having run (Exit_status may not be final yet)
        "S": S.RUNNING,       # suspended by the server (preemption); resumes
        "U": S.RUNNING,       # suspended: workstation busy (cycle harvesting)
        "X": S.COMPLETED,     # subjob finished/expired or deleted: refined by Exit_status
        "F": S.COMPLETED,     # finished (completed, failed or deleted): refined by Exit_status
    }

    # Negative Exit_status values: JOB_EXEC_* (OpenPBS src/include/job.h; Administrator's Guide
    # "Job Exit Status Codes"). Codes >= 0 are the script's exit code; > 256 = killed by signal.
    EXEC_CODES: ClassVar[Mapping[int, JobState]] = {
        -1: S.FAILED,        # JOB_EXEC_FAIL1: job exec failed, before files, no retry
        -2: S.FAILED,        # JOB_EXEC_FAIL2: job exec failed, after files, no retry
        -3: S.PENDING,       # JOB_EXEC_RETRY: job exec failed, do retry
        -4: S.NODE_FAIL,     # JOB_EXEC_INITABT: job aborted on MoM initialization
        -5: S.NODE_FAIL,     # JOB_EXEC_INITRST: job aborted on MoM init, checkpoint, no migrate
        -6: S.NODE_FAIL,     # JOB_EXEC_INITRMG: job aborted on MoM init, checkpoint, ok migrate
        -7: S.FAILED,        # JOB_EXEC_BADRESRT: job restart failed
        -8: S.FAILED,        # JOB_EXEC_GLOBUS_INIT_RETRY (obsolete)
        -9: S.FAILED,        # JOB_EXEC_GLOBUS_INIT_FAIL (obsolete)
        -10: S.FAILED,       # JOB_EXEC_FAILUID: invalid uid/gid for job
        -11: S.PENDING,      # JOB_EXEC_RERUN: job rerun
        -12: S.FAILED,       # JOB_EXEC_CHKP: job was checkpointed and killed
        -13: S.FAILED,       # JOB_EXEC_FAIL_PASSWORD
        -14: S.NODE_FAIL,    # JOB_EXEC_RERUN_ON_SIS_FAIL: sister MoM failed, rerun
        -15: S.PENDING,      # JOB_EXEC_QUERST: requeue for a provisioned node
        -16: S.PENDING,      # JOB_EXEC_FAILHOOK_RERUN: hook rejected, rerun
        -17: S.FAILED,       # JOB_EXEC_FAILHOOK_DELETE: hook rejected, delete
        -18: S.PENDING,      # JOB_EXEC_HOOK_RERUN: hook requested rerun
        -19: S.FAILED,       # JOB_EXEC_HOOK_DELETE: hook requested delete
        -20: S.NODE_FAIL,    # JOB_EXEC_RERUN_MS_FAIL: mother superior connection lost
        -21: S.FAILED,       # JOB_EXEC_FAIL_SECURITY
        -22: S.FAILED,       # JOB_EXEC_HOOKERROR
        -23: S.FAILED,       # JOB_EXEC_FAIL_KRB5
        -24: S.FAILED,       # JOB_EXEC_KILL_NCPUS_SUM: ncpus sum limit
        -25: S.FAILED,       # JOB_EXEC_KILL_NCPUS_BURST
        -26: S.OUT_OF_MEMORY,  # JOB_EXEC_KILL_VMEM: vmem limit
        -27: S.OUT_OF_MEMORY,  # JOB_EXEC_KILL_MEM: mem limit
        -28: S.TIMEOUT,      # JOB_EXEC_KILL_CPUT: cput limit
        -29: S.TIMEOUT,      # JOB_EXEC_KILL_WALLTIME: walltime limit
        -30: S.FAILED,       # JOB_EXEC_JOINJOB: join job failure
    }

    def submissions(self, script, indices, max_running, max_array_size, extra_env=None):
        """One ``qsub -J a-b[%max]`` per contiguous run (``-J`` takes one range, qsub(1B)).

        A single index goes as a plain job with ``HPCPAR_ARRAY_INDEX`` set through ``-v``
        (the template falls back to it), so nothing depends on whether a server accepts a
        one-subjob range. ``-V`` is never used (exported shell functions break ``-F json``,
        openpbs#2541).
        """
        limit = max_array_size or 10000
        out = []
        for a, b in compress_ranges(indices):
            for start in range(a, b + 1, limit):
                stop = min(b, start + limit - 1)
                env = dict(extra_env or {})
                options = []
                if start == stop:
                    env["HPCPAR_ARRAY_INDEX"] = str(start)
                else:
                    options.append(("-J", f"{start}-{stop}" + (f"%{max_running}" if max_running else "")))
                if env:
                    options.append(("-v", ",".join(f"{k}={v}" for k, v in sorted(env.items()))))
                argv = ["qsub", *(w for o in options for w in o), script]
                out.append(Submission(tuple(argv), tuple(range(start, stop + 1)),
                                      array_options=tuple(options)))
        return out

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """``qstat -f -F json -x -t IDS``: full attributes as JSON, finished jobs too (``-x``),
        array parents and their subjobs (``-t``), in one call."""
        return ["qstat", "-f", "-F", "json", "-x", "-t", *job_ids]

    def parse_status(self, stdout: str) -> dict[str, TaskStatus]:
        """Job or subjob id -> TaskStatus from ``qstat -f -F json``; array parents are skipped
        (their subjobs are listed with ``-t``). A pending job's reason is its ``comment``
        (pbs_job_attributes(7B)), or its array parent's when the scheduler wrote one there
        (``Not Running: ...`` / ``Can Never Run: ...``); see
        :meth:`~hpcpar.backends.pbs_common.PbsCommonSpec.pending_reason`."""
        if not stdout.strip():
            return {}
        jobs = json.loads(stdout).get("Jobs") or {}
        # the scheduler comments on an array's parent, not on subjobs it has not started:
        # a pending subjob without a comment of its own shows its parent's "Not Running: ..."
        why_parent = {job_id: str(attrs.get("comment", "")) for job_id, attrs in jobs.items()
                      if "[]" in job_id and str(attrs.get("comment", "")).startswith(_NOT_RUN)}
        out: dict[str, TaskStatus] = {}
        for job_id, attrs in jobs.items():
            if "[]" in job_id:                        # the array parent
                continue
            parent = why_parent.get(str(attrs.get("array_id", "")))
            out[job_id] = self.classify({**attrs, "comment": attrs.get("comment") or parent or ""})
        return out

    def classify(self, attrs: Mapping) -> TaskStatus:
        """One job's attributes -> TaskStatus (tests/data/pbspro/README.md, "Terminal classification").

        For ``F``/``X``: no Exit_status -> CANCELLED (deleted before it ran; substate 91);
        0 -> COMPLETED; 1..256 -> FAILED (the script's exit code); 256+n -> killed by signal
        n: TIMEOUT if ``resources_used.walltime`` reached ``Resource_List.walltime``, CANCELLED
        for SIGKILL/SIGTERM (qdel), else FAILED; negative -> :attr:`EXEC_CODES`.
        """
        native = str(attrs.get("job_state", "")).strip()
        state = self.map_state(native)
        raw = attrs.get("Exit_status")
        code = int(str(raw)) if raw is not None and re.fullmatch(r"-?\d+", str(raw).strip()) else None
        if native not in ("F", "X"):
            reason, blocked = self.pending_reason(state, native, str(attrs.get("comment", "")))
            return TaskStatus(state, native, code, reason, blocked)
        label = f"{native} Exit_status={raw}"
        done = self.finished_without_signal(code, label, "Exit_status")
        if done is not None:
            return done
        assert code is not None    # finished_without_signal took the None case
        if code > 256:
            signal = code - 256
            used = hms_s(str((attrs.get("resources_used") or {}).get("walltime", "")))
            limit = hms_s(str((attrs.get("Resource_List") or {}).get("walltime", "")))
            if used is not None and limit is not None and used >= limit:
                return TaskStatus(S.TIMEOUT, label, 128 + signal)
            return TaskStatus(S.CANCELLED if signal in (9, 15) else S.FAILED, label, 128 + signal)
        return TaskStatus(S.FAILED, label, code)

    def status_failed_means_gone(self, stderr: str) -> bool:
        """``qstat: Unknown Job Id ...`` (exit 153): history is off or expired for every id."""
        return "Unknown Job Id" in stderr
