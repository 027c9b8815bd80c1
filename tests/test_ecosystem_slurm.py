"""dask-jobqueue, ipyparallel and submitit built from one hpcpar profile, on the real SLURM.

One profile in a config.toml (``HPCPAR_CONFIG``) builds each library's object; each runs a
small map (1 job, 1 CPU) and the tasks report the job's own environment, so the test sees that
the profile's queue, memory and setup lines reached the job, not just the script text.
Every test cancels its jobs by name when it ends, pass or fail.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

import hpcpar.dask
import hpcpar.ipyparallel
import hpcpar.submitit

pytestmark = pytest.mark.slurm
WAIT_S = 300          # the single-host SLURM is shared: a job may wait for a free CPU
PROFILE = """
[profiles.eco]
backend = "slurm"
queue = "debug"
cpus_per_task = 1
mem = "1GB"
walltime = "0:10:00"
setup = ["export HPCPAR_ECO_MARK=setup-ran"]
"""


@pytest.fixture(autouse=True)
def _need_slurm(slurm):
    pass


@pytest.fixture
def profile(tmp_path, monkeypatch, runs_dir) -> str:
    cfg = tmp_path / "config.toml"
    cfg.write_text(PROFILE)
    monkeypatch.setenv("HPCPAR_CONFIG", str(cfg))
    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(runs_dir))
    return "eco"


@pytest.fixture
def job_name():
    """A job name unique to this test; its jobs are cancelled at the end, pass or fail."""
    name = f"hpcpar-eco-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["scancel", "--name", name], capture_output=True, timeout=30, check=False)


def facts_function():
    """A task that reports what it sees of its job. Made in a function, so that it is pickled
    by value: the workers cannot import this test module."""

    def job_facts(x):
        import os

        return (x * x, os.environ.get("HPCPAR_ECO_MARK"), os.environ.get("SLURM_JOB_PARTITION"),
                os.environ.get("SLURM_MEM_PER_NODE"), os.environ.get("SLURM_JOB_NAME"))

    return job_facts


def check_facts(results, job_name, xs):
    assert [r[0] for r in results] == [x * x for x in xs]
    for _, mark, partition, mem_mib, name in results:
        assert mark == "setup-ran"                     # the profile's setup line ran in the job
        assert partition == "debug" and mem_mib == "1024" and name == job_name


def test_dask_slurmcluster_from_profile_runs_client_map(profile, job_name):
    import distributed

    cluster = hpcpar.dask.cluster(profile, job_name=job_name, interface="lo",
                                  scheduler_options={"dashboard_address": ":0"})
    try:
        script = cluster.job_script()
        for line in ("#SBATCH -p debug", "#SBATCH --mem=1024M", "#SBATCH -t 00:10:00",
                     f"#SBATCH -J {job_name}", "export HPCPAR_ECO_MARK=setup-ran"):
            assert line in script.splitlines(), (line, script)
        cluster.scale(jobs=1)
        with distributed.Client(cluster) as client:
            client.wait_for_workers(1, timeout=WAIT_S)
            futures = client.map(facts_function(), range(5))
            distributed.wait(futures, timeout=WAIT_S)        # fail, not hang, if workers die
            results = client.gather(futures)
    finally:
        cluster.close()
    check_facts(results, job_name, range(5))


def test_ipyparallel_cluster_from_profile_runs_a_map(profile, job_name, tmp_path):
    cluster = hpcpar.ipyparallel.cluster(profile, n=1, job_name=job_name,
                                         profile_dir=str(tmp_path / "ipython"),
                                         engine_timeout=WAIT_S)
    try:
        rc = cluster.start_and_connect_sync()
        try:
            rc[:].use_cloudpickle()      # ipyparallel's own pickling imports the module
            results = rc[:].map_async(facts_function(), range(4)).get(timeout=WAIT_S)
            assert len(rc.ids) == 1
        finally:
            rc.close()
    finally:
        cluster.stop_cluster_sync()
    check_facts(results, job_name, range(4))


def test_submitit_executor_from_profile_submits_one_job(profile, job_name, tmp_path):
    ex = hpcpar.submitit.executor(tmp_path / "submitit" / "%j", profile, job_name=job_name)
    job = ex.submit(facts_function(), 7)
    try:
        deadline = time.monotonic() + WAIT_S
        while not job.done() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert job.done(), f"submitit job {job.job_id} did not finish in {WAIT_S} s: {job.state}"
        result = job.result()
    finally:
        if not job.done():
            job.cancel(check=False)
    check_facts([result], job_name, [7])
    assert os.path.isdir(tmp_path / "submitit" / str(job.job_id))
