"""Issue 13 on the real SLURM: pending reasons (Must show 2), checks before submission
against the real ``sinfo`` (Must show 5), thread variables in a 1-CPU array task (Must show 6).

Only the thread test runs a job (one array task of 1 CPU); the reason test holds its jobs with
``--begin=now+2hours`` and cancels them; the checks submit nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import hpcpar
from hpcpar import ConfigError
from hpcpar.runs import resolve_run

pytestmark = pytest.mark.slurm

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LOKY_MAX_CPU_COUNT")


@pytest.fixture(autouse=True)
def _need_slurm(slurm):
    return slurm


def square(x):
    return x * x


def thread_env(_):
    return {v: os.environ.get(v) for v in THREAD_VARS}


def squeue(job_ids: list[str]) -> str:
    return subprocess.run(["squeue", "--noheader", f"--jobs={','.join(job_ids)}"],
                          capture_output=True, text=True, timeout=60, check=False).stdout


def test_begin_time_shows_in_status_and_timeout_error(runs_dir):
    """Must show 2: ``--begin=now+2hours``: ``hpcpar status`` and the map's TimeoutError both
    say BeginTime."""
    with hpcpar.Executor("slurm", runs_dir=str(runs_dir), poll_interval_s=0.5,
                         max_poll_interval_s=2, walltime=60,
                         extra_directives=["--begin=now+2hours"]) as ex:
        fut = ex.submit(square, 3)
        with pytest.raises(TimeoutError):
            fut.result(timeout=5)
        run_id = next(runs_dir.iterdir()).name
        status = subprocess.run(
            [sys.executable, "-m", "hpcpar", "status", run_id, "--runs-dir", str(runs_dir)],
            capture_output=True, text=True, timeout=120, check=True).stdout
        print(status)
        assert "PENDING (BeginTime): 1" in status
        fut.cancel()
        it = ex.map(square, range(2), timeout=8)
        with pytest.raises(TimeoutError) as err:
            list(it)
        print(err.value)
        assert "BeginTime" in str(err.value) and "unfinished after 8 s" in str(err.value)
        jobs = [s["job_id"] for rd in runs_dir.iterdir()
                for s in resolve_run(rd.name, runs_dir).read_meta()["submissions"]]
    assert jobs and not squeue(jobs).strip()          # the abandoned map cancelled its jobs


@pytest.mark.parametrize("kwargs,field", [
    ({"nodes": 2}, "nodes=2"), ({"cpus_per_task": 64}, "cpus_per_task=64"),
    ({"mem": "100GB"}, "mem=100.0 GiB"), ({"workdir": "/nonexistent/hpcpar"}, "workdir=")])
def test_checks_against_sinfo_before_anything(runs_dir, kwargs, field):
    """Must show 5 on SLURM: refused before anything is written, naming the field."""
    with hpcpar.Executor("slurm", runs_dir=str(runs_dir), **kwargs) as ex:
        with pytest.raises(ConfigError) as err:
            ex.map(square, range(2))
    print(err.value)
    assert field in str(err.value)
    assert not any(runs_dir.iterdir())


def test_one_cpu_array_task_sees_thread_vars(runs_dir, monkeypatch):
    """Must show 6 on SLURM: a 1-CPU array task sees the four variables set to 1."""
    for v in THREAD_VARS:
        monkeypatch.delenv(v, raising=False)       # sbatch exports the driver's environment
    with hpcpar.Executor("slurm", runs_dir=str(runs_dir), cpus_per_task=1, walltime=120,
                         poll_interval_s=0.5, max_poll_interval_s=2) as ex:
        got = list(ex.map(thread_env, [0], timeout=600))
    print(got)
    assert got == [dict.fromkeys(THREAD_VARS, "1")]
