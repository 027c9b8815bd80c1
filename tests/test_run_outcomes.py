"""Issue 13, offline against the fake scheduler (tests/fakesched): every run reaches a true final
state whoever observes it, outcomes outlive the scheduler's memory, a deleted run folder fails
the run, a cancel sticks across attach, and `hpcpar clean` / `hpcpar logs --tail` work.

The real-SLURM versions are in tests/test_slurm_outcomes.py. "The scheduler forgot the job"
(SLURM's MinJobAge) is made here by deleting the fake's record of the job: its status command
then answers "Invalid job id", as squeue does for a job past MinJobAge.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import hpcpar
from hpcpar import RunFolderError, claims, runstate
from hpcpar.cli import main
from hpcpar.rundir import RunDir

TESTS = Path(__file__).resolve().parent
POLL_S = 0.2


def wait_for(pred, timeout=60, every=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    return None


def live_tasks(spec, job_ids) -> set[str]:
    out = subprocess.run(spec.status_argv(job_ids), check=False, capture_output=True, text=True,
                         timeout=30).stdout
    return {t for t, st in spec.parse_status(out).items() if st.state.is_live}


def forget(spec, job_id: str) -> None:
    """The scheduler forgets the job (as squeue does after MinJobAge)."""
    (spec.root / "jobs" / f"{job_id}.json").unlink()


def run_id_of(out: str) -> str:
    return out.split("; run ")[-1].split()[0]


def test_a_failing_array_line_is_named_by_status_even_after_the_scheduler_forgets(
        fake, runs_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(runs_dir))
    commands = tmp_path / "commands.txt"
    commands.write_text("echo zero\necho one >&2; exit 3\necho two\n")
    assert main(["submit", "fake", "--array-file", str(commands)]) == 0
    run_id = run_id_of(capsys.readouterr().out)
    rd = RunDir(runs_dir / run_id)
    sub = runstate.read(rd)["submissions"][0]
    assert wait_for(lambda: not live_tasks(fake, [sub["job_id"]]), timeout=60)
    log = rd.logs_dir / f"{sub['task_ids'][1]}.err"

    def status() -> str:
        assert main(["status", run_id]) == 0
        return capsys.readouterr().out

    first = status()
    assert "state    failed" in first
    assert (f"failed   index 1 (array task {sub['task_ids'][1]}): FAILED, exit code 3\n"
            f"         command: echo one >&2; exit 3\n"
            f"         log: {log}") in first
    assert log.read_text() == "one\n"
    forget(fake, sub["job_id"])
    assert live_tasks(fake, [sub["job_id"]]) == set()
    later = status()
    assert "FAILED (recorded): 1" in later and "COMPLETED (recorded): 2" in later
    assert first.split("failed   ")[1] == later.split("failed   ")[1]
    assert runstate.read(rd)["state"] == "failed"
    assert main(["runs"]) == 0
    assert f"{run_id}" in (row := next(r for r in capsys.readouterr().out.splitlines() if run_id in r))
    assert " failed " in row and " 3/3 " in row


def test_an_unobserved_command_run_is_finished_by_status_then_cleaned(fake, runs_dir, tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(runs_dir))
    assert main(["submit", "fake", "--", "true"]) == 0
    run_id = run_id_of(capsys.readouterr().out)
    job = runstate.read(RunDir(runs_dir / run_id))["submissions"][0]["job_id"]
    assert wait_for(lambda: not live_tasks(fake, [job]))
    assert main(["clean", "--older-than", "7d"]) == 0            # done, but too young
    assert "removed 0 run folder(s)" in capsys.readouterr().out
    assert main(["clean", "--older-than", "0s"]) == 0            # clean itself looks first
    assert f"removed {runs_dir / run_id}" in capsys.readouterr().out
    assert not (runs_dir / run_id).exists()


def test_clean_all_cancels_and_removes_an_unfinished_run(fake, runs_dir, capsys, monkeypatch):
    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(runs_dir))
    assert main(["submit", "fake", "--", "sleep", "60"]) == 0
    run_id = run_id_of(capsys.readouterr().out)
    job = runstate.read(RunDir(runs_dir / run_id))["submissions"][0]["job_id"]
    assert main(["clean", "--older-than", "0s"]) == 0            # running: kept
    assert "removed 0 run folder(s)" in capsys.readouterr().out
    assert main(["clean", "--all", "--older-than", "1d"]) == 0   # too young: kept, not cancelled
    assert "removed 0 run folder(s)" in capsys.readouterr().out and live_tasks(fake, [job])
    assert not (runs_dir / run_id / "cancel-requested").exists()
    assert main(["clean", "--all", "--dry-run"]) == 0
    assert f"would remove {runs_dir / run_id}" in capsys.readouterr().out and live_tasks(fake, [job])
    assert main(["clean", "--all"]) == 0
    assert f"removed {runs_dir / run_id}" in capsys.readouterr().out
    assert wait_for(lambda: not live_tasks(fake, [job]), timeout=30)


def test_clean_refuses_a_bad_age(capsys):
    assert main(["clean", "--older-than", "soon"]) == 2
    assert "--older-than='soon'" in capsys.readouterr().err


def test_logs_tail_reads_the_end_of_a_big_log(fake, runs_dir, capsys, monkeypatch):
    from hpcpar.runs import tail_lines

    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(runs_dir))
    assert main(["submit", "fake", "--", "seq", "1", "300000"]) == 0
    run_id = run_id_of(capsys.readouterr().out)
    rd = RunDir(runs_dir / run_id)
    task = runstate.read(rd)["submissions"][0]["task_ids"][0]
    out = rd.logs_dir / f"{task}.out"
    assert wait_for(lambda: not live_tasks(fake, [task.split("_")[0]]))
    assert out.stat().st_size > 1_000_000
    assert main(["logs", run_id, "--tail", "3"]) == 0
    text = capsys.readouterr().out
    assert f"{task}.out <==\n299998\n299999\n300000\n==> " in text and "299997" not in text
    assert tail_lines(out, 1, block_bytes=4) == "300000\n"           # a line across blocks
    assert tail_lines(out, 0) == ""
    small = rd.path / "small.txt"
    small.write_text("a\nb")                                          # no final newline
    assert tail_lines(small, 5) == "a\nb" and tail_lines(small, 1) == "b"


def test_a_deleted_run_folder_fails_the_map_naming_it_and_cancels_the_jobs(fake, runs_dir):
    with hpcpar.Executor("fake", runs_dir=str(runs_dir), poll_interval_s=POLL_S,
                         max_poll_interval_s=POLL_S) as ex:
        it = ex.map(time.sleep, [30] * 4, chunksize=1)
        run = runs_dir / ex.run_ids[0]
        job = json.loads((run / "run.json").read_text())["submissions"][0]["job_id"]
        assert wait_for(lambda: live_tasks(fake, [job]))
        gone = run.with_name(run.name + ".deleted")
        os.rename(run, gone)               # the folder vanishes at once; its tasks may still
        shutil.rmtree(gone, ignore_errors=True)     # write logs while rmtree walks it
        t0 = time.monotonic()
        with pytest.raises(RunFolderError, match=f"run folder {run} was deleted"):
            list(it)
        print(f"raised {time.monotonic() - t0:.2f} s after the folder was deleted "
              f"(poll interval {POLL_S} s)")
    assert wait_for(lambda: not live_tasks(fake, [job]), timeout=30)


DRIVER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    import fakesched, hpcpar
    fakesched.register({sched!r})
    ex = hpcpar.Executor("fake", runs_dir={runs!r}, poll_interval_s=0.1, max_poll_interval_s=0.5)
    it = ex.map(time.sleep, {sleeps!r}, chunksize=1)
    print(ex.run_ids[0], flush=True)
    print(list(it), flush=True)
""")


def start_driver(tmp_path, runs_dir, sleeps):
    code = DRIVER.format(tests=str(TESTS), sched=str(tmp_path / "sched"), runs=str(runs_dir),
                         sleeps=sleeps)
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    run_id = driver.stdout.readline().strip()
    assert run_id, "driver printed no run id"
    return driver, run_id


def attach_in_new_process(tmp_path, runs_dir, run_id, **kw) -> subprocess.CompletedProcess:
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import fakesched, hpcpar; "
            f"fakesched.register({str(tmp_path / 'sched')!r}); "
            f"r = hpcpar.attach({run_id!r}, runs_dir={str(runs_dir)!r}, poll_interval_s=0.1, "
            f"max_poll_interval_s=0.5, **{kw!r}); print(r.status(), flush=True)\n"
            f"try:\n    print('RESULTS', r.results(timeout=120))\n"
            f"except BaseException as exc:\n    print('RAISED', type(exc).__name__, exc)\n")
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          timeout=180)


def test_driver_killed_then_attach_leaves_the_run_done(fake, tmp_path, runs_dir, capsys):
    driver, run_id = start_driver(tmp_path, runs_dir, [0.5, 0.5, 4, 4])
    rd = RunDir(runs_dir / run_id)
    assert wait_for(lambda: len(rd.result_mtimes()) >= 2)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    assert runstate.read(rd)["state"] in ("submitted", "running")
    attached = attach_in_new_process(tmp_path, runs_dir, run_id)
    assert attached.returncode == 0, attached.stderr
    status, results = attached.stdout.strip().splitlines()
    # one look before watching: the two sleeping tasks are running, not pending
    assert "'running': 2" in status and "'pending': 0" in status, status
    assert results == "RESULTS [None, None, None, None]"
    assert runstate.read(rd)["state"] == "done"
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if run_id in r)
    assert " done " in row and " 4/4 " in row


def test_driver_killed_then_hpcpar_cancel_then_attach_resubmits_nothing(fake, tmp_path, runs_dir, capsys):
    driver, run_id = start_driver(tmp_path, runs_dir, [0.2, 30, 30])
    rd = RunDir(runs_dir / run_id)
    job = runstate.read(rd)["submissions"][0]["job_id"]
    # the two long chunks run (the worker that ran the short one may wait warm for more)
    assert wait_for(lambda: len(rd.result_mtimes()) >= 1 and len(live_tasks(fake, [job])) >= 2)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    assert main(["cancel", run_id, "--runs-dir", str(runs_dir)]) == 0
    capsys.readouterr()
    assert wait_for(lambda: not live_tasks(fake, [job]), timeout=30)
    attached = attach_in_new_process(tmp_path, runs_dir, run_id)
    assert attached.returncode == 0, attached.stderr
    last = raised(attached)
    assert last.startswith("RAISED CancelledError") and "chunk(s) [1, 2] were cancelled" in last, last
    meta = runstate.read(rd)
    assert [s["reason"] for s in meta["submissions"]] == ["initial"]        # nothing resubmitted
    assert meta["state"] == "cancelled"
    assert not list((fake.root / "jobs").glob("*.json"))[1:]                # one job ever
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    assert " cancelled " in next(r for r in capsys.readouterr().out.splitlines() if run_id in r)


def raised(proc: subprocess.CompletedProcess) -> str:
    return next((line for line in proc.stdout.splitlines() if line.startswith(("RAISED", "RESULTS"))),
                proc.stdout + proc.stderr)


def test_an_external_cancel_sticks_across_attach_unless_resubmit_cancelled(fake, tmp_path, runs_dir):
    driver, run_id = start_driver(tmp_path, runs_dir, [0.2, 6])
    rd = RunDir(runs_dir / run_id)
    # a pull run: the array task to cancel is the worker holding chunk 1's claim
    assert wait_for(lambda: (rd.path / "claims" / "000001.0").exists())
    assert wait_for(lambda: claims.read_owner(rd.path, "000001.0") is not None)
    owner = claims.read_owner(rd.path, "000001.0")
    task = runstate.read(rd)["submissions"][0]["task_ids"][owner]
    assert wait_for(lambda: len(rd.result_mtimes()) >= 1 and task in live_tasks(fake, [task.split("_")[0]]))
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    subprocess.run(fake.cancel_argv([task]), check=True, timeout=30)     # scancel by hand
    assert wait_for(lambda: not live_tasks(fake, [task.split("_")[0]]), timeout=30)
    attached = attach_in_new_process(tmp_path, runs_dir, run_id)
    assert raised(attached).startswith(f"RAISED JobLostError job {task} ended CANCELLED"), attached.stdout
    assert [s["reason"] for s in runstate.read(rd)["submissions"]] == ["initial"]
    # the worker's record names the chunk it held, cancelled; the chunk is out of the pool
    assert runstate.read_outcomes(rd)[task]["chunks"]["1"]["cancelled"] is True
    assert claims.scan(rd.path)[1].refused
    assert runstate.read(rd)["state"] == "failed"
    again = attach_in_new_process(tmp_path, runs_dir, run_id)                # still not
    assert raised(again).startswith("RAISED CancelledError"), again.stdout      # recorded: cancelled
    assert [s["reason"] for s in runstate.read(rd)["submissions"]] == ["initial"]
    asked = attach_in_new_process(tmp_path, runs_dir, run_id, resubmit_cancelled=True)
    assert raised(asked) == "RESULTS [None, None]", asked.stdout + asked.stderr
    # the chunk went back to the pool and, no worker being live, new workers pulled it
    assert [s["reason"] for s in runstate.read(rd)["submissions"]] == ["initial", "refill"]
    assert runstate.read(rd)["state"] == "done"


def test_the_job_scripts_own_exit_record_tells_status_when_nobody_looked_in_time(
        fake, runs_dir, tmp_path, capsys, monkeypatch):
    """Nobody ran `hpcpar status` before the scheduler forgot the job: each line's exit code,
    written by the job script itself (outcomes/line-<i>.exit), still names the failure."""
    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(runs_dir))
    commands = tmp_path / "commands.txt"
    commands.write_text("echo \"it's zero\" | cat\nexit 7\n")
    assert main(["submit", "fake", "--array-file", str(commands)]) == 0
    run_id = run_id_of(capsys.readouterr().out)
    rd = RunDir(runs_dir / run_id)
    sub = runstate.read(rd)["submissions"][0]
    assert wait_for(lambda: not live_tasks(fake, [sub["job_id"]]))
    assert [runstate.read_exit_record(rd, i) for i in range(2)] == [0, 7]
    assert (rd.logs_dir / f"{sub['task_ids'][0]}.out").read_text() == "it's zero\n"
    assert (rd.path / "commands.txt").read_text() == commands.read_text()    # kept as given
    forget(fake, sub["job_id"])                          # before anyone asked
    assert main(["status", run_id]) == 0
    out = capsys.readouterr().out
    assert "state    failed" in out and "COMPLETED (recorded): 1, FAILED (recorded): 1" in out
    assert (f"failed   index 1 (array task {sub['task_ids'][1]}): FAILED, exit code 7\n"
            f"         command: exit 7\n") in out
    assert runstate.read_outcomes(rd)[sub["task_ids"][1]]["observed_by"] == "job script"


def test_a_single_submitted_command_records_its_exit_code(fake, runs_dir, capsys, monkeypatch):
    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(runs_dir))
    assert main(["submit", "fake", "--", "sh", "-c", "exit 5"]) == 0
    rd = RunDir(runs_dir / run_id_of(capsys.readouterr().out))
    job = runstate.read(rd)["submissions"][0]["job_id"]
    assert wait_for(lambda: not live_tasks(fake, [job]))
    assert runstate.read_exit_record(rd, 0) == 5
    assert main(["status", rd.run_id]) == 0
    out = capsys.readouterr().out
    assert "exit code 5" in out and "command: sh -c 'exit 5'" in out


def test_status_shows_a_pending_reason_when_the_status_call_gives_one(tmp_path):
    """The task line carries the scheduler's pending reason where its TaskStatus has one
    (i13-reasons adds ``reason`` to TaskStatus: SLURM ``%r``), e.g. ``PENDING (BeginTime): 2``."""
    from types import SimpleNamespace

    from hpcpar.observe import task_views
    from hpcpar.runstate import ChunkState, Run, create_run
    from hpcpar.states import JobState

    rd = create_run(tmp_path, prefix="r", meta={"backend": "slurm", "kind": "command", "n_chunks": 2})
    run = Run(rd, {i: ChunkState(i, None, 1) for i in range(2)}, runstate.read(rd))
    run.record_submission("7", {0: "7_0", 1: "7_1"}, "initial")
    run.save()
    spec = SimpleNamespace(log_stem=lambda t: t)
    statuses = {"7_0": SimpleNamespace(state=JobState.PENDING, native="PENDING", exit_code=None,
                                       reason="BeginTime"),
                "7_1": SimpleNamespace(state=JobState.RUNNING, native="RUNNING", exit_code=None)}
    views = task_views(rd, statuses, spec)
    assert [(v.state, v.reason) for v in views] == [("PENDING", "BeginTime"), ("RUNNING", "")]


def test_slurm_exit_codes_from_scontrol_show_job():
    """``tests/data/slurm/scontrol_show_job_array.txt``: ``scontrol --oneliner show job 7684``
    on the project's single-host SLURM 22.05 (no accounting), 2026-11-30, of
    ``sbatch --array=0-2`` whose tasks ran ``exit 3``, ``exit 0`` and ``sleep 60`` (then
    ``scancel 7684_2``)."""
    from hpcpar.backends.slurm import SlurmSpec
    from hpcpar.states import JobState

    text = (TESTS / "data" / "slurm" / "scontrol_show_job_array.txt").read_text()
    got = {t: (s.state, s.exit_code) for t, s in SlurmSpec().parse_job_record(text).items()}
    assert got == {"7684_0": (JobState.FAILED, 3), "7684_1": (JobState.COMPLETED, 0),
                   "7684_2": (JobState.CANCELLED, 143)}
    assert SlurmSpec().job_record_argv("7684") == ["scontrol", "--oneliner", "show", "job", "7684"]
    assert SlurmSpec().parse_job_record("slurm_load_jobs error: Invalid job id specified\n") == {}


def test_a_cancel_by_the_with_block_is_recorded_and_attach_honours_it(fake, runs_dir):
    """shutdown on an exception (and SIGINT/SIGTERM, through the same cancel_run) writes the
    cancel request: a later attach resubmits nothing, and the cancelled chunks raise."""
    from concurrent.futures import CancelledError

    with pytest.raises(RuntimeError), hpcpar.Executor("fake", runs_dir=str(runs_dir),
                                                      poll_interval_s=POLL_S) as ex:
        ex.map(time.sleep, [30, 30], chunksize=1)
        job = json.loads((runs_dir / ex.run_ids[0] / "run.json").read_text())["submissions"][0]["job_id"]
        assert wait_for(lambda: live_tasks(fake, [job]))
        raise RuntimeError("user code failed")
    rd = RunDir(runs_dir / ex.run_ids[0])
    assert runstate.cancel_requested(rd)
    assert wait_for(lambda: not live_tasks(fake, [job]), timeout=30)
    run = hpcpar.attach(rd.run_id, runs_dir=runs_dir, poll_interval_s=POLL_S)
    with pytest.raises(CancelledError, match=r"chunk\(s\) \[0, 1\] were cancelled"):
        run.results(timeout=60)
    assert [s["reason"] for s in runstate.read(rd)["submissions"]] == ["initial"]
    assert runstate.read(rd)["state"] == "cancelled"


def test_a_pull_runs_outcome_record_is_the_workers_and_names_the_chunks_it_held(tmp_path):
    """In a pull run an array task is a worker holding many chunks over its life: its record
    keeps its own end once, and each chunk's results and cancel under ``chunks``; a reopened
    run (attach) knows the cancelled chunks from those records."""
    from hpcpar.runstate import Run, create_run
    from hpcpar.states import JobState

    rd = create_run(tmp_path, prefix="r", meta={
        "backend": "fake", "kind": "map", "n_chunks": 3, "chunk_sizes": [1, 1, 1], "pull": True,
        "submissions": [{"job_id": "7", "job_ids": ["7"], "indices": [], "workers": [0, 1],
                         "task_ids": ["7_0", "7_1"], "offset": 0, "reason": "initial"}]})
    runstate.record_outcome(rd, 0, "7_1", results="complete", worker=True)
    runstate.record_outcome(rd, 2, "7_1", state=JobState.CANCELLED, exit_code=0,
                            results="absent", cancelled=True, worker=True)
    runstate.record_outcome(rd, 2, "7_1", results="partial", worker=True)   # first word stays
    rec = runstate.read_outcomes(rd)["7_1"]
    assert (rec["index"], rec["state"], rec["exit_code"]) == (None, "CANCELLED", 0)
    assert rec["chunks"] == {"0": {"results": "complete"},
                             "2": {"results": "absent", "cancelled": True}}
    assert "cancelled" not in rec and "results" not in rec        # not the worker's own
    run = Run.reopen(rd, lambda tid: tid.split("_")[0])
    assert run.pull and run.cancelled == {2}
    assert run.workers == {0: "7_0", 1: "7_1"}


def test_status_records_a_pull_runs_workers_and_its_end_once_its_driver_is_gone(
        fake, tmp_path, runs_dir, capsys):
    """`hpcpar status` on a pull run whose driver died: it shows and records the workers (the
    run's array tasks), and once every worker has ended, the run's end (done: every chunk has
    results)."""
    driver, run_id = start_driver(tmp_path, runs_dir, [0.2, 0.2, 0.2])
    rd = RunDir(runs_dir / run_id)
    workers = runstate.worker_tasks(runstate.read(rd))
    assert workers and runstate.read(rd)["pull"]
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    job = runstate.read(rd)["submissions"][0]["job_id"]
    assert wait_for(lambda: len(rd.result_mtimes()) == 3 and not live_tasks(fake, [job]))
    assert runstate.read(rd)["state"] in ("submitted", "running")
    assert main(["status", run_id, "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "state    done" in out and f"tasks    COMPLETED: {len(workers)}" in out, out
    recs = runstate.read_outcomes(rd)
    assert [(recs[t]["state"], recs[t]["index"]) for t in workers.values()] == [
        ("COMPLETED", None)] * len(workers)
    assert runstate.read(rd)["state"] == "done"               # recorded, not only shown
    assert main(["logs", run_id, "--runs-dir", str(runs_dir)]) == 0   # the workers' logs
    logs = capsys.readouterr().out
    assert all(f"==> {rd.logs_dir / fake.log_stem(t)}.err <==" in logs for t in workers.values())
    assert "chunk(s); none left" in logs, logs
