"""PBS, two dialects behind one backend name: PBS Professional/OpenPBS (``pro``) and Torque.

Choose with the ``dialect`` option (``"pro"`` or ``"torque"``); without it the backend runs
``qstat --version`` once (cheap, no server round trip) and reads its answer:

=====================================  ===================================================
``pbs_version = 2022.1.3``             PBS Professional / OpenPBS -> ``pro``
``Version: 6.1.3``                     Torque -> ``torque``
``Unknown option: version`` + squeue   Debian's ``slurm-wlm-torque`` wrappers over SLURM ->
                                       ``torque`` on the SLURM shim (below)
no ``qstat`` on PATH / anything else   ``pro`` (scripts can still be rendered)
=====================================  ===================================================

Sources. PBS Pro/OpenPBS: ``qsub(1B)`` (``-J X-Y[:Z][%max]``, ``-l select=``, ``-o``/``-e``
directory form, ``-v``), ``qstat(1B)`` (``-f -F json -x -t``), ``pbs_job_attributes(7B)``
(``job_state``, ``Exit_status``, ``substate``), ``pbs_resources(7B)`` (size units ``kb mb gb``,
1024-based; walltime ``HH:MM:SS``), PBS Professional Reference Guide 2021.1 §8.1 "Job States",
Administrator's Guide §"Job Exit Status Codes" and OpenPBS ``src/include/job.h``
(``JOB_EXEC_*``). Torque 6.1: ``qsub(1)`` (``-t`` array request with ``%`` slot limit,
``-l nodes=N:ppn=P[:gpus=G]``, ``-l mem``), ``qstat(1)`` (``-x`` XML, ``-t`` subjobs), the
Administrator Guide's "Job exit status" table (``JOB_EXEC_*`` in ``pbs_job.h``) and "Job
states" (``qstat`` S column). Notes: ``tests/data/pbspro/README.md``, ``tests/data/torque/README.md``.

The ``slurm-wlm-torque`` shim (what this repository's integration tests use) lacks what
hpcpar needs for status and cancellation: ``qstat`` has no ``-x``/``-t`` and prints per-record
SLURM ids with no array index, and ``qdel ID_IDX`` cancels the *whole* array. So on the shim,
submission goes through its ``qsub`` (``-t`` and command-line ``-o``/``-e``; ``#PBS`` lines
are read by sbatch itself), while status and cancellation use the SLURM commands under it
(``squeue``, ``scancel ID_IDX``), as ``tests/data/torque/README.md`` recommends. It also sets
no ``PBS_*`` variable in the job, so the template falls back to ``SLURM_ARRAY_TASK_ID``.

Log files: the job script redirects its own output to ``logs/<PBS_JOBID>.out``/``.err``
(PBS only copies ``-o``/``-e`` files back when a job ends, and names array subjob files in
its own way), so ``log_stem`` is the task id.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import ConfigError
from ..states import JobState
from .batch import BatchBackend
from .slurm import SlurmSpec
from .spec import SchedulerSpec, Submission, TaskStatus, compress_ranges

S = JobState
log = logging.getLogger("hpcpar")

DIALECTS = {"pro": "pro", "pbspro": "pro", "openpbs": "pro", "torque": "torque"}


def _ranges(indices: Sequence[int]) -> str:
    """``[0,1,2,5]`` -> ``"0-2,5-5"`` (pairs only: Torque before 2.3 read a lone ``N`` as a count)."""
    return ",".join(f"{a}-{b}" for a, b in compress_ranges(indices))


def detect_dialect(output: str, returncode: int, has_squeue: bool) -> tuple[str, bool]:
    """``(dialect, on_slurm_shim)`` from ``qstat --version`` (stdout + stderr, exit code)."""
    if re.search(r"pbs_version\s*=", output):
        return "pro", False
    if re.search(r"^\s*Version:\s*\d", output, flags=re.MULTILINE):
        return "torque", False
    if returncode != 0 and "Unknown option" in output and has_squeue:
        return "torque", True
    return "pro", False


class _PbsCommon(SchedulerSpec):
    name = "pbs"
    template = "pbs.sh.j2"
    commands = ("qsub", "qstat", "qdel")

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


class PbsProSpec(_PbsCommon):
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
    STATES: Mapping[str, JobState] = {
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
    EXEC_CODES: Mapping[int, JobState] = {
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
        (their subjobs are listed with ``-t``)."""
        if not stdout.strip():
            return {}
        jobs = json.loads(stdout).get("Jobs") or {}
        out: dict[str, TaskStatus] = {}
        for job_id, attrs in jobs.items():
            if "[]" in job_id:                        # the array parent
                continue
            out[job_id] = self.classify(attrs)
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
            return TaskStatus(state, native, code)
        label = f"{native} Exit_status={raw}"
        done = self.finished_without_signal(code, label, "Exit_status")
        if done is not None:
            return done
        if code > 256:
            signal = code - 256
            used = _hms_s(str((attrs.get("resources_used") or {}).get("walltime", "")))
            limit = _hms_s(str((attrs.get("Resource_List") or {}).get("walltime", "")))
            if used is not None and limit is not None and used >= limit:
                return TaskStatus(S.TIMEOUT, label, 128 + signal)
            return TaskStatus(S.CANCELLED if signal in (9, 15) else S.FAILED, label, 128 + signal)
        return TaskStatus(S.FAILED, label, code)

    def status_failed_means_gone(self, stderr: str) -> bool:
        """``qstat: Unknown Job Id ...`` (exit 153): history is off or expired for every id."""
        return "Unknown Job Id" in stderr


class TorqueSpec(_PbsCommon):
    """Torque (Adaptive Computing) 4.x-6.x."""

    dialect = "torque"
    array_index_var = "PBS_ARRAYID"
    array_index_base = 0

    # Torque qstat(1) job states (Administrator Guide, "qstat" S column). C is final and
    # classified by exit_status.
    STATES: Mapping[str, JobState] = {
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
    EXEC_CODES: Mapping[int, JobState] = {
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
        options = [("-t", _ranges(indices) + (f"%{max_running}" if max_running else ""))]
        if extra_env:
            options.append(("-v", ",".join(f"{k}={v}" for k, v in sorted(extra_env.items()))))
        argv = ["qsub", *(w for o in options for w in o), *self.extra_submit_args(script), script]
        return [Submission(tuple(argv), tuple(sorted(set(indices))), array_options=tuple(options))]

    def extra_submit_args(self, script: str) -> list[str]:
        return []

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """``qstat -x -t IDS``: XML with one ``<Job>`` per array subjob (Torque qstat(1))."""
        return ["qstat", "-x", "-t", *job_ids]

    def parse_status(self, stdout: str) -> dict[str, TaskStatus]:
        """``<Data><Job><Job_Id>747[3].server</Job_Id><job_state>C</job_state>
        <exit_status>0</exit_status>...`` -> TaskStatus per subjob (array summaries skipped)."""
        out: dict[str, TaskStatus] = {}
        if not stdout.strip():
            return out
        for job in ET.fromstring(stdout).iter("Job"):
            job_id = (job.findtext("Job_Id") or "").strip()
            if not job_id or "[]" in job_id:
                continue
            native = (job.findtext("job_state") or "").strip()
            raw = (job.findtext("exit_status") or "").strip()
            out[job_id] = self.classify(native, raw)
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
        if code > 256:
            signal = code - 256
            return TaskStatus(S.CANCELLED if signal in (9, 15) else S.FAILED, label, 128 + signal)
        return TaskStatus(S.FAILED, label, code)

    def status_failed_means_gone(self, stderr: str) -> bool:
        return "Unknown Job Id" in stderr


class TorqueSlurmShimSpec(TorqueSpec):
    """Torque dialect on Debian's ``slurm-wlm-torque`` wrappers (see the module docstring).

    Submission: the wrapper's ``qsub -t`` (passed to ``sbatch --array``) with ``-o``/``-e``
    on the command line (the wrapper overrides ``#PBS -o/-e`` with one file per array, which
    every task would truncate). Status and cancellation: ``squeue``/``scancel`` under it, with
    SLURM's ``JOB_TASK`` ids and state table (``SlurmSpec``).
    """

    commands = ("qsub", "squeue", "scancel")
    _slurm = SlurmSpec()
    STATES = SlurmSpec.STATES

    def extra_submit_args(self, script: str) -> list[str]:
        logs = Path(script).parent / "logs"
        return ["-o", str(logs / "%A_%a.out"), "-e", str(logs / "%A_%a.err")]

    def task_id(self, job_id: str, array_index: int) -> str:
        return f"{job_id}_{array_index}"

    def status_argv(self, job_ids):
        return self._slurm.status_argv(job_ids)

    def parse_status(self, stdout):
        return self._slurm.parse_status(stdout)

    def status_failed_means_gone(self, stderr):
        return self._slurm.status_failed_means_gone(stderr)

    def cancel_argv(self, ids):
        return ["scancel", *ids]


def _hms_s(text: str) -> int | None:
    m = re.fullmatch(r"\s*(\d+):(\d+):(\d+)\s*", text)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3)) if m else None


class PbsBackend(BatchBackend):
    """Job arrays on PBS Professional/OpenPBS or Torque (see the module docstring).

    The dialect comes from the ``dialect`` option or is detected on first use.
    """

    name = "pbs"
    template = "pbs.sh.j2"

    def __init__(self, resources, options):
        super().__init__(resources, options)
        self._dialect: str | None = None
        self._shim: bool | None = None
        self._spec: SchedulerSpec | None = None
        if options.dialect is not None and options.dialect.lower() not in DIALECTS:
            raise ConfigError(f"dialect={options.dialect!r} is not a PBS dialect; "
                              f"use one of: {', '.join(sorted(DIALECTS))}")

    def _detect(self) -> tuple[str, bool]:
        if self._dialect is None:
            qstat = shutil.which("qstat")
            explicit = DIALECTS[self.options.dialect.lower()] if self.options.dialect else None
            if qstat is None or explicit == "pro":    # the shim question is Torque's only
                self._dialect, self._shim = explicit or "pro", False
            else:
                try:
                    proc = subprocess.run([qstat, "--version"], check=False, capture_output=True, text=True,
                                          timeout=min(10.0, self.options.command_timeout_s))
                    found = detect_dialect(proc.stdout + proc.stderr, proc.returncode,
                                           shutil.which("squeue") is not None)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    log.warning("pbs: `qstat --version` failed (%s); assuming %s", exc, explicit or "pro")
                    found = (explicit or "pro", False)
                self._dialect = explicit or found[0]
                self._shim = found[1] and self._dialect == "torque"
                log.debug("pbs: dialect %s%s", self._dialect, " (slurm-wlm-torque shim)" if self._shim else "")
        return self._dialect, bool(self._shim)

    @property
    def dialect(self) -> str:
        """``"pro"`` or ``"torque"``; the option, else detected without running anything
        when the option is given."""
        if self.options.dialect:
            return DIALECTS[self.options.dialect.lower()]
        return self._detect()[0]

    @property
    def spec(self) -> SchedulerSpec:  # type: ignore[override]
        if self._spec is None:
            dialect, shim = self._detect()
            self._spec = PbsProSpec() if dialect == "pro" else (TorqueSlurmShimSpec() if shim else TorqueSpec())
        return self._spec

    @property
    def array_index_var(self) -> str:  # type: ignore[override]
        return PbsProSpec.array_index_var if self.dialect == "pro" else TorqueSpec.array_index_var

    def script_context(self, job_name, command, run_dir=None, log_dir=None, array_file=None,
                       workdir=None, **extra):
        if self.resources.qos:
            log.warning("pbs: PBS has no quality of service; qos=%r is not rendered", self.resources.qos)
        return super().script_context(job_name, command, run_dir, log_dir, array_file, workdir,
                                      dialect=self.dialect, **extra)
