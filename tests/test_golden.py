"""Golden job scripts: one Resources value rendered by ``hpcpar script`` for every scheduler.

4 CPUs, 8 GB, 1:30:00, queue ``debug``, account ``acct``, 2 GPUs and one extra directive (a
"no mail" option in each scheduler's own syntax). Each file shows memory and walltime in its
scheduler's documented units:

=============  ==============================================  =========================
file           memory                                          walltime
=============  ==============================================  =========================
slurm.sh       ``--mem=8192M`` (MiB, sbatch(1))                ``--time=0-01:30:00``
pbs-pro.sh     ``select=1:ncpus=4:mem=8192mb`` (pbs_resources)  ``walltime=01:30:00``
pbs-torque.sh  ``-l mem=8192mb``                               ``walltime=01:30:00``
lsf.sh         ``-M 8192`` / ``rusage[mem=8192]`` (MB unit)     ``-W 1:30`` ([HH:]MM)
sge.sh         ``h_vmem=2048M`` per slot x 4 slots             ``h_rt=01:30:00``
=============  ==============================================  =========================

``*-array.sh``: the same schedulers for a 5-line ``--array-file`` with ``--max-running 2``; the
array request is a directive in each scheduler's syntax and index base (``ARRAY_CASES``).
tests/test_cli_arrays.py submits ``slurm-array.sh`` by hand with the real sbatch.

Regenerate after an intended change: ``HPCPAR_UPDATE_GOLDEN=1 pytest tests/test_golden.py``.
``sbatch --test-only`` checks the SLURM one (slurm marker); ``qsub -w v`` checks the SGE one
inside the Grid Engine container (tests/test_sge.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hpcpar.cli import main

GOLDEN = Path(__file__).parent / "data" / "golden"
COMMON = ["--cpus-per-task", "4", "--mem", "8GB", "--walltime", "1:30:00", "--queue", "debug",
          "--account", "acct", "--gpus", "2", "--job-name", "golden"]
CASES = {
    "slurm.sh": ["slurm", "--extra-directive=--mail-type=NONE"],
    "pbs-pro.sh": ["pbs", "--dialect", "pro", "--extra-directive=-m n"],
    "pbs-torque.sh": ["pbs", "--dialect", "torque", "--extra-directive=-m n"],
    "lsf.sh": ["lsf", "--mem-unit", "MB", "--extra-directive=-L /bin/bash"],
    "sge.sh": ["sge", "--extra-directive=-m n"],
}
COMMAND = ["--", "python", "train.py", "--epochs", "10"]
#: read at import: the autouse fixture in conftest.py clears HPCPAR_* variables for each test
UPDATE = os.environ.get("HPCPAR_UPDATE_GOLDEN") == "1"


def render(capsys, name: str) -> str:
    backend, *extra = CASES[name]
    assert main(["script", backend, *COMMON, *extra, *COMMAND]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_script(capsys, name):
    text = render(capsys, name)
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} missing: run with HPCPAR_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} differs from {path}; HPCPAR_UPDATE_GOLDEN=1 to accept"


#: job arrays: 5 lines of an array file, at most 2 running; each scheduler's own index base and
#: throttle (sbatch --array=0-4%2; qsub -J 0-4%2 (PBS Pro) / -t 0-4%2 (Torque); bsub -J
#: "name[1-5]%2"; qsub -t 1-5 -tc 2 (Grid Engine)). The array file's path reads ``CMDS``.
ARRAY_CASES = {
    "slurm-array.sh": ["slurm"],
    "pbs-pro-array.sh": ["pbs", "--dialect", "pro"],
    "pbs-torque-array.sh": ["pbs", "--dialect", "torque"],
    "lsf-array.sh": ["lsf"],
    "sge-array.sh": ["sge"],
}


def render_array(capsys, tmp_path, name: str) -> str:
    cmds = tmp_path / "cmds.txt"
    cmds.write_text("".join(f"echo {i}\n" for i in range(5)))
    backend, *extra = ARRAY_CASES[name]
    assert main(["script", backend, *extra, "--job-name", "golden", "--array-file", str(cmds),
                 "--max-running", "2", "--mem", "1GB", "--walltime", "0:10:00"]) == 0
    return capsys.readouterr().out.replace(str(cmds.resolve()), "CMDS")


@pytest.mark.parametrize("name", sorted(ARRAY_CASES))
def test_golden_array_script(capsys, tmp_path, name):
    text = render_array(capsys, tmp_path, name)
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert path.is_file(), f"{path} missing: run with HPCPAR_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} differs from {path}; HPCPAR_UPDATE_GOLDEN=1 to accept"


@pytest.mark.parametrize("name,line", [
    ("slurm-array.sh", "#SBATCH --array=0-4%2"),
    ("pbs-pro-array.sh", "#PBS -J 0-4%2"),
    ("pbs-torque-array.sh", "#PBS -t 0-4%2"),
    ("lsf-array.sh", "#BSUB -J 'golden[1-5]%2'"),
    ("sge-array.sh", "#$ -t 1-5"),
    ("sge-array.sh", "#$ -tc 2"),
])
def test_golden_array_directives(name, line):
    assert line in (GOLDEN / name).read_text().splitlines(), (name, line)


@pytest.mark.parametrize("name,lines", [
    ("slurm.sh", ["#SBATCH --mem=8192M", "#SBATCH --time=0-01:30:00", "#SBATCH --cpus-per-task=4"]),
    ("pbs-pro.sh", ["#PBS -l select=1:ncpus=4:mem=8192mb:ngpus=2", "#PBS -l walltime=01:30:00"]),
    ("pbs-torque.sh", ["#PBS -l nodes=1:ppn=4:gpus=2", "#PBS -l mem=8192mb", "#PBS -l walltime=01:30:00"]),
    ("lsf.sh", ["#BSUB -n 4", "#BSUB -M 8192", "#BSUB -R 'rusage[mem=8192]'", "#BSUB -W 1:30"]),
    ("sge.sh", ["#$ -pe smp 4", "#$ -l h_vmem=2048M", "#$ -l h_rt=01:30:00", "#$ -l gpu=2"]),
])
def test_golden_units(name, lines):
    text = (GOLDEN / name).read_text().splitlines()
    for line in lines:
        assert line in text, (name, line)


@pytest.mark.slurm
def test_sbatch_test_only_accepts_the_slurm_golden(slurm, tmp_path):
    """``sbatch --test-only`` on the golden, minus what this 2-CPU, GPU-less single host cannot
    give: the ``--gpus-per-task`` line is removed (refused: "Invalid generic resource (gres)
    specification"), and on the command line (which overrides directives) ``--time`` is lowered
    to the ``debug`` partition's MaxTime 1:00:00 (EnforcePartLimits=ALL refuses 1:30:00) and
    ``--cpus-per-task`` to the node's 2 CPUs. Every other line is checked as written."""
    golden = GOLDEN / "slurm.sh"
    text = golden.read_text()
    refused = subprocess.run(["sbatch", "--test-only", str(golden)], check=False, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "gres" in refused.stderr, refused.stderr
    assert "#SBATCH --gpus-per-task=2\n" in text
    variant = tmp_path / "golden-nogpu.sh"
    variant.write_text(text.replace("#SBATCH --gpus-per-task=2\n", ""))
    proc = subprocess.run(["sbatch", "--test-only", "--time=01:00:00", "--cpus-per-task=2", str(variant)],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "to start at" in proc.stderr, proc.stderr
