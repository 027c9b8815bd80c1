"""The run folder and worker contract, exercised with the worker as a real subprocess."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from hpcpar.rundir import ChunkResult, CorruptFileError, RunDir, driver_python_path, seal, unseal
from hpcpar.runstate import create_run
from hpcpar.serialize import dumps
from hpcpar.worker import EXIT_BAD_INPUT, EXIT_OK, EXIT_STOPPED


def divide(a, b):
    return a / b


def slow(x, marker_dir):
    with open(os.path.join(marker_dir, f"ran-{x}"), "a") as fh:
        fh.write("x\n")
    time.sleep(0.4)
    return x * 10


def make_run(root, fn, chunks, mode="map", reducer=None) -> RunDir:
    rd = create_run(root, prefix="test", meta={"mode": mode, "n_chunks": len(chunks),
                                                          "python_path": driver_python_path()})
    rd.write_function(dumps({"fn": fn, "mode": mode, "reducer": reducer}))
    for i, tasks in enumerate(chunks):
        rd.write_chunk(i, dumps([(args, {}) for args in tasks]))
    return rd


def worker(rd: RunDir, *args, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpcpar.worker", str(rd.path), *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}, **kw)


def test_run_folder_layout_is_private(tmp_path):
    rd = make_run(tmp_path / "runs", divide, [[(1, 2)]])
    for p in (tmp_path / "runs", rd.path, rd.chunks_dir, rd.results_dir, rd.logs_dir):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    assert stat.S_IMODE(rd.chunk_path(0).stat().st_mode) == 0o600
    assert rd.read_meta()["run_id"] == rd.run_id
    assert sorted(p.name for p in rd.path.iterdir()) == ["chunks", "function.pkl", "logs", "results", "run.json"]


def test_worker_runs_chunk_from_argument_and_from_array_variable(tmp_path):
    rd = make_run(tmp_path, divide, [[(1, 2), (3, 4)], [(10, 5)]])
    proc = worker(rd, "--chunk", "0")
    assert proc.returncode == EXIT_OK, proc.stderr
    res = rd.read_result(0)
    assert res.complete and [o[1] for o in res.outcomes] == [0.5, 0.75] and res.attempts == 1
    proc = worker(rd, "--index-var", "SGE_TASK_ID", "--index-base", "1", env={"SGE_TASK_ID": "2"})
    assert proc.returncode == EXIT_OK, proc.stderr
    assert rd.read_result(1).outcomes == [(True, 2.0, "")]
    proc = worker(rd, "--index-var", "SLURM_ARRAY_TASK_ID", env={"SLURM_ARRAY_TASK_ID": "0",
                                                                 "HPCPAR_INDEX_OFFSET": "1"})
    assert proc.returncode == EXIT_OK and "already complete" in proc.stderr
    proc = worker(rd, "--index-var", "NOPE")
    assert proc.returncode != 0 and "NOPE" in proc.stderr


def test_task_that_raises_is_recorded_with_traceback(tmp_path):
    rd = make_run(tmp_path, divide, [[(1, 0), (4, 2)]])
    assert worker(rd, "--chunk", "0").returncode == EXIT_OK
    res = rd.read_result(0)
    (ok0, exc, tb), (ok1, value, _) = res.outcomes
    assert not ok0 and isinstance(exc, ZeroDivisionError) and "in divide" in tb and "return a / b" in tb
    assert ok1 and value == 2.0


def test_unpicklable_exception_becomes_task_error(tmp_path):
    def raise_weird(x):
        class Local(Exception):
            pass
        raise Local(f"weird {x}")

    rd = make_run(tmp_path, raise_weird, [[(1,)]])
    assert worker(rd, "--chunk", "0").returncode == EXIT_OK
    ok, exc, tb = rd.read_result(0).outcomes[0]
    from hpcpar import TaskError
    assert not ok and isinstance(exc, TaskError) and "Local: weird 1" in str(exc) and "raise Local" in tb


def test_truncated_results_file_is_detected_and_rerun(tmp_path):
    rd = make_run(tmp_path, divide, [[(1, 2)]])
    assert worker(rd, "--chunk", "0").returncode == EXIT_OK
    blob = rd.result_path(0).read_bytes()
    rd.result_path(0).write_bytes(blob[: len(blob) - 7])
    with pytest.raises(CorruptFileError, match="truncated"):
        rd.read_result(0)
    proc = worker(rd, "--chunk", "0")
    assert (proc.returncode == EXIT_OK and "SHA-256" in proc.stderr) or "truncated" in proc.stderr
    assert rd.read_result(0).outcomes == [(True, 0.5, "")]
    assert any(p.name.startswith("000000.pkl.corrupt-") for p in rd.results_dir.iterdir())


def test_seal_detects_every_kind_of_damage():
    blob = seal(b"payload")
    assert unseal(blob) == b"payload"
    for bad in (blob[:-1], blob + b"x", blob[:5], blob.replace(b"payload", b"paYload"), b""):
        with pytest.raises(CorruptFileError):
            unseal(bad)


def test_unreadable_chunk_exits_with_bad_input(tmp_path):
    rd = make_run(tmp_path, divide, [[(1, 2)]])
    rd.chunk_path(0).write_bytes(b"garbage")
    proc = worker(rd, "--chunk", "0")
    assert proc.returncode == EXIT_BAD_INPUT and "cannot read chunk 0" in proc.stderr
    assert rd.read_result(0) is None


def test_sigusr2_saves_partial_results_and_next_attempt_resumes(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    rd = make_run(tmp_path / "runs", slow, [[(i, str(markers)) for i in range(8)]])
    proc = subprocess.Popen([sys.executable, "-m", "hpcpar.worker", str(rd.path), "--chunk", "0"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while len(list(markers.iterdir())) < 3 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR2)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_STOPPED, err
    partial = rd.read_result(0)
    assert not partial.complete and partial.stopped_by == "SIGUSR2" and 2 <= partial.done < 8
    done_first = partial.done
    assert worker(rd, "--chunk", "0").returncode == EXIT_OK
    res = rd.read_result(0)
    assert res.complete and [o[1] for o in res.outcomes] == [i * 10 for i in range(8)] and res.attempts == 2
    # tasks finished before the signal ran exactly once; only the interrupted one may have run twice
    counts = {p.name: len(p.read_text().split()) for p in markers.iterdir()}
    assert all(counts[f"ran-{i}"] == 1 for i in range(done_first))
    assert sum(counts.values()) <= 9


def test_reduce_mode_reduces_inside_the_chunk(tmp_path):
    import operator
    rd = make_run(tmp_path, abs, [[(-1,), (-2,), (-3,)]], mode="reduce", reducer=operator.add)
    assert worker(rd, "--chunk", "0").returncode == EXIT_OK
    res = rd.read_result(0)
    assert res.outcomes == [(True, 6, "")] and res.done == 3 and isinstance(res, ChunkResult)


def test_walltime_warning_in_checkpoint_mode_saves_and_goes_on(tmp_path):
    """SLURM mode: SIGUSR2 saves at once and the worker goes on; SIGTERM (the limit) stops it."""
    markers = tmp_path / "markers"
    markers.mkdir()
    rd = make_run(tmp_path / "runs", slow, [[(i, str(markers)) for i in range(8)]])
    argv = [sys.executable, "-m", "hpcpar.worker", str(rd.path), "--chunk", "0", "--on-warning", "checkpoint",
            "--checkpoint-s", "1000"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    assert _wait(lambda: len(list(markers.iterdir())) >= 3)
    proc.send_signal(signal.SIGUSR2)
    assert _wait(lambda: rd.result_path(0).exists(), timeout=10)      # saved at once...
    saved = rd.read_result(0)
    assert saved.warned and not saved.complete and saved.stopped_by is None
    assert _wait(lambda: len(list(markers.iterdir())) >= 6)           # ...and it went on
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_STOPPED, err
    partial = rd.read_result(0)
    assert partial.warned and partial.stopped_by == "SIGTERM" and partial.done > saved.done
    # with the warning, every finished task was saved as it finished
    assert partial.done == len([p for p in markers.iterdir() if p.name.startswith("ran-")]) - 1


def test_walltime_warning_that_lets_the_chunk_finish(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    rd = make_run(tmp_path / "runs", slow, [[(i, str(markers)) for i in range(4)]])
    proc = subprocess.Popen([sys.executable, "-m", "hpcpar.worker", str(rd.path), "--chunk", "0",
                             "--on-warning", "checkpoint"], stderr=subprocess.PIPE, text=True)
    assert _wait(lambda: len(list(markers.iterdir())) >= 1)
    proc.send_signal(signal.SIGUSR2)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_OK, err
    res = rd.read_result(0)
    assert res.complete and res.warned and [o[1] for o in res.outcomes] == [0, 10, 20, 30]


def _wait(pred, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False
