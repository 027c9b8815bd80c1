"""hpcpar.dask, hpcpar.ipyparallel, hpcpar.submitit: a profile translated into each library's object.

Offline: what the libraries would submit (dask-jobqueue's ``job_script()``, ipyparallel's
rendered engine batch script, submitit's sbatch text), their parameters, the checks made before
anything starts, and small local runs. The real SLURM runs are in test_ecosystem_slurm.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hpcpar
import hpcpar.dask
import hpcpar.ipyparallel
import hpcpar.submitit
from hpcpar import ConfigError

PROFILE = """
[profiles.eco]
backend = "slurm"
queue = "debug"
account = "lab42"
cpus_per_task = 2
mem = "1.5GB"
walltime = "1:30:00"
setup = ["module load python/3.11", "export DATA=${HOME}/data"]
extra_directives = ["--constraint=avx2"]
max_retries = 5      # an Executor option: ignored by the integrations, not an error
"""


@pytest.fixture
def profile(tmp_path, monkeypatch) -> str:
    cfg = tmp_path / "config.toml"
    cfg.write_text(PROFILE)
    monkeypatch.setenv("HPCPAR_CONFIG", str(cfg))
    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(tmp_path / "runs"))
    return "eco"


def directives(script: str, prefix: str) -> list[str]:
    return [line[len(prefix):].strip() for line in script.splitlines() if line.startswith(prefix)]


# ---------------------------------------------------------------- imports and install hints

def test_importing_hpcpar_and_the_integrations_imports_none_of_the_libraries():
    code = ("import sys, hpcpar, hpcpar.dask, hpcpar.ipyparallel, hpcpar.submitit\n"
            "print(sorted(m for m in ('dask', 'distributed', 'dask_jobqueue', 'ipyparallel', "
            "'submitit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("call, module, extra", [
    (lambda: hpcpar.dask.cluster(backend="slurm", mem="1GB"), "dask_jobqueue", "dask"),
    (lambda: hpcpar.dask.cluster(backend="local"), "distributed", "dask"),
    (lambda: hpcpar.ipyparallel.cluster(backend="slurm"), "ipyparallel", "ipyparallel"),
    (lambda: hpcpar.submitit.executor(backend="slurm"), "submitit", "submitit"),
])
def test_missing_library_names_the_extra_to_install(monkeypatch, call, module, extra):
    monkeypatch.setitem(sys.modules, module, None)        # makes `import module` fail
    with pytest.raises(ImportError, match=rf"pip install 'hpcpar\[{extra}\]'"):
        call()


# ---------------------------------------------------------------- dask-jobqueue

EXPECTED_DASK = {
    "slurm": ("#SBATCH", ["-p debug", "-A lab42", "--cpus-per-task=2", "--mem=1536M",
                          "-t 01:30:00", "--constraint=avx2"]),
    "pbs": ("#PBS", ["-q debug", "-A lab42", "-l select=1:ncpus=2:mem=1536mb",
                     "-l walltime=01:30:00", "--constraint=avx2"]),
    "lsf": ("#BSUB", ["-q debug", '-P "lab42"', "-n 2", "-M 1536", '-R "rusage[mem=1536]"',
                      "-W 1:30", "--constraint=avx2"]),
    "sge": ("#$", ["-q debug", "-A lab42", "-l h_vmem=768M", "-pe smp 2", "-l h_rt=01:30:00",
                   "--constraint=avx2"]),
}


@pytest.mark.parametrize("backend", sorted(EXPECTED_DASK))
def test_dask_job_script_carries_the_profile(profile, monkeypatch, tmp_path, backend):
    monkeypatch.setenv("HPCPAR_BACKEND", backend)          # same profile, another scheduler
    cluster = hpcpar.dask.cluster(profile, interface="lo",
                                  scheduler_options={"dashboard_address": ":0"})
    try:
        script = cluster.job_script()
        assert type(cluster).__name__ == {"slurm": "SLURMCluster", "pbs": "PBSCluster",
                                          "lsf": "LSFCluster", "sge": "SGECluster"}[backend]
    finally:
        cluster.close()
    prefix, expected = EXPECTED_DASK[backend]
    got = directives(script, prefix)
    for line in expected:
        assert line in got, (line, script)
    body = script.splitlines()
    setup = body.index("module load python/3.11")
    assert body[setup + 1] == "export DATA=${HOME}/data"
    assert "distributed.cli.dask_worker" in body[setup + 2]
    words = body[setup + 2].split()
    nthreads = int(words[words.index("--nthreads") + 1])
    nworkers = int(words[words.index("--nworkers") + 1]) if "--nworkers" in words else 1
    assert nthreads * nworkers == 2                                  # cpus_per_task
    assert words[words.index("--memory-limit") + 1] == ("1.50GiB" if nworkers == 1 else "768.00MiB")
    logs = tmp_path / "runs" / "dask"
    assert str(logs) in script and logs.is_dir() and (logs.stat().st_mode & 0o777) == 0o700


def test_dask_precedence_kwargs_over_env_over_profile(profile, monkeypatch):
    monkeypatch.setenv("HPCPAR_QUEUE", "short")
    monkeypatch.setenv("HPCPAR_MEM", "2GB")
    name, kw = hpcpar.dask.cluster_kwargs(profile, mem="3GB", job_name="eco-dask")
    assert name == "slurm"
    assert kw["queue"] == "short"                              # env over profile
    assert kw["job_mem"] == "3072M" and kw["memory"] == "3072MiB"  # kwarg over env
    assert kw["job_name"] == "eco-dask" and kw["account"] == "lab42"   # profile
    assert kw["walltime"] == "01:30:00" and kw["cores"] == 2


def test_dask_qos_gpus_workdir_python_and_torque(profile, monkeypatch):
    _, kw = hpcpar.dask.cluster_kwargs(profile, qos="high", gpus=1, workdir="/scratch/my run",
                                       python="/opt/py/bin/python3")
    assert kw["job_extra_directives"] == ["--qos=high", "--gpus-per-task=1", "--constraint=avx2"]
    assert kw["job_script_prologue"][0] == "cd '/scratch/my run' || exit 1"
    assert kw["python"] == "/opt/py/bin/python3"
    _, kw = hpcpar.dask.cluster_kwargs(profile, backend="pbs", dialect="torque")
    assert kw["resource_spec"] == "nodes=1:ppn=2"
    assert kw["job_extra_directives"][0] == "-l mem=1536mb"


def test_dask_library_options_pass_through(profile):
    _, kw = hpcpar.dask.cluster_kwargs(profile, processes=2, worker_extra_args=["--lifetime", "1h"],
                                       log_directory="/tmp/elsewhere")
    assert kw["processes"] == 2 and kw["worker_extra_args"] == ["--lifetime", "1h"]
    assert kw["log_directory"] == "/tmp/elsewhere"


@pytest.mark.parametrize("options, message", [
    ({"memroy": "1GB"}, r"unknown option 'memroy'.*did you mean 'memory'"),
    ({"memory": "1GB"}, r"memory= is set from hpcpar's mem="),
    ({"job_script_prologue": ["x"]}, r"set from hpcpar's setup="),
    ({"max_retries": 3}, r"max_retries= has no meaning for dask-jobqueue"),
    ({"nodes": 2}, r"nodes=2: dask-jobqueue jobs run on one node"),
    ({"queue": "debug; rm -rf ~"}, r"queue=.*without quoting"),
    ({"job_name": "../evil"}, r"job_name=.*without quoting"),
    ({"backend": "ec2"}, r"unknown backend 'ec2'"),
    ({"mem": "lots"}, r"mem='lots' is not a memory amount"),
    ({"mem_unit": "XB", "backend": "lsf"}, r"mem_unit='XB'"),
])
def test_dask_refuses_bad_input_before_starting(profile, tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        hpcpar.dask.cluster(profile, **options)
    assert not (tmp_path / "runs").exists()         # nothing was created, let alone started


def test_dask_needs_memory_for_a_batch_backend():
    with pytest.raises(ConfigError, match="dask-jobqueue needs the memory of each worker job"):
        hpcpar.dask.cluster(backend="slurm", queue="debug")


def test_dask_local_cluster_runs_a_map(monkeypatch):
    import distributed

    monkeypatch.setenv("HPCPAR_BACKEND", "local")
    cluster = hpcpar.dask.cluster(max_workers=2, cpus_per_task=1, mem="512MB", processes=False,
                                  dashboard_address=None)
    try:
        assert isinstance(cluster, distributed.LocalCluster)
        specs = list(cluster.worker_spec.values())
        assert len(specs) == 2
        assert all(s["options"]["nthreads"] == 1 for s in specs)
        assert all(s["options"]["memory_limit"] == 512 * 2**20 for s in specs)
        with distributed.Client(cluster) as client:
            assert client.gather(client.map(lambda x: x * x, range(6))) == [0, 1, 4, 9, 16, 25]
    finally:
        cluster.close()


# ---------------------------------------------------------------- ipyparallel

EXPECTED_IPP = {
    "slurm": ("#SBATCH", ["--array=1-3", "--cpus-per-task=2", "--mem=1536M", "--time=01:30:00",
                          "--partition=debug", "--account=lab42", "--constraint=avx2",
                          "--job-name=eco-ipp"]),
    "pbs": ("#PBS", ["-J 1-3", "-l select=1:ncpus=2:mem=1536mb", "-l walltime=01:30:00",
                     "-q debug", "-A lab42", "--constraint=avx2", "-N eco-ipp"]),
    "lsf": ("#BSUB", ["-J eco-ipp[1-3]", "-n 2", "-M 1536", '-R "rusage[mem=1536]"', "-W 1:30",
                      "-q debug", "-P lab42", "--constraint=avx2"]),
    "sge": ("#$", ["-t 1-3", "-pe smp 2", "-l h_vmem=768M", "-l h_rt=01:30:00", "-q debug",
                   "-A lab42", "--constraint=avx2", "-N eco-ipp"]),
}


def rendered_engine_script(cluster, n: int) -> tuple[object, str]:
    """The engine launcher as Cluster.start_engines makes it, and the script it would submit."""
    launcher = cluster.engine_launcher_class(work_dir=".", parent=cluster, log=cluster.log,
                                             profile_dir=cluster.profile_dir,
                                             cluster_id=cluster.cluster_id)
    launcher.write_batch_script(n)
    return launcher, Path(launcher.batch_file).read_text()


@pytest.mark.parametrize("backend", sorted(EXPECTED_IPP))
def test_ipyparallel_engine_script_carries_the_profile(profile, monkeypatch, tmp_path, backend):
    monkeypatch.setenv("HPCPAR_BACKEND", backend)
    cluster = hpcpar.ipyparallel.cluster(profile, n=3, job_name="eco-ipp",
                                         profile_dir=str(tmp_path / "ipython"))
    assert cluster.n == 3
    launcher, script = rendered_engine_script(cluster, 3)
    assert type(launcher).__name__.lower().startswith(backend)
    prefix, expected = EXPECTED_IPP[backend]
    got = directives(script, prefix)
    for line in expected:
        assert line in got, (line, script)
    body = script.splitlines()
    setup = body.index("module load python/3.11")
    assert body[setup + 1] == "export DATA=${HOME}/data"         # braces survive the formatter
    assert body[setup + 2].startswith(f"exec {sys.executable} -m ipyparallel.engine")
    assert Path(launcher.batch_file).parent == tmp_path / "runs" / "ipyparallel"
    assert launcher.queue == "debug"                            # through the launcher's traits
    if backend == "slurm":
        assert (launcher.account, launcher.timelimit) == ("lab42", "01:30:00")


def test_ipyparallel_n_defaults_to_max_workers_and_python_sets_engine_cmd(profile, tmp_path):
    cluster = hpcpar.ipyparallel.cluster(profile, max_workers=4, python="/opt/py/bin/python3",
                                         profile_dir=str(tmp_path / "ipython"))
    assert cluster.n == 4
    launcher, script = rendered_engine_script(cluster, 4)
    assert launcher.engine_cmd == ["/opt/py/bin/python3", "-m", "ipyparallel.engine"]
    assert "--array=1-4" in script and "exec /opt/py/bin/python3 -m ipyparallel.engine" in script
    assert "--job-name=ipengine-" + cluster.cluster_id in script


def test_ipyparallel_does_not_touch_a_shared_config(profile, tmp_path):
    from traitlets.config import Config

    shared = Config()
    cluster = hpcpar.ipyparallel.cluster(profile, n=2, config=shared,
                                         profile_dir=str(tmp_path / "ipython"))
    assert "SlurmEngineSetLauncher" in cluster.config
    assert "SlurmEngineSetLauncher" not in shared


def test_ipyparallel_local_engines(profile, tmp_path):
    cluster = hpcpar.ipyparallel.cluster(profile, backend="local", n=2,
                                         profile_dir=str(tmp_path / "ipython"))
    assert cluster.n == 2 and cluster.engine_launcher_class.__name__ == "LocalEngineSetLauncher"


@pytest.mark.parametrize("options, message", [
    ({"engines": "mpi"}, r"set from hpcpar's backend="),
    ({"controller_ipp": "*"}, r"unknown option 'controller_ipp'.*did you mean 'controller_ip'"),
    ({"chunksize": 3}, r"chunksize= has no meaning for ipyparallel"),
    ({"n": 0}, r"n=0 must be a whole number of engines"),
    ({"n": 1, "backend": "pbs"}, r"PBS Pro job array"),
    ({"account": "a b"}, r"account='a b'.*without quoting"),
    ({"nodes": 2}, r"nodes=2"),
])
def test_ipyparallel_refuses_bad_input_before_starting(profile, tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        hpcpar.ipyparallel.cluster(profile, **options)
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- submitit

def test_submitit_executor_carries_the_profile(profile, tmp_path):
    ex = hpcpar.submitit.executor(tmp_path / "jobs" / "%j", profile, qos="high", gpus=1,
                                  job_name="eco-submitit", slurm_signal_delay_s=30)
    assert ex.cluster == "slurm"
    params = ex._executor.parameters
    assert params["partition"] == "debug" and params["account"] == "lab42"
    assert params["qos"] == "high" and params["cpus_per_task"] == 2 and params["gpus_per_task"] == 1
    assert params["mem"] == "1536M" and params["time"] == 90 and params["job_name"] == "eco-submitit"
    assert params["setup"] == ["module load python/3.11", "export DATA=${HOME}/data"]
    assert params["additional_parameters"] == {"constraint": "avx2"}
    assert params["signal_delay_s"] == 30
    sbatch = ex._executor._make_submission_file_text("true", "uid")
    got = directives(sbatch, "#SBATCH")
    for line in ("--partition=debug", "--account=lab42", "--qos=high", "--cpus-per-task=2",
                 "--mem=1536M", "--time=90", "--constraint=avx2", "--gpus-per-task=1"):
        assert line in got, (line, sbatch)
    assert "module load python/3.11\nexport DATA=${HOME}/data" in sbatch


def test_submitit_default_folder_is_private_under_runs_dir(profile, tmp_path):
    ex = hpcpar.submitit.executor(profile=profile)
    assert ex.folder == (tmp_path / "runs" / "submitit" / "%j").resolve()
    assert (tmp_path / "runs" / "submitit").stat().st_mode & 0o777 == 0o700


def test_submitit_python_is_quoted_and_directives_parsed(profile):
    ex = hpcpar.submitit.executor(profile=profile, python="/opt/my py/bin/python",
                                  extra_directives=["--exclusive", "--mail-type END"])
    assert ex._executor.python == "'/opt/my py/bin/python'"
    assert ex._executor.parameters["additional_parameters"] == {"exclusive": True,
                                                               "mail-type": "END"}


def test_submitit_inline_and_local_run_a_function(profile, tmp_path):
    inline = hpcpar.submitit.executor(tmp_path / "inline", profile, backend="inline")
    assert inline.cluster == "debug"
    assert inline.submit(pow, 2, 10).result() == 1024
    local = hpcpar.submitit.executor(tmp_path / "local", profile, backend="local")
    assert local.cluster == "local"
    assert local.parameters["timeout_min"] == 90 and local.parameters["cpus_per_task"] == 2
    job = local.submit(pow, 3, 4)
    assert job.result() == 81


@pytest.mark.parametrize("options, message", [
    ({"backend": "pbs"}, r"submitit cannot run on the 'pbs' backend; it supports: local, slurm"),
    ({"slurm_partition": "x"}, r"slurm_partition= is set from hpcpar's queue="),
    ({"timeout_min": 5}, r"set from hpcpar's walltime="),
    ({"slurm_partitoin": "x"}, r"unknown option 'slurm_partitoin'.*did you mean 'slurm_partition'"),
    ({"max_running": 2}, r"max_running= has no meaning for submitit"),
    ({"extra_directives": ["-C avx2"]}, r"long options only"),
    ({"nodes": 2}, r"nodes=2"),
])
def test_submitit_refuses_bad_input_before_starting(profile, tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        hpcpar.submitit.executor(profile=profile, **options)
    assert not (tmp_path / "runs").exists()


def test_same_resolution_as_executor(profile, monkeypatch):
    """The integrations read exactly what hpcpar.Executor reads from the same profile."""
    monkeypatch.setenv("HPCPAR_WALLTIME", "45min")
    ex = hpcpar.Executor(profile=profile)
    _, kw = hpcpar.dask.cluster_kwargs(profile)
    assert ex.backend_name == "slurm" and ex.resources.walltime == 2700
    assert kw["walltime"] == "00:45:00" and kw["queue"] == ex.resources.queue
    assert kw["job_mem"] == f"{ex.resources.mem // 2**20}M"
    sub = hpcpar.submitit.executor(profile=profile)
    assert sub._executor.parameters["time"] == 45


def test_readme_example_profile_is_valid(tmp_path, monkeypatch):
    """The profile shown in the README section builds all three."""
    text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    start = text.index("## dask, ipyparallel and submitit from the same profile")
    block = text[text.index("```toml", start) + 7:text.index("```", text.index("```toml", start) + 7)]
    cfg = tmp_path / "config.toml"
    cfg.write_text(textwrap.dedent(block))
    monkeypatch.setenv("HPCPAR_CONFIG", str(cfg))
    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(tmp_path / "runs"))
    name, kw = hpcpar.dask.cluster_kwargs(profile="cluster")
    assert name == "slurm" and kw["queue"]
    assert hpcpar.submitit.executor(profile="cluster").cluster == "slurm"
