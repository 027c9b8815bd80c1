"""examples/grid_search.py and the joblib row of examples/random_forest.py, locally and on the
real SLURM (where every sbatch call is counted by a wrapper on PATH)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str, env: dict | None = None, timeout: int = 600):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def parse_grid_search(out: str) -> dict:
    """The checked values printed by examples/grid_search.py."""
    best = re.search(r"^best_params_: (\{.*?\})   \(loky: (\{.*?\})\)$", out, re.MULTILINE)
    rows = re.findall(r"^\s+(\S+)\s+(\S+)\s+([0-9.]+)\s+([0-9.]+)$", out, re.MULTILINE)
    jobs = re.search(r"^hpcpar runs: (\d+); batch jobs used: (\d+)", out, re.MULTILINE)
    diff = re.search(r"^largest \|mean_test_score - loky's\|: (\S+) \(tolerance", out, re.MULTILINE)
    return {"best": ast.literal_eval(best.group(1)), "loky_best": ast.literal_eval(best.group(2)),
            "rows": rows, "diff": float(diff.group(1)), "runs": int(jobs.group(1)),
            "jobs": int(jobs.group(2)), "same": "same best_params_ as loky: yes" in out}


def check_grid_search(out: str) -> dict:
    got = parse_grid_search(out)
    assert got["same"] and got["best"] == got["loky_best"]
    assert len(got["rows"]) == 9
    assert all(ours == loky for _, _, ours, loky in got["rows"])       # printed to 6 decimals
    assert got["diff"] <= 1e-12
    assert "stored once per call: 1 argument(s) (0.92 MB)" in out       # X, not once per task
    return got


def test_grid_search_example_local(tmp_path):
    out = run_example("grid_search.py", "--backend", "local", env={"HPCPAR_RUNS_DIR": str(tmp_path)})
    got = check_grid_search(out)
    assert got["jobs"] == 0 and got["runs"] == 8        # 2 CPUs x 4 groups; no batch job locally


def test_random_forest_example_has_the_joblib_row(tmp_path):
    out = run_example("random_forest.py", "--tasks", "4", "--trees", "5",
                      env={"HPCPAR_RUNS_DIR": str(tmp_path)})
    assert re.search(r"^joblib on hpcpar local, n_jobs=-1\s+20\s", out, re.MULTILINE), out
    assert "joblib-backend forest equals the single-process 20-tree forest (random_state=0): yes" in out


@pytest.fixture
def counted_sbatch(tmp_path) -> tuple[dict, Path]:
    """PATH with an ``sbatch`` wrapper that logs each call, then runs the real one."""
    real = shutil.which("sbatch")
    assert real, "no sbatch on PATH"
    bindir, log = tmp_path / "bin", tmp_path / "sbatch-calls.log"
    bindir.mkdir()
    wrapper = bindir / "sbatch"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}, log


@pytest.mark.slurm
def test_grid_search_example_on_slurm(slurm, runs_dir, counted_sbatch):
    env, log = counted_sbatch
    out = run_example("grid_search.py", "--backend", "slurm",
                      env={**env, "HPCPAR_RUNS_DIR": str(runs_dir)}, timeout=900)
    print(out)
    got = check_grid_search(out)
    calls = log.read_text().splitlines()
    assert got["jobs"] == len(calls) == 1, calls          # 45 fits, one job array
    assert "--array=0-1" in calls[0]                     # one worker per CPU (2) ...
    assert re.search(r"\(2 array tasks pulling 8 chunks, job ids", out), out  # ... 4 groups per slot
