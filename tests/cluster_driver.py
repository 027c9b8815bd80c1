"""Driver programs for tests/test_cluster.py, run on the cluster's login node (``slurmctld``).

The host-side tests start these with ``docker/slurm/exec python tests/cluster_driver.py ...``
(the checkout is mounted at ``/src`` on every node), do whatever must happen outside the
cluster (``docker kill c2``), and read the one JSON line the driver prints last::

    python tests/cluster_driver.py sleepers --runs-dir D --marks M --tasks 8 --sleep 30
    python tests/cluster_driver.py lost timeout|cancel|oom --runs-dir D

``sleepers`` maps sleeping tasks (chunksize=1) that leave marker files in ``--marks`` (one
``start`` and one ``done`` file per execution, named with the task index and host) and return
``(index, index ** 2, host)``. ``lost`` runs one task that the scheduler kills (walltime,
``scancel``, memory) with ``max_retries=0`` and reports the error the watcher raised.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import hpcpar


def emit(obj: dict) -> None:
    print("RESULT " + json.dumps(obj, default=str), flush=True)


def run_meta(runs_dir: Path) -> dict:
    metas = sorted(runs_dir.glob("*/run.json"))
    return json.loads(metas[-1].read_text()) if metas else {}


def sleepers(a) -> int:
    marks = Path(a.marks)
    marks.mkdir(parents=True, exist_ok=True)
    sleep_s = a.sleep

    def sleepy(i: int):
        host = socket.gethostname()
        tag = f"{i:03d}.{host}.{os.getpid()}"
        (marks / f"start.{tag}").touch()
        time.sleep(sleep_s)
        (marks / f"done.{tag}").touch()
        return i, i * i, host

    t0 = time.time()
    with hpcpar.Executor("slurm", runs_dir=a.runs_dir, job_name="sleepers", chunksize=1,
                         max_retries=a.max_retries, walltime="10min", mem="100MB",
                         poll_interval_s=0.5, max_poll_interval_s=2.0) as ex:
        results = list(ex.map(sleepy, range(a.tasks)))
    t1 = time.time()
    emit({"results": results, "started": t0, "finished": t1,
          "submissions": run_meta(Path(a.runs_dir)).get("submissions", [])})
    return 0


def _squeue_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "--array", f"--jobs={job_id}", "-o", "%T"],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def lost(a) -> int:
    runs_dir = Path(a.runs_dir)
    kw: dict = {"runs_dir": str(runs_dir), "max_retries": 0, "poll_interval_s": 0.5,
                "max_poll_interval_s": 2.0, "job_name": f"lost-{a.case}"}
    if a.case == "timeout":
        kw["walltime"] = "1min"
        if a.no_signal:
            kw["signal_s"] = 0
        fn, arg = time.sleep, 600
    elif a.case == "cancel":
        fn, arg = time.sleep, 600
    elif a.case == "oom":
        kw["mem"] = "100MB"

        def hog(mib: int):
            block = b"\x01" * (mib << 20)        # touches every page
            time.sleep(10)
            return len(block)

        fn, arg = hog, 1024
    else:
        raise SystemExit(f"unknown case {a.case}")

    t0 = time.time()
    scancelled = None
    with hpcpar.Executor("slurm", **kw) as ex:
        fut = ex.submit(fn, arg)
        if a.case == "cancel":
            deadline = time.time() + 120
            job_id = None
            while time.time() < deadline:
                subs = run_meta(runs_dir).get("submissions", [])
                job_id = subs[0]["job_id"] if subs else None
                if job_id and _squeue_state(job_id) == "RUNNING":
                    break
                time.sleep(0.5)
            time.sleep(2)
            proc = subprocess.run(["scancel", job_id], capture_output=True, text=True, timeout=30)
            scancelled = {"job_id": job_id, "rc": proc.returncode, "stderr": proc.stderr}
        exc = fut.exception(timeout=600)
    t1 = time.time()
    subs = run_meta(runs_dir).get("submissions", [])
    job_ids = sorted({s["job_id"] for s in subs})
    sacct = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State,ExitCode,Elapsed",
                            f"--jobs={','.join(job_ids)}"], capture_output=True, text=True,
                           timeout=30).stdout if job_ids else ""
    emit({"case": a.case, "error_type": type(exc).__name__ if exc else None,
          "state": getattr(getattr(exc, "state", None), "name", None),
          "exit_code": getattr(exc, "exit_code", None), "job_id": getattr(exc, "job_id", None),
          "message": str(exc)[:600] if exc else None, "seconds": round(t1 - t0, 1),
          "scancel": scancelled, "sacct": sacct.strip().splitlines(), "submissions": subs})
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sleepers")
    s.add_argument("--runs-dir", required=True)
    s.add_argument("--marks", required=True)
    s.add_argument("--tasks", type=int, default=8)
    s.add_argument("--sleep", type=float, default=30)
    s.add_argument("--max-retries", type=int, default=2)
    s.set_defaults(func=sleepers)
    lo = sub.add_parser("lost")
    lo.add_argument("case", choices=("timeout", "cancel", "oom"))
    lo.add_argument("--runs-dir", required=True)
    lo.add_argument("--no-signal", action="store_true", help="timeout: signal_s=0 (no SIGUSR2 warning)")
    lo.set_defaults(func=lost)
    a = p.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    threading.current_thread().name = "driver"
    sys.exit(main())
