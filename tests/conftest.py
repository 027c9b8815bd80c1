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
import tempfile
import time
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


def probe(argv: list[str]) -> tuple[str | None, str]:
    """Run a scheduler's read-only command: (stdout, "") if it answered, else (None, why)."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return None, f"{argv[0]} timed out"
    if out.returncode != 0:
        return None, out.stderr.strip()
    return out.stdout, ""


def slurm_ready(wait_s: float = 60.0) -> tuple[bool, str]:
    """SLURM answers and has a usable node. A node is "completing" for a few seconds after a
    test's jobs end or are cancelled (epilog, slurmd clean-up): wait up to ``wait_s`` for it."""
    if shutil.which("sinfo") is None:
        return False, "no sinfo on PATH"
    deadline = time.monotonic() + wait_s
    while True:
        stdout, why = probe(["sinfo", "--noheader", "--format=%T"])
        if stdout is None:
            return False, why
        states = stdout.split()
        if any(s.startswith(("idle", "mix", "alloc")) for s in states):
            return True, ""
        if not any(s.startswith("completing") for s in states) or time.monotonic() > deadline:
            return False, f"no usable node: {states}"
        time.sleep(1)


@pytest.fixture(scope="session")
def slurm():
    ok, why = slurm_ready()
    need("slurm", ok, why)
    return True


def sge_ready() -> tuple[bool, str]:
    if shutil.which("qstat") is None or shutil.which("qacct") is None:
        return False, "no qstat/qacct on PATH (run inside the container: docker/sge/test)"
    stdout, why = probe(["qstat", "-f"])
    if stdout is None:
        return False, why
    if "BATCH" not in stdout and "BIP" not in stdout:
        return False, f"no batch queue instance: {stdout.strip()!r}"
    return True, ""


@pytest.fixture(scope="session")
def sge():
    ok, why = sge_ready()
    need("sge", ok, why)
    return True


@pytest.fixture
def runs_dir(tmp_path_factory) -> Path:
    """A fresh runs folder per test that compute nodes can see: under ``$HPCPAR_TEST_SHARED``
    when set (the docker cluster: ``/shared/...``, the only disk its nodes share), else the
    pytest temp folder (the single-host SLURM shares this disk)."""
    shared = os.environ.get("HPCPAR_TEST_SHARED")
    if not shared:
        return Path(tmp_path_factory.mktemp("runs", numbered=True))
    Path(shared).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="runs-", dir=shared))


def cluster_ready() -> tuple[bool, str]:
    """The docker-compose SLURM cluster (docker/slurm/up): slurmctld running, c1 and c2 usable."""
    if shutil.which("docker") is None:
        return False, "no docker on PATH"
    project = os.environ.get("COMPOSE_PROJECT_NAME", "hpcpar-slurm")
    try:
        ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                              "--filter", "label=com.docker.compose.service=slurmctld"],
                             capture_output=True, text=True, timeout=20)
        if ids.returncode != 0 or not ids.stdout.strip():
            return False, f"no running slurmctld container of compose project {project} {ids.stderr.strip()}"
        running = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", ids.stdout.split()[0]],
                                 capture_output=True, text=True, timeout=20)
        if running.stdout.strip() != "true":
            return False, "slurmctld container is not running"
        out = subprocess.run([str(ROOT / "docker/slurm/exec"), "sinfo", "-h", "-N", "-o", "%N %t"],
                             capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        return False, f"{exc.cmd[0]} timed out"
    states = dict(line.split()[:2] for line in out.stdout.splitlines() if len(line.split()) >= 2)
    usable = {n for n, s in states.items() if s.startswith(("idle", "mix", "alloc")) and not s.endswith("*")}
    if out.returncode != 0 or not {"c1", "c2"} <= usable:
        return False, f"sinfo in slurmctld: {states or out.stderr.strip()}"
    return True, ""


@pytest.fixture(scope="session")
def cluster():
    ok, why = cluster_ready()
    need("cluster", ok, why)
    return True


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


HOW_TO_START.setdefault("chromium", "scripts/ci-chromium (Debian's chromium package)")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a headless-capable Chromium (Debian's ``chromium``); ``HPCPAR_REQUIRE=chromium``
    makes its absence a failure."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    need("chromium", path is not None, "no chromium or chromium-browser on PATH")
    return path


@pytest.fixture
def fake(tmp_path):
    """The fake scheduler (tests/fakesched) registered as ``fake`` for one test, its state under
    ``tmp_path/sched``; unregistered afterwards."""
    import fakesched

    from hpcpar.backends.registry import unregister_scheduler

    spec = fakesched.register(tmp_path / "sched")
    yield spec
    unregister_scheduler("fake")
