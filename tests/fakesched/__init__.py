"""A fake batch scheduler, added through :func:`hpcpar.register_scheduler` like any plugin.

It runs each array task of ``job.sh`` as a local process (``server.py``: submit, status, cancel
and config commands, and a detached runner per job), so the whole batch pipeline -- run folder,
job script, array submission, one status call per poll, retries, requeues, attach -- runs
offline, and faults can be injected: lose a task, time it out, OOM it, warn it before its
walltime, cap the array size. Anchors: psij-python's ``tests/plugins1/_batch_test/`` (a fake
qsub/qstat/qdel) and submitit's ``MockedSubprocess``.

Adding it touched no file under ``hpcpar/``; a new scheduler is this spec (``__init__.py``),
its template (``fake.sh.j2``) and tests. ``server.py`` stands in for the scheduler itself.

    spec = FakeSpec(tmp_path / "sched")
    hpcpar.register_scheduler(spec, replace=True)
    spec.inject("lose", chunk=1)                    # the first run of chunk 1 dies
    with hpcpar.Executor("fake", runs_dir=...) as ex: ...
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from hpcpar.backends.spec import (
    QueueInfo,
    SchedulerSpec,
    Submission,
    TaskStatus,
    compress_ranges,
    range_text,
)
from hpcpar.states import JobState

S = JobState
HERE = Path(__file__).resolve().parent
SERVER = str(HERE / "server.py")


class FakeSpec(SchedulerSpec):
    """The fake scheduler (``tests/fakesched/server.py``), keeping its jobs under ``root``."""

    name = "fake"
    template = "fake.sh.j2"
    template_dir = str(HERE)
    array_index_var = "FAKE_ARRAY_TASK_ID"
    array_index_base = 0
    #: --signal comes before the walltime, as SLURM's --signal=B:USR2@N does
    on_warning = "checkpoint"

    # server.py's states: its own names, SLURM-like.
    STATES: Mapping[str, JobState] = {
        "PENDING": S.PENDING,              # submitted, not started (max_running)
        "RUNNING": S.RUNNING,              # its bash is running
        "COMPLETED": S.COMPLETED,          # exit code 0
        "FAILED": S.FAILED,                # non-zero exit code
        "CANCELLED": S.CANCELLED,          # cancel command
        "TIMEOUT": S.TIMEOUT,              # --time reached, or a timeout/warn fault
        "OUT_OF_MEMORY": S.OUT_OF_MEMORY,  # an oom fault
        "NODE_FAIL": S.NODE_FAIL,          # a lose fault
    }
    #: pending reasons of a hold (``hold()``) that cannot resolve by themselves, SLURM's names
    BLOCKING_REASONS = frozenset({"PartitionConfig", "InvalidAccount"})

    def __init__(self, root: str | Path, max_array_size: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.commands = (sys.executable,)
        if max_array_size is not None:
            (self.root / "config.json").write_text(json.dumps({"max_array_size": max_array_size}))

    def inject(self, kind: str, chunk: int, times: int = 1, after_s: float = 0.0) -> None:
        """Make the next ``times`` runs of ``chunk`` end by ``kind`` (see server.py) after
        ``after_s`` seconds."""
        path = self.root / "faults.json"
        faults = json.loads(path.read_text()) if path.exists() else []
        faults.append({"kind": kind, "chunk": chunk, "times": times, "after_s": after_s})
        path.write_text(json.dumps(faults))

    def hold(self, reason: str) -> None:
        """Keep every pending task pending, reporting ``reason`` (e.g. ``"BeginTime"``)."""
        (self.root / "hold.json").write_text(json.dumps({"reason": reason}))

    def release(self) -> None:
        (self.root / "hold.json").unlink(missing_ok=True)

    def set_queue(self, nodes: int = 1, cpus_per_node: int = 8, mem_mb: int = 4096) -> None:
        """What the queue probe reports (server.py's ``queue`` command)."""
        (self.root / "queue.json").write_text(json.dumps(
            {"nodes": nodes, "cpus_per_node": cpus_per_node, "mem_mb": mem_mb}))

    def _cmd(self, command: str, *args: str) -> list[str]:
        return [sys.executable, SERVER, command, str(self.root), *args]

    # -- submission --------------------------------------------------------------------------
    def submissions(self, script, indices, max_running, max_array_size, extra_env=None):
        """One submit per block of ``max_array_size`` indices, shifted down by the block's
        offset (passed as ``HPCPAR_INDEX_OFFSET``), as for SLURM."""
        limit = max_array_size or 1001
        blocks: dict[int, list[int]] = {}
        for i in sorted(set(indices)):
            blocks.setdefault((i // limit) * limit, []).append(i)
        out = []
        for offset, block in sorted(blocks.items()):
            spec = range_text(compress_ranges(i - offset for i in block))
            options = [(f"--array={spec}" + (f"%{max_running}" if max_running else ""),)]
            env = {**(extra_env or {}), **({"HPCPAR_INDEX_OFFSET": str(offset)} if offset else {})}
            if env:
                options.append(("--export=" + ",".join(f"{k}={v}" for k, v in sorted(env.items())),))
            argv = self._cmd("submit", *(w for o in options for w in o), script)
            out.append(Submission(tuple(argv), tuple(block), offset=offset, array_options=tuple(options)))
        return out

    def parse_submit(self, stdout: str, submission: Submission) -> dict[int, str]:
        """One task id per line, in array-index order (as ``flux submit --cc`` prints)."""
        ids = stdout.split()
        if len(ids) != len(submission.indices) or not all(re.fullmatch(r"\d+_\d+", t) for t in ids):
            raise ValueError(f"fake submit printed {stdout!r}, not {len(submission.indices)} task ids")
        return dict(zip(submission.indices, ids, strict=False))

    def job_id_of(self, task_id: str) -> str:
        return task_id.split("_", 1)[0]

    def lost_grace_s(self, probe) -> float:
        """Results are on the local disk (no NFS lag): a short grace."""
        return 0.3

    def log_stem(self, task_id: str) -> str:
        return task_id

    # -- status and cancellation -------------------------------------------------------------
    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        return self._cmd("status", *job_ids)

    def parse_status(self, stdout: str) -> dict[str, TaskStatus]:
        """``TASK|STATE|EXIT|REASON`` lines (REASON: the hold's, for a pending task)."""
        out = {}
        for line in stdout.splitlines():
            task, native, code, reason = (line.split("|") + [""])[:4]
            state = self.map_state(native)
            out[task] = TaskStatus(state, native, int(code) if code else None, reason,
                                   state is S.PENDING and self.blocking_reason(reason))
        return out

    def status_failed_means_gone(self, stderr: str) -> bool:
        return "Invalid job id" in stderr

    def cancel_argv(self, ids: Sequence[str]) -> list[str]:
        return self._cmd("cancel", *ids)

    def config_argv(self) -> list[str]:
        return self._cmd("config")

    def queue_argv(self, queue: str | None) -> list[str]:
        return self._cmd("queue")

    def parse_queue(self, stdout: str, queue: str | None) -> QueueInfo | None:
        """``NAME|NODES|CPUS_PER_NODE|MEM_MB`` (server.py ``queue``)."""
        name, nodes, cpus, mem_mb = stdout.strip().split("|")
        return QueueInfo(name, int(nodes) * int(cpus), None, int(nodes), int(cpus),
                         int(mem_mb) * 2**20)

    def parse_config(self, stdout: str) -> dict:
        m = re.search(r"MaxArraySize=(\d+)", stdout)
        return {"max_array_size": int(m.group(1)) if m else None, "accounting": False}


def register(root: str | Path, max_array_size: int | None = None) -> FakeSpec:
    """A fresh fake scheduler under ``root``, registered as ``fake`` (replacing any other)."""
    import hpcpar

    spec = FakeSpec(root, max_array_size)
    hpcpar.register_scheduler(spec, replace=True)
    return spec
