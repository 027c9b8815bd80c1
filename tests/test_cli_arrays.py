"""`hpcpar script` prints what is submitted: the array request is in the script as directives,
built from the same Submission as the submit command (`--print-command`); walltime flags read
bare numbers as each scheduler does. Offline, except the one `slurm` test at the end, which
submits the printed script by hand with sbatch."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hpcpar
from hpcpar.backends import create
from hpcpar.cli import main
from hpcpar.config import Options
from hpcpar.resources import Resources

#: directive prefix of each scheduler's job script
PREFIX = {"slurm": "#SBATCH ", "pbs": "#PBS ", "lsf": "#BSUB ", "sge": "#$ "}
BACKENDS = [("slurm", []), ("pbs", ["--dialect", "pro"]), ("pbs", ["--dialect", "torque"]),
            ("lsf", []), ("sge", [])]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def commands_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "cmds.txt"
    path.write_text("".join(f"echo line {i}\n" for i in range(n)))
    return path


def directives(script: str, backend: str) -> list[list[str]]:
    return [shlex.split(line[len(PREFIX[backend]):]) for line in script.splitlines()
            if line.startswith(PREFIX[backend])]


@pytest.mark.parametrize("backend,extra", BACKENDS, ids=["slurm", "pbs-pro", "pbs-torque", "lsf", "sge"])
def test_printed_command_carries_exactly_the_scripts_array_directives(capsys, tmp_path, backend, extra):
    """Every array option of the submit command (--print-command) is a directive of the script."""
    cmds = commands_file(tmp_path, 7)
    code, out, err = run_cli(capsys, "script", backend, *extra, "--array-file", str(cmds),
                             "--max-running", "3", "--print-command")
    assert code == 0, err
    (command,) = err.splitlines()
    argv = shlex.split(command.replace(" < job.sh", ""))
    assert argv[0] in ("sbatch", "qsub", "bsub")
    options = directives(out, backend)
    spec = create(backend, Resources(), Options(max_running=3, dialect=(extra or [None, None])[1])).spec
    (sub,) = spec.planned_submissions(range(7), 3, None, "cmds")
    assert sub.argv == tuple(argv)
    for option in sub.array_options:
        assert list(option) in options, (option, options)
        at = argv.index(option[0])
        assert tuple(argv[at:at + len(option)]) == option
    # the throttle is there, in each scheduler's syntax
    text = " ".join(" ".join(o) for o in sub.array_options)
    assert {"slurm": "--array=0-6%3", "pbs": "0-6%3", "lsf": "cmds[1-7]%3", "sge": "-t 1-7 -tc 3"}[backend] in text


def test_script_without_array_has_no_array_directive(capsys):
    code, out, _ = run_cli(capsys, "script", "slurm", "--", "python", "train.py")
    assert code == 0
    assert not [line for line in out.splitlines() if line.startswith("#SBATCH --array")]


def test_pbs_pro_single_line_is_a_plain_job_with_its_index(capsys, tmp_path):
    """qsub -J needs a range; one line goes as a plain job with HPCPAR_ARRAY_INDEX (qsub -v)."""
    code, out, err = run_cli(capsys, "script", "pbs", "--dialect", "pro", "--array-file",
                             str(commands_file(tmp_path, 1)), "--print-command")
    assert code == 0
    assert "#PBS -v HPCPAR_ARRAY_INDEX=0" in out.splitlines() and "#PBS -J" not in out
    assert err.split() == ["qsub", "-v", "HPCPAR_ARRAY_INDEX=0", "job.sh"]


def test_more_lines_than_one_array_takes_notes_the_split_and_runs_the_right_lines(capsys, tmp_path):
    """2,500 lines exceed SLURM's default MaxArraySize (1001): three submissions, the script asks
    for the first; the others pass HPCPAR_INDEX_OFFSET, which the line lookup adds."""
    cmds = commands_file(tmp_path, 2500)
    code, out, err = run_cli(capsys, "script", "slurm", "--array-file", str(cmds), "--print-command")
    assert code == 0
    assert "#SBATCH --array=0-1000" in out.splitlines()
    commands = [line for line in err.splitlines() if line.startswith("sbatch")]
    assert commands == ["sbatch --parsable --array=0-1000 job.sh",
                        "sbatch --parsable --array=0-1000 --export=ALL,HPCPAR_INDEX_OFFSET=1001 job.sh",
                        "sbatch --parsable --array=0-497 --export=ALL,HPCPAR_INDEX_OFFSET=2002 job.sh"]
    assert "2500 array tasks need 3 submissions" in err
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "5", "HPCPAR_INDEX_OFFSET": "2002"}
    proc = subprocess.run(["bash", "-c", out], capture_output=True, text=True, env=env, check=False, timeout=30)
    assert proc.stdout == "line 2007\n"


@pytest.mark.parametrize("backend,var,first", [("slurm", "SLURM_ARRAY_TASK_ID", 0),
                                               ("lsf", "LSB_JOBINDEX", 1), ("sge", "SGE_TASK_ID", 1)])
def test_each_array_index_runs_its_own_line(capsys, tmp_path, backend, var, first):
    """The index base differs (SLURM from 0, LSF and Grid Engine from 1): index first+k runs line k."""
    code, out, _ = run_cli(capsys, "script", backend, "--array-file", str(commands_file(tmp_path, 3)))
    assert code == 0
    ran = [subprocess.run(["bash", "-c", out], capture_output=True, text=True, check=False, timeout=30,
                          env={**os.environ, var: str(first + k)}).stdout for k in range(3)]
    assert ran == ["line 0\n", "line 1\n", "line 2\n"]


def test_executor_job_script_shows_the_array_a_run_asks_for():
    ex = hpcpar.Executor("slurm", max_running=4, job_name="fit")
    assert "#SBATCH --array=0-9%4" in ex.job_script(array_size=10).splitlines()
    assert "--array" not in ex.job_script()
    lsf = hpcpar.Executor("lsf", job_name="fit").job_script(array_size=3)
    assert "#BSUB -J 'fit[1-3]'" in lsf.splitlines() and "#BSUB -J fit" not in lsf.splitlines()


FAKE_SBATCH = """#!/bin/sh
printf '%s\\n' "$@" > "$FAKE_LOG"
echo 4242
"""


def test_submit_print_command_is_the_argv_run(capsys, tmp_path, monkeypatch):
    """`hpcpar submit --print-command` prints the argv that reaches sbatch (a fake sbatch
    records its arguments), and the script it submits holds the same array directive."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", FAKE_SBATCH), ("squeue", "#!/bin/sh\n"), ("scancel", "#!/bin/sh\n"),
                       ("scontrol", "#!/bin/sh\necho MaxArraySize=1001\n"), ("sinfo", "#!/bin/sh\n")):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "argv"))
    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(tmp_path / "runs"))
    code, out, err = run_cli(capsys, "submit", "slurm", "--array-file", str(commands_file(tmp_path, 5)),
                             "--max-running", "2", "--print-command")
    assert code == 0, err
    printed = shlex.split(out.splitlines()[0])
    ran = (tmp_path / "argv").read_text().splitlines()
    assert printed == ["sbatch", *ran] and "--array=0-4%2" in ran
    assert "#SBATCH --array=0-4%2" in Path(ran[-1]).read_text().splitlines()
    assert "submitted job 4242 (5 array tasks)" in out


@pytest.mark.parametrize("backend,walltime,line", [
    ("slurm", "90", "#SBATCH --time=0-01:30:00"),           # sbatch(1): a bare number is minutes
    ("lsf", "90", "#BSUB -W 1:30"),                         # bsub -W [hour:]minute
    ("lsf", "1:30", "#BSUB -W 1:30"),
    ("pbs", "90", "#PBS -l walltime=00:01:30"),             # pbs_resources: seconds
    ("sge", "90", "#$ -l h_rt=00:01:30"),                   # sge_types time_specifier: seconds
    ("slurm", "1:30:00", "#SBATCH --time=0-01:30:00"),
    ("sge", "90min", "#$ -l h_rt=01:30:00"),
])
def test_bare_walltime_follows_the_scheduler(capsys, backend, walltime, line):
    extra = ["--dialect", "pro"] if backend == "pbs" else []
    code, out, err = run_cli(capsys, "script", backend, *extra, "-t", walltime, "--", "true")
    assert code == 0, err
    assert line in out.splitlines()


def test_bare_walltime_refused_where_no_convention(capsys):
    code, _, err = run_cli(capsys, "script", "local", "-t", "90", "--", "true")
    assert code == 2 and "give a unit: '90min', '90s'" in err
    code, _, err = run_cli(capsys, "script", "slurm", "--time", "0", "--", "true")
    assert code == 2 and "zero is not a walltime" in err


def test_python_api_and_profiles_keep_seconds(tmp_path, monkeypatch, capsys):
    """Only the command-line flag follows sbatch; walltime=90 elsewhere is still 90 s."""
    assert hpcpar.Executor("slurm", walltime=90).resources.walltime == 90
    assert hpcpar.Executor("slurm", walltime="90").resources.walltime == 90
    config = tmp_path / "config.toml"
    config.write_text('[profiles.p]\nbackend = "slurm"\nwalltime = "90"\n')
    monkeypatch.setenv("HPCPAR_CONFIG", str(config))
    code, out, _ = run_cli(capsys, "script", "--profile", "p", "--", "true")
    assert code == 0 and "#SBATCH --time=0-00:01:30" in out.splitlines()


def test_every_cli_option_has_help():
    import argparse

    from hpcpar.cli import build_parser

    parser = build_parser()
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(action.choices.values())
    seen = 0
    for p in parsers:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            seen += 1
            assert action.help and action.help != argparse.SUPPRESS, (p.prog, action.option_strings or action.dest)
    assert seen > 50


def test_script_help_shows_the_scheduler_options_and_the_walltime_rule(capsys):
    with pytest.raises(SystemExit):
        main(["script", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("--dialect", "--pe NAME", "--mem-unit", "--print-command", "--max-running",
                   "minutes on slurm (sbatch -t 90)", "seconds on pbs and sge"):
        assert needle in text, needle


@pytest.mark.slurm
def test_hand_submitted_array_script_runs_every_line_at_most_2_at_once(slurm, tmp_path):
    """`hpcpar script slurm --array-file cmds.txt --max-running 2 > job.sh; sbatch job.sh`:
    every line runs once, and no more than 2 ran at any moment (from the times they recorded)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    n = 5
    cmds = tmp_path / "cmds.txt"
    cmds.write_text("".join(f"date +%s.%N > {marks}/{i}.start; sleep 2; date +%s.%N > {marks}/{i}.end\n"
                            for i in range(n)))
    # the arguments of the golden tests/data/golden/slurm-array.sh, so sbatch checks that file too
    script = subprocess.run([sys.executable, "-m", "hpcpar", "script", "slurm", "--job-name", "golden",
                             "--array-file", str(cmds), "--max-running", "2", "--mem", "1GB",
                             "--walltime", "0:10:00"],
                            capture_output=True, text=True, check=False, timeout=60, cwd=tmp_path)
    assert script.returncode == 0, script.stderr
    golden = (Path(__file__).parent / "data" / "golden" / "slurm-array.sh").read_text()
    assert script.stdout.replace(str(cmds.resolve()), "CMDS") == golden
    job_sh = tmp_path / "job.sh"
    job_sh.write_text(script.stdout)
    sub = subprocess.run(["sbatch", "--parsable", str(job_sh)], capture_output=True, text=True,
                         check=False, timeout=60, cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip().split(";")[0]
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True,
                           check=False, timeout=30).stdout
    assert "ArrayTaskThrottle=2" in shown, shown
    deadline = time.monotonic() + 600
    # `date > f` creates f before it writes it: wait for every end time, not for the files
    while (sum(p.stat().st_size > 0 for p in marks.glob("*.end")) < n
           and time.monotonic() < deadline):
        time.sleep(1)
    spans = []
    for i in range(n):
        start, end = marks / f"{i}.start", marks / f"{i}.end"
        assert start.exists() and end.exists(), f"line {i} did not run: {sorted(os.listdir(marks))}"
        spans.append((float(start.read_text()), float(end.read_text())))
    overlap = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert 1 <= overlap <= 2, spans


def test_pbs_pro_run_script_leaves_J_to_the_command_line():
    """A run's job.sh is resubmitted for single lost indices as plain jobs (qsub refuses -J X-X),
    which cannot cancel an embedded #PBS -J; so on PBS Pro only CLI scripts carry it."""
    ex = hpcpar.Executor("pbs", dialect="pro", job_name="fit")
    assert "#PBS -J" not in ex.job_script(array_size=10)
    backend = create("pbs", Resources(), Options(dialect="pro"))
    assert backend.array_directives(10, "fit") == ["-J 0-9"]
    assert backend.array_directives(10, "fit", for_run=True) == []
    (retry,) = backend.spec.submissions("job.sh", [3], None, None)
    assert retry.argv == ("qsub", "-v", "HPCPAR_ARRAY_INDEX=3", "job.sh")
    slurm = create("slurm", Resources(), Options())
    assert slurm.array_directives(10, "fit", for_run=True) == ["--array=0-9"]
