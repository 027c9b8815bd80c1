"""LSF backend through the LSF command EMULATOR over the real SLURM (tests/emulators/lsf).

The emulator is not IBM LSF: it translates ``bsub``/``bjobs``/``bkill`` to SLURM. It proves
the backend's command lines, stdin submission, array indices and status loop end to end; the
parsers' fidelity to real LSF comes from tests/test_spec_lsf.py on documented output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import need, slurm_ready

import hpcpar

pytestmark = pytest.mark.lsf
EMULATOR = Path(__file__).parent / "emulators" / "lsf"


@pytest.fixture
def lsf(monkeypatch):
    ok, why = slurm_ready()
    need("lsf", ok, why)
    monkeypatch.setenv("PATH", f"{EMULATOR}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LSF_UNIT_FOR_LIMITS", "MB")        # the site setting mem_unit must match
    return True


def cube(x):
    return x ** 3


def test_map_of_20_tasks(lsf, runs_dir):
    with hpcpar.Executor("lsf", queue="debug", runs_dir=str(runs_dir), chunksize=2, mem="200M",
                         walltime="0:10:00", poll_interval_s=0.5, max_poll_interval_s=2.0) as ex:
        assert list(ex.map(cube, range(20))) == [x ** 3 for x in range(20)]
    (run,) = list(runs_dir.glob("*/run.json"))
    outs = sorted(p.name for p in (run.parent / "logs").glob("*.out"))
    (sub,) = json.loads(run.read_text())["submissions"]         # pulling workers, at most 10
    n = len(sub["workers"])                # workers still pending at the end are cancelled
    assert 1 <= n <= 10 and 1 <= len(outs) <= n                  # one log per worker that ran
    assert all(name.split("_")[1] in {f"{i}.out" for i in range(1, n + 1)} for name in outs)


def test_task_error_keeps_traceback(lsf, runs_dir):
    def boom(x):
        raise KeyError(f"missing {x}")

    with hpcpar.Executor("lsf", queue="debug", runs_dir=str(runs_dir), poll_interval_s=0.5) as ex, \
            pytest.raises(KeyError, match="missing 7") as err:
        ex.submit(boom, 7).result(timeout=120)
    assert "in boom" in str(err.value.__cause__)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "hpcpar", *args], check=False, capture_output=True, text=True,
                          timeout=120)


def test_cli_script_and_submit(lsf, runs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(runs_dir))
    script = run_cli("script", "lsf", "--cpus-per-task", "2", "--mem", "1GB", "--walltime", "75min",
                     "--", "echo", "hi")
    assert script.returncode == 0, script.stderr
    for line in ("#BSUB -n 2", "#BSUB -M 1024", "#BSUB -W 1:15", "exec echo hi"):
        assert line in script.stdout.splitlines(), line
    out = tmp_path / "out"
    out.mkdir()
    commands = tmp_path / "commands.txt"
    commands.write_text("".join(f"echo line-{i} > {out}/{i}.txt\n" for i in range(3)))
    sub = run_cli("submit", "lsf", "--queue", "debug", "--walltime", "0:05:00", "--array-file", str(commands))
    assert sub.returncode == 0 and "submitted job" in sub.stdout, sub.stdout + sub.stderr
    deadline = time.monotonic() + 120
    while len(list(out.iterdir())) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sorted(p.read_text().strip() for p in out.iterdir()) == ["line-0", "line-1", "line-2"]
