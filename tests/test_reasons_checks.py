"""Issue 13, offline: pending reasons (the fake scheduler's hold), reasons that cannot resolve,
checks before submission, and the thread variables each task sees.

The fake scheduler (tests/fakesched) reports a hold's reason as its pending reason, and a queue
of one node (8 CPUs, 4096 MB unless ``set_queue``), as SLURM's squeue ``%r`` and sinfo do.
Each check before submission must refuse before anything is written: no run folder, and no
job at the fake scheduler.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import hpcpar
from hpcpar import ConfigError, PendingBlockedError

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LOKY_MAX_CPU_COUNT")


def fast(runs_dir, **kw):
    kw.setdefault("poll_interval_s", 0.1)
    kw.setdefault("max_poll_interval_s", 0.3)
    return hpcpar.Executor("fake", runs_dir=str(runs_dir), **kw)


def square(x):
    return x * x


def thread_env(_):
    return {v: os.environ.get(v) for v in THREAD_VARS}


def nothing_written(runs: Path, fake) -> None:
    assert not runs.exists() or not any(runs.iterdir()), "a run folder was written"
    assert not (fake.root / "jobs").exists() or not any((fake.root / "jobs").iterdir()), \
        "a job was submitted"


# -- pending reasons --------------------------------------------------------------------------
def test_timeout_error_names_the_pending_reason(fake, tmp_path):
    fake.hold("BeginTime")
    with fast(tmp_path / "runs") as ex:
        it = ex.map(square, range(2), timeout=3)
        with pytest.raises(TimeoutError) as err:
            list(it)
    msg = str(err.value)
    assert "BeginTime" in msg and "PENDING" in msg and "unfinished after 3 s" in msg
    assert not list((fake.root / "tasks").glob("*")) or all(
        '"RUNNING"' not in p.read_text() for p in (fake.root / "tasks").glob("*"))


def test_progress_bar_shows_the_pending_reason(fake, tmp_path, capsys):
    fake.hold("QOSMaxJobsPerUserLimit")
    with fast(tmp_path / "runs", progress=True) as ex:
        with pytest.raises(TimeoutError):
            list(ex.map(square, range(2), timeout=5))
    assert "QOSMaxJobsPerUserLimit" in capsys.readouterr().err


def test_the_reason_goes_and_the_map_finishes_after_release(fake, tmp_path):
    fake.hold("Priority")
    with fast(tmp_path / "runs") as ex:
        futs = [ex.submit(square, 3)]
        with pytest.raises(TimeoutError):
            futs[0].result(timeout=1)
        fake.release()
        assert futs[0].result(timeout=60) == 9


def test_hpcpar_status_shows_the_pending_reason(fake, tmp_path):
    fake.hold("BeginTime")
    runs = tmp_path / "runs"
    with fast(runs) as ex:
        fut = ex.submit(square, 2)
        with pytest.raises(TimeoutError):
            fut.result(timeout=1)
        run_id = next(runs.iterdir()).name
        out = _run_cli_status(run_id, runs)
        fake.release()
        assert fut.result(timeout=60) == 4
    assert "tasks    PENDING (BeginTime): " in out, out


def _run_cli_status(run_id: str, runs: Path) -> str:
    import contextlib
    import io

    from hpcpar.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["status", run_id, "--runs-dir", str(runs)])
    return buf.getvalue()


def test_a_reason_that_cannot_resolve_fails_and_cancels(fake, tmp_path):
    fake.hold("PartitionConfig")
    with fast(tmp_path / "runs", blocked_grace_s=0.5) as ex:
        futs = [ex.submit(square, i) for i in range(2)]
        for f in futs:
            with pytest.raises(PendingBlockedError) as err:
                f.result(timeout=60)
            assert "PartitionConfig" in str(err.value) and "blocked_grace_s" in str(err.value)
    states = [p.read_text() for p in (fake.root / "tasks").glob("*")]
    assert states and all('"CANCELLED"' in s for s in states), states


def test_a_transient_reason_never_fails(fake, tmp_path):
    fake.hold("Resources")
    with fast(tmp_path / "runs", blocked_grace_s=0.2) as ex:
        f = ex.submit(square, 4)
        with pytest.raises(TimeoutError):
            f.result(timeout=2)           # still waiting, not failed
        fake.release()
        assert f.result(timeout=60) == 16


# -- checks before submission (issue 13, Must show 5) -------------------------------------------
@pytest.mark.parametrize("kwargs,field", [
    ({"nodes": 2}, "nodes=2"),
    ({"cpus_per_task": 64}, "cpus_per_task=64"),
    ({"mem": "100GB"}, "mem=100.0 GiB"),
])
def test_resources_over_the_queue_are_refused_before_anything(fake, tmp_path, kwargs, field):
    fake.set_queue(nodes=1, cpus_per_node=2, mem_mb=4096)
    runs = tmp_path / "runs"
    with fast(runs, **kwargs) as ex, pytest.raises(ConfigError) as err:
        list(ex.map(square, range(2)))
    assert field in str(err.value)
    if "nodes" in kwargs:
        assert "has 1 node" in str(err.value)
    else:
        assert "queue 'fake'" in str(err.value)
    nothing_written(runs, fake)


def test_missing_workdir_is_refused_before_anything(fake, tmp_path):
    runs = tmp_path / "runs"
    with fast(runs, workdir=str(tmp_path / "nowhere")) as ex, pytest.raises(ConfigError) as err:
        list(ex.map(square, range(2)))
    assert "workdir=" in str(err.value) and "nowhere" in str(err.value)
    nothing_written(runs, fake)


def test_a_regular_file_as_HPCPAR_RUNS_DIR_is_refused(fake, tmp_path, monkeypatch):
    bad = tmp_path / "afile"
    bad.write_text("not a folder")
    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(bad))
    with hpcpar.Executor("fake") as ex, pytest.raises(ConfigError) as err:
        list(ex.map(square, range(2)))
    assert "HPCPAR_RUNS_DIR=" in str(err.value) and "not a folder" in str(err.value)
    assert bad.read_text() == "not a folder"
    nothing_written(tmp_path / "none", fake)


def test_runs_dir_under_a_file_or_unwritable_names_runs_dir(fake, tmp_path):
    bad = tmp_path / "afile"
    bad.write_text("x")
    with fast(bad / "runs") as ex, pytest.raises(ConfigError) as err:
        list(ex.map(square, range(2)))
    assert "runs_dir=" in str(err.value) and "cannot make the runs folder" in str(err.value)
    if os.geteuid() != 0:                      # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with fast(ro) as ex, pytest.raises(ConfigError, match="runs_dir=.*not writable"):
            list(ex.map(square, range(2)))


def test_blank_array_file_line_is_refused_before_anything(fake, tmp_path):
    cmds = tmp_path / "cmds.txt"
    cmds.write_text("echo a\n\necho c\n")
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-c", (
        "import sys, fakesched, hpcpar.cli; fakesched.register(sys.argv[1]); "
        "sys.exit(hpcpar.cli.main(sys.argv[2:]))"), str(fake.root), "submit", "fake",
        "--array-file", str(cmds)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent), "HPCPAR_RUNS_DIR": str(runs)})
    assert proc.returncode != 0
    assert "--array-file" in proc.stderr and "blank line" in proc.stderr and "line 2" in proc.stderr
    nothing_written(runs, fake)


# -- threads inside tasks (issue 13, Must show 6, local and the fake's job script) ----------------
def test_local_task_sees_thread_vars(monkeypatch):
    for v in THREAD_VARS:
        monkeypatch.delenv(v, raising=False)
    with hpcpar.Executor("local", max_workers=1, cpus_per_task=1) as ex:
        assert list(ex.map(thread_env, [0])) == [dict.fromkeys(THREAD_VARS, "1")]


def test_array_task_sees_thread_vars_unless_set(fake, tmp_path, monkeypatch):
    for v in THREAD_VARS:
        monkeypatch.delenv(v, raising=False)
    with fast(tmp_path / "runs", cpus_per_task=1) as ex:
        assert list(ex.map(thread_env, [0])) == [dict.fromkeys(THREAD_VARS, "1")]
    with fast(tmp_path / "runs", cpus_per_task=1, setup=["export MKL_NUM_THREADS=3"]) as ex:
        got = next(ex.map(thread_env, [0]))
    assert got["MKL_NUM_THREADS"] == "3" and got["OMP_NUM_THREADS"] == "1"
