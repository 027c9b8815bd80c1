"""IBM Spectrum LSF 10.1: ``bsub`` job arrays read from standard input, ``bjobs -json`` for
states, ``bkill`` to cancel.

Sources (IBM Spectrum LSF 10.1.0 Command Reference, https://www.ibm.com/docs/en/spectrum-lsf/10.1.0):
``bsub`` ("bsub < script": ``#BSUB`` lines are read only when the script comes on standard
input; ``-J "name[index_list]%max"``; ``-n``; ``-M``; ``-R "rusage[mem=]"``, ``span[]``;
``-W [hour:]minute``; ``-o``/``-e`` with ``%J``/``%I``; ``-P`` project; ``-gpu``; ``-rn``),
``bjobs -o`` / ``-json`` / ``-a``, ``bjobs`` description → JOB STATUS, "Termination reasons
displayed by bacct, bhist, and bjobs", ``lsf.conf`` ``LSF_UNIT_FOR_LIMITS``,
``lsb.params`` ``MAX_JOB_ARRAY_SIZE``. Notes and samples: ``tests/data/lsf/README.md``.

Array indices start at 1 (``LSB_JOBINDEX``), so chunk ``i`` is element ``i + 1``; an index
list takes any set of chunks (``name[1-4,9]``) in one ``bsub``.

Memory: ``-M`` and ``rusage[mem=]`` are plain numbers in the site's ``LSF_UNIT_FOR_LIMITS``
(``lsf.conf``; LSF's built-in default is KB, the 10.1 installer writes MB). The ``mem_unit``
option names it (``KB``, ``MB``, ``GB``, ``TB``, ``PB``, ``EB``; 1024-based; default MB) and
must match the site (``badmin showconf mbd | grep LSF_UNIT_FOR_LIMITS``). Both are rendered
as the task's whole memory, with ``span[hosts=1]``: ``rusage[mem]`` is per host unless the
site sets ``RESOURCE_RESERVE_PER_TASK=Y`` (then it is per slot and hpcpar over-reserves).

Walltime: ``-W`` in minutes, rounded up (``H:MM``). At the run limit LSF sends SIGUSR2 and
kills the job later (``bsub -W``), which the worker takes as its walltime warning.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from ..resources import ceil_div
from ..states import JobState
from .spec import SchedulerSpec, Submission, TaskStatus, check_choice, compress_ranges, range_text

S = JobState
log = logging.getLogger("hpcpar")

#: LSF_UNIT_FOR_LIMITS values (lsf.conf), bytes each
MEM_UNITS = {"KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4, "PB": 1024**5, "EB": 1024**6}
#: lsb.params MAX_JOB_ARRAY_SIZE default: elements per array, and the largest index
DEFAULT_MAX_ARRAY_SIZE = 1000


class LsfSpec(SchedulerSpec):
    name = "lsf"
    template = "lsf.sh.j2"
    commands = ("bsub", "bjobs", "bkill")
    array_index_var = "LSB_JOBINDEX"
    array_index_base = 1
    script_on_stdin = True
    supports_qos = False
    #: ``mem_unit``: the site's ``LSF_UNIT_FOR_LIMITS`` (default MB)
    option_names = ("mem_unit",)
    BJOBS_FIELDS = "jobid jobindex stat exit_code exit_reason pend_reason"

    # bjobs description -> JOB STATUS; "LSF terms and concepts / Job states".
    STATES: ClassVar[Mapping[str, JobState]] = {
        "PEND": S.PENDING,     # waiting in a queue for scheduling and dispatch
        "PROV": S.PENDING,     # dispatched, waiting for resource provisioning
        "WAIT": S.PENDING,     # chunk-job member waiting to run
        "PSUSP": S.PENDING,    # suspended while pending (held by its owner or an admin)
        "RUN": S.RUNNING,      # running
        "USUSP": S.RUNNING,    # suspended by its owner while running (keeps its slots)
        "SSUSP": S.RUNNING,    # suspended by LSF (load, run window, preemption); resumes
        "DONE": S.COMPLETED,   # finished with exit code 0
        "EXIT": S.FAILED,      # non-zero exit or killed: refined by EXIT_REASON (TERM_REASONS)
        "UNKWN": S.UNKNOWN,    # mbatchd lost contact with the execution host; may come back
        "ZOMBI": S.NODE_FAIL,  # killed while UNKWN, or its host became unavailable
    }

    # "Termination reasons displayed by bacct, bhist, and bjobs" (keyword, lsb.acct number).
    TERM_REASONS: Mapping[str, JobState] = {
        "TERM_RUNLIMIT": S.TIMEOUT,        # run limit (-W) reached
        "TERM_DEADLINE": S.TIMEOUT,        # 6: run window / deadline constraint
        "TERM_CPULIMIT": S.TIMEOUT,        # 12: CPU time limit
        "TERM_MEMLIMIT": S.OUT_OF_MEMORY,  # 16: memory limit (-M)
        "TERM_SWAP": S.OUT_OF_MEMORY,      # swap limit
        "TERM_OWNER": S.CANCELLED,         # 14: bkill by its owner
        "TERM_FORCE_OWNER": S.CANCELLED,   # 8: bkill -r by its owner
        "TERM_ADMIN": S.CANCELLED,         # 15: bkill by an administrator
        "TERM_FORCE_ADMIN": S.CANCELLED,   # 9: bkill -r by an administrator
        "TERM_BUCKET_KILL": S.CANCELLED,   # 23: bkill -b
        "TERM_REQUEUE_OWNER": S.CANCELLED,  # brequeue by its owner
        "TERM_REQUEUE_ADMIN": S.CANCELLED,  # brequeue by an administrator
        "TERM_PREEMPT": S.PREEMPTED,       # preempted
        "TERM_LOAD": S.PREEMPTED,          # 3: load conditions on the host
        "TERM_WINDOW": S.PREEMPTED,        # queue run window closed
        "TERM_OTHER": S.PREEMPTED,         # 4: LSF policy (migration, etc.)
        "TERM_ZOMBIE": S.NODE_FAIL,        # job in ZOMBI state
        "TERM_UNKNOWN": S.NODE_FAIL,       # LSF cannot tell
        "TERM_MC_RECALL": S.NODE_FAIL,     # 30: recalled by the multicluster submission cluster
        "TERM_RC_RECALL": S.NODE_FAIL,     # resource connector host reclaimed
        "TERM_CHKPNT": S.FAILED,           # killed after a checkpoint
        "TERM_CWD_NOTEXIST": S.FAILED,     # 25: working directory missing
        "TERM_DATA": S.FAILED,             # 29: data staging failed
        "TERM_EXTERNAL_SIGNAL": S.FAILED,  # 17: killed by a signal outside LSF
        "TERM_THREADLIMIT": S.FAILED,      # thread limit
        "TERM_PROCESSLIMIT": S.FAILED,     # process limit
        "TERM_SLURM": S.FAILED,            # killed by SLURM (LSF with SLURM)
        "TERM_CSM_ALLOC": S.FAILED,        # CSM allocation failed
        "TERM_KILL_DOWNSTREAM": S.CANCELLED,  # killed with its upstream job
        "TERM_ORPHAN_SYSTEM": S.CANCELLED,    # orphan job killed by the system
    }

    # -- options and template ----------------------------------------------------------------
    def check_options(self, options) -> None:
        """``mem_unit`` must be an ``LSF_UNIT_FOR_LIMITS`` unit (lsf.conf)."""
        check_choice("LSF", "mem_unit", options.mem_unit, MEM_UNITS)

    def template_context(self, resources, options) -> dict:
        """``mem_unit`` and the task's memory in it, rounded up (``-M``, ``rusage[mem=]``)."""
        unit = (options.mem_unit or "MB").upper()
        return {"mem_unit": unit,
                "mem_in_unit": ceil_div(resources.mem, MEM_UNITS[unit]) if resources.mem else None}

    # -- submission --------------------------------------------------------------------------
    def submissions(self, script, indices, max_running, max_array_size, extra_env=None):
        """Read ``script`` (LSF takes it on standard input) and build the submissions.

        This is the one spec method that touches a file: ``bsub`` reads ``#BSUB`` directives
        only from a script on stdin, so the text rides in :attr:`Submission.stdin`. The pure
        part is :meth:`submissions_for_text`.
        """
        text = Path(script).read_text()
        return self.submissions_for_text(text, indices, max_running, max_array_size, extra_env)

    def submissions_for_text(self, text: str, indices: Sequence[int], max_running: int | None,
                             max_array_size: int | None,
                             extra_env: Mapping[str, str] | None = None) -> list[Submission]:
        """``bsub -J "name[1-4,9]%max"`` with the script on stdin; at most ``max_array_size``
        elements per submission (``MAX_JOB_ARRAY_SIZE``, lsb.params; it also bounds the index,
        so larger runs are refused by LSF rather than shifted)."""
        return self._submissions(job_name_of(text), text, indices, max_running, max_array_size, extra_env)

    def planned_submissions(self, indices, max_running, max_array_size, job_name, script="job.sh"):
        """As :meth:`submissions_for_text`, before the script exists (no stdin yet)."""
        return self._submissions(job_name, None, indices, max_running, max_array_size)

    def _submissions(self, name, text, indices, max_running, max_array_size, extra_env=None):
        limit = max_array_size or DEFAULT_MAX_ARRAY_SIZE
        wanted = sorted(set(indices))
        out = []
        for start in range(0, len(wanted), limit):
            block = wanted[start:start + limit]
            spec = range_text(compress_ranges(i + self.array_index_base for i in block))
            options = [("-J", f"{name}[{spec}]" + (f"%{max_running}" if max_running else ""))]
            if extra_env:
                options.append(("-env", "all, " + ", ".join(f"{k}={v}" for k, v in sorted(extra_env.items()))))
            argv = ["bsub", *(w for o in options for w in o)]
            out.append(Submission(tuple(argv), tuple(block), stdin=text, array_options=tuple(options)))
        return out

    def parse_job_id(self, stdout: str) -> str:
        """``Job <1234> is submitted to queue <normal>.`` -> ``1234``."""
        m = re.search(r"Job <(\d+)> is submitted", stdout)
        if not m:
            raise ValueError(f"bsub printed {stdout!r}, not a job id")
        return m.group(1)

    def task_id(self, job_id: str, array_index: int) -> str:
        """``1234[3]``, the form bjobs and bkill take."""
        return f"{job_id}[{array_index}]"

    def job_id_of(self, task_id: str) -> str:
        """``1234[3]`` -> ``1234``."""
        return task_id.split("[", 1)[0]

    def log_stem(self, task_id: str) -> str:
        """``1234[3]`` -> ``1234_3`` (the template's ``-o logs/%J_%I.out``)."""
        m = re.fullmatch(r"(\d+)\[(\d+)\]", task_id)
        return f"{m.group(1)}_{m.group(2)}" if m else f"{task_id}_0"

    # -- status ------------------------------------------------------------------------------
    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """One ``bjobs -json -a -o "jobid jobindex stat exit_code exit_reason pend_reason" IDS``:
        ``-a`` keeps finished jobs (for CLEAN_PERIOD), ``exit_reason`` tells TIMEOUT/OOM/CANCELLED
        apart, ``pend_reason`` says why a job pends (bjobs -o, LSF 10.1 Command Reference)."""
        return ["bjobs", "-json", "-a", "-o", self.BJOBS_FIELDS, *job_ids]

    def parse_status(self, stdout: str) -> dict[str, TaskStatus]:
        """``JOB[INDEX]`` (``JOB`` when JOBINDEX is 0: not an array) -> TaskStatus.

        Records with ``ERROR`` (``Job <9999> is not found``) are skipped: the job is gone.
        EXIT is refined by the EXIT_REASON keyword (:attr:`TERM_REASONS`). A pending job's
        reason is PEND_REASON without its trailing ``;``; none is treated as blocking (LSF's
        pending reasons are documented as conditions the scheduler re-evaluates, and a bad
        queue or project is refused by bsub itself).
        """
        if not stdout.strip():
            return {}
        out: dict[str, TaskStatus] = {}
        for rec in json.loads(stdout).get("RECORDS", []):
            if "ERROR" in rec or not rec.get("JOBID"):
                continue
            index = str(rec.get("JOBINDEX", "0")).strip()
            key = rec["JOBID"] if index in ("", "0") else f"{rec['JOBID']}[{index}]"
            native = str(rec.get("STAT", "")).strip()
            state = self.map_state(native)
            raw = str(rec.get("EXIT_CODE", "")).strip()
            code = int(raw) if re.fullmatch(r"-?\d+", raw) else (0 if native == "DONE" else None)
            reason = str(rec.get("EXIT_REASON", "")).strip()
            if native == "EXIT" and reason:
                keyword = re.split(r"[:\s]", reason, maxsplit=1)[0]
                if keyword.startswith("TERM_"):
                    refined = self.TERM_REASONS.get(keyword)
                    if refined is None:
                        log.warning("lsf: unknown termination reason %r, treated as FAILED", keyword)
                        refined = S.FAILED
                    state = refined
                native = f"EXIT {keyword}"
            why = ""
            if state is S.PENDING:       # "New job is waiting for scheduling;" (bjobs -p style)
                why = str(rec.get("PEND_REASON", "")).strip().rstrip(";").strip()
            out[key] = TaskStatus(state, native, code, why)
        return out

    def status_failed_means_gone(self, stderr: str) -> bool:
        """bjobs exits non-zero when an id is not found (``LSB_BJOBS_CONSISTENT_EXIT_CODE``);
        with ``-json`` the message is a record on stdout and stderr stays empty. The watcher
        only asks about jobs with unfinished chunks, which LSF still knows unless they ended
        over CLEAN_PERIOD ago, so a failure with nothing or "not found" on stderr means gone."""
        return not stderr.strip() or "is not found" in stderr

    def cancel_argv(self, ids: Sequence[str]) -> list[str]:
        return ["bkill", *ids]


def job_name_of(script_text: str) -> str:
    """The ``#BSUB -J`` name in a job script (unquoted), or ``hpcpar``."""
    for line in script_text.splitlines():
        m = re.match(r"^#BSUB\s+-J\s+(.+?)\s*$", line)
        if m:
            try:
                words = shlex.split(m.group(1))
            except ValueError:
                words = []
            if words:
                return re.sub(r"\[.*$", "", words[0]) or "hpcpar"
    return "hpcpar"
