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

    # squeue(1) JOB REASON CODES: reasons a pending job cannot leave without someone changing
    # the job or the configuration. PartitionConfig (slurm.h WAIT_PART_CONFIG: the job asks
    # for more than its partition's configuration allows) is not in the 22.05 man page but is
    # in https://slurm.schedmd.com/job_reason_codes.html. ReqNodeNotAvail is not here: a node
    # that is down or reserved comes back.
    BLOCKING_REASONS = frozenset({
        "BadConstraints",             # the job's constraints can not be satisfied
        "DependencyNeverSatisfied",   # a dependency failed; it will never be satisfied
        "InvalidAccount",             # the job's account is invalid
        "InvalidQOS",                 # the job's QOS is invalid
        "PartitionConfig",            # the request exceeds the partition's configuration
        "PartitionNodeLimit",         # nodes required exceed the partition's current limits
        "PartitionTimeLimit",         # the time limit exceeds the partition's current limit
    })

    SQUEUE_FORMAT = "%i|%T|%r"
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
        """Parse ``squeue --array --format=%i|%T|%r`` lines such as ``1234_7|RUNNING|None`` or
        ``1234_[8-15%2]|PENDING|BeginTime``.

        ``%r`` is "the reason a job is in its current state" (squeue(1), JOB REASON CODES);
        SLURM prints ``None`` when there is none, kept here as ``""``. Pending tasks not yet
        split off print as ``1234_[8-15%2]``; they are expanded. Lines of the older two-field
        format (``%i|%T``) parse too, with no reason.
        """
        out: dict[str, TaskStatus] = {}
        for line in stdout.splitlines():
            line = line.strip()
            if not line or "|" not in line:
                continue
            job, native, reason = ([x.strip() for x in line.split("|", 2)] + [""])[:3]
            reason = "" if reason == "None" else reason
            state = self.map_state(native)
            blocked = state is S.PENDING and self.blocking_reason(reason)
            for tid in _expand_task_ids(job):
                out[tid] = TaskStatus(state, native, reason=reason, blocked=blocked)
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
        argv = ["sinfo", "--noheader", "--format=%P|%C|%l|%D|%c|%m"]
        return argv + [f"--partition={queue}"] if queue else argv

    def parse_queue(self, stdout: str, queue: str | None) -> QueueInfo | None:
        """The (default) partition from ``sinfo --format=%P|%C|%l|%D|%c|%m``: CPUs, time limit,
        nodes, and the CPUs and memory of its largest node.

        sinfo(1): ``%C`` is ``allocated/idle/other/total`` CPUs; ``%l`` is ``[D-]HH:MM:SS``,
        ``MM:SS`` or ``infinite``; ``%D`` the number of nodes; ``%c`` CPUs per node and ``%m``
        memory per node in megabytes (MiB), either with a ``+`` when the nodes of that line
        differ (then the number is a minimum, and is not used as a limit). The default
        partition's name ends with ``*``. A partition whose nodes differ prints one line per
        node configuration; their nodes are added up and the largest node kept. Lines of the
        older three-field format (``%P|%C|%l``) parse too.
        """
        found: QueueInfo | None = None
        for line in stdout.splitlines():
            fields = line.strip().split("|")
            if len(fields) not in (3, 6):
                continue
            part, cpus, limit = fields[:3]
            if not ((queue and part.rstrip("*") == queue) or (not queue and part.endswith("*"))):
                continue
            counts = cpus.split("/")
            total = int(counts[3]) if len(counts) == 4 and counts[3].isdigit() else None
            seconds = None
            if limit not in ("infinite", "UNLIMITED", "n/a", ""):
                try:
                    seconds = parse_walltime(limit)
                except ValueError:
                    seconds = None
            nodes = per_node = mem = None
            if len(fields) == 6:
                nodes = _int(fields[3])
                per_node = _int(fields[4])
                mem_mib = _int(fields[5])
                mem = mem_mib * 2**20 if mem_mib else None
            info = QueueInfo(part.rstrip("*"), total, seconds, nodes, per_node, mem)
            found = info if found is None else _merge_queue(found, info)
        return found


def _int(text: str) -> int | None:
    """A plain count; None for ``N+`` (a minimum over differing nodes), ``n/a`` and the like."""
    text = text.strip()
    return int(text) if text.isdigit() else None


def _merge_queue(a: QueueInfo, b: QueueInfo) -> QueueInfo:
    """Two sinfo lines of one partition (nodes of different configurations): add up CPUs and
    nodes, keep the largest node; a number unknown in either is unknown."""

    def add(x: int | None, y: int | None) -> int | None:
        return None if x is None or y is None else x + y

    def most(x: int | None, y: int | None) -> int | None:
        return None if x is None or y is None else max(x, y)

    return QueueInfo(a.name, add(a.total_cpus, b.total_cpus), a.max_walltime_s,
                     add(a.nodes, b.nodes), most(a.cpus_per_node, b.cpus_per_node),
                     most(a.mem_per_node, b.mem_per_node))


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
