"""The SLURM backend against the project's real single-host SLURM (scripts/slurm-single-host).

Faults: an array task cancelled mid-run, a task that raises, a job past its walltime, the driver
killed with SIGKILL and re-attached, a truncated results file; bad input; hostile values;
scheduler load (status calls do not grow with the number of tasks).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import hpcpar
from hpcpar import ConfigError, SchedulerNotFoundError, SubmissionError

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _need_slurm(slurm):
    pass


def fast(**kw):
    kw.setdefault("poll_interval_s", 0.5)
    kw.setdefault("max_poll_interval_s", 2.0)
    return hpcpar.Executor("slurm", **kw)


def marked_sleep(x, marker_dir, seconds):
    """Record each start and each completion, so executions can be counted."""
    with open(os.path.join(marker_dir, f"start-{x}"), "a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    with open(os.path.join(marker_dir, f"done-{x}"), "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return x * x


def counts(marker_dir: Path, prefix: str) -> dict[int, int]:
    out = {}
    for p in marker_dir.glob(prefix + "-*"):
        out[int(p.name.split("-")[1])] = len(p.read_text().split())
    return out


def wait_for(pred, timeout=120, every=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(every)
    return False


def test_map_is_one_job_array_and_run_folder_is_private(runs_dir):
    with fast(runs_dir=str(runs_dir), job_name="onearray") as ex:
        assert list(ex.map(abs, range(-20, 0), chunksize=5)) == list(range(20, 0, -1))
        run_id = ex.run_ids[0]
    rd = runs_dir / run_id
    meta = json.loads((rd / "run.json").read_text())
    # 4 chunks pulled by at most 4 workers (the queue's slots), one array
    (sub,) = meta["submissions"]
    n = len(sub["workers"])
    assert 1 <= n <= 4 and sub["workers"] == list(range(n))
    assert meta["state"] == "done"
    for p in (rd, rd / "results", rd / "chunks", rd / "logs", rd / "claims"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700
    assert "#SBATCH --job-name=onearray" in (rd / "job.sh").read_text()
    logs = {p.name for p in (rd / "logs").iterdir()}     # a worker still pending at the end
    assert logs and logs <= {f"{sub['job_id']}_{i}.{ext}"  # is cancelled: no log
                             for i in range(n) for ext in ("out", "err")}


def test_scancel_one_array_task_mid_run_is_a_recorded_cancel(runs_dir, tmp_path):
    """Issue 13: a `scancel` by hand is a decision: recorded in the run, not resubmitted, and
    the task raises JobLostError (state CANCELLED, its exit code from `scontrol show job`,
    its log)."""
    markers = tmp_path / "markers"
    markers.mkdir()
    got = []
    with fast(runs_dir=str(runs_dir)) as ex:
        results = ex.map(marked_sleep, range(4), [str(markers)] * 4, [6] * 4, chunksize=1)
        assert wait_for(lambda: (markers / "start-1").exists())
        job_id = json.loads((runs_dir / ex.run_ids[0] / "run.json").read_text())["submissions"][0]["job_id"]
        owner = json.loads((runs_dir / ex.run_ids[0] / "claims" / "000001.0").read_text())["worker"]
        task = f"{job_id}_{owner}"                                   # chunk 1's worker
        subprocess.run(["scancel", task], check=True, timeout=30)
        with pytest.raises(hpcpar.JobLostError, match=rf"job {task} ended CANCELLED .*log: "):
            got.extend(results)
    assert got == [0]
    run = runs_dir / ex.run_ids[0]
    meta = json.loads((run / "run.json").read_text())
    assert [s["reason"] for s in meta["submissions"]] == ["initial"]      # no worker refilled
    # a pull run's outcome record is the worker's, naming the chunks it held
    outcome = json.loads((run / "outcomes" / f"{task}.json").read_text())
    assert outcome["state"] == "CANCELLED" and outcome["chunks"]["1"]["cancelled"] is True
    # the driver took chunk 1 out of the pool: its dead owner's claim voided, the next
    # generation refused, so no worker ever claims it again
    assert (run / "claims" / "000001.0.void").exists()
    assert (run / "claims" / "000001.1.cancel").exists()
    # map's iterator cancels the chunks after the one that raised (concurrent.futures' map), so
    # whether 2 and 3 ran depends on the queue; chunk 1 ran once and never finished
    assert counts(markers, "start")[1] == 1 and 1 not in counts(markers, "done")


def raises_deep(x):
    def inner():
        raise KeyError(f"missing {x}")
    return inner()


def test_task_exception_carries_remote_traceback(runs_dir):
    with fast(runs_dir=str(runs_dir)) as ex, pytest.raises(KeyError, match="missing 7") as err:
        list(ex.map(raises_deep, [7]))
    tb = str(err.value.__cause__)
    assert "in raises_deep" in tb and "in inner" in tb and 'raise KeyError(f"missing {x}")' in tb
    meta = json.loads((runs_dir / ex.run_ids[0] / "run.json").read_text())
    assert len(meta["submissions"]) == 1                        # a task's own error is not retried


def test_walltime_requeue_through_signal_completes_every_task(runs_dir, tmp_path):
    """8 tasks x 15 s in one array task with a 1-minute walltime. SIGUSR2 (--signal=B:USR2@30)
    warns the worker, which saves and goes on saving after every task; the limit's SIGTERM stops
    it (SLURM checks limits on a ~30 s timer, so that is 60-90 s in) and the rest is requeued,
    not counted as a retry (max_retries=0)."""
    markers = tmp_path / "markers"
    markers.mkdir()
    with fast(runs_dir=str(runs_dir), walltime="1min", max_retries=0, checkpoint_s=1000) as ex:
        assert list(ex.map(marked_sleep, range(8), [str(markers)] * 8, [15] * 8, chunksize=8)) == \
            [x * x for x in range(8)]
    meta = json.loads((runs_dir / ex.run_ids[0] / "run.json").read_text())
    assert [s["reason"] for s in meta["submissions"]][:2] == ["initial", "requeue"]
    assert counts(markers, "done") == dict.fromkeys(range(8), 1)
    assert "#SBATCH --signal=B:USR2@30" in (runs_dir / ex.run_ids[0] / "job.sh").read_text()


def test_task_that_fits_the_walltime_finishes_despite_the_warning(runs_dir):
    """The warning comes up to 60 s before a 1-minute limit; a 40 s task still completes."""
    with fast(runs_dir=str(runs_dir), walltime="1min", max_retries=0) as ex:
        assert ex.submit(time.sleep, 40).result(timeout=300) is None
    meta = json.loads((runs_dir / ex.run_ids[0] / "run.json").read_text())
    assert [s["reason"] for s in meta["submissions"]] == ["initial"]


def test_task_longer_than_the_walltime_is_timeout(runs_dir):
    with fast(runs_dir=str(runs_dir), walltime="1min", max_retries=0) as ex:
        with pytest.raises(hpcpar.JobLostError) as err:
            ex.submit(time.sleep, 200).result(timeout=300)
    assert err.value.state is hpcpar.JobState.TIMEOUT, str(err.value)


DRIVER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {tests!r})
    import hpcpar
    from test_slurm import marked_sleep
    ex = hpcpar.Executor("slurm", runs_dir={runs!r}, poll_interval_s=0.5, max_poll_interval_s=2)
    it = ex.map(marked_sleep, range(6), [{markers!r}] * 6, [4] * 6, chunksize=1)
    print(ex.run_ids[0], flush=True)
    print(list(it), flush=True)
""")


def test_driver_sigkill_then_attach_collects_without_rerunning(runs_dir, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    code = DRIVER.format(tests=str(ROOT / "tests"), runs=str(runs_dir), markers=str(markers))
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    run_id = driver.stdout.readline().strip()
    assert run_id, "driver printed no run id"
    assert wait_for(lambda: len(counts(markers, "done")) >= 2, timeout=180)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    finished_before = set(counts(markers, "done"))
    attach = subprocess.run(
        [sys.executable, "-c",
         (f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import hpcpar; "
          f"r = hpcpar.attach({run_id!r}, runs_dir={str(runs_dir)!r}); "
          "print(r.status()); print(r.results())")],
        capture_output=True, text=True, timeout=300)
    assert attach.returncode == 0, attach.stderr
    assert attach.stdout.strip().splitlines()[-1] == str([x * x for x in range(6)])
    done = counts(markers, "done")
    assert done == dict.fromkeys(range(6), 1)                    # nothing lost, nothing duplicated
    assert all(counts(markers, "start")[i] == 1 for i in finished_before)


def test_truncated_results_file_is_detected_and_rerun(runs_dir, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    with fast(runs_dir=str(runs_dir)) as ex:
        assert list(ex.map(marked_sleep, range(3), [str(markers)] * 3, [0] * 3, chunksize=1)) == [0, 1, 4]
        run_id = ex.run_ids[0]
    result = runs_dir / run_id / "results" / "000001.pkl"
    result.write_bytes(result.read_bytes()[:-10])
    run = hpcpar.attach(run_id, runs_dir=runs_dir, poll_interval_s=0.5, max_poll_interval_s=2)
    assert run.results(timeout=180) == [0, 1, 4]
    assert counts(markers, "done") == {0: 1, 1: 2, 2: 1}        # only the damaged chunk ran again
    assert any(p.name.startswith("000001.pkl.corrupt-") for p in (runs_dir / run_id / "results").iterdir())


def test_bad_partition_shows_sbatch_message(runs_dir):
    ex = fast(runs_dir=str(runs_dir), queue="nosuch")
    with pytest.raises(SubmissionError) as err:
        ex.map(abs, [1])
    assert "sbatch" in str(err.value) and "invalid partition" in str(err.value).lower()
    assert err.value.returncode == 1 and err.value.argv[0] == "sbatch"


def test_missing_sbatch_names_the_command(monkeypatch, runs_dir):
    monkeypatch.setenv("PATH", "/nonexistent")
    ex = hpcpar.Executor("slurm", runs_dir=str(runs_dir))
    with pytest.raises(SchedulerNotFoundError, match="'slurm' backend needs the command 'sbatch'"):
        ex.map(abs, [1])
    assert not list(runs_dir.iterdir()) or all(not p.name.startswith("abs-") for p in runs_dir.iterdir())


def test_walltime_beyond_partition_limit_is_refused_before_submission(runs_dir):
    ex = fast(runs_dir=str(runs_dir), queue="short", walltime="10min")
    with pytest.raises(ConfigError, match=r"walltime=00:10:00 exceeds the time limit 00:05:00 of slurm queue 'short'"):
        ex.map(abs, [1])
    assert ex.run_ids == []


def test_hostile_job_name_and_arguments_run_as_literal_text(tmp_path, runs_dir):
    marker = tmp_path / "pwned"
    evil = [f"$(touch {marker})", f"`touch {marker}`", "it's \"quoted\"", "two\nlines"]
    out = subprocess.run(
        [sys.executable, "-m", "hpcpar", "submit", "slurm", "--job-name", f"$(touch {marker})`x`'\"",
         "--", "printf", "%s|", *evil], capture_output=True, text=True, timeout=60,
        env={**os.environ, "HPCPAR_RUNS_DIR": str(runs_dir)}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.split("run ")[1].split()[0]
    rd = runs_dir / run_id
    job_id = json.loads((rd / "run.json").read_text())["submissions"][0]["job_id"]
    log = rd / "logs" / f"{job_id}_0.out"
    assert wait_for(lambda: log.exists() and log.read_text(), timeout=120)
    assert log.read_text() == "".join(v + "|" for v in evil)
    name = subprocess.run(["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%j"],
                          capture_output=True, text=True, timeout=30).stdout.strip()
    assert name.startswith("$(touch") and "`x`" in name
    assert not marker.exists()
    assert stat.S_IMODE(rd.stat().st_mode) == 0o700


def test_submit_array_file_and_run_commands(tmp_path, runs_dir, capsys):
    from hpcpar.cli import main
    cmds = tmp_path / "cmds.txt"
    cmds.write_text("".join(f"echo line {i}\n" for i in range(5)))
    env_runs = ["--runs-dir", str(runs_dir)]
    os.environ["HPCPAR_RUNS_DIR"] = str(runs_dir)
    try:
        assert main(["submit", "slurm", "--array-file", str(cmds), "--job-name", "lines"]) == 0
        run_id = capsys.readouterr().out.split("run ")[1].split(";")[0].split()[0]
        rd = runs_dir / run_id
        job_id = json.loads((rd / "run.json").read_text())["submissions"][0]["job_id"]
        assert wait_for(lambda: all((rd / "logs" / f"{job_id}_{i}.out").exists() and
                                    (rd / "logs" / f"{job_id}_{i}.out").read_text() for i in range(5)))
        assert [(rd / "logs" / f"{job_id}_{i}.out").read_text() for i in range(5)] == \
            [f"line {i}\n" for i in range(5)]
        assert main(["runs", *env_runs]) == 0
        assert run_id in capsys.readouterr().out
        assert main(["status", run_id, *env_runs]) == 0
        assert f"jobs     {job_id}" in capsys.readouterr().out
        assert main(["logs", run_id, "--task", "3", *env_runs]) == 0
        assert "line 3" in capsys.readouterr().out
        assert main(["submit", "slurm", "--job-name", "sleeper", "--", "sleep", "300"]) == 0
        sleeper = capsys.readouterr().out.split("run ")[1].split()[0]
        assert main(["cancel", sleeper, *env_runs]) == 0
        sleeper_job = json.loads((runs_dir / sleeper / "run.json").read_text())["submissions"][0]["job_id"]
        assert wait_for(lambda: subprocess.run(
            ["squeue", "--noheader", "--states=all", f"--jobs={sleeper_job}", "--format=%T"],
            capture_output=True, text=True).stdout.strip() in ("CANCELLED", ""), timeout=60)
        assert main(["clean", "--older-than", "1s", "--dry-run", *env_runs]) == 0
        assert sleeper in capsys.readouterr().out
    finally:
        del os.environ["HPCPAR_RUNS_DIR"]


def test_exception_in_with_block_cancels_jobs_unless_detached(runs_dir):
    def job_states(ex):
        job = json.loads((runs_dir / ex.run_ids[-1] / "run.json").read_text())["submissions"][0]["job_id"]
        return subprocess.run(["squeue", "--noheader", "--array", "--states=all", f"--jobs={job}",
                               "--format=%T"], capture_output=True, text=True).stdout.split()

    with pytest.raises(RuntimeError), fast(runs_dir=str(runs_dir)) as ex:
        ex.map(time.sleep, [120, 120], chunksize=1)
        raise RuntimeError("user code failed")
    assert wait_for(lambda: set(job_states(ex)) <= {"CANCELLED"}, timeout=60)
    with pytest.raises(RuntimeError), fast(runs_dir=str(runs_dir), detach=True) as kept:
        kept.map(time.sleep, [5], chunksize=1)
        raise RuntimeError("user code failed")
    assert "CANCELLED" not in job_states(kept)
    assert hpcpar.attach(kept.run_ids[0], runs_dir=runs_dir).results(timeout=120) == [None]


def test_driver_sigterm_cancels_its_jobs(runs_dir):
    code = (f"import hpcpar, time; ex = hpcpar.Executor('slurm', runs_dir={str(runs_dir)!r}); "
            "ex.map(time.sleep, [300, 300], chunksize=1); print(ex.run_ids[0], flush=True); time.sleep(300)")
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    run_id = driver.stdout.readline().strip()
    job = json.loads((runs_dir / run_id / "run.json").read_text())["submissions"][0]["job_id"]
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=60) == -signal.SIGTERM
    out = subprocess.run(["squeue", "--noheader", "--array", "--states=all", f"--jobs={job}", "--format=%T"],
                         capture_output=True, text=True).stdout.split()
    assert set(out) <= {"CANCELLED"}


WRAPPER = '#!/bin/sh\necho "$(basename "$0")" >> {log}\nexec {real} "$@"\n'


def count_calls(tmp_path: Path, runs_dir: Path, n_tasks: int, seconds_per_task: float) -> dict[str, int]:
    bin_dir = tmp_path / f"bin-{n_tasks}"
    bin_dir.mkdir()
    log = tmp_path / f"calls-{n_tasks}.log"
    for cmd in ("sbatch", "squeue", "sacct", "scancel", "sinfo", "scontrol"):
        real = subprocess.run(["sh", "-c", f"command -v {cmd}"], capture_output=True, text=True).stdout.strip()
        if real:
            (bin_dir / cmd).write_text(WRAPPER.format(log=log, real=real))
            (bin_dir / cmd).chmod(0o755)
    env_path = f"{bin_dir}:{os.environ['PATH']}"
    code = (f"import hpcpar, time\n"
            f"ex = hpcpar.Executor('slurm', runs_dir={str(runs_dir)!r})\n"
            f"t0 = time.time()\n"
            f"assert list(ex.map(time.sleep, [{seconds_per_task}] * {n_tasks}, chunksize={n_tasks // 4})) "
            f"== [None] * {n_tasks}\n"
            f"print(time.time() - t0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PATH": env_path})
    assert proc.returncode == 0, proc.stderr
    calls: dict[str, int] = {"wall_s": float(proc.stdout.split()[-1])}
    for line in log.read_text().split():
        calls[line] = calls.get(line, 0) + 1
    return calls


def test_status_calls_do_not_grow_with_tasks(tmp_path, runs_dir):
    """Same wall time (4 array tasks of ~12 s each), 10x the tasks: similar number of status calls."""
    few = count_calls(tmp_path, runs_dir, 100, 0.48)
    many = count_calls(tmp_path, runs_dir, 1000, 0.048)
    print("100 tasks:", few, "\n1000 tasks:", many)
    assert few["sbatch"] == many["sbatch"] == 1
    assert many["squeue"] <= few["squeue"] * 1.5 + 3
    assert many.get("sacct", 0) == few.get("sacct", 0) == 0      # no accounting here: never called


def test_arrays_past_max_array_size_split_and_offset_on_real_slurm(runs_dir):
    """Pretend MaxArraySize is 1: the workers (one per slot, 2 here) go out as arrays 0 and
    0 (+1), each worker knowing its index from the offset."""
    ex = fast(runs_dir=str(runs_dir))
    ex._backend.probe()["max_array_size"] = 1
    n = min(ex.slots(), 12)
    with ex:
        assert list(ex.map(abs, range(-12, 0), chunksize=1)) == list(range(12, 0, -1))
    subs = json.loads((runs_dir / ex.run_ids[0] / "run.json").read_text())["submissions"]
    assert [(s["offset"], s["workers"]) for s in subs] == [(w, [w]) for w in range(n)]
    assert {s["task_ids"][0].split("_")[1] for s in subs} == {"0"}
