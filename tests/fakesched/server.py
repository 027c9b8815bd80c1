"""The fake scheduler's commands and its job runner (standard library only).

    python server.py submit STATE [--array=0-9%2] [--export=K=V,...] [--time=S] [--signal=S]
                                  [--output=PAT] [--error=PAT] [--job-name=N] SCRIPT
    python server.py status STATE JOB...       one line per task: TASK|STATE|EXIT|REASON
    python server.py cancel STATE ID...        a job id (every task) or a task id JOB_INDEX
    python server.py config STATE              MaxArraySize=N
    python server.py queue STATE               NAME|NODES|CPUS_PER_NODE|MEM_MB_PER_NODE
    python server.py run STATE JOB             (started by submit: runs one job's tasks)

Like sbatch, ``submit`` reads ``#FAKE --option=value`` lines at the top of the script, and
command-line options override them. It prints one task id (``JOB_INDEX``) per line, as
``flux submit --cc`` does, and starts one detached runner per job, so jobs outlive the driver.
Each array task runs ``bash SCRIPT`` in its own session with ``FAKE_JOB_ID`` and
``FAKE_ARRAY_TASK_ID`` set; ``%j``/``%a`` in ``--output``/``--error`` become those ids.

Limits: ``--time`` kills a task with SIGTERM at its walltime (TIMEOUT), after SIGUSR2
``--signal`` seconds before it; ``MaxArraySize`` (``STATE/config.json``) refuses larger array
indices, as SLURM does. Faults (``STATE/faults.json``, a list of
``{"kind", "chunk", "times", "after_s"}``; ``chunk`` is the array index plus
``HPCPAR_INDEX_OFFSET``) are consumed as tasks start:

``lose``     SIGKILL after ``after_s``: NODE_FAIL (a node died)
``timeout``  SIGTERM after ``after_s``: TIMEOUT
``oom``      SIGKILL after ``after_s``: OUT_OF_MEMORY, exit code 137
``warn``     SIGUSR2 after ``after_s`` (the walltime warning), SIGTERM 1 s later: TIMEOUT

A hold (``STATE/hold.json``, ``{"reason": R}``) keeps every pending task pending, and
``status`` reports ``R`` as their pending reason, as squeue's ``%r`` does. The queue
(``STATE/queue.json``: ``nodes``, ``cpus_per_node``, ``mem_mb``) is 1 node of 8 CPUs and
4096 MB unless set.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")
KILL_GRACE_S = 2.0
WARN_GRACE_S = 1.0


@contextlib.contextmanager
def locked(root: Path):
    with open(root / "lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def task_path(root: Path, task: str) -> Path:
    return root / "tasks" / f"{task}.json"


def set_task(root: Path, task: str, **fields) -> None:
    with locked(root):
        state = read_json(task_path(root, task), {})
        state.update(fields)
        write_json(task_path(root, task), state)


def parse_array(spec: str) -> tuple[list[int], int | None]:
    """``0-4,7%2`` -> ([0, 1, 2, 3, 4, 7], 2)."""
    body, _, limit = spec.partition("%")
    out: list[int] = []
    for part in body.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return sorted(set(out)), int(limit) if limit else None


def parse_options(words: list[str]) -> dict[str, str]:
    opts = {}
    for w in words:
        m = re.fullmatch(r"--([\w-]+)=(.*)", w)
        if not m:
            raise SystemExit(f"fake submit: error: bad option {w!r}")
        opts[m.group(1)] = m.group(2)
    return opts


def submit(root: Path, args: list[str]) -> int:
    *words, script = args
    opts = {}
    for line in Path(script).read_text().splitlines()[1:]:
        if line.startswith("#FAKE "):
            opts.update(parse_options(line.split()[1:]))
        elif line.strip() and not line.startswith("#"):
            break
    opts.update(parse_options(words))
    indices, max_running = parse_array(opts.get("array", "0"))
    limit = read_json(root / "config.json", {}).get("max_array_size", 1001)
    if indices[-1] >= limit:
        print(f"fake submit: error: Batch job submission failed: Invalid job array specification "
              f"(index {indices[-1]} >= MaxArraySize {limit})", file=sys.stderr)
        return 1
    env = dict(kv.split("=", 1) for kv in opts.get("export", "").split(",") if "=" in kv)
    with locked(root):
        job = read_json(root / "next_id", 100)
        write_json(root / "next_id", job + 1)
        write_json(root / "jobs" / f"{job}.json", {
            "indices": indices, "max_running": max_running, "script": str(Path(script).resolve()),
            "env": env, "time": opts.get("time"), "signal": opts.get("signal"),
            "output": opts.get("output"), "error": opts.get("error"), "name": opts.get("job-name")})
        for i in indices:
            write_json(task_path(root, f"{job}_{i}"), {"state": "PENDING", "exit": None})
    subprocess.Popen([sys.executable, __file__, "run", str(root), str(job)], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for i in indices:
        print(f"{job}_{i}")
    return 0


def held(root: Path) -> str:
    """The reason of the hold on the fake scheduler, or "" (no hold)."""
    return read_json(root / "hold.json", {}).get("reason", "")


QUEUE = {"nodes": 1, "cpus_per_node": 8, "mem_mb": 4096}


def status(root: Path, jobs: list[str]) -> int:
    known = 0
    reason = held(root)
    for job in jobs:
        meta = read_json(root / "jobs" / f"{job}.json", None)
        if meta is None:
            continue
        known += 1
        for i in meta["indices"]:
            t = read_json(task_path(root, f"{job}_{i}"), {})
            code = t.get("exit")
            state = t.get("state", "PENDING")
            why = reason if state == "PENDING" else ""
            print(f"{job}_{i}|{state}|{'' if code is None else code}|{why}")
    if jobs and not known:
        print(f"fake status: error: Invalid job id specified: {','.join(jobs)}", file=sys.stderr)
        return 1
    return 0


def cancel(root: Path, ids: list[str]) -> int:
    for ident in ids:
        job, _, index = ident.partition("_")
        meta = read_json(root / "jobs" / f"{job}.json", None)
        if meta is None:
            print(f"fake cancel: error: Invalid job id {ident}", file=sys.stderr)
            continue
        for i in ([int(index)] if index else meta["indices"]):
            task = f"{job}_{i}"
            with locked(root):
                state = read_json(task_path(root, task), {})
                if state.get("state") == "PENDING":
                    state.update(state="CANCELLED", exit=None)
                    write_json(task_path(root, task), state)
                elif state.get("state") == "RUNNING":
                    (root / "cancel").mkdir(exist_ok=True)
                    (root / "cancel" / task).touch()
    return 0


def take_fault(root: Path, chunk: int) -> dict | None:
    with locked(root):
        faults = read_json(root / "faults.json", [])
        for f in faults:
            if f["chunk"] == chunk and f.get("times", 1) > 0:
                f["times"] = f.get("times", 1) - 1
                write_json(root / "faults.json", faults)
                return f
    return None


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _worker_started(err_path: str | None) -> bool:
    """True once the task's stderr log has the worker's start line (printed after it installed
    its SIGUSR2/SIGTERM handlers); True at once when the task has no log to read."""
    if err_path is None:
        return True
    try:
        with open(err_path, "rb") as fh:
            return b"hpcpar.worker: run " in fh.read()
    except OSError:
        return False


def run(root: Path, job: str) -> int:
    """Run every task of ``job``, at most ``max_running`` at once; watch limits and faults."""
    meta = read_json(root / "jobs" / f"{job}.json", {})
    pending = list(meta["indices"])
    running: dict[int, dict] = {}
    walltime = float(meta["time"]) if meta.get("time") else None
    warn_before = float(meta["signal"]) if meta.get("signal") else None
    offset = int(meta["env"].get("HPCPAR_INDEX_OFFSET", 0))

    def log_file(pattern, i):
        if not pattern:
            return subprocess.DEVNULL
        return open(pattern.replace("%j", job).replace("%a", str(i)), "ab")

    while pending or running:
        if held(root):                                            # drop tasks cancelled meanwhile
            pending = [i for i in pending
                       if read_json(task_path(root, f"{job}_{i}"), {}).get("state") == "PENDING"]
        while pending and not held(root) and (meta["max_running"] is None or len(running) < meta["max_running"]):
            i = pending.pop(0)
            task = f"{job}_{i}"
            with locked(root):                                    # PENDING -> RUNNING, atomically
                state = read_json(task_path(root, task), {})
                if state.get("state") != "PENDING":
                    continue                                      # cancelled while pending
                state["state"] = "RUNNING"
                write_json(task_path(root, task), state)
            env = {**os.environ, **meta["env"], "FAKE_JOB_ID": job, "FAKE_ARRAY_TASK_ID": str(i)}
            try:
                out, err = log_file(meta.get("output"), i), log_file(meta.get("error"), i)
            except OSError:                       # its log folder is gone: the task fails, as
                set_task(root, task, state="FAILED", exit=1)     # SLURM's does (and the rest run)
                continue
            proc = subprocess.Popen(["bash", meta["script"]], env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True)
            for fh in (out, err):
                if fh is not subprocess.DEVNULL:
                    fh.close()
            set_task(root, task, pid=proc.pid)
            err_pattern = meta.get("error")
            running[i] = {"proc": proc, "t0": time.monotonic(), "fault": take_fault(root, i + offset),
                          "warned": False, "verdict": None, "term_at": None, "ready_at": None,
                          "err": err_pattern.replace("%j", job).replace("%a", str(i)) if err_pattern else None}
        time.sleep(0.05)
        for i, r in list(running.items()):
            task, proc = f"{job}_{i}", r["proc"]
            age = time.monotonic() - r["t0"]
            fault = r["fault"]

            def stop(verdict, sig=signal.SIGTERM, r=r, proc=proc):
                if r["verdict"] is None:
                    r["verdict"], r["term_at"] = verdict, time.monotonic()
                    _kill(proc.pid, sig)

            if (root / "cancel" / task).exists():
                stop("CANCELLED")
            if fault and age >= fault.get("after_s", 0):
                kind = fault["kind"]
                if kind == "lose":
                    stop("NODE_FAIL", signal.SIGKILL)
                elif kind == "oom":
                    stop("OUT_OF_MEMORY", signal.SIGKILL)
                elif kind == "timeout":
                    stop("TIMEOUT")
                elif kind == "warn":
                    # The warn fault's clock starts when the worker says it runs (its handlers
                    # are installed by then): a loaded machine's slow interpreter start-up must
                    # not turn the warning into a kill by SIGUSR2's default action.
                    if r["ready_at"] is None and _worker_started(r["err"]):
                        r["ready_at"] = time.monotonic()
                    ready = None if r["ready_at"] is None else time.monotonic() - r["ready_at"]
                    if ready is not None and not r["warned"] and ready >= fault.get("after_s", 0):
                        r["warned"] = True
                        _kill(proc.pid, signal.SIGUSR2)
                    elif r["warned"] and ready is not None and ready >= fault.get("after_s", 0) + WARN_GRACE_S:
                        stop("TIMEOUT")
            if walltime is not None:
                if warn_before and not r["warned"] and age >= walltime - warn_before:
                    r["warned"] = True
                    _kill(proc.pid, signal.SIGUSR2)
                if age >= walltime:
                    stop("TIMEOUT")
            if r["term_at"] is not None and time.monotonic() - r["term_at"] > KILL_GRACE_S:
                _kill(proc.pid, signal.SIGKILL)
            rc = proc.poll()
            if rc is None:
                continue
            code = 128 - rc if rc < 0 else rc                     # killed by signal n: 128 + n
            state = r["verdict"] or ("COMPLETED" if rc == 0 else "FAILED")
            set_task(root, task, state=state, exit=137 if state == "OUT_OF_MEMORY" else code)
            del running[i]
    return 0


def main(argv: list[str]) -> int:
    command, root, *rest = argv
    root_path = Path(root)
    if command == "submit":
        return submit(root_path, rest)
    if command == "status":
        return status(root_path, rest)
    if command == "cancel":
        return cancel(root_path, rest)
    if command == "config":
        print(f"MaxArraySize={read_json(root_path / 'config.json', {}).get('max_array_size', 1001)}")
        return 0
    if command == "queue":
        q = {**QUEUE, **read_json(root_path / "queue.json", {})}
        print(f"fake|{q['nodes']}|{q['cpus_per_node']}|{q['mem_mb']}")
        return 0
    if command == "run":
        return run(root_path, rest[0])
    print(f"fake scheduler: unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
