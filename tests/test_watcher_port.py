"""The watcher against a fake port (poll, resubmit, cancel): no scheduler, no backend.

The watcher talks to the engine through :class:`hpcpar.watcher.WatchPort` only, so these
tests drive it with a 30-line fake that records what it was asked to do.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from concurrent.futures import CancelledError, Future
from pathlib import Path

import pytest

from hpcpar import runstate
from hpcpar.config import Options
from hpcpar.rundir import ChunkResult, RunDir
from hpcpar.runstate import ChunkState, Run, RunPhase, create_run
from hpcpar.states import JobState
from hpcpar.watcher import Watcher


class Status:
    def __init__(self, state: JobState, exit_code: int | None = None):
        self.state, self.native, self.exit_code = state, state.name, exit_code


class FakePort:
    """Every task RUNNING until cancelled (or told otherwise through ``states``)."""

    name = "fake"
    lost_grace_s = 0.0

    def __init__(self, **options):
        self.options = Options(poll_interval_s=0.05, max_poll_interval_s=0.1, **options)
        self.states: dict[str, JobState] = {}
        self.cancelled: list[str] = []
        self.resubmitted: list[tuple[list[int], str]] = []
        self.polls = 0
        self.next_job = 100

    def poll(self, job_ids):
        self.polls += 1
        return {tid: Status(st) for tid, st in self.states.items() if tid.split("_")[0] in job_ids}

    def final_states(self, task_ids):
        return {}

    def resubmit(self, run, indices, reason):
        self.resubmitted.append((list(indices), reason))
        self.submit(run, indices, reason)

    def submit(self, run, indices, reason="initial"):
        job = str(self.next_job)
        self.next_job += 1
        run.record_submission(job, {i: f"{job}_{i}" for i in indices}, reason)
        for i in indices:
            self.states[f"{job}_{i}"] = JobState.RUNNING

    def cancel(self, ids):
        self.cancelled.extend(ids)
        for tid in ids:
            self.states[tid] = JobState.CANCELLED

    def log_stem(self, task_id):
        return task_id


def make_run(tmp_path, n=2, port=None):
    rd = create_run(tmp_path / "runs", prefix="t", meta={"backend": "slurm", "kind": "map",
                                                            "n_chunks": n, "chunk_sizes": [1] * n})
    run = Run(rd, {i: ChunkState(i, Future(), 1) for i in range(n)}, runstate.read(rd))
    if port is not None:
        port.submit(run, list(range(n)))
        run.set_phase(RunPhase.SUBMITTED)
    return rd, run


def watch(port, run):
    w = Watcher(port)
    w.start()
    w.add(run, port)
    return w


def stop(w):
    w.stop_when_idle()
    w.join(10)
    assert not w.is_alive()


def test_a_cancel_request_cancels_live_tasks_and_futures_never_resubmits(tmp_path):
    port = FakePort(max_retries=2)
    rd, run = make_run(tmp_path, 2, port)
    w = watch(port, run)
    time.sleep(0.2)
    assert not any(f.done() for f in run.futures) and port.polls > 0
    assert runstate.request_cancel(rd) and not runstate.request_cancel(rd)   # once
    for f in run.futures:
        with pytest.raises(CancelledError):
            f.result(timeout=10)
    stop(w)
    assert sorted(port.cancelled) == ["100_0", "100_1"]
    assert port.resubmitted == []
    assert runstate.read(rd)["state"] == "cancelled"


def test_tasks_cancelled_by_hpcpar_cancel_are_not_resubmitted(tmp_path):
    """The issue-9 bug: `hpcpar cancel` scancels the tasks; the watcher then saw CANCELLED
    without results and resubmitted them. With the request in the run folder it does not."""
    port = FakePort(max_retries=2)
    rd, run = make_run(tmp_path, 2, port)
    runstate.request_cancel(rd)                     # what `hpcpar cancel` does first ...
    port.states = dict.fromkeys(port.states, JobState.CANCELLED)   # ... then scancel
    w = watch(port, run)
    for f in run.futures:
        with pytest.raises(CancelledError):
            f.result(timeout=10)
    stop(w)
    assert port.resubmitted == [] and port.cancelled == []           # already final: no command
    assert runstate.read(rd)["state"] == "cancelled"


def test_an_external_cancel_is_recorded_and_raises_not_resubmitted(tmp_path):
    """Issue 13: `scancel JOB_IDX` by hand is a decision; it is recorded, and neither this
    watcher nor a later attach resubmits it. The error names the exit code and the log."""
    from hpcpar import JobLostError

    port = FakePort(max_retries=2)
    rd, run = make_run(tmp_path, 2, port)
    port.states["100_1"] = JobState.CANCELLED       # scancel of one task by hand
    w = watch(port, run)
    with pytest.raises(JobLostError, match=r"CANCELLED .*exit code unknown.*log: .*100_1\.err"):
        run.futures[1].result(timeout=10)
    assert not run.futures[0].done() and port.resubmitted == []
    rec = runstate.read_outcomes(rd)["100_1"]
    assert (rec["index"], rec["state"], rec["cancelled"], rec["observed_by"]) == (1, "CANCELLED", True, "watcher")
    assert rec["logs"] == [str(rd.logs_dir / "100_1.out"), str(rd.logs_dir / "100_1.err")]
    rd.write_result(ChunkResult(chunk=0, n_tasks=1, outcomes=[(True, 7, "")], done=1))
    assert run.futures[0].result(timeout=10).done == 1
    stop(w)
    assert runstate.read(rd)["state"] == "failed"
    assert Run.reopen(rd, lambda t: t.split("_")[0]).cancelled == {1}     # attach honours it


def test_a_deleted_run_folder_fails_the_run_naming_it_and_cancels_its_jobs(tmp_path):
    import shutil

    from hpcpar import RunFolderError

    port = FakePort()
    rd, run = make_run(tmp_path, 2, port)
    w = watch(port, run)
    time.sleep(0.2)
    gone = rd.path.rename(tmp_path / "gone")   # the folder vanishes at once: the watcher may
    shutil.rmtree(gone, ignore_errors=True)      # be writing into it while rmtree walks it
    for f in run.futures:
        with pytest.raises(RunFolderError, match=str(rd.path) + " was deleted"):
            f.result(timeout=10)
    stop(w)
    assert port.cancelled == ["100"] and port.resubmitted == []


def test_a_detached_run_whose_folder_vanished_fails_but_keeps_its_jobs(tmp_path):
    import shutil

    from hpcpar import RunFolderError

    port = FakePort(detach=True)
    rd, run = make_run(tmp_path, 1, port)
    w = watch(port, run)
    time.sleep(0.2)
    gone = rd.path.rename(tmp_path / "gone")   # the folder vanishes at once: the watcher may
    shutil.rmtree(gone, ignore_errors=True)      # be writing into it while rmtree walks it
    with pytest.raises(RunFolderError):
        run.futures[0].result(timeout=10)
    stop(w)
    assert port.cancelled == []


def test_with_resubmit_cancelled_a_cancelled_task_is_retried_then_resolves(tmp_path):
    port = FakePort(max_retries=1)
    rd, run = make_run(tmp_path, 1, port)
    run.resubmit_cancelled = True                   # as attach(run, resubmit_cancelled=True)
    port.states["100_0"] = JobState.CANCELLED       # scancel of one task by hand
    w = watch(port, run)
    deadline = time.monotonic() + 10
    while not port.resubmitted and time.monotonic() < deadline:
        time.sleep(0.02)
    assert port.resubmitted == [([0], "retry")]
    rd.write_result(ChunkResult(chunk=0, n_tasks=1, outcomes=[(True, 7, "")], done=1))
    assert run.futures[0].result(timeout=10).outcomes == [(True, 7, "")]
    stop(w)
    meta = runstate.read(rd)
    assert meta["state"] == "done" and [s["reason"] for s in meta["submissions"]] == ["initial", "retry"]
    assert [s["task_ids"] for s in meta["submissions"]] == [["100_0"], ["101_0"]]
    again = Run.reopen(rd, lambda task_id: task_id.split("_")[0])
    assert (again.chunks[0].task_id, again.chunks[0].attempts, again.chunks[0].retries) == ("101_0", 2, 1)
    assert again.chunks[0].job_id == "101"


def test_a_complete_result_wins_over_a_late_cancel_request(tmp_path):
    port = FakePort()
    rd, run = make_run(tmp_path, 1, port)
    rd.write_result(ChunkResult(chunk=0, n_tasks=1, outcomes=[(True, 1, "")], done=1))
    runstate.request_cancel(rd)
    w = watch(port, run)
    assert run.futures[0].result(timeout=10).done == 1
    stop(w)
    assert runstate.read(rd)["state"] == "done" and port.cancelled == []


def test_the_watcher_holds_its_owner_weakly(tmp_path):
    """As CPython's _ExecutorManagerThread: an owner dropped without shutdown ends the thread
    once no run is live; a live run keeps its port, so its futures still resolve."""
    port = FakePort()
    w = Watcher(port)
    w.start()
    del port
    gc.collect()
    w.join(10)
    assert not w.is_alive()

    port = FakePort()
    rd, run = make_run(tmp_path, 1, port)
    w = watch(port, run)
    del port
    gc.collect()
    time.sleep(0.2)
    assert w.is_alive()                             # the run is live: keep watching
    rd.write_result(ChunkResult(chunk=0, n_tasks=1, outcomes=[(True, 3, "")], done=1))
    assert run.futures[0].result(timeout=10).done == 1
    w.join(10)
    assert not w.is_alive()                         # owner gone, nothing live: the thread ends


def test_the_watcher_imports_nothing_from_backends():
    """Nor do the policy and the run state (every import statement, top level or inside a
    function; `import hpcpar` itself loads the executor, which is above them)."""
    import ast

    import hpcpar

    root = Path(hpcpar.__file__).parent
    for name in ("watcher.py", "policy.py", "runstate.py"):
        tree = ast.parse((root / name).read_text())
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert imported and not [m for m in imported if "backends" in m or m == "executor"], name


def test_run_json_has_one_writer(tmp_path):
    """Only hpcpar.runstate writes run.json; RunDir has no writer of it any more."""
    import hpcpar

    assert not hasattr(RunDir, "update_meta") and not hasattr(RunDir, "write_meta")
    src = {p.name: p.read_text() for p in Path(hpcpar.__file__).parent.rglob("*.py")}
    writers = sorted(name for name, text in src.items() if "meta_path" in text and "atomic_write(" in text
                     and "atomic_write(rd.meta_path" in text.replace("self.rd", "rd"))
    assert writers == ["runstate.py"]


def test_run_phases_are_typed_and_settle_from_the_futures(tmp_path):
    rd, run = make_run(tmp_path, 2)
    assert run.settle() is RunPhase.RUNNING
    for c in run.chunks.values():
        run.unfinished.pop(c.index)
    run.chunks[0].future.set_result(None)
    run.cancel_chunk(run.chunks[1])
    assert run.settle() is RunPhase.CANCELLED
    assert json.loads(rd.meta_path.read_text())["state"] == "cancelled"
    assert RunPhase("submit-failed").finished and not RunPhase.RUNNING.finished


def test_concurrent_writers_in_one_driver_do_not_lose_updates(tmp_path):
    """The watcher thread and the main thread both change the record: each write is the whole
    in-memory record, so nothing written by one is undone by the other (no read-modify-write)."""
    rd, run = make_run(tmp_path, 40)

    def submit(indices):
        for i in indices:
            run.record_submission(f"{i}", {i: f"{i}_0"}, "initial")
            run.save()

    threads = [threading.Thread(target=submit, args=(range(k, 40, 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.save()
    assert sorted(int(s["job_id"]) for s in runstate.read(rd)["submissions"]) == list(range(40))


def test_an_unreadable_run_folder_fails_the_run_naming_what_is_missing(tmp_path):
    import shutil

    from hpcpar import RunFolderError

    port = FakePort()
    rd, run = make_run(tmp_path, 1, port)
    w = watch(port, run)
    time.sleep(0.2)
    shutil.rmtree(rd.results_dir)
    with pytest.raises(RunFolderError, match=f"run folder {rd.path} cannot be read .*results"):
        run.futures[0].result(timeout=10)
    stop(w)
    assert port.cancelled == ["100"]
