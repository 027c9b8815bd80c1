"""`hpcpar config`: every resolved option with its source; the CLI honours `default_profile`."""

from __future__ import annotations

import pytest

from hpcpar.cli import main
from hpcpar.config import explain, resolve

CONFIG = """\
default_profile = "cluster"

[profiles.cluster]
backend = "slurm"
queue = "debug"
account = "proj"
mem = "2GB"
setup = ["module load python"]

[profiles.torque]
backend = "pbs"
queue = "batch"
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    monkeypatch.setenv("HPCPAR_CONFIG", str(path))
    return path


def rows(text: str) -> dict[str, tuple[str, str]]:
    """``name -> (value, source)`` from `hpcpar config` output (columns split on 2+ spaces)."""
    import re

    out = {}
    for line in text.splitlines():
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) >= 2:
            out[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return out


def config_rows(capsys, *argv) -> dict[str, tuple[str, str]]:
    assert main(["config", *argv]) == 0
    return rows(capsys.readouterr().out)


def test_each_value_names_its_source(capsys, config, monkeypatch):
    monkeypatch.setenv("HPCPAR_QOS", "high")
    r = config_rows(capsys, "slurm", "--account", "other", "-t", "90", "--max-running", "3")
    where = f"profile 'cluster' in {config}"
    assert r["backend"] == ("slurm", "command line")
    assert r["profile"] == ("cluster", f"default_profile in {config} (its backend is slurm)")
    assert r["queue"] == ("debug", where)                      # profile
    assert r["mem"] == ("2048 MiB (2147483648 bytes)", where)
    assert r["setup"] == ("module load python", where)
    assert r["account"] == ("other", "command line")           # the command line beats the profile
    assert r["qos"] == ("high", "HPCPAR_QOS")                  # environment
    assert r["walltime"][0] == "0-01:30:00 (5400 s)"
    assert r["walltime"][1].startswith("command line ('90'; bare number: minutes, as sbatch --time")
    assert r["max_running"] == ("3", "command line")
    assert r["cpus_per_task"] == ("1", "default") and r["max_retries"] == ("2", "default")
    assert r["config file"][0] == str(config)


def test_environment_beats_profile_and_profile_flag_beats_default(capsys, config, monkeypatch):
    monkeypatch.setenv("HPCPAR_QUEUE", "short")
    r = config_rows(capsys)
    assert r["backend"] == ("slurm", f"profile 'cluster' in {config}")
    assert r["profile"] == ("cluster", f"default_profile in {config}")
    assert r["queue"] == ("short", "HPCPAR_QUEUE")
    r = config_rows(capsys, "--profile", "torque")
    assert r["backend"] == ("pbs", f"profile 'torque' in {config}")
    assert r["profile"] == ("torque", "command line")
    assert r["account"] == ("-", "default")


def test_default_profile_only_for_its_own_backend(capsys, config):
    r = config_rows(capsys, "lsf")
    assert r["profile"] == ("-", "none named") and r["queue"] == ("-", "default")


def test_script_honours_default_profile(capsys, config):
    assert main(["script", "--", "true"]) == 0                 # backend from the default profile
    lines = capsys.readouterr().out.splitlines()
    assert "#SBATCH --partition=debug" in lines and "#SBATCH --account=proj" in lines
    assert "module load python" in lines
    assert main(["script", "slurm", "-q", "short", "--", "true"]) == 0   # same backend: profile + flag
    lines = capsys.readouterr().out.splitlines()
    assert "#SBATCH --partition=short" in lines and "#SBATCH --account=proj" in lines
    assert main(["script", "sge", "--", "true"]) == 0          # another backend: profile not used
    assert "proj" not in capsys.readouterr().out


def test_python_api_default_profile_rule_unchanged(config):
    assert resolve(None, None, {})[1].queue == "debug"          # nothing names a backend: used
    assert resolve("slurm", None, {})[1].queue is None          # Executor("slurm"): not used
    r = explain("slurm", None, {})
    assert r.profile is None and r.sources["queue"] == "default"


def test_config_without_file_says_so(capsys):
    r = config_rows(capsys)
    assert r["backend"] == ("local", "default")
    assert r["config file"][0].endswith("no-config.toml (does not exist)")


def test_config_errors_are_clear(capsys, config):
    assert main(["config", "--profile", "nope"]) == 2
    assert "no profile 'nope'" in capsys.readouterr().err
    assert main(["config", "slurm", "--mem", "lots"]) == 2
    assert "mem='lots'" in capsys.readouterr().err
