#!/usr/bin/env python3
"""hpcpar against submitit, dask-jobqueue and joblib on the same SLURM, interleaved (issue 10).

Workloads (``benchmarks/workloads.py``): W2 1,000 tiny tasks, W3 40 x 0.5 s, W4 a random forest
of 10 x 20 trees on digits, W5 16 uneven tasks (task i sleeps 0.25 i s), BIG a 200 MB array
passed to 16 tasks, W2-100k 100,000 tiny tasks (hpcpar only: scheduler calls per map), and
"W2 warm": W2 again on the same executor (hpcpar) or cluster (dask-jobqueue warm).

Peers (``benchmarks/peer_runners.py``) on SLURM: hpcpar (default chunking and
``chunksize=n/2``), submitit (2 hand-made chunks as one 2-task array, and ``map_array``),
dask-jobqueue's ``SLURMCluster`` (one 1-core worker job per slot; cold: from creating the
cluster to the last result; warm: a second run on the same cluster); locally: hpcpar's local
backend and joblib. Every peer asks for the same queue, memory and walltime per job.

Each measurement runs in a fresh Python process (so its peak memory is its own), with ``PATH``
starting at a temporary folder of wrappers that log each ``sbatch``, ``squeue``, ``scontrol``,
``scancel`` and ``sacct`` call and exec the real command; calls are counted in the
measurement's own time windows (the driver's and, separately, those made inside jobs). The runs
are interleaved: run 1 of every (workload, peer), then run 2, ... A peer that fails or times
out shows its error in its cell; the rest go on. Every result is checked against the
workload's expected values, so a wrong result is an error, not a time.

    python benchmarks/peers.py [--runs 3] [--quick] [--markdown FILE] [--queue debug]
        [--peers hpcpar,dask,...] [--workloads W2,W3,...] [--skip PEER:WORKLOAD]
        [--include submitit-array:W2]

Needs a running SLURM and ``pip install 'hpcpar[bench]'``. The header prints the running
slurmctld's scheduler timers (``SchedulerParameters``): issue 10's numbers are for Debian's
defaults (``HPCPAR_SLURM_TIMERS=default bash scripts/slurm-single-host --restart``).
"""

from __future__ import annotations

import argparse
import datetime
import faulthandler
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:                 # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

from benchmarks import workloads  # noqa: E402
from benchmarks.bench_tables import report  # noqa: E402
from benchmarks.peer_runners import PEERS, Cell  # noqa: E402

COMMANDS = ("sbatch", "squeue", "scontrol", "scancel", "sacct")
MARK = "BENCH-RESULT "
# W2-100k is for counting hpcpar's scheduler calls; submitit's map_array of 100,000 jobs and
# dask's 100,000 futures would dominate the run without telling more. submitit's map_array on
# W2 is 1,000 one-task jobs: at Debian's default timers (about 2 starts per 3 s on 2 CPUs) some
# 25 minutes per run, so it runs only when asked (--include submitit-array:W2).
DEFAULT_SKIP = {(p, "W2-100k") for p in ("submitit-chunks", "submitit-array", "dask", "joblib")}
DEFAULT_SKIP.add(("submitit-array", "W2"))
WARM_WORKLOADS = {"W2"}          # hpcpar and joblib run these twice; dask runs every one twice


# ---- one measurement, in a child process ------------------------------------------------------

def run_cell(peer: str, key: str, scale: str, cell: Cell, warm: bool) -> dict:
    """Run ``key`` on ``peer`` once, check the results, and describe it as a JSON-able dict."""
    w = workloads.make(key, scale)
    workloads.ship_by_value()
    out: dict[str, Any] = {"peer": peer, "workload": key}
    try:
        m = PEERS[peer].run(w, cell, warm)
        w.check(m.results)
        if m.warm_results is not None:
            w.check(m.warm_results)
        out.update({k: v for k, v in asdict(m).items() if k not in ("results", "warm_results")})
    except Exception as exc:  # noqa: BLE001 - any peer error becomes its cell's text
        out["error"] = f"{type(exc).__name__}: {exc}".strip()
        out["traceback"] = traceback.format_exc()
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


# ---- the scheduler-call wrappers --------------------------------------------------------------

def make_wrappers(folder: Path) -> dict[str, str]:
    """Write one wrapper per command of :data:`COMMANDS` into ``folder``: it appends
    ``<epoch s> <SLURM_JOB_ID or -> <command>`` to ``$HPCPAR_BENCH_CALL_LOG`` and execs the
    real command. Returns the real paths (a command not installed is logged, then fails 127)."""
    real = {}
    for cmd in COMMANDS:
        path = shutil.which(cmd)
        real[cmd] = path or ""
        run = (f'exec {shlex.quote(path)} "$@"' if path
               else f'echo "{cmd}: not installed" >&2; exit 127')
        script = folder / cmd
        script.write_text("#!/bin/sh\n"
                          f'printf "%s %s {cmd}\\n" "$(date +%s.%N)" "${{SLURM_JOB_ID:--}}" '
                          '>> "${HPCPAR_BENCH_CALL_LOG:-/dev/null}"\n' + run + "\n")
        script.chmod(0o755)
    return real


def count_calls(log: Path, windows: list) -> tuple[dict[str, int], int]:
    """Calls in ``windows``: per command from the driver, and the total from inside jobs."""
    driver = dict.fromkeys(COMMANDS, 0)
    in_jobs = 0
    if not log.exists():
        return driver, in_jobs
    for line in log.read_text().splitlines():
        try:
            ts, job, cmd = line.split()
            t = float(ts)
        except ValueError:
            continue
        if any(a <= t <= b for a, b in windows):
            if job == "-":
                driver[cmd] = driver.get(cmd, 0) + 1
            else:
                in_jobs += 1
    return driver, in_jobs


# ---- the driver -------------------------------------------------------------------------------

def measure(args: argparse.Namespace, peer: str, key: str, tmp: Path, wrappers: Path,
            real: dict[str, str], slots: int) -> dict:
    """One (peer, workload) run in a fresh process, with a timeout; its JSON plus the counts."""
    name = f"bench-{peer}-{key}-{uuid.uuid4().hex[:6]}".lower()
    cell_dir = tmp / name
    cell_dir.mkdir(mode=0o700)
    log = cell_dir / "calls.log"
    warm = PEERS[peer].warm and (peer == "dask" or key in WARM_WORKLOADS)
    env = dict(os.environ, PATH=f"{wrappers}{os.pathsep}{os.environ.get('PATH', '')}",
               HPCPAR_BENCH_CALL_LOG=str(log),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    argv = [sys.executable, str(Path(__file__).resolve()), "--cell", peer, key,
            "--scale", args.scale, "--runs-dir", str(cell_dir / "runs"), "--job-name", name,
            "--queue", args.queue, "--mem", args.mem, "--walltime", args.walltime,
            "--slots", str(slots), "--cell-timeout", str(args.cell_timeout)] + (
                ["--warm"] if warm else [])
    started = time.monotonic()
    out: dict[str, Any]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, cwd=str(cell_dir))
    try:
        stdout, stderr = proc.communicate(timeout=args.cell_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)            # the child's own session: its tree
        stdout, stderr = proc.communicate()
        where = [ln.strip() for ln in stderr.splitlines() if ln.strip().startswith("File ")]
        out = {"error": f"timed out after {args.cell_timeout:g} s"
                        + (f" in {where[-1]}" if where else "")}
    else:
        lines = [ln for ln in stdout.splitlines() if ln.startswith(MARK)]
        if lines:
            out = json.loads(lines[-1][len(MARK):])
        else:
            tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
            out = {"error": f"exit {proc.returncode}: {tail}"}
    if real.get("scancel"):        # jobs a failed or killed cell left behind (not counted)
        subprocess.run([real["scancel"], "--name", name], capture_output=True, timeout=60)
    out["calls"], out["calls_in_jobs"] = count_calls(log, out.get("windows", []))
    out["warm_calls"], out["warm_calls_in_jobs"] = count_calls(log, out.get("warm_windows", []))
    if args.keep_stderr and stderr.strip():
        out["stderr_tail"] = stderr.strip().splitlines()[-20:]
    shutil.rmtree(cell_dir, ignore_errors=True)
    status = out.get("error") or f"{out.get('wall_s', 0):.2f} s"
    print(f"  [{time.monotonic() - started:6.1f} s] {peer:16s} {key:8s} {status}",
          file=sys.stderr, flush=True)
    return out


def slurm_facts(queue: str) -> dict[str, str]:
    """The running SLURM's version, scheduler timers and the queue's CPUs, for the header."""
    def run(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            return f"({argv[0]}: {exc})"

    config = run(["scontrol", "show", "config"])
    sched = [ln.strip() for ln in config.splitlines() if "sched" in ln.lower()]
    params = next((ln.split("=", 1)[1].strip() for ln in sched
                   if ln.startswith("SchedulerParameters")), "?")
    cpus = run(["sinfo", "--noheader", f"--partition={queue}", "--format=%C"]).strip()
    return {"version": run(["sbatch", "--version"]).strip(), "sched_lines": "\n".join(sched),
            "params": params, "cpus": cpus,
            "timers": "Debian defaults" if params == "(null)" else "TUNED (not Debian defaults)"}


def versions() -> str:
    names = ("hpcpar", "submitit", "dask-jobqueue", "distributed", "joblib", "scikit-learn",
             "numpy", "cloudpickle")
    got = []
    for n in names:
        try:
            got.append(f"{n} {metadata.version(n)}")
        except metadata.PackageNotFoundError:
            got.append(f"{n} (missing)")
    return ", ".join(got)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cell:              # a hang shows where it hung, before the parent's timeout kills it
        faulthandler.dump_traceback_later(max(1.0, args.cell_timeout - 5), exit=False)
        cell = Cell(args.runs_dir, args.job_name, args.queue, args.mem, args.walltime, args.slots)
        print(MARK + json.dumps(run_cell(args.cell[0], args.cell[1], args.scale, cell,
                                                 args.warm)), flush=True)
        return 0
    facts = slurm_facts(args.queue)
    try:
        slots = args.slots or int(facts["cpus"].split("/")[-1])
    except ValueError:
        slots = 2
    started = datetime.datetime.now(datetime.UTC)
    cells = [(p, k) for k in args.workloads for p in args.peers if (p, k) not in args.skip]
    print(f"{len(cells)} cells x {args.runs} runs, timers: {facts['timers']}", file=sys.stderr)
    runs: dict[tuple[str, str], list[dict]] = {c: [] for c in cells}
    with tempfile.TemporaryDirectory(prefix="hpcpar-bench-") as tmp_s:
        tmp = Path(tmp_s)
        os.chmod(tmp, 0o700)
        wrappers = tmp / "bin"
        wrappers.mkdir()
        real = make_wrappers(wrappers)
        for r in range(args.runs):                     # interleaved: run r of every cell
            print(f"run {r + 1}/{args.runs}", file=sys.stderr, flush=True)
            for peer, key in cells:
                runs[(peer, key)].append(measure(args, peer, key, tmp, wrappers, real, slots))
    header = [
        (f"hpcpar peer benchmark, {started:%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} CPUs; {args.runs} run(s) each, interleaved; sizes: {args.scale}"),
        (f"SLURM: {facts['version']}; partition {args.queue}: {slots} slots "
        f"(CPUs A/I/O/T {facts['cpus']}); each job: 1 CPU, mem {args.mem}, "
        f"walltime {args.walltime}"),
        f"Scheduler timers: {facts['timers']}",
        *[f"    {ln}" for ln in facts["sched_lines"].splitlines()],
        f"Python {platform.python_version()}; {versions()}",
    ]
    left = sorted((p, k) for p, k in args.skip if p in args.peers and k in args.workloads)
    if left:
        header.append("Cells left out (--skip, or by default; --include runs them): "
                      + ", ".join(f"{p}:{k}" for p, k in left))
    text = report(header, runs, args.peers, args.workloads, args.scale, slots)
    print(text.plain)
    if args.markdown:
        Path(args.markdown).write_text(text.markdown)
        print(f"(Markdown written to {args.markdown})", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"header": header, "runs": [{"peer": p, "workload": k, "runs": v}
                                        for (p, k), v in runs.items()]}, indent=1))
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--runs", type=int, default=None, help="runs per cell (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true",
                   help="1 run, smaller sizes (W2 200 tasks, W3 8 x 0.5 s, BIG 40 MB, ...)")
    p.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown")
    p.add_argument("--json", metavar="FILE", help="also write every measurement as JSON")
    p.add_argument("--queue", default="debug", help="SLURM partition (default debug)")
    p.add_argument("--mem", default="1GB", help="memory per job, every peer (default 1GB)")
    p.add_argument("--walltime", default="0:15:00", help="walltime per job (default 0:15:00)")
    p.add_argument("--slots", type=int, default=0,
                   help="CPUs the queue offers (default: from sinfo); dask gets one job each")
    p.add_argument("--peers", default=",".join(PEERS),
                   help=f"comma-separated, of: {', '.join(PEERS)}")
    p.add_argument("--workloads", default=",".join(workloads.KEYS),
                   help=f"comma-separated, of: {', '.join(workloads.KEYS)}")
    p.add_argument("--skip", action="append", default=[], metavar="PEER:WORKLOAD",
                   help="leave a cell out (repeatable); W2-100k runs on hpcpar only")
    p.add_argument("--include", action="append", default=[], metavar="PEER:WORKLOAD",
                   help="run a cell left out by default (submitit-array:W2, PEER:W2-100k)")
    p.add_argument("--cell-timeout", type=float, default=900.0,
                   help="seconds before a measurement is killed and shown as an error")
    p.add_argument("--keep-stderr", action="store_true", help="keep children's stderr in --json")
    # The child's side (one measurement); not for users.
    p.add_argument("--cell", nargs=2, metavar=("PEER", "WORKLOAD"), help=argparse.SUPPRESS)
    p.add_argument("--scale", default=None, help=argparse.SUPPRESS)
    p.add_argument("--runs-dir", help=argparse.SUPPRESS)
    p.add_argument("--job-name", help=argparse.SUPPRESS)
    p.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.scale = a.scale or ("quick" if a.quick else "full")
    if a.runs is None:
        a.runs = 1 if a.quick else 3
    if a.cell:
        return a
    a.peers = [x for x in a.peers.split(",") if x]
    a.workloads = [x for x in a.workloads.split(",") if x]
    bad = [x for x in a.peers if x not in PEERS] + [
        x for x in a.workloads if x not in workloads.KEYS]
    if bad or a.runs < 1:
        p.error(f"unknown peer or workload: {', '.join(bad)}" if bad else "--runs must be >= 1")
    def cell(text: str, flag: str) -> tuple[str, str]:
        peer, _, key = text.partition(":")
        if peer not in PEERS or key not in workloads.KEYS:
            p.error(f"{flag} {text!r}: use PEER:WORKLOAD, with a peer of {', '.join(PEERS)} "
                    f"and a workload of {', '.join(workloads.KEYS)}")
        return peer, key

    a.skip = (DEFAULT_SKIP - {cell(s, "--include") for s in a.include}) | {
        cell(s, "--skip") for s in a.skip}
    return a


if __name__ == "__main__":
    sys.exit(main())
