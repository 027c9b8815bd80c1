"""Shared fixtures.

Scheduler-marked tests need a real scheduler. Where ``HPCPAR_REQUIRE`` names it (CI sets
``HPCPAR_REQUIRE=slurm,torque,lsf,sge,cluster``), a missing scheduler FAILS the test; elsewhere it
is skipped with the command that brings it up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOW_TO_START = {
    "slurm": "scripts/slurm-single-host",
    "torque": "scripts/slurm-single-host (slurm-wlm-torque)",
    "lsf": "scripts/slurm-single-host (the LSF emulator runs over SLURM)",
    "sge": "docker/sge/up",
    "cluster": "docker/slurm/up",
}


def required(name: str) -> bool:
    return name in {x.strip() for x in os.environ.get("HPCPAR_REQUIRE", "").split(",")}


def need(name: str, ok: bool, why: str) -> None:
    if ok:
        return
    msg = f"{name} is not available here ({why}); start it with {HOW_TO_START[name]}"
    if required(name):
        pytest.fail(msg + " -- HPCPAR_REQUIRE says it must be", pytrace=False)
    pytest.skip(msg)


def slurm_ready() -> tuple[bool, str]:
    if shutil.which("sinfo") is None:
        return False, "no sinfo on PATH"
    try:
        out = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False, "sinfo timed out"
    if out.returncode != 0:
        return False, out.stderr.strip()
    states = out.stdout.split()
    if not any(s.startswith(("idle", "mix", "alloc")) for s in states):
        return False, f"no usable node: {states}"
    return True, ""


@pytest.fixture(scope="session")
def slurm():
    ok, why = slurm_ready()
    need("slurm", ok, why)
    return True


@pytest.fixture
def runs_dir(tmp_path_factory) -> Path:
    """A runs folder that compute nodes can see (the single-host SLURM shares this disk)."""
    base = Path(os.environ.get("HPCPAR_TEST_SHARED", tmp_path_factory.getbasetemp()))
    d = Path(tmp_path_factory.mktemp("runs", numbered=True)) if base == tmp_path_factory.getbasetemp() else base
    return d


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture(autouse=True)
def _isolate_config(monkeypatch, tmp_path):
    """Tests never read the developer's own config file or HPCPAR_* settings."""
    for key in list(os.environ):
        if key.startswith("HPCPAR_") and key not in ("HPCPAR_REQUIRE", "HPCPAR_TEST_SHARED"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HPCPAR_CONFIG", str(tmp_path / "no-config.toml"))
