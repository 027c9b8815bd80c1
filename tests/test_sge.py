"""Grid Engine faults and verification, run INSIDE the container by ``docker/sge/test``
(``pytest -m sge`` with HPCPAR_REQUIRE=sge). The conformance suite runs with its ``sge`` param.

* an array task deleted with ``qdel`` mid-run is resubmitted: nothing lost, nothing run twice;
* a chunk past ``h_rt``: ``-notify`` sends SIGUSR2 at h_rt, the worker checkpoints, the chunk
  is requeued and finishes; with no progress and no retries it fails as TIMEOUT (qacct);
* the driver killed mid-run, then ``hpcpar.attach`` collects the results;
* ``qsub -w v`` (verify, nothing submitted) accepts the golden script.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import hpcpar
from hpcpar.errors import JobLostError
from hpcpar.states import JobState

pytestmark = pytest.mark.sge
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def shared(sge, runs_dir):
    runs_dir.chmod(0o777)
    return runs_dir


def executor(shared, **kw):
    kw.setdefault("poll_interval_s", 0.5)
    kw.setdefault("max_poll_interval_s", 2.0)
    return hpcpar.Executor("sge", runs_dir=str(shared), **kw)


def running_tasks() -> list[str]:
    out = subprocess.run(["qstat", "-xml"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    return [f"{j.findtext('JB_job_number')}.{j.findtext('tasks')}" for j in ET.fromstring(out).iter("job_list")
            if j.findtext("state") == "r" and j.findtext("tasks")]


def run_meta(shared) -> dict:
    (meta,) = list(shared.glob("*/run.json"))
    return json.loads(meta.read_text())


def slow_square(x, marks):
    time.sleep(5)
    Path(marks, f"{x}-{os.getpid()}").touch()          # one file per completed execution
    return x * x


def test_qdel_one_array_task_is_resubmitted_nothing_lost_or_duplicated(shared, tmp_path):
    marks = shared / "marks"
    marks.mkdir(mode=0o777)
    ex = executor(shared, chunksize=1, max_retries=2)
    try:
        it = ex.map(slow_square, range(4), [str(marks)] * 4)
        deadline = time.monotonic() + 120
        while not (running := running_tasks()):
            assert time.monotonic() < deadline, "no array task started"
            time.sleep(0.3)
        victim = running[0]
        subprocess.run(["qdel", victim], check=True, timeout=30, capture_output=True)
        assert list(it) == [0, 1, 4, 9]
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    done = sorted(p.name.split("-")[0] for p in marks.iterdir())
    assert done == ["0", "1", "2", "3"]                 # each task completed exactly once
    reasons = [s["reason"] for s in run_meta(shared)["submissions"]]
    assert reasons[0] == "initial" and "retry" in reasons, reasons


def steps(n, seconds):
    time.sleep(seconds)
    return n


def test_past_h_rt_notify_checkpoint_and_requeue(shared):
    # one chunk of 6 tasks x 4 s = 24 s against h_rt = 12 s: SIGUSR2 at h_rt, partial results
    # checkpointed, the chunk requeued (not a retry: max_retries=0) and finished.
    ex = executor(shared, walltime="0:00:12", chunksize=6, max_retries=0)
    try:
        assert list(ex.map(steps, range(6), [4] * 6)) == list(range(6))
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    reasons = [s["reason"] for s in run_meta(shared)["submissions"]]
    assert reasons[0] == "initial" and "requeue" in reasons, reasons


def test_past_h_rt_without_progress_is_timeout(shared):
    ex = executor(shared, walltime="0:00:08", max_retries=0)
    try:
        fut = ex.submit(steps, 1, 120)
        with pytest.raises(JobLostError) as err:
            fut.result(timeout=240)
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    assert err.value.state is JobState.TIMEOUT, str(err.value)


DRIVER = """
import sys, time, hpcpar
def slow(x):
    time.sleep(3)
    return x + 100
ex = hpcpar.Executor("sge", runs_dir=sys.argv[1], chunksize=1, poll_interval_s=0.5)
it = ex.map(slow, range(6))
print("started", flush=True)
time.sleep(600)
"""


def test_reattach_after_driver_death(shared):
    script = shared / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    proc = subprocess.Popen([sys.executable, str(script), str(shared)], stdout=subprocess.PIPE, text=True,
                            cwd=str(shared))
    try:
        assert proc.stdout.readline().strip() == "started"
        time.sleep(2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    (meta,) = list(shared.glob("*/run.json"))
    run = hpcpar.attach(str(meta.parent), poll_interval_s=0.5, max_poll_interval_s=2.0)
    assert list(run.results(timeout=300)) == [x + 100 for x in range(6)]


def test_qsub_verify_accepts_the_golden_script():
    """``qsub -w v``: a dry scheduling run on an empty cluster, nothing submitted (submit(1)).
    The golden asks for queue ``debug``, 4 slots of PE smp and ``-l gpu=2``; docker/sge/test
    configures that site (queue debug with 4 slots on this 2-core host, consumable complex gpu)."""
    golden = ROOT / "tests" / "data" / "golden" / "sge.sh"
    proc = subprocess.run(["qsub", "-w", "v", str(golden)], check=False, capture_output=True, text=True,
                          timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "verification: found suitable queue(s)" in out, out
    # and verification does check what the script asks: one GPU more than the site has is refused
    greedy = Path(os.environ.get("TMPDIR", "/tmp")) / f"golden-gpu3-{os.getpid()}.sh"
    greedy.write_text(golden.read_text().replace("#$ -l gpu=2", "#$ -l gpu=3"))
    refused = subprocess.run(["qsub", "-w", "v", str(greedy)], check=False, capture_output=True,
                             text=True, timeout=60)
    greedy.unlink()
    assert refused.returncode != 0 and "no suitable queues" in refused.stdout + refused.stderr
