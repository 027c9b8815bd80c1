"""`hpcpar cancel`, `runs`, `status` and `script pbs` bugs of issue 9, each reproduced offline.

Scheduler commands are small shell scripts on PATH that record how they were called, so a
test can also say that a command was NOT run.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

import hpcpar
from hpcpar import runstate
from hpcpar.cli import main
from hpcpar.rundir import RunDir
from hpcpar.runstate import ChunkState, Run, RunPhase, create_run

RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >> "$FAKE_CALLS"\n'


def fake_bin(tmp_path: Path, monkeypatch, **scripts: str) -> Path:
    """A PATH holding only these fake commands (plus the interpreter's folder and /bin)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls"))
    return bin_dir


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def recorded_run(root: Path, phase: RunPhase, created: float | None = None, prefix="fit") -> RunDir:
    meta = {"backend": "slurm", "kind": "map", "job_name": prefix, "n_chunks": 2, "chunk_sizes": [1, 1]}
    if created is not None:
        meta["created"] = created
    rd = create_run(root, prefix=prefix, meta=meta)
    run = Run(rd, {i: ChunkState(i, Future(), 1) for i in range(2)}, runstate.read(rd))
    run.record_submission("4242", {0: "4242_0", 1: "4242_1"}, "initial")
    run.set_phase(phase)
    return rd


def test_cancel_of_a_finished_run_leaves_it_done(tmp_path, monkeypatch, capsys):
    fake_bin(tmp_path, monkeypatch, scancel=RECORDER, squeue=RECORDER)
    rd = recorded_run(tmp_path / "runs", RunPhase.DONE)
    before = rd.meta_path.read_bytes()
    assert main(["cancel", str(rd.path)]) == 0
    out = capsys.readouterr().out
    assert "already finished (done)" in out
    assert rd.meta_path.read_bytes() == before and not rd.cancel_request_path.exists()
    assert calls(tmp_path) == []                                    # no scancel
    assert main(["status", str(rd.path)]) == 0
    assert "state    done" in capsys.readouterr().out


def test_cancel_of_a_live_run_asks_through_the_run_folder(tmp_path, monkeypatch, capsys):
    """run.json stays as its driver wrote it; the request is a file; the jobs are cancelled
    here too (the driver may be gone); `hpcpar status` and `runs` say cancelled."""
    fake_bin(tmp_path, monkeypatch, scancel=RECORDER, squeue=RECORDER)
    rd = recorded_run(tmp_path / "runs", RunPhase.RUNNING)
    before = rd.meta_path.read_bytes()
    assert main(["cancel", str(rd.path)]) == 0
    assert "cancelled job(s) 4242" in capsys.readouterr().out
    assert rd.meta_path.read_bytes() == before
    assert rd.cancel_request_path.is_file()
    assert calls(tmp_path) == ["scancel 4242"]
    assert main(["status", str(rd.path)]) == 0
    out = capsys.readouterr().out
    assert "state    cancelled" in out and calls(tmp_path) == ["scancel 4242"]   # no squeue
    assert main(["runs", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert " cancelled " in capsys.readouterr().out


def test_runs_are_listed_in_time_order(tmp_path, capsys):
    """By creation time, not by when run.json last changed (a long run's changes last)."""
    root = tmp_path / "runs"
    t = time.time()
    old = recorded_run(root, RunPhase.RUNNING, created=t - 3600, prefix="old")
    new = recorded_run(root, RunPhase.DONE, created=t - 60, prefix="new")
    mid = recorded_run(root, RunPhase.DONE, created=t - 600, prefix="mid")
    os.utime(old.meta_path, (t, t))                  # the oldest run's run.json changed last
    os.utime(new.meta_path, (t - 7200, t - 7200))
    assert main(["runs", "--runs-dir", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[0] for line in lines] == [old.run_id, mid.run_id, new.run_id]


def test_runs_into_a_closed_pipe_ends_quietly(tmp_path):
    """`hpcpar runs | head` must not end in BrokenPipeError: the reader is gone before
    hpcpar writes (deterministic: our end of the pipe is closed at once)."""
    root = tmp_path / "runs"
    for k in range(3):
        recorded_run(root, RunPhase.DONE, prefix=f"r{k}")
    proc = subprocess.Popen([sys.executable, "-m", "hpcpar", "runs", "--runs-dir", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "BrokenPipeError" not in err and "Traceback" not in err and err == ""
    assert proc.returncode == 1


def test_script_pbs_dialect_pro_runs_no_scheduler_command(tmp_path, monkeypatch, capsys):
    """A dry run executes nothing: with --dialect pro, `qstat --version` is not run. The script
    is the same as on a PATH without qstat."""
    argv = ["script", "pbs", "--dialect", "pro", "--job-name", "x"]
    command = ["--", "python", "train.py"]
    fake_bin(tmp_path, monkeypatch)                                  # no qstat at all
    assert main([*argv, *command]) == 0
    without_qstat = capsys.readouterr().out
    fake_bin(tmp_path, monkeypatch, qstat=RECORDER + "echo 'pbs_version = 2022.1.3'\n",
             qsub=RECORDER, qdel=RECORDER)
    assert main([*argv, "--print-command", *command]) == 0
    out = capsys.readouterr()
    assert calls(tmp_path) == []
    assert out.out == without_qstat and "#PBS -N x" in out.out and "qsub" in out.err


def test_a_failing_status_command_is_a_status_error(tmp_path, monkeypatch):
    fake_bin(tmp_path, monkeypatch, squeue="#!/bin/sh\necho 'slurm_load_jobs error: Socket timed out' >&2\nexit 1\n")
    backend = hpcpar.Executor("slurm")._backend
    with pytest.raises(hpcpar.StatusError) as err:
        backend.poll(["4242"])
    assert not isinstance(err.value, hpcpar.SubmissionError)
    assert err.value.returncode == 1 and "Socket timed out" in err.value.stderr
    assert "Socket timed out" in str(err.value) and err.value.argv[0] == "squeue"


def test_a_status_command_saying_the_jobs_are_gone_is_no_error(tmp_path, monkeypatch):
    fake_bin(tmp_path, monkeypatch, squeue="#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n")
    assert hpcpar.Executor("slurm")._backend.poll(["4242"]) == {}


def test_a_submit_output_without_a_job_id_is_not_reported_as_its_stderr(tmp_path, monkeypatch, capsys):
    """sbatch exited 0 but printed no job id: the error says so, keeps the real (empty) stderr
    and the output it could not read."""
    fake_bin(tmp_path, monkeypatch, sbatch="#!/bin/sh\necho 'Submitted to the moon'\n",
             squeue=RECORDER, scancel=RECORDER, scontrol="#!/bin/sh\n", sinfo="#!/bin/sh\n")
    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(hpcpar.SubmissionError) as err, hpcpar.Executor("slurm") as ex:
        ex.map(abs, [-1])
    e = err.value
    assert e.returncode == 0 and e.stderr == "" and e.stdout.strip() == "Submitted to the moon"
    assert "no job id" in str(e) and "Submitted to the moon" in str(e)
    assert main(["submit", "slurm", "--", "true"]) == 2
    cli_err = capsys.readouterr().err
    assert "exited with code 0, but its output has no job id" in cli_err
    runs = [RunDir(p) for p in (tmp_path / "runs").iterdir()]
    assert {runstate.read(rd)["state"] for rd in runs} == {"submit-failed"}
