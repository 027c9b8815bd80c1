"""SLURM: ``sbatch --parsable`` job arrays, ``squeue`` for live states, ``sacct`` for final ones.

Sources: sbatch(1) (``--array``, ``--parsable``, ``--signal``), squeue(1) section JOB STATE CODES,
sacct(1) section JOB STATE CODES, scontrol(1) ``show config`` (``MaxArraySize``,
``AccountingStorageType``); https://slurm.schedmd.com/{sbatch,squeue,sacct,job_array}.html.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import ClassVar

from ..resources import parse_walltime
from ..states import JobState
from .spec import QueueInfo, SchedulerSpec, Submission, TaskStatus, compress_ranges, range_text

S = JobState


class SlurmSpec(SchedulerSpec):
    name = "slurm"
    template = "slurm.sh.j2"
    commands = ("sbatch", "squeue", "scancel")
    array_index_var = "SLURM_ARRAY_TASK_ID"
    array_index_base = 0
    #: --signal=B:USR2@N arrives N s (plus up to ~30 s, slurmctld's check interval) before the
    #: limit; the limit itself sends SIGTERM, then SIGKILL after KillWait (sbatch(1) --signal)
    on_warning = "checkpoint"

    # squeue(1) and sacct(1), JOB STATE CODES. Live states (the job may still write results)
    # are PENDING or RUNNING here; everything else is final.
    STATES: ClassVar[Mapping[str, JobState]] = {
        "PENDING": S.PENDING, "PD": S.PENDING,
        "CONFIGURING": S.PENDING, "CF": S.PENDING,      # nodes booting for the job
        "REQUEUED": S.PENDING, "RQ": S.PENDING,
        "REQUEUE_HOLD": S.PENDING, "RH": S.PENDING,
        "REQUEUE_FED": S.PENDING, "RF": S.PENDING,
        "RESV_DEL_HOLD": S.PENDING, "RD": S.PENDING,
        "RUNNING": S.RUNNING, "R": S.RUNNING,
        "COMPLETING": S.RUNNING, "CG": S.RUNNING,       # processes still ending: results may be on their way
        "SIGNALING": S.RUNNING, "SI": S.RUNNING,
        "STAGE_OUT": S.RUNNING, "SO": S.RUNNING,
        "RESIZING": S.RUNNING, "RS": S.RUNNING,
        "SUSPENDED": S.RUNNING, "S": S.RUNNING,         # keeps its allocation; resumes later
        "STOPPED": S.RUNNING, "ST": S.RUNNING,
        "COMPLETED": S.COMPLETED, "CD": S.COMPLETED,
        "FAILED": S.FAILED, "F": S.FAILED,
        "SPECIAL_EXIT": S.FAILED, "SE": S.FAILED,
        "LAUNCH_FAILED": S.FAILED, "LF": S.FAILED,
        "CANCELLED": S.CANCELLED, "CA": S.CANCELLED,
        "REVOKED": S.CANCELLED, "RV": S.CANCELLED,      # federation: ran on another cluster
        "TIMEOUT": S.TIMEOUT, "TO": S.TIMEOUT,
        "DEADLINE": S.TIMEOUT, "DL": S.TIMEOUT,
        "OUT_OF_MEMORY": S.OUT_OF_MEMORY, "OOM": S.OUT_OF_MEMORY,
        "NODE_FAIL": S.NODE_FAIL, "NF": S.NODE_FAIL,
        "BOOT_FAIL": S.NODE_FAIL, "BF": S.NODE_FAIL,
        "PREEMPTED": S.PREEMPTED, "PR": S.PREEMPTED,
    }

    SQUEUE_FORMAT = "%i|%T"
    _ARRAY_ID = re.compile(r"^(\d+)_(\d+)$")

    def submissions(self, script, indices, max_running, max_array_size, extra_env=None):
        """One ``sbatch`` per block of indices below ``MaxArraySize``.

        SLURM requires every array index to be < MaxArraySize (scontrol show config), so chunk
        ``i`` goes in block ``i // MaxArraySize``, an array whose indices are shifted down by the
        block's offset, passed to the worker as ``HPCPAR_INDEX_OFFSET`` through ``--export``.
        """
        limit = max_array_size or 1001
        blocks: dict[int, list[int]] = {}
        for i in sorted(set(indices)):
            blocks.setdefault((i // limit) * limit, []).append(i)
        out = []
        for offset, block in sorted(blocks.items()):
            spec = range_text(compress_ranges(i - offset for i in block))
            if max_running:
                spec += f"%{max_running}"
            options = [(f"--array={spec}",)]
            env = dict(extra_env or {})
            if offset:
                env["HPCPAR_INDEX_OFFSET"] = str(offset)
            if env:
                options.append(("--export=" + ",".join(["ALL"] + [f"{k}={v}" for k, v in sorted(env.items())]),))
            argv = ["sbatch", "--parsable", *(w for o in options for w in o), script]
            out.append(Submission(tuple(argv), tuple(block), offset=offset, array_options=tuple(options)))
        return out

    def parse_job_id(self, stdout: str) -> str:
        """``sbatch --parsable`` prints ``JOBID`` or ``JOBID;CLUSTER``."""
        text = stdout.strip().splitlines()[-1] if stdout.strip() else ""
        job_id = text.split(";")[0].strip()
        if not job_id.isdigit():
            raise ValueError(f"sbatch printed {stdout!r}, not a job id")
        return job_id

    def task_id(self, job_id: str, array_index: int) -> str:
        return f"{job_id}_{array_index}"

    def job_id_of(self, task_id: str) -> str:
        """``1234_7`` -> ``1234`` (squeue(1) ``--jobs`` takes the array job id)."""
        return task_id.split("_", 1)[0]

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["squeue", "--noheader", "--array", "--states=all",
                f"--jobs={','.join(job_ids)}", f"--format={self.SQUEUE_FORMAT}"]

    def parse_status(self, stdout: str) -> dict[str, TaskStatus]:
        """Parse ``squeue --array --format=%i|%T`` lines such as ``1234_7|RUNNING``.

        Pending tasks not yet split off print as ``1234_[8-15%2]``; they are expanded.
        """
        out: dict[str, TaskStatus] = {}
        for line in stdout.splitlines():
            line = line.strip()
            if not line or "|" not in line:
                continue
            job, native = (x.strip() for x in line.split("|", 1))
            state = self.map_state(native)
            for tid in _expand_task_ids(job):
                out[tid] = TaskStatus(state, native)
        return out

    def status_failed_means_gone(self, stderr: str) -> bool:
        return "Invalid job id" in stderr

    def final_status_argv(self, task_ids: Sequence[str]) -> list[str]:
        return ["sacct", "--noheader", "--parsable2", "--allocations",
                "--format=JobID,State,ExitCode", f"--jobs={','.join(task_ids)}"]

    def parse_final_status(self, stdout: str) -> dict[str, TaskStatus]:
        """Parse ``sacct -P -X --format=JobID,State,ExitCode`` lines: ``1234_7|CANCELLED by 0|0:15``.

        ExitCode is ``code:signal``; a signal becomes ``128 + signal`` as a shell reports it.
        """
        out: dict[str, TaskStatus] = {}
        for line in stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) < 3 or not parts[0]:
                continue
            native = parts[1].split()[0] if parts[1].strip() else ""
            code = None
            m = re.match(r"^(\d+):(\d+)$", parts[2].strip())
            if m:
                # ExitCode is exit:signal; a signal 1-64 is reported as a shell would (128 + n);
                # anything else in the signal field (0:125 for OUT_OF_MEMORY) is no signal number
                status, sig = int(m.group(1)), int(m.group(2))
                code = status if status or not sig else (128 + sig if sig <= 64 else None)
            state = self.map_state(native)
            for tid in _expand_task_ids(parts[0]):
                out[tid] = TaskStatus(state, native, code)
        return out

    def cancel_argv(self, ids: Sequence[str]) -> list[str]:
        return ["scancel", *ids]

    def job_record_argv(self, job_id: str) -> list[str]:
        """``scontrol --oneliner show job JOBID``: one line per array task, kept by slurmctld
        for MinJobAge seconds (300 by default) after the job ends (scontrol(1), slurm.conf(5))."""
        return ["scontrol", "--oneliner", "show", "job", job_id]

    def parse_job_record(self, stdout: str) -> dict[str, TaskStatus]:
        """Parse ``scontrol -o show job`` lines: ``JobId=5206 ArrayJobId=5205 ArrayTaskId=0 ...
        JobState=FAILED ... ExitCode=3:0 ...``; ExitCode as in :meth:`parse_final_status`."""
        out: dict[str, TaskStatus] = {}
        for line in stdout.splitlines():
            fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
            job, native = fields.get("JobId"), fields.get("JobState", "")
            if not job or not native:
                continue
            array_job, index = fields.get("ArrayJobId"), fields.get("ArrayTaskId", "")
            tid = f"{array_job}_{index}" if array_job and index.isdigit() else job
            code = None
            m = re.match(r"^(\d+):(\d+)$", fields.get("ExitCode", ""))
            if m:
                status, sig = int(m.group(1)), int(m.group(2))
                code = status if status or not sig else (128 + sig if sig <= 64 else None)
            out[tid] = TaskStatus(self.map_state(native), native, code)
        return out

    # -- probes (run once per executor) -------------------------------------------------------
    def config_argv(self) -> list[str]:
        return ["scontrol", "show", "config"]

    def parse_config(self, stdout: str) -> dict:
        """MaxArraySize and whether accounting (sacct) is available, from ``scontrol show config``."""
        conf = {}
        for line in stdout.splitlines():
            if "=" in line:
                k, _, v = line.partition("=")
                conf[k.strip()] = v.strip()
        max_array = conf.get("MaxArraySize", "1001")
        storage = conf.get("AccountingStorageType", "accounting_storage/none")
        return {"max_array_size": int(max_array) if max_array.isdigit() else 1001,
                "accounting": storage not in ("", "(null)", "accounting_storage/none")}

    def queue_argv(self, queue: str | None) -> list[str]:
        argv = ["sinfo", "--noheader", "--format=%P|%C|%l"]
        return argv + [f"--partition={queue}"] if queue else argv

    def parse_queue(self, stdout: str, queue: str | None) -> QueueInfo | None:
        """The (default) partition's CPUs and time limit from ``sinfo --format=%P|%C|%l``.

        ``%C`` is ``allocated/idle/other/total``; ``%l`` is ``[D-]HH:MM:SS``, ``MM:SS`` or
        ``infinite``; the default partition's name ends with ``*`` (sinfo(1)).
        """
        for line in stdout.splitlines():
            fields = line.strip().split("|")
            if len(fields) != 3:
                continue
            part, cpus, limit = fields
            if (queue and part.rstrip("*") == queue) or (not queue and part.endswith("*")):
                counts = cpus.split("/")
                total = int(counts[3]) if len(counts) == 4 and counts[3].isdigit() else None
                seconds = None
                if limit not in ("infinite", "UNLIMITED", "n/a", ""):
                    try:
                        seconds = parse_walltime(limit)
                    except ValueError:
                        seconds = None
                return QueueInfo(part.rstrip("*"), total, seconds)
        return None


def _expand_task_ids(job: str) -> list[str]:
    """``1234_7`` -> [``1234_7``]; ``1234_[8-10,12%2]`` -> [``1234_8``, ``1234_9``, ``1234_10``, ``1234_12``];
    ``1234`` -> [``1234``]."""
    m = re.match(r"^(\d+)_\[([^\]]*)\]$", job)
    if not m:
        return [job]
    base, spec = m.group(1), m.group(2).split("%")[0]
    out: list[str] = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            step = 1
            if ":" in b:
                b, s = b.split(":", 1)
                step = int(s)
            out.extend(f"{base}_{i}" for i in range(int(a), int(b) + 1, step))
        elif part.strip().isdigit():
            out.append(f"{base}_{part.strip()}")
    return out
