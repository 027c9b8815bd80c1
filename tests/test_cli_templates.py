"""Job scripts and the CLI: rendering, quoting, hostile values, user templates, installed wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

import hpcpar
from hpcpar import ConfigError
from hpcpar.cli import main

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ["$(touch /tmp/pwned)", "`touch /tmp/pwned`", "it's \"quoted\"", "a;b|c&d", "new\nline"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_script_slurm_renders_resources(capsys):
    code, out, _ = run_cli(capsys, "script", "slurm", "--cpus-per-task", "4", "--mem", "8GB", "--walltime",
                           "1:30:00", "--queue", "debug", "--account", "proj", "--qos", "high", "--gpus", "2",
                           "--job-name", "train", "--extra-directive=--constraint=avx2",
                           "--setup", "module load python", "--", "python", "train.py", "--lr", "0.1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "#!/bin/bash"
    for expected in ("#SBATCH --job-name=train", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8192M",
                     "#SBATCH --time=0-01:30:00", "#SBATCH --partition=debug", "#SBATCH --account=proj",
                     "#SBATCH --qos=high", "#SBATCH --gpus-per-task=2", "#SBATCH --constraint=avx2",
                     "module load python", "exec python train.py --lr 0.1"):
        assert expected in lines, expected
    assert lines.index("module load python") > max(i for i, l in enumerate(lines) if l.startswith("#SBATCH"))


def test_hostile_values_are_inert_or_refused(capsys, tmp_path):
    marker = tmp_path / "pwned"
    evil = [v.replace("/tmp/pwned", str(marker)) for v in HOSTILE]
    code, out, _ = run_cli(capsys, "script", "local", "--job-name", evil[0] + evil[2], "--", "printf", "%s\\n", *evil)
    assert code == 0
    script = tmp_path / "job.sh"
    script.write_text(out)
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert proc.stdout == "".join(v + "\n" for v in evil)       # every argument arrives verbatim
    assert not marker.exists()
    for field in ("--job-name", "--queue", "--account", "--qos"):
        code, _, err = run_cli(capsys, "script", "slurm", field, "x\n#SBATCH --exclusive", "--", "true")
        assert code == 2 and "control character" in err


def test_array_file_script(capsys, tmp_path):
    cmds = tmp_path / "cmds.txt"
    cmds.write_text("echo one\necho two\n")
    code, out, _ = run_cli(capsys, "script", "local", "--array-file", str(cmds))
    assert code == 0
    env = {**os.environ, "HPCPAR_ARRAY_INDEX": "1"}
    proc = subprocess.run(["bash", "-c", out], capture_output=True, text=True, env=env, timeout=30)
    assert proc.stdout == "two\n"


def test_cli_errors_are_clear(capsys):
    code, _, err = run_cli(capsys, "script", "slurm", "--mem", "lots", "--", "true")
    assert code == 2 and "mem='lots'" in err and "4GB" in err
    code, _, err = run_cli(capsys, "script", "slurm")
    assert code == 2 and "give a command after `--`" in err
    with pytest.raises(SystemExit):
        main(["script", "slurmx", "--", "true"])
    assert "invalid choice: 'slurmx'" in capsys.readouterr().err


def test_help_for_every_command(capsys):
    for cmd in ("script", "submit", "backends", "runs", "status", "logs", "cancel", "clean"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        assert "usage: hpcpar " + cmd in capsys.readouterr().out


def test_backends_lists_every_backend(capsys):
    code, out, _ = run_cli(capsys, "backends")
    assert code == 0
    for name in ("local", "slurm", "pbs", "lsf", "sge"):
        assert any(line.startswith(name + " ") for line in out.splitlines())
    assert "local  available" in out


def test_user_template_dir_overrides(tmp_path):
    (tmp_path / "slurm.sh.j2").write_text('{% extends "base.sh.j2" %}{% block directives %}'
                                          "#SBATCH --custom={{ job_name | q }}\n{% endblock %}")
    text = hpcpar.Executor("slurm", template_dir=str(tmp_path), job_name="mine").job_script(["true"])
    assert "#SBATCH --custom=mine" in text and "--cpus-per-task" not in text


def test_strict_undefined(tmp_path):
    (tmp_path / "slurm.sh.j2").write_text("{{ no_such_variable }}")
    with pytest.raises(ConfigError, match="no_such_variable"):
        hpcpar.Executor("slurm", template_dir=str(tmp_path)).job_script(["true"])


def test_job_script_dry_run_writes_nothing(tmp_path):
    ex = hpcpar.Executor("slurm", runs_dir=str(tmp_path / "runs"), walltime="10min")
    text = ex.job_script()
    assert "-m hpcpar.worker" in text and "--index-var SLURM_ARRAY_TASK_ID" in text
    assert "#SBATCH --signal=B:USR2@60" in text
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_installed_wheel_renders_from_installed_templates(tmp_path):
    """`pip install .` (not editable) into a new venv; the CLI run elsewhere uses its own templates.

    The build runs on a copy of the source (pip builds in the tree it is given, and CI runs the
    offline suite on several Pythons at once from one checkout)."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "*.egg-info", "__pycache__", "tests", "docs", "docker",
        "benchmarks", "examples"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", str(src)], capture_output=True, text=True,
                         timeout=600)
    assert pip.returncode == 0, pip.stderr
    where = tmp_path / "elsewhere"
    where.mkdir()
    proc = subprocess.run([str(env_dir / "bin" / "hpcpar"), "script", "slurm", "--cpus-per-task", "4",
                           "--mem", "8GB", "--walltime", "1:30:00", "--", "python", "train.py"],
                          capture_output=True, text=True, cwd=where, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --mem=8192M" in proc.stdout and "exec python train.py" in proc.stdout
    located = subprocess.run([str(py), "-c", "import hpcpar.templates as t; print(t.shipped_template_dir())"],
                             capture_output=True, text=True, cwd=where, timeout=60)
    assert str(env_dir) in located.stdout and "site-packages/hpcpar/templates" in located.stdout
