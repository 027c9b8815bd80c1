
import re

import pytest

import hpcpar
from hpcpar import ConfigError
from hpcpar.config import config_path, resolve


def test_unknown_backend_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        hpcpar.Executor("slurmx")
    msg = str(err.value)
    assert "'slurmx'" in msg and "did you mean 'slurm'" in msg
    for name in ("local", "slurm", "pbs", "lsf", "sge"):
        assert name in msg


def test_unknown_keyword_names_valid_ones():
    with pytest.raises(ConfigError) as err:
        hpcpar.Executor("local", partiton="debug")
    msg = str(err.value)
    assert "'partiton'" in msg and "queue" in msg and "cpus_per_task" in msg and "max_retries" in msg


def test_bad_resources_name_field_and_forms():
    with pytest.raises(ValueError, match=r"mem='lots'.*4GB"):
        hpcpar.Executor("local", mem="lots")
    with pytest.raises(ValueError, match=r"walltime='soon'.*HH:MM:SS"):
        hpcpar.Executor("local", walltime="soon")


def test_missing_profile_names_config_path(tmp_path, monkeypatch):
    cfg = tmp_path / "elsewhere" / "config.toml"
    monkeypatch.setenv("HPCPAR_CONFIG", str(cfg))
    with pytest.raises(ConfigError) as err:
        hpcpar.Executor(profile="gpu")
    assert str(cfg) in str(err.value) and "does not exist" in str(err.value)
    cfg.parent.mkdir()
    cfg.write_text('[profiles.cpu]\nbackend = "local"\n')
    with pytest.raises(ConfigError, match=r"no profile 'gpu' in .*config.toml; profiles there: cpu"):
        hpcpar.Executor(profile="gpu")


def test_default_config_path_is_platformdirs(monkeypatch):
    monkeypatch.delenv("HPCPAR_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/x/cfg")
    assert str(config_path()) == "/x/cfg/hpcpar/config.toml"


def test_precedence_kwargs_env_profile_defaults(tmp_path, monkeypatch):
    cfg = tmp_path / "config.toml"
    cfg.write_text('default_profile = "cluster"\n[profiles.cluster]\nbackend = "slurm"\nqueue = "long"\n'
                   'mem = "2GB"\ncpus_per_task = 2\nmax_retries = 5\n'
                   '[profiles.bad]\nbackend = "local"\nqeue = "x"\n')
    monkeypatch.setenv("HPCPAR_CONFIG", str(cfg))
    name, res, opts = resolve(None, None, {})
    assert name == "slurm" and res.queue == "long" and res.cpus_per_task == 2 and opts.max_retries == 5
    monkeypatch.setenv("HPCPAR_QUEUE", "short")
    monkeypatch.setenv("HPCPAR_MAX_RETRIES", "1")
    name, res, opts = resolve(None, None, {"cpus_per_task": 8})
    assert res.queue == "short" and res.cpus_per_task == 8 and opts.max_retries == 1 and res.mem == 2 * 1024**3
    monkeypatch.setenv("HPCPAR_BACKEND", "local")        # an explicit backend skips default_profile
    name, res, _ = resolve(None, None, {})
    assert name == "local" and res.mem is None
    with pytest.raises(ConfigError, match=r"unknown option 'qeue' in profile 'bad'.*did you mean 'queue'"):
        resolve(None, "bad", {})


def test_executor_without_arguments_follows_environment(monkeypatch):
    assert hpcpar.Executor().backend_name == "local"
    monkeypatch.setenv("HPCPAR_BACKEND", "slurm")
    assert hpcpar.Executor().backend_name == "slurm"
    monkeypatch.setenv("HPCPAR_BACKEND", "nope")
    with pytest.raises(ConfigError, match="valid backends"):
        hpcpar.Executor()


def test_env_option_type_errors(monkeypatch):
    monkeypatch.setenv("HPCPAR_MAX_RETRIES", "many")
    with pytest.raises(ConfigError, match="max_retries='many'"):
        hpcpar.Executor("local")


def test_job_name_with_newline_refused():
    with pytest.raises(ConfigError, match="job_name=.*control character"):
        hpcpar.Executor("slurm", job_name="a\nb")


def test_public_names():
    """Everything in hpcpar.__all__ exists, and every public error derives from HpcparError."""
    for name in hpcpar.__all__:
        assert hasattr(hpcpar, name), name
    for name in ("ConfigError", "JobLostError", "SchedulerNotFoundError", "SerializationError",
                 "SubmissionError", "TaskError"):
        assert issubclass(getattr(hpcpar, name), hpcpar.HpcparError)


@pytest.mark.parametrize("option,value,message", [
    ("max_workers", 0, "max_workers=0 must be >= 1"),
    ("max_workers", -1, "max_workers=-1 must be >= 1"),
    ("chunks_per_slot", 0, "chunks_per_slot=0 must be >= 1"),
    ("chunksize", 0, "chunksize=0 must be >= 1"),
    ("max_retries", -1, "max_retries=-1 must be >= 0"),
    ("max_running", 0, "max_running=0 must be >= 1"),
    ("poll_interval_s", 0, "poll_interval_s=0.0 must be > 0"),
    ("poll_interval_s", float("nan"), "poll_interval_s=nan must be > 0"),
    ("max_poll_interval_s", 0.5, "max_poll_interval_s=0.5 must be >= poll_interval_s=1.0"),
    ("submit_linger_s", -0.1, "submit_linger_s=-0.1 must be >= 0"),
    ("checkpoint_s", float("inf"), "checkpoint_s=inf must be > 0"),
])
def test_out_of_range_options_are_refused_in_the_constructor(option, value, message):
    with pytest.raises(hpcpar.ConfigError, match=re.escape(message)):
        hpcpar.Executor("local", **{option: value})


def test_out_of_range_option_from_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("HPCPAR_MAX_RETRIES", "-2")
    with pytest.raises(hpcpar.ConfigError, match="max_retries=-2 must be >= 0"):
        hpcpar.Executor("local")
