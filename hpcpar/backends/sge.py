"""Grid Engine (Son of Grid Engine 8.1.9, Univa/Altair-compatible): ``qsub -terse -t`` arrays,
``qstat -xml`` for live states, ``qacct -j`` for final ones, ``qdel`` to cancel.

Sources (man pages of gridengine 8.1.9, https://manpages.debian.org/bookworm/gridengine-common/):
``submit(1)`` (``-terse``, ``-t``, ``-tc``, ``-pe``, ``-l``, ``-A``, ``-P``, ``-notify``, ``-S``),
``qstat(1)`` (``-xml``, state letters), ``sge_status(5)`` (tables "Job state" and "Failed
states"), ``accounting(5)`` (qacct fields), ``qdel(1)``, ``queue_conf(5)`` (RESOURCE LIMITS,
``notify``), ``sge_conf(5)`` (``max_aj_tasks``, ``reporting_params``), ``sge_types(1)``
(memory and time specifiers). Facts measured on the real scheduler are in
``tests/data/sge/README.md``.

Array tasks are 1-based (``-t 0-3`` is refused: "0 is an invalid task id"), so chunk ``i`` is
task ``i + 1``. ``-t`` takes one range per job, so an arbitrary set of chunks (a resubmission)
becomes one ``qsub`` per contiguous run.

Memory: ``-l h_vmem`` is a *per-slot* limit (``queue_conf(5)``: the limit is multiplied by
the slots the job gets; measured: ``-pe smp 2 -l h_vmem=1G`` gives ``ulimit -v`` = 2 GB), so
``mem`` (per array task) is divided by ``cpus_per_task`` (the slots), rounded up to whole MiB
(``M`` = 1024 x 1024 in ``sge_types(1)``). It limits *virtual* memory: allocations beyond it
fail (MemoryError) rather than the job being killed.

Walltime warning: with ``-notify`` (``submit(1)``), Grid Engine sends SIGUSR2 when ``h_rt``
is reached and SIGKILL ``notify`` seconds later (``queue_conf(5)``, default 60 s) -- not
``signal_s`` before it as SLURM does; the worker checkpoints on SIGUSR2 and the chunk is
requeued if it made progress. ``-notify`` also sends SIGUSR1 before a suspension, which the
job script ignores (``trap '' USR1``) so that Python's default action does not kill it.

qacct lag: a task leaves ``qstat`` before its record reaches the accounting file
(``reporting_params accounting_flush_time``, default ``flush_time`` = 15 s). The backend waits
that long plus a margin (:meth:`SgeSpec.lost_grace_s`, read from ``qconf -sconf``) before
it treats a task gone from qstat and without results as ended.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import ClassVar

from ..errors import ConfigError
from ..resources import ceil_div
from ..states import JobState
from .spec import SchedulerSpec, Submission, TaskStatus, compress_ranges

S = JobState
log = logging.getLogger("hpcpar")

#: ``accounting_flush_time`` when sge_conf(5) sets neither it nor ``flush_time`` (seconds)
DEFAULT_FLUSH_S = 15
#: seconds added to the accounting flush time before a vanished task counts as ended
QACCT_MARGIN_S = 5.0


def _time_s(text: str) -> int | None:
    """``sge_types(1)`` time_specifier: ``[[h:]m:]s`` or seconds -> seconds."""
    text = text.strip()
    if not re.fullmatch(r"\d+(:\d+){0,2}", text):
        return None
    total = 0
    for part in text.split(":"):
        total = total * 60 + int(part)
    return total


def _expand_tasks(spec: str) -> list[int]:
    """qstat ``<tasks>``: ``"3"``, ``"3,4"``, ``"1-5:2"``, ``"2-9:1,12"`` -> task numbers."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not m:
            continue
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        step = int(m.group(3)) if m.group(3) else 1
        out.extend(range(a, b + 1, step))
    return out


class SgeSpec(SchedulerSpec):
    name = "sge"
    template = "sge.sh.j2"
    commands = ("qsub", "qstat", "qdel", "qacct")     # qacct: final states
    array_index_var = "SGE_TASK_ID"
    array_index_base = 1
    supports_qos = False
    #: ``pe``: the parallel environment for ``-pe <pe> <slots>`` (default ``smp``;
    #: ``allocation_rule $pe_slots`` keeps the slots on one host)
    option_names = ("pe",)

    # -- options and template ----------------------------------------------------------------
    def check_options(self, options) -> None:
        """``pe`` must be a parallel environment name (``sge_pe(5)``: letters, digits, ``_.-``)."""
        if options.pe is not None and not re.fullmatch(r"[\w.-]+", options.pe):
            raise ConfigError(f"pe={options.pe!r} is not a parallel environment name")

    def template_context(self, resources, options) -> dict:
        """``pe``, ``slots`` (cpus_per_task x nodes) and ``mem_per_slot``: ``h_vmem`` is per
        slot (see the module docstring), so the task's memory / slots, rounded up."""
        slots = resources.cpus_per_task * max(1, resources.nodes)
        return {"pe": options.pe or "smp", "slots": slots,
                "mem_per_slot": ceil_div(resources.mem, slots) if resources.mem else None}

    def lost_grace_s(self, probe) -> float:
        """Seconds a task may be gone from qstat without results before it counts as ended:
        the accounting flush time (``qconf -sconf``) plus a margin, so qacct knows it by then."""
        return float(probe.get("accounting_flush_s", DEFAULT_FLUSH_S)) + QACCT_MARGIN_S

    # sge_status(5), table "Job state" (the same letters as qstat(1), OUTPUT FORMATS):
    # d(eletion) E(rror) h(old) q(ueued) r(unning) R(estarted) s/S/T (suspended by the
    # user / the queue / a load threshold) t(ransferring) w(aiting) z(ombie).
    STATES: ClassVar[Mapping[str, JobState]] = {
        # Pending
        "qw": S.PENDING, "Rq": S.PENDING, "hqw": S.PENDING, "hRwq": S.PENDING,
        # Running / transferring
        "r": S.RUNNING, "hr": S.RUNNING, "t": S.RUNNING, "Rr": S.RUNNING, "Rt": S.RUNNING,
        # Suspended: the task keeps its slot and resumes (SGE has no preempted-and-ended state)
        "s": S.RUNNING, "ts": S.RUNNING, "S": S.RUNNING, "tS": S.RUNNING, "T": S.RUNNING,
        "tT": S.RUNNING, "Rs": S.RUNNING, "Rts": S.RUNNING, "RS": S.RUNNING, "RtS": S.RUNNING,
        "RT": S.RUNNING, "RtT": S.RUNNING,
        # Error: pending states with error; the job can never start until `qmod -cj`
        "Eqw": S.FAILED, "Ehqw": S.FAILED, "EhRqw": S.FAILED,
        # Deleting: running and suspended states with deletion (qdel issued, being killed)
        "dr": S.CANCELLED, "dt": S.CANCELLED, "dRr": S.CANCELLED, "dRt": S.CANCELLED,
        "ds": S.CANCELLED, "dS": S.CANCELLED, "dT": S.CANCELLED, "dRs": S.CANCELLED,
        "dRS": S.CANCELLED, "dRT": S.CANCELLED,
        # Finished (only listed with `qstat -s z`)
        "z": S.COMPLETED,
    }

    # Pending reasons from the state letters (sge_status(5), "Job state"; qstat(1) OUTPUT
    # FORMATS): qstat -xml carries no reason text, and the scheduler's own messages (qstat -j's
    # "scheduling info") need schedd_job_info=true (sched_conf(5), off by default) and one
    # command per job, so they are not read.
    REASON_LETTERS: Mapping[str, str] = {
        "h": "hold",            # qhold, qsub -h, or -hold_jid waiting for another job
        "R": "restarted",       # rescheduled (qmod -rj, or the execd went away)
    }

    # sge_status(5), table '"Failed" states' (qacct's `failed` field, accounting(5) field 12).
    # 0, 37 and 100 are refined with exit_status and the job's category (see classify()).
    FAILED_CODES: Mapping[int, JobState] = {
        0: S.COMPLETED,       # no failure: ran and exited normally (exit_status decides)
        1: S.FAILED,          # assumedly before job: failed early in execd
        3: S.FAILED,          # before writing config
        4: S.FAILED,          # before writing PID
        6: S.FAILED,          # setting processor set (obsolete)
        7: S.FAILED,          # before prolog
        8: S.FAILED,          # in prolog
        9: S.FAILED,          # before pestart
        10: S.FAILED,         # in pestart
        11: S.FAILED,         # before job: failed in shepherd before starting job
        12: S.FAILED,         # before pestop: ran, failed before PE stop procedure
        13: S.FAILED,         # in pestop
        14: S.FAILED,         # before epilog
        15: S.FAILED,         # in epilog
        16: S.FAILED,         # releasing processor set (obsolete)
        17: S.CANCELLED,      # through signal: job killed by signal (possibly qdel)
        18: S.NODE_FAIL,      # shepherd returned error: shepherd died somehow
        19: S.NODE_FAIL,      # before writing exit_status: program or machine crash
        20: S.FAILED,         # found unexpected error file
        21: S.NODE_FAIL,      # in recognizing job: qmaster asked about an unknown job
        24: S.PENDING,        # migrating (checkpointing jobs): ran, will be migrated
        25: S.PENDING,        # rescheduling: ran, will be rescheduled
        26: S.FAILED,         # opening output file
        27: S.FAILED,         # searching requested shell
        28: S.FAILED,         # changing to working directory
        29: S.FAILED,         # AFS setup
        30: S.FAILED,         # application error returned: ran and exited 100
        31: S.FAILED,         # accessing sgepasswd file (MS Windows)
        32: S.FAILED,         # entry is missing in password file (MS Windows)
        33: S.FAILED,         # wrong password (MS Windows)
        34: S.FAILED,         # communicating with Grid Engine Helper Service (MS Windows)
        35: S.FAILED,         # before job in Grid Engine Helper Service (MS Windows)
        36: S.FAILED,         # checking configured daemons
        37: S.TIMEOUT,        # qmaster enforced h_rt, h_cpu, or h_vmem limit
        38: S.FAILED,         # adding supplementary group
        100: S.FAILED,        # assumedly after job: killed by a signal, task or shepherd died
    }

    # -- submission --------------------------------------------------------------------------
    def submissions(self, script, indices, max_running, max_array_size, extra_env=None):
        """One ``qsub -terse -t a-b`` per contiguous run of chunks (``-t`` takes one range).

        A run longer than ``max_aj_tasks`` (``sge_conf(5)``, default 75000) is split further.
        ``max_running`` becomes ``-tc`` (``submit(1)``: concurrently running tasks).
        """
        limit = max_array_size or 75000
        out = []
        for a, b in compress_ranges(indices):
            for start in range(a, b + 1, limit):
                stop = min(b, start + limit - 1)
                base = self.array_index_base
                options = [("-t", f"{start + base}-{stop + base}")]
                if max_running:
                    options.append(("-tc", str(max_running)))
                if extra_env:
                    options.append(("-v", ",".join(f"{k}={v}" for k, v in sorted(extra_env.items()))))
                argv = ["qsub", "-terse", *(w for o in options for w in o), script]
                out.append(Submission(tuple(argv), tuple(range(start, stop + 1)),
                                      array_options=tuple(options)))
        return out

    def parse_job_id(self, stdout: str) -> str:
        """``qsub -terse`` prints ``ID`` for a job, ``ID.first-last:step`` for an array."""
        text = stdout.strip().splitlines()[-1].strip() if stdout.strip() else ""
        job_id = text.split(".")[0]
        if not job_id.isdigit():
            raise ValueError(f"qsub -terse printed {stdout!r}, not a job id")
        return job_id

    def task_id(self, job_id: str, array_index: int) -> str:
        """``JOB.TASK``, the form ``qdel(1)`` accepts (``qdel 7.2`` deletes task 2 of job 7)."""
        return f"{job_id}.{array_index}"

    def job_id_of(self, task_id: str) -> str:
        """``7.2`` -> ``7``."""
        return task_id.split(".", 1)[0]

    # -- status ------------------------------------------------------------------------------
    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """``qstat -xml``: every job of the calling user, running and pending, in one call
        (``qstat(1)``: without ``-u`` only the caller's jobs are shown)."""
        return ["qstat", "-xml"]

    def parse_status(self, stdout: str) -> dict[str, TaskStatus]:
        """``JOB.TASK`` (or ``JOB`` for a non-array job) -> state, from ``qstat -xml``.

        Running tasks are listed one per ``<job_list>`` under ``<queue_info>``; pending ones
        are grouped, ``<tasks>`` holding ``3,4`` or ``1-5:2`` (expanded here). A pending task's
        reason comes from its state letters (:attr:`REASON_LETTERS`): ``hqw`` -> ``hold``.
        """
        out: dict[str, TaskStatus] = {}
        if not stdout.strip():
            return out
        root = ET.fromstring(stdout)
        for job in root.iter("job_list"):
            number = (job.findtext("JB_job_number") or "").strip()
            native = (job.findtext("state") or "").strip()
            if not number:
                continue
            state = self.map_state(native)
            reason = (", ".join(r for letter, r in self.REASON_LETTERS.items() if letter in native)
                      if state is S.PENDING else "")
            status = TaskStatus(state, native, reason=reason)
            tasks = job.findtext("tasks")
            if tasks and tasks.strip():
                for t in _expand_tasks(tasks):
                    out[f"{number}.{t}"] = status
            else:
                out[number] = status
        return out

    def final_status_argv(self, task_ids: Sequence[str]) -> list[str]:
        """``qacct -j ID`` for one job; ``qacct -j`` (every job in the accounting file) when
        several jobs are asked about, since ``-j`` takes one id or one job-name pattern
        (``qacct(1)``). qacct reads the whole accounting file either way."""
        jobs = sorted({t.split(".")[0] for t in task_ids})
        return ["qacct", "-j", jobs[0]] if len(jobs) == 1 else ["qacct", "-j"]

    def parse_final_status(self, stdout: str) -> dict[str, TaskStatus]:
        """``JOB.TASK`` -> final state from ``qacct -j`` records (accounting(5)).

        Records are separated by a line of ``=``; a task rescheduled has several records and
        the last one counts.
        """
        out: dict[str, TaskStatus] = {}
        for block in re.split(r"^=+\s*$", stdout, flags=re.MULTILINE):
            rec: dict[str, str] = {}
            for line in block.splitlines():
                m = re.match(r"^(\w+)\s+(.*?)\s*$", line)
                if m:
                    rec[m.group(1)] = m.group(2)
            if "jobnumber" not in rec or "failed" not in rec:
                continue
            task = rec.get("taskid", "undefined")
            key = rec["jobnumber"] if task in ("undefined", "") else f"{rec['jobnumber']}.{task}"
            out[key] = self.classify(rec)
        return out

    def classify(self, rec: Mapping[str, str]) -> TaskStatus:
        """One qacct record -> TaskStatus (sge_status(5) "Failed states", accounting(5)).

        * ``failed 0``: COMPLETED if ``exit_status`` is 0; else TIMEOUT if the task ran for
          its whole ``h_rt`` (it stopped itself after the ``-notify`` SIGUSR2), else FAILED.
        * ``failed 37`` (qmaster enforced h_rt, h_cpu or h_vmem): TIMEOUT, unless the category
          asks for ``h_vmem`` and the task ended before its ``h_rt`` (then OUT_OF_MEMORY).
        * ``failed 100`` (killed by a signal): CANCELLED for SIGKILL (``exit_status`` 137:
          qdel, indistinguishable from an administrator's kill), TIMEOUT for SIGUSR1 (138)
          with ``s_rt`` in the category (soft limit), else FAILED.
        * other codes: the :attr:`FAILED_CODES` table; an unknown one is UNKNOWN with a warning.
        """
        failed_text = rec.get("failed", "").strip()
        m = re.match(r"^(\d+)", failed_text)
        code = int(m.group(1)) if m else -1
        em = re.match(r"^(-?\d+)", rec.get("exit_status", "").strip())
        exit_status = int(em.group(1)) if em else None
        native = f"failed {code}" + (f", exit_status {exit_status}" if exit_status is not None else "")
        category = rec.get("category", "")
        limits = dict(re.findall(r"(\w+)=([^\s,]+)", category))
        h_rt = _time_s(limits["h_rt"]) if "h_rt" in limits else None
        wall = None
        wm = re.match(r"^(\d+(?:\.\d+)?)", rec.get("ru_wallclock", "").strip())
        if wm:
            wall = float(wm.group(1))
        ran_out = h_rt is not None and wall is not None and wall >= h_rt
        if code not in self.FAILED_CODES:
            log.warning("sge: unknown qacct failed code %r, treated as UNKNOWN", failed_text)
            return TaskStatus(S.UNKNOWN, native, exit_status)
        if code == 0:
            state = S.COMPLETED if exit_status == 0 else (S.TIMEOUT if ran_out else S.FAILED)
        elif code == 37:
            state = S.OUT_OF_MEMORY if ("h_vmem" in limits and not ran_out) else S.TIMEOUT
        elif code == 100:
            if exit_status == 137:
                state = S.CANCELLED
            elif exit_status == 138 and "s_rt" in limits:
                state = S.TIMEOUT
            else:
                state = S.FAILED
        else:
            state = self.FAILED_CODES[code]
        return TaskStatus(state, native, exit_status)

    def cancel_argv(self, ids: Sequence[str]) -> list[str]:
        return ["qdel", *ids]

    # -- probes (run once per executor) -------------------------------------------------------
    def config_argv(self) -> list[str]:
        return ["qconf", "-sconf"]

    def parse_config(self, stdout: str) -> dict:
        """From ``qconf -sconf`` (``sge_conf(5)``): ``max_aj_tasks``, whether accounting is on
        (``reporting_params accounting=true``, the default) and its flush time in seconds."""
        conf: dict[str, str] = {}
        key = None
        for line in stdout.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0].isspace() and key:                 # continuation of a `\` line
                conf[key] += " " + line.strip().rstrip("\\").strip()
                continue
            parts = line.split(None, 1)
            key = parts[0]
            conf[key] = parts[1].rstrip("\\").strip() if len(parts) > 1 else ""
        params = dict(re.findall(r"(\w+)=(\S+)", conf.get("reporting_params", "")))
        flush = _time_s(params.get("accounting_flush_time", ""))
        if flush is None:
            flush = _time_s(params.get("flush_time", ""))
        max_aj = conf.get("max_aj_tasks", "75000")
        return {
            "max_array_size": int(max_aj) if max_aj.isdigit() and int(max_aj) > 0 else 75000,
            "accounting": params.get("accounting", "true").lower() == "true",
            "accounting_flush_s": DEFAULT_FLUSH_S if flush is None else flush,
        }

    def slots_argv(self, queue: str | None) -> list[str]:
        return ["qstat", "-g", "c"]

    def parse_slots(self, stdout: str, queue: str | None, cpus_per_task: int) -> int | None:
        """Array tasks that fit at once: the TOTAL slots of ``queue`` (all queues if none)
        from ``qstat -g c`` (cluster queue summary), divided by ``cpus_per_task``."""
        total = 0
        header = None
        for line in stdout.splitlines():
            fields = line.split()
            if fields[:2] == ["CLUSTER", "QUEUE"]:
                header = ["CLUSTER QUEUE"] + fields[2:]
                continue
            if header is None or not fields or set(line.strip()) == {"-"}:
                continue
            row = dict(zip(header, fields, strict=False))
            if queue and row.get("CLUSTER QUEUE") != queue:
                continue
            if row.get("TOTAL", "").isdigit():
                total += int(row["TOTAL"])
        return max(1, total // max(1, cpus_per_task)) if total else None
