"""`hpcpar cancel RUN` against the real SLURM while the run's driver is alive (issue 9).

Before: the CLI scancelled the array tasks and rewrote run.json; the driver's watcher saw the
tasks end CANCELLED without results, resubmitted both, and set the run back to ``running``.
Now the CLI leaves a cancel request in the run folder, which the watcher honours.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

POLL_S = 1.0

DRIVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import hpcpar

    runs_dir, name, release = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    with hpcpar.Executor("slurm", runs_dir=runs_dir, job_name=name, max_retries=2,
                         poll_interval_s={poll}, max_poll_interval_s={poll}) as ex:
        try:
            print("RESULTS", list(ex.map(time.sleep, [60, 60], chunksize=1)), flush=True)
        except BaseException as exc:
            print("RAISED", type(exc).__name__, repr(time.time()), flush=True)
        # stay alive, watcher and all, while the test checks that nothing is resubmitted
        deadline = time.time() + 300
        while not release.exists() and time.time() < deadline:
            time.sleep(0.2)
    print("EXIT", flush=True)
""").format(poll=POLL_S)


def wait_for(pred, timeout, every=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    return None


def squeue(*args: str) -> str:
    return subprocess.run(["squeue", "--noheader", *args], capture_output=True, text=True,
                          timeout=30, check=True).stdout


def test_cancel_while_the_driver_runs_is_not_undone(slurm, runs_dir, tmp_path):
    name = f"cancel-{int(time.time() * 1000) % 10**8}"          # unique: squeue --name finds only ours
    release = tmp_path / "release"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(runs_dir), name, str(release)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_dir = wait_for(lambda: next((p for p in runs_dir.iterdir() if (p / "run.json").is_file()
                                         and json.loads((p / "run.json").read_text()).get("submissions")),
                                        None), timeout=120)
        assert run_dir is not None, driver.stderr.read() if driver.poll() is not None else "no run"
        job_id = json.loads((run_dir / "run.json").read_text())["submissions"][0]["job_id"]
        # cancel while the map runs (both tasks running, if SLURM has the room within 3 minutes)
        wait_for(lambda: squeue("--array", f"--jobs={job_id}", "--format=%T").split().count("RUNNING") == 2,
                 timeout=180)
        cli = subprocess.run([sys.executable, "-m", "hpcpar", "cancel", run_dir.name,
                              "--runs-dir", str(runs_dir)], capture_output=True, text=True, timeout=60, check=False)
        assert cli.returncode == 0 and f"cancelled job(s) {job_id}" in cli.stdout, cli

        # the driver's map raises
        line = wait_for(driver.stdout.readline, timeout=120, every=0)
        assert line.startswith("RAISED CancelledError"), (line, driver.stderr.read())
        requested_at = json.loads((run_dir / "cancel-requested").read_text())["time"]
        latency = float(line.split()[2]) - requested_at
        print(f"\ndriver's map raised {latency:.2f} s after the cancel request "
              f"(poll interval {POLL_S:g} s)")

        # every array task ended CANCELLED (slurmctld keeps finished jobs for MinJobAge)
        def task_states():
            out = squeue("--array", "--states=all", f"--jobs={job_id}", "--format=%i %T").split("\n")
            return dict(s.split() for s in out if s.strip())

        wait_for(lambda: set(task_states().values()) == {"CANCELLED"}, timeout=120)
        states = task_states()
        print("array tasks:", states)
        assert states == {f"{job_id}_0": "CANCELLED", f"{job_id}_1": "CANCELLED"}, states

        # nothing is resubmitted: no job of this name for 60 s while the driver lives on
        seen = []
        deadline = time.time() + 60
        while time.time() < deadline:
            seen += squeue(f"--name={name}", "--format=%i %T").split("\n")
            seen = [s for s in seen if s.strip()]
            time.sleep(2)
        assert seen == [] and driver.poll() is None

        meta = json.loads((run_dir / "run.json").read_text())
        assert [s["reason"] for s in meta["submissions"]] == ["initial"]
        assert meta["state"] == "cancelled"                      # recorded by the driver itself
        status = subprocess.run([sys.executable, "-m", "hpcpar", "status", run_dir.name,
                                 "--runs-dir", str(runs_dir)], capture_output=True, text=True, timeout=60, check=False)
        assert status.returncode == 0 and "state    cancelled" in status.stdout, status
        release.touch()
        assert driver.wait(timeout=60) == 0
    finally:
        release.touch()
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=30)
        subprocess.run(["scancel", f"--name={name}"], capture_output=True, timeout=30, check=False)


def test_cancel_of_a_finished_run_leaves_it_done(slurm, runs_dir):
    import hpcpar

    with hpcpar.Executor("slurm", runs_dir=str(runs_dir), poll_interval_s=0.5,
                         max_poll_interval_s=1.0) as ex:
        assert list(ex.map(abs, [-1, -2], chunksize=1)) == [1, 2]
        run_id = ex.run_ids[0]
    run_json = Path(runs_dir) / run_id / "run.json"
    before = run_json.read_bytes()
    cli = subprocess.run([sys.executable, "-m", "hpcpar", "cancel", run_id, "--runs-dir", str(runs_dir)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert cli.returncode == 0 and "already finished (done)" in cli.stdout, cli
    assert run_json.read_bytes() == before and json.loads(before)["state"] == "done"
    status = subprocess.run([sys.executable, "-m", "hpcpar", "status", run_id, "--runs-dir", str(runs_dir)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert "state    done" in status.stdout and "results  2 of 2 chunks" in status.stdout, status
