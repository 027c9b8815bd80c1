"""The batch pipeline's faults, offline, against the fake scheduler (tests/fakesched).

The same faults tests/test_slurm.py provokes on the real SLURM -- a lost array task, a task past
its walltime or its memory, the walltime warning and requeue, an array larger than
MaxArraySize, a truncated results file, the driver killed and the run re-attached, a task
cancelled from outside -- here run in seconds on every Python, before any real scheduler starts.
The fake is added with :func:`hpcpar.register_scheduler` only: no file under hpcpar/ knows it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fakesched
import pytest

import hpcpar
from hpcpar import JobLostError, JobState, claims
from hpcpar.backends.registry import unregister_scheduler

TESTS = Path(__file__).resolve().parent


def fast(runs_dir, **kw):
    kw.setdefault("poll_interval_s", 0.1)
    kw.setdefault("max_poll_interval_s", 0.5)
    return hpcpar.Executor("fake", runs_dir=str(runs_dir), **kw)


def marked_sleep(x, marker_dir, seconds):
    """Record each start and each completion, so executions can be counted."""
    with open(os.path.join(marker_dir, f"start-{x}"), "a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    with open(os.path.join(marker_dir, f"done-{x}"), "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return x * x


def counts(marker_dir: Path, prefix: str) -> dict[int, int]:
    return {int(p.name.split("-")[1]): len(p.read_text().split()) for p in marker_dir.glob(prefix + "-*")}


def wait_for(pred, timeout=60, every=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(every)
    return False


def meta_of(runs_dir: Path, run_id: str) -> dict:
    return json.loads((runs_dir / run_id / "run.json").read_text())


@pytest.fixture
def markers(tmp_path) -> Path:
    path = tmp_path / "markers"
    path.mkdir()
    return path


def test_run_json_records_every_task_id_at_submission(fake, runs_dir):
    with fast(runs_dir) as ex:
        assert list(ex.map(abs, range(-6, 0), chunksize=2)) == [6, 5, 4, 3, 2, 1]
    (sub,) = meta_of(runs_dir, ex.run_ids[0])["submissions"]
    # pull: one worker per chunk at most (3 chunks, 8 slots); each worker's array task id
    assert sub["workers"] == [0, 1, 2] and sub["task_ids"] == [f"{sub['job_id']}_{i}" for i in range(3)]
    assert sub["job_ids"] == [sub["job_id"]]
    logs = sorted(p.name for p in (runs_dir / ex.run_ids[0] / "logs").iterdir())
    assert logs == sorted(f"{t}.{ext}" for t in sub["task_ids"] for ext in ("out", "err"))


def claim_owner(runs_dir: Path, run_id: str, chunk: int) -> int | None:
    """The worker index holding chunk ``chunk``'s first claim (None until it is claimed)."""
    path = runs_dir / run_id / "claims" / f"{chunk:06d}.0"
    try:
        return json.loads(path.read_text())["worker"]
    except (OSError, ValueError):
        return None


def test_lost_task_is_resubmitted_alone(fake, runs_dir, markers):
    """Worker 1 dies 1.2 s after it starts, in its 2 s chunk: that chunk alone goes back to
    the pool and runs again, once; a worker is submitted for it only if none is live by then."""
    fake.inject("lose", chunk=1, after_s=1.2)
    with fast(runs_dir) as ex:
        assert list(ex.map(marked_sleep, range(3), [str(markers)] * 3, [2] * 3, chunksize=1)) == [0, 1, 4]
    run_id = ex.run_ids[0]
    lost = [i for i in range(3) if claim_owner(runs_dir, run_id, i) == 1]
    assert len(lost) == 1
    subs = meta_of(runs_dir, run_id)["submissions"]
    assert (subs[0]["reason"], subs[0]["workers"]) == ("initial", [0, 1, 2])
    assert [(s["reason"], s["indices"]) for s in subs[1:]] == [("retry", lost)]
    assert len(subs[1]["workers"]) <= 1
    assert counts(markers, "done") == {0: 1, 1: 1, 2: 1}
    assert counts(markers, "start") == {i: 2 if i in lost else 1 for i in range(3)}


@pytest.mark.parametrize("kind,state", [("lose", JobState.NODE_FAIL), ("timeout", JobState.TIMEOUT),
                                        ("oom", JobState.OUT_OF_MEMORY)])
def test_a_task_that_keeps_failing_is_lost_with_its_state(fake, runs_dir, kind, state):
    fake.inject(kind, chunk=0, after_s=2.0)           # the first worker, and the one
    fake.inject(kind, chunk=1, after_s=2.0)           # submitted after it (array index 1)
    with fast(runs_dir, max_retries=1) as ex, pytest.raises(JobLostError) as err:
        ex.submit(time.sleep, 30).result(timeout=60)
    assert err.value.state is state and err.value.attempts == 2
    if kind == "oom":
        assert err.value.exit_code == 137


def test_walltime_limit_is_timeout(fake, runs_dir):
    with fast(runs_dir, walltime=2, max_retries=0, signal_s=0) as ex, pytest.raises(JobLostError) as err:
        ex.submit(time.sleep, 30).result(timeout=60)
    assert err.value.state is JobState.TIMEOUT


def test_walltime_warning_requeues_the_rest_without_spending_a_retry(fake, runs_dir, markers):
    """8 tasks x 0.4 s in one array task; SIGUSR2 after 1 s, SIGTERM 1 s later. The worker
    saves what it finished, and the rest is requeued (max_retries=0: not a retry)."""
    fake.inject("warn", chunk=0, after_s=1.0)
    with fast(runs_dir, max_retries=0, checkpoint_s=1000) as ex:
        assert list(ex.map(marked_sleep, range(8), [str(markers)] * 8, [0.4] * 8, chunksize=8)) == \
            [x * x for x in range(8)]
    assert [s["reason"] for s in meta_of(runs_dir, ex.run_ids[0])["submissions"]] == ["initial", "requeue"]
    assert counts(markers, "done") == dict.fromkeys(range(8), 1)


def test_arrays_past_max_array_size_are_split_with_an_offset(tmp_path, runs_dir):
    fakesched.register(tmp_path / "sched", max_array_size=5)
    try:
        with fast(runs_dir) as ex:
            assert list(ex.map(abs, range(-12, 0), chunksize=1)) == list(range(12, 0, -1))
    finally:
        unregister_scheduler("fake")
    subs = meta_of(runs_dir, ex.run_ids[0])["submissions"]
    # 12 chunks pulled by 8 workers (the slots), submitted as arrays of at most 5
    assert [(s["offset"], s["workers"]) for s in subs] == [(0, [0, 1, 2, 3, 4]), (5, [5, 6, 7])]
    assert [s["task_ids"][0].split("_")[1] for s in subs] == ["0", "0"]      # indices < 5


def test_the_fake_refuses_indices_past_max_array_size(tmp_path):
    spec = fakesched.FakeSpec(tmp_path / "sched", max_array_size=5)
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    (sub,) = spec.submissions(str(script), range(8), None, 100)           # told a wrong limit
    proc = subprocess.run(sub.argv, check=False, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "MaxArraySize 5" in proc.stderr


def test_truncated_results_file_is_detected_and_rerun(fake, runs_dir, markers):
    with fast(runs_dir) as ex:
        assert list(ex.map(marked_sleep, range(3), [str(markers)] * 3, [0] * 3, chunksize=1)) == [0, 1, 4]
        run_id = ex.run_ids[0]
    result = runs_dir / run_id / "results" / "000001.pkl"
    result.write_bytes(result.read_bytes()[:-10])
    run = hpcpar.attach(run_id, runs_dir=runs_dir, poll_interval_s=0.1, max_poll_interval_s=0.5)
    assert run.results(timeout=60) == [0, 1, 4]
    assert counts(markers, "done") == {0: 1, 1: 2, 2: 1}        # only the damaged chunk ran again
    assert any(p.name.startswith("000001.pkl.corrupt-") for p in (runs_dir / run_id / "results").iterdir())


DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import fakesched, hpcpar
    from test_fake_scheduler import marked_sleep
    fakesched.register({sched!r})
    ex = hpcpar.Executor("fake", runs_dir={runs!r}, poll_interval_s=0.1, max_poll_interval_s=0.5)
    it = ex.map(marked_sleep, range(6), [{markers!r}] * 6, [1] * 6, chunksize=1)
    print(ex.run_ids[0], flush=True)
    print(list(it), flush=True)
""")


def test_driver_sigkill_then_attach_collects_without_rerunning(tmp_path, runs_dir, markers):
    sched = tmp_path / "sched"
    fakesched.FakeSpec(sched).inject("lose", chunk=5, after_s=0.5)   # a worker is lost while no driver watches
    code = DRIVER.format(tests=str(TESTS), sched=str(sched), runs=str(runs_dir), markers=str(markers))
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    run_id = driver.stdout.readline().strip()
    assert run_id, "driver printed no run id"
    assert wait_for(lambda: len(counts(markers, "done")) >= 2)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    finished_before = set(counts(markers, "done"))
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import fakesched, hpcpar; "
            f"fakesched.register({str(sched)!r}); "
            f"r = hpcpar.attach({run_id!r}, runs_dir={str(runs_dir)!r}); print(r.status()); print(r.results())")
    attach = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                            timeout=120)
    assert attach.returncode == 0, attach.stderr
    assert attach.stdout.strip().splitlines()[-1] == str([x * x for x in range(6)])
    assert counts(markers, "done") == dict.fromkeys(range(6), 1)     # nothing lost, nothing duplicated
    assert all(counts(markers, "start")[i] == 1 for i in finished_before)
    lost = [i for i in range(6) if claim_owner(runs_dir, run_id, i) == 5]
    # a chunk claimed by the lost worker ran again (it may have died before the task started)
    assert all(n == 1 or (n == 2 and i in lost) for i, n in counts(markers, "start").items())
    subs = meta_of(runs_dir, run_id)["submissions"]
    assert [(s["reason"], s["workers"]) for s in subs[:1]] == [("initial", list(range(6)))]
    assert [(s["reason"], s["indices"]) for s in subs[1:]] == ([("retry", lost)] if lost else [])


def test_one_task_cancelled_from_outside_is_a_recorded_cancel(fake, runs_dir, markers):
    """Issue 13: an external cancel is a decision, recorded in the run; not resubmitted."""
    from hpcpar import runstate
    from hpcpar.rundir import RunDir

    got = []
    with fast(runs_dir) as ex:
        results = ex.map(marked_sleep, range(4), [str(markers)] * 4, [2] * 4, chunksize=1)
        assert wait_for(lambda: (markers / "start-1").exists())
        owner = claim_owner(runs_dir, ex.run_ids[0], 1)
        task = meta_of(runs_dir, ex.run_ids[0])["submissions"][0]["task_ids"][owner]
        subprocess.run(fake.cancel_argv([task]), check=True, timeout=30)
        with pytest.raises(JobLostError, match=r"CANCELLED without writing its results \(exit code 3, .*log: "):
            got.extend(results)
    assert got == [0]
    rd = RunDir(runs_dir / ex.run_ids[0])
    assert [s["reason"] for s in runstate.read(rd)["submissions"]] == ["initial"]
    # a pull run's record is the worker's: its end, and what happened to each chunk it held
    rec = runstate.read_outcomes(rd)[task]
    assert (rec["index"], rec["state"], rec["exit_code"]) == (None, "CANCELLED", 3)
    assert rec["chunks"]["1"]["cancelled"] is True
    # the cancelled chunk is out of the pool for good: no worker may claim it
    info = claims.scan(rd.path)[1]
    assert info.refused and not info.voided
    assert counts(markers, "start")[1] == 1 and 1 not in counts(markers, "done")


def test_leaving_the_with_block_on_an_error_cancels_the_jobs(fake, runs_dir):
    with pytest.raises(RuntimeError), fast(runs_dir) as ex:
        ex.map(time.sleep, [30, 30], chunksize=1)
        raise RuntimeError("user code failed")
    (sub,) = meta_of(runs_dir, ex.run_ids[0])["submissions"]

    def status():
        return fake.parse_status(subprocess.run(fake.status_argv([sub["job_id"]]), check=False,
                                                capture_output=True, text=True, timeout=30).stdout)

    assert wait_for(lambda: {s.state for s in status().values()} == {JobState.CANCELLED}, timeout=30)


def test_cli_submit_status_logs_and_cancel_read_the_recorded_task_ids(fake, runs_dir, tmp_path, capsys,
                                                                      monkeypatch):
    from hpcpar.cli import main

    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(runs_dir))
    commands = tmp_path / "commands.txt"
    commands.write_text("echo first\necho second; sleep 30\n")
    assert main(["submit", "fake", "--array-file", str(commands)]) == 0
    run_id = capsys.readouterr().out.split("run ")[-1].split()[0]
    sub = meta_of(runs_dir, run_id)["submissions"][0]
    first = runs_dir / run_id / "logs" / f"{sub['task_ids'][0]}.out"
    assert wait_for(lambda: first.is_file() and first.read_text() == "first\n")
    assert main(["logs", run_id, "--task", "0"]) == 0
    assert "first" in capsys.readouterr().out
    # the first line's output lands before its task is final: wait for the scheduler to say so
    assert wait_for(lambda: sorted(s.state.value for s in fake.parse_status(subprocess.run(
        fake.status_argv([sub["job_id"]]), check=False, capture_output=True, text=True,
        timeout=30).stdout).values()) == ["COMPLETED", "RUNNING"], timeout=30)
    assert main(["status", run_id]) == 0
    assert "RUNNING: 1" in capsys.readouterr().out
    assert main(["cancel", run_id]) == 0

    def states():
        out = subprocess.run(fake.status_argv([sub["job_id"]]), check=False, capture_output=True, text=True,
                             timeout=30).stdout
        return {s.native for s in fake.parse_status(out).values()}

    assert wait_for(lambda: states() == {"COMPLETED", "CANCELLED"}, timeout=30)


def test_submit_futures_are_running_while_their_array_task_runs(fake, runs_dir, markers):
    """concurrent.futures' contract on a batch scheduler: a submitted call's future is RUNNING
    once the scheduler reports its array task RUNNING, so ``cancel()`` then returns False and
    the call still delivers its result, once."""
    with fast(runs_dir, submit_linger_s=0) as ex:
        running = ex.submit(marked_sleep, 3, str(markers), 2.0)
        assert wait_for(running.running, timeout=60), running
        assert not running.cancel()
        assert running.result(timeout=60) == 9
        assert not running.cancelled()
    assert counts(markers, "done") == {3: 1}


def worker_tasks_live(fake, job_id) -> bool:
    out = subprocess.run(fake.status_argv([job_id]), check=False, capture_output=True, text=True,
                         timeout=30).stdout
    return any(s.state.is_live for s in fake.parse_status(out).values())


def test_a_cancelled_future_of_a_pull_run_is_taken_out_of_the_pool(fake, runs_dir, markers):
    """A future cancelled while its chunk waits in the pool: the worker goes on with the
    others, but the chunk is refused (claims.refuse), so no worker ever claims it."""
    with fast(runs_dir, max_running=1, submit_linger_s=0.5, keep_workers_s=0) as ex:
        futures = [ex.submit(marked_sleep, i, str(markers), 2) for i in range(3)]
        assert wait_for(lambda: (markers / "start-0").exists())
        assert futures[2].cancel()
        run = runs_dir / ex.run_ids[0]
        (sub,) = meta_of(runs_dir, ex.run_ids[0])["submissions"]
        assert sub["workers"] == [0]
        assert wait_for(lambda: 2 in claims.scan(run) and claims.scan(run)[2].refused)
        assert [f.result(timeout=60) for f in futures[:2]] == [0, 1]
        assert wait_for(lambda: not worker_tasks_live(fake, sub["job_id"]))    # it ran out
    assert counts(markers, "start") == {0: 1, 1: 1}       # chunk 2 was never claimed
    assert [s["reason"] for s in meta_of(runs_dir, ex.run_ids[0])["submissions"]] == ["initial"]


def test_cancelling_every_worker_cancels_the_pool_instead_of_refilling_it(fake, runs_dir, markers):
    """Issue 13 on a pull run: `scancel` of the whole worker array is a decision. The chunk a
    worker held and the chunks still in the pool all raise JobLostError (CANCELLED); no new
    worker is submitted, and the pool's chunks are refused to any later worker."""
    with fast(runs_dir, max_running=1, submit_linger_s=0.5) as ex:
        futures = [ex.submit(marked_sleep, i, str(markers), 30) for i in range(3)]
        assert wait_for(lambda: (markers / "start-0").exists())
        run_id = ex.run_ids[0]
        (sub,) = meta_of(runs_dir, run_id)["submissions"]
        assert sub["workers"] == [0] and meta_of(runs_dir, run_id)["n_chunks"] == 3
        subprocess.run(fake.cancel_argv([sub["job_id"]]), check=True, timeout=30)
        for f in futures:
            with pytest.raises(JobLostError, match=rf"job {sub['task_ids'][0]} ended CANCELLED"):
                f.result(timeout=60)
    assert [s["reason"] for s in meta_of(runs_dir, run_id)["submissions"]] == ["initial"]
    seen = claims.scan(runs_dir / run_id)
    assert all(seen[i].refused for i in (0, 1, 2))
    assert set(counts(markers, "start")) == {0}
