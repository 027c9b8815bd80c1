"""PBS backend, Torque dialect, through Debian's slurm-wlm-torque wrappers over the real SLURM.

The wrappers' ``qsub`` submits (``-t`` arrays, ``#PBS`` lines read by sbatch); they have no
``qstat -x``/``-t`` nor element-level ``qdel``, so hpcpar ships no support for them: these tests
register tests/torque_shim.py (polls and cancels with the SLURM commands under the wrappers,
tests/data/torque/README.md) through :func:`hpcpar.register_scheduler`, as a plugin would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
import torque_shim
from conftest import need, slurm_ready
from torque_shim import TorqueSlurmShimSpec

import hpcpar
from hpcpar.backends import create

pytestmark = pytest.mark.torque


@pytest.fixture(scope="module")
def torque():
    ok, why = slurm_ready()
    if ok and shutil.which("qsub") is None:
        ok, why = False, "no qsub on PATH (apt-get install slurm-wlm-torque)"
    need("torque", ok, why)
    torque_shim.register()                  # a test scheduler, as a plugin would add one
    yield True
    torque_shim.unregister()


def cube(x):
    return x ** 3


def test_map_of_20_tasks(torque, runs_dir):
    with hpcpar.Executor("pbs", dialect="torque", queue="debug", runs_dir=str(runs_dir), chunksize=2,
                         walltime="0:10:00", poll_interval_s=0.5, max_poll_interval_s=2.0) as ex:
        assert list(ex.map(cube, range(20))) == [x ** 3 for x in range(20)]
    (run,) = list(runs_dir.glob("*/run.json"))
    logs = sorted(p.name for p in (run.parent / "logs").iterdir())
    (sub,) = json.loads(run.read_text())["submissions"]         # pulling workers, at most 10
    assert 1 <= len(sub["workers"]) <= 10      # workers still pending at the end are cancelled
    assert 1 <= len([n for n in logs if n.endswith(".out")]) <= len(sub["workers"])


def test_dialect_is_detected_as_the_shim(torque, caplog):
    from hpcpar.config import resolve

    backend = create(*resolve("pbs", None, {}))
    assert isinstance(backend.spec, TorqueSlurmShimSpec) and backend.spec.dialect == "torque"
    assert backend.array_index_var == "PBS_ARRAYID"
    torque_shim.unregister()                # the shipped spec finds Torque, and says it cannot follow it
    try:
        backend = create(*resolve("pbs", None, {}))
        assert type(backend.spec).__name__ == "TorqueSpec"
        assert "slurm-wlm-torque wrapper" in caplog.text
    finally:
        torque_shim.register()


def run_cli(*args, env=None):
    """``hpcpar ARGS`` with the shim registered (tests/torque_shim.py runs the CLI's main)."""
    return subprocess.run([sys.executable, torque_shim.__file__, *args], check=False, capture_output=True,
                          text=True, timeout=120, env=env)


def test_cli_script_and_submit(torque, runs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(runs_dir))
    script = run_cli("script", "pbs", "--dialect", "torque", "--cpus-per-task", "2", "--mem", "200M",
                     "--", "echo", "hi")
    assert script.returncode == 0, script.stderr
    assert "#PBS -l nodes=1:ppn=2" in script.stdout and "#PBS -l mem=200mb" in script.stdout
    out = tmp_path / "out"
    out.mkdir()
    commands = tmp_path / "commands.txt"
    commands.write_text("".join(f"echo line-{i} > {out}/{i}.txt\n" for i in range(3)))
    sub = run_cli("submit", "pbs", "--dialect", "torque", "--queue", "debug", "--walltime", "0:05:00",
                  "--array-file", str(commands))
    assert sub.returncode == 0 and "submitted job" in sub.stdout, sub.stdout + sub.stderr
    deadline = time.monotonic() + 120
    while len(list(out.iterdir())) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sorted(p.read_text().strip() for p in out.iterdir()) == ["line-0", "line-1", "line-2"]
