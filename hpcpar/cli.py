"""The ``hpcpar`` command line.

::

    hpcpar script slurm --cpus-per-task 4 --mem 8GB --walltime 1:30:00 -- python train.py  # print the job script
    hpcpar submit slurm --array-file commands.txt                                           # one array task per line
    hpcpar config [--profile P] [BACKEND]                                                   # resolved options, with sources
    hpcpar backends | runs | status RUN | logs RUN [--task I] | cancel RUN | clean --older-than 7d
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

from ._version import __version__
from .cli_config import WALLTIME_HELP, describe, resolve_cli
from .config import Options
from .errors import HpcparError
from .resources import parse_walltime

BACKEND_HELP = ("scheduler: one of %(choices)s (default: $HPCPAR_BACKEND, else the profile's "
                "backend, else local)")


def _resource_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("resources (per array task)")
    g.add_argument("--cpus-per-task", "-c", metavar="N", help="CPU cores (default 1)")
    g.add_argument("--mem", metavar="SIZE", help='memory, e.g. "4GB", "500M" (binary units)')
    g.add_argument("--walltime", "--time", "-t", metavar="TIME", help=WALLTIME_HELP)
    g.add_argument("--gpus", metavar="N", help="GPUs (default 0)")
    g.add_argument("--nodes", metavar="N", help="nodes (default 1)")
    g.add_argument("--queue", "--partition", "-q", "-p", metavar="NAME",
                   help="queue (rendered as --partition on SLURM)")
    g.add_argument("--account", "-A", metavar="NAME", help="account to charge")
    g.add_argument("--qos", metavar="NAME", help="quality of service")
    g.add_argument("--extra-directive", action="append", default=None, metavar="OPT",
                   dest="extra_directives", help="raw scheduler option, one directive line (repeatable)")
    g.add_argument("--setup", action="append", default=None, metavar="LINE",
                   help='shell line run first, e.g. "module load python" (repeatable)')
    o = p.add_argument_group("job")
    o.add_argument("--job-name", "-J", metavar="NAME", help="job name")
    o.add_argument("--profile", metavar="NAME", help="profile from the config file")
    o.add_argument("--template-dir", metavar="DIR", help="folder of templates to use first")
    o.add_argument("--array-file", metavar="FILE",
                   help="one array task per line of FILE (each line run with bash)")
    o.add_argument("--max-running", metavar="N",
                   help="array tasks running at once (SLURM --array=...%%N, PBS -J/-t ...%%N, "
                        "LSF name[...]%%N, SGE -tc N)")
    o.add_argument("--workdir", metavar="DIR", help="folder the job starts in (default: here)")
    s = p.add_argument_group("scheduler-specific")
    s.add_argument("--dialect", choices=("pro", "pbspro", "openpbs", "torque"),
                   help="pbs: PBS Professional/OpenPBS or Torque (default: detected with `qstat --version`)")
    s.add_argument("--pe", metavar="NAME",
                   help="sge: parallel environment for -pe NAME <cpus-per-task> (default smp)")
    s.add_argument("--mem-unit", choices=("KB", "MB", "GB", "TB", "PB", "EB"), type=str.upper,
                   help="lsf: the site's LSF_UNIT_FOR_LIMITS, the unit of -M and rusage[mem=] (default MB)")


def _print_command_arg(p: argparse.ArgumentParser, where: str) -> None:
    p.add_argument("--print-command", action="store_true",
                   help=f"also print the submit command(s), shell-quoted, {where}")


def _executor_kwargs(a) -> dict:
    names = ("cpus_per_task", "mem", "walltime", "gpus", "nodes", "queue", "account", "qos",
             "extra_directives", "setup", "job_name", "template_dir", "max_running", "workdir",
             "dialect", "pe", "mem_unit")
    return {n: getattr(a, n) for n in names if getattr(a, n, None) is not None}


def _backend_for(a):
    from .backends import create

    r = resolve_cli(a.backend, a.profile, _executor_kwargs(a))
    return create(r.backend, r.resources, r.options)


def _display(argv, on_stdin: bool, script: str) -> str:
    """A submit argv as a shell line; a script read on stdin (LSF) shown as ``< script``."""
    return shlex.join(argv) + (f" < {shlex.quote(script)}" if on_stdin else "")


def _job_name(a, backend, command: list[str] | None) -> str:
    """--job-name, else the resolved job_name option, else the command's or array file's name."""
    return (a.job_name or backend.options.job_name
            or (Path(command[0]).name if command else Path(a.array_file).stem) or "hpcpar")


def _command(a) -> list[str] | None:
    cmd = list(a.command)
    if not cmd and not a.array_file:
        raise HpcparError("give a command after `--`, or --array-file FILE")
    if cmd and a.array_file:
        raise HpcparError("give either a command or --array-file, not both")
    return cmd or None


def cmd_script(a) -> int:
    from .backends.base import count_lines
    from .backends.batch import BatchBackend

    backend = _backend_for(a)
    command = _command(a)
    array_file = str(Path(a.array_file).resolve()) if a.array_file else None
    name = _job_name(a, backend, command)
    n = count_lines(array_file) if array_file else None
    text = backend.job_script(command, job_name=name, array_file=array_file, array_size=n)
    sys.stdout.write(text)
    if a.print_command and not isinstance(backend, BatchBackend):
        print("bash job.sh", file=sys.stderr)           # no scheduler: the script runs where it is started
    if isinstance(backend, BatchBackend):
        subs = backend.planned_submissions(n or 1, name)
        if a.print_command:
            # what `hpcpar submit` runs for this script (saved as job.sh); its array options
            # are the directives printed above, so `sbatch job.sh` by hand asks the same
            for sub in subs:
                print(_display(sub.argv, backend.spec.script_on_stdin, "job.sh"), file=sys.stderr)
        if len(subs) > 1:
            first = subs[0].indices
            print(f"hpcpar script: note: {n} array tasks need {len(subs)} submissions (the "
                  f"scheduler's default array size limit); the script asks for tasks "
                  f"{first[0]}-{first[-1]} only. `hpcpar submit` submits them all "
                  "(--print-command shows how).", file=sys.stderr)
    return 0


def cmd_submit(a) -> int:
    from . import runstate
    from .backends.batch import BatchBackend
    from .rundir import atomic_write

    backend = _backend_for(a)
    if not isinstance(backend, BatchBackend):
        raise HpcparError(f"`hpcpar submit` needs a batch backend, not {backend.name!r}; "
                          "use `hpcpar script local ... > job.sh && bash job.sh`")
    command = _command(a)
    n = 1
    if a.array_file:
        from .backends.base import array_file_lines

        lines = array_file_lines(a.array_file)          # ConfigError for blank lines
        n = len(lines)
    backend.validate()                                   # the queue, workdir, runs folder
    name = _job_name(a, backend, command)
    rd = runstate.create_run(backend.runs_root(), prefix=name, meta={
        "backend": backend.name, "kind": "command", "job_name": name, "n_chunks": n,
        "command": command, "resources": backend.resources.to_json(), "submissions": []})
    runstate.outcomes_dir(rd).mkdir(mode=0o700, exist_ok=True)
    array_file = None
    if a.array_file:
        atomic_write(rd.path / "commands.txt", "\n".join(lines).encode() + b"\n")   # as given
        array_file = rd.path / "commands.run.txt"        # each line records its exit code
        atomic_write(array_file, "".join(
            _recording(line, runstate.exit_record_path(rd, i)) + "\n"
            for i, line in enumerate(lines)).encode())
    elif command:
        command = ["bash", "-c", _recording(shlex.join(command), runstate.exit_record_path(rd, 0))]
    max_array_size = backend.probe().get("max_array_size")
    ctx = backend.script_context(name, command, run_dir=str(rd.path), log_dir=str(rd.logs_dir),
                                 array_file=str(array_file) if array_file else None,
                                 workdir=backend.options.workdir or os.getcwd(),
                                 array_directives=backend.array_directives(n if a.array_file else None,
                                                                           name, max_array_size))
    atomic_write(rd.script_path, backend.render_script(ctx).encode(), mode=0o700)
    if a.print_command:
        for sub in backend.spec.submissions(str(rd.script_path), list(range(n)),
                                            backend.options.max_running, max_array_size):
            print(_display(sub.argv, backend.spec.script_on_stdin, str(rd.script_path)))
    from concurrent.futures import Future

    run = runstate.Run(rd, {i: runstate.ChunkState(i, Future(), 1) for i in range(n)}, runstate.read(rd))
    try:
        backend.submit_chunks(run, list(range(n)), reason="initial")
    except BaseException:
        run.set_phase(runstate.RunPhase.SUBMIT_FAILED)
        raise
    run.set_phase(runstate.RunPhase.SUBMITTED)
    jobs = ",".join(s["job_id"] for s in run.meta["submissions"])
    print(f"submitted job {jobs} ({n} array task{'s' * (n != 1)}); run {rd.run_id}")
    print(f"  logs: {rd.logs_dir}   follow with: hpcpar status {rd.run_id}")
    return 0


def _recording(line: str, record: Path) -> str:
    """A shell line running ``line`` with bash, then writing its exit code to ``record``
    (atomically: a temporary file renamed), and exiting with it. Every value is quoted."""
    tmp = f"{record}.tmp"
    return (f"bash -c {shlex.quote(line)}; rc=$?; printf '%s\\n' \"$rc\" > {shlex.quote(tmp)} "
            f"&& mv -f {shlex.quote(tmp)} {shlex.quote(str(record))}; exit $rc")


def cmd_config(a) -> int:
    sys.stdout.write(describe(resolve_cli(a.backend, a.profile, _executor_kwargs(a))))
    return 0


def _run_backend(meta: dict):
    """A backend for a recorded run (status, logs, cancel need only its commands and parsers;
    the options recorded in run.json pick the same dialect)."""
    from .backends import create
    from .resources import Resources

    recorded = meta.get("options") or {}
    scheduler_options = {k: recorded[k] for k in ("dialect", "pe", "mem_unit") if recorded.get(k)}
    return create(meta["backend"], Resources(), Options(**scheduler_options))


def cmd_backends(a) -> int:
    import shutil

    from .backends import backend_names, create
    from .resources import Resources

    for name in backend_names():
        backend = create(name, Resources(), Options())
        spec = getattr(backend, "spec", None)        # batch backends; for pbs, of the dialect found
        cmds = spec.commands if spec is not None else ()
        missing = [c for c in cmds if shutil.which(c) is None]
        if not cmds:
            state = f"available ({getattr(backend, 'where', 'process pool on this machine')})"
        elif not missing:
            state = "available (" + ", ".join(cmds) + " found)"
        else:
            state = "not available: missing " + ", ".join(missing)
        print(f"{name:6s} {state}")
    return 0


def cmd_runs(a) -> int:
    from .runs import list_runs, summary

    rows = [summary(rd) for rd in list_runs(a.runs_dir)]
    if not rows:
        print("no runs")
        return 0
    print(f"{'RUN':45s} {'BACKEND':7s} {'STATE':13s} {'RESULTS':>9s}  JOBS")    # oldest first
    for r in rows:
        print(f"{r['run_id']:45s} {r['backend']:7s} {r['state']:13s} "
              f"{r['results']:>4d}/{r['chunks']:<4d}  {','.join(r['job_ids'])}")
    return 0


def cmd_status(a) -> int:
    """A run's progress. What the scheduler says now is recorded in the run folder (each ended
    array task's state, exit code, logs and command; the run's end), so it is still shown
    after the driver is gone and after the scheduler forgets the jobs."""
    from .observe import observe, task_views
    from .runs import resolve_run, summary

    rd = resolve_run(a.run, a.runs_dir)
    meta = rd.read_meta()
    statuses: dict = {}
    spec = None
    note = ""
    if meta.get("submissions"):
        from . import runstate

        backend = _run_backend(meta)
        spec = getattr(backend, "spec", None)
        if spec is not None and not runstate.shown_phase(rd, meta).finished:
            try:
                statuses = observe(rd, backend)
            except HpcparError as exc:
                note = f"(could not ask the scheduler: {exc})"
            except OSError as exc:
                note = f"(could not record what the scheduler said in {rd.path}: {exc})"
    s = summary(rd)
    created = datetime.datetime.fromtimestamp(s["created"]).isoformat(timespec="seconds")
    done = (f"results  {s['results']} of {s['chunks']} chunks" if s["kind"] != "command"
            else f"ended    {s['results']} of {s['chunks']} array tasks")
    print(f"run      {s['run_id']}\nfolder   {rd.path}\nbackend  {s['backend']}  ({s['kind']}, job name "
          f"{s['job_name']}, created {created})\nstate    {s['state']}\n{done}\n"
          f"jobs     {', '.join(s['job_ids']) or '-'}")
    if note:
        print(note)
    if spec is None:
        return 0
    views = task_views(rd, statuses, spec)
    counts: dict[str, int] = {}
    for v in views:
        if v.state != "UNKNOWN" or v.recorded:
            key = v.state + (" (recorded)" if v.recorded else f" ({v.reason})" if v.reason else "")
            counts[key] = counts.get(key, 0) + 1
    if len(views) - sum(counts.values()):
        counts["not known to the scheduler, nothing recorded"] = len(views) - sum(counts.values())
    print("tasks    " + (", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "-"))
    for v in views:
        if not v.failed:
            continue
        code = "unknown" if v.exit_code is None else v.exit_code
        what = "cancelled" if v.cancelled else "failed"
        unit = "worker" if meta.get("pull") else "index"      # a pull run's tasks are workers
        print(f"{what:9s}{unit} {v.index} (array task {v.task_id}): {v.state}, exit code {code}")
        if v.command is not None:
            print(f"         command: {v.command}")
        print(f"         log: {v.logs[-1]}")
    return 0


def cmd_logs(a) -> int:
    from .runs import resolve_run, tail_lines

    rd = resolve_run(a.run, a.runs_dir)
    meta = rd.read_meta()
    if a.tail is not None and a.tail < 0:
        raise HpcparError("--tail takes a count of lines >= 0")
    subs = [s for s in meta.get("submissions", []) if a.task is None or a.task in s["indices"]
            or a.task in s.get("workers", ())]       # a pull run's tasks are its workers
    if not subs:
        print(f"no submission of task {a.task} in run {rd.run_id}", file=sys.stderr)
        return 1
    from .runstate import recorded_tasks, worker_tasks

    spec = _run_backend(meta).spec
    tasks = ({w: [(t, "")] for w, t in worker_tasks(meta).items()} if meta.get("pull")
             else recorded_tasks(meta))
    shown = 0
    for i in sorted(tasks) if a.task is None else [a.task]:
        for task_id, _ in tasks.get(i, ()):
            stem = spec.log_stem(task_id)
            for ext in ("out", "err"):
                path = rd.logs_dir / f"{stem}.{ext}"
                if path.is_file():
                    print(f"==> {path} <==")
                    if a.tail is None:
                        with open(path, errors="replace") as fh:
                            shutil.copyfileobj(fh, sys.stdout)
                    else:
                        sys.stdout.write(tail_lines(path, a.tail))
                    shown += 1
    if not shown:
        print(f"no log files yet in {rd.logs_dir}", file=sys.stderr)
    return 0


def cmd_report(a) -> int:
    from .report import load_timeline, summary_text

    if a.rows < 0 or a.slowest < 0:
        raise HpcparError("--rows and --slowest take a count >= 0")
    tl = load_timeline(a.run, a.runs_dir)
    print(summary_text(tl, slowest=a.slowest, max_rows=a.rows), end="")
    png = a.png or (None if a.html or a.no_picture else f"{tl.run_id}.png")
    if png or a.html:
        from .report_figure import write_html, write_png

        for path, write in ((png, write_png), (a.html, write_html)):
            if path:
                write(tl, path)
                print(f"wrote {path}")
    return 0


def cmd_cancel(a) -> int:
    """Ask the run to stop: a cancel request in its folder (which its driver's watcher, or a
    later ``hpcpar.attach``, honours and records), then cancel its jobs here too, in case no
    driver is alive. run.json is never rewritten from here."""
    from . import runstate
    from .runs import resolve_run

    rd = resolve_run(a.run, a.runs_dir)
    meta = runstate.read(rd)
    phase = runstate.shown_phase(rd, meta)
    if phase.finished:
        print(f"run {rd.run_id} has already finished ({phase}); nothing to cancel")
        return 0
    runstate.request_cancel(rd)
    ids = sorted({s["job_id"] for s in meta.get("submissions", [])}, key=lambda j: (len(j), j))
    if not ids:
        print(f"cancel requested for run {rd.run_id} (no job submitted yet)")
        return 0
    _run_backend(meta).cancel_ids(ids)
    print(f"cancelled job(s) {', '.join(ids)} of run {rd.run_id}")
    return 0


def cmd_clean(a) -> int:
    """Remove run folders: finished ones not modified for ``--older-than`` (``0s``: any age);
    with ``--all``, every run whatever its state (the unfinished ones' jobs are cancelled
    first, as ``hpcpar cancel`` does). A run whose driver is gone is first looked at (one
    status call), so one that ended unobserved counts as finished."""
    from .rundir import RunDir
    from .runs import clean, list_runs

    older_than = _age(a.older_than) if a.older_than is not None else (0 if a.all else 7 * 86400)
    for rd in list_runs(a.runs_dir):            # learn how unobserved runs ended
        _observe_quietly(rd)
    targets = clean(older_than, a.runs_dir, dry_run=True, all_states=a.all)
    removed = []
    for path in targets:
        if not a.dry_run:
            _cancel_unfinished(RunDir(path))   # --all: an unfinished run's jobs go first
            try:
                shutil.rmtree(path)
            except OSError as exc:
                print(f"hpcpar clean: could not remove {path}: {exc}", file=sys.stderr)
                continue
        removed.append(path)
    verb = "would remove" if a.dry_run else "removed"
    for p in removed:
        print(f"{verb} {p}")
    print(f"{verb} {len(removed)} run folder(s)")
    return 0 if len(removed) == len(targets) else 1


def _age(text: str) -> float:
    """``--older-than``: a duration as for walltimes, or zero (``0``, ``0s``, ``0d``)."""
    if re.fullmatch(r"\s*0+(\.0*)?\s*[a-zA-Z]*\s*", text):
        return 0.0
    return float(parse_walltime(text, "--older-than") or 0)


def _observe_quietly(rd) -> None:
    from . import runstate
    from .observe import observe

    try:
        meta = runstate.read(rd)
        if runstate.shown_phase(rd, meta).finished or not meta.get("submissions"):
            return
        backend = _run_backend(meta)
        if getattr(backend, "spec", None) is not None:
            observe(rd, backend)
    except (HpcparError, OSError, ValueError, KeyError) as exc:
        print(f"hpcpar clean: note: could not look at run {rd.run_id}: {exc}", file=sys.stderr)


def _cancel_unfinished(rd) -> None:
    """Before ``clean --all`` removes an unfinished run: record a cancel and cancel its jobs."""
    from . import runstate

    try:
        meta = runstate.read(rd)
        if runstate.shown_phase(rd, meta).finished:
            return
        runstate.request_cancel(rd)
        ids = sorted({s["job_id"] for s in meta.get("submissions", [])}, key=lambda j: (len(j), j))
        if ids:
            _run_backend(meta).cancel_ids(ids)
    except (HpcparError, OSError, ValueError, KeyError) as exc:
        print(f"hpcpar clean: note: could not cancel run {rd.run_id}: {exc}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    from .backends import backend_names

    p = argparse.ArgumentParser(
        prog="hpcpar", description="Print, submit and follow cluster jobs; see also the Python API "
        "(hpcpar.Executor).", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  hpcpar script slurm -c 4 --mem 8GB -t 1:30:00 -q debug -- python train.py\n"
               "  hpcpar submit slurm --array-file commands.txt\n  hpcpar status RUN_ID")
    p.add_argument("--version", action="version", version=f"hpcpar {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    for name, fn, text in (("script", cmd_script, "print the job script for a command (nothing is submitted)"),
                           ("submit", cmd_submit, "submit a command, or one array task per line of a file")):
        s = sub.add_parser(name, help=text, description=text,
                           epilog=f"put the command after `--`: hpcpar {name} slurm -c 2 -- python train.py --lr 0.1")
        s.add_argument("backend", choices=backend_names(), nargs="?", help=BACKEND_HELP)
        _resource_args(s)
        _print_command_arg(s, "on stderr (stdout stays the script)" if name == "script"
                           else "before submitting")
        s.set_defaults(fn=fn)
    text = "print the resolved options and where each came from (nothing is submitted)"
    s = sub.add_parser("config", help=text, description=text + ": command line, HPCPAR_* "
                       "environment variables, a profile in the config file, or the default")
    s.add_argument("backend", choices=backend_names(), nargs="?", help=BACKEND_HELP)
    _resource_args(s)
    s.set_defaults(fn=cmd_config)

    s = sub.add_parser("backends", help="list backends and whether their commands are found here",
                       description="list backends and whether their commands are found here")
    s.set_defaults(fn=cmd_backends)
    for name, fn, text in (("runs", cmd_runs, "list run folders"),
                           ("status", cmd_status, "show a run's progress and its jobs' states"),
                           ("logs", cmd_logs, "print a run's scheduler logs"),
                           ("cancel", cmd_cancel, "cancel a run's jobs"),
                           ("clean", cmd_clean, "remove finished run folders")):
        s = sub.add_parser(name, help=text, description=text)
        if name in ("status", "logs", "cancel"):
            s.add_argument("run", help="run id or run folder path")
        if name == "logs":
            s.add_argument("--task", type=int, help="array task (chunk) index")
            s.add_argument("--tail", type=int, metavar="N",
                           help="only the last N lines of each log (read from its end)")
        if name == "clean":
            s.add_argument("--older-than", default=None, metavar="AGE",
                           help='age since last change, e.g. "7d", "12h", "0s" (any age); '
                                "default 7d, or any age with --all")
            s.add_argument("--all", action="store_true",
                           help="every run whatever its state; unfinished runs' jobs are "
                                "cancelled first")
            s.add_argument("--dry-run", action="store_true", help="only list what would go")
        s.add_argument("--runs-dir", help="runs folder (default $HPCPAR_RUNS_DIR or the user data dir)")
        s.set_defaults(fn=fn)
    text = "summarise a finished or running batch run and draw its timeline (one bar per chunk)"
    s = sub.add_parser("report", help=text, description=text + ". The picture needs matplotlib: "
                       "pip install 'hpcpar[report]'.")
    s.add_argument("run", help="run id or run folder path")
    s.add_argument("--png", metavar="FILE", help="write the timeline as a PNG (default RUN_ID.png "
                   "unless --html or --no-picture is given)")
    s.add_argument("--html", metavar="FILE", help="write a self-contained HTML page: summary and "
                   "timeline (inline SVG, no JavaScript)")
    s.add_argument("--no-picture", action="store_true", help="print the summary only")
    s.add_argument("--rows", type=int, default=50, metavar="N", help="chunks in the table (default 50)")
    s.add_argument("--slowest", type=int, default=5, metavar="N", help="slowest chunks listed (default 5)")
    s.add_argument("--runs-dir", help="runs folder (default $HPCPAR_RUNS_DIR or the user data dir)")
    s.set_defaults(fn=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:                      # everything after `--` is the job's command, verbatim
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    a = parser.parse_args(argv)
    a.command = command
    if command and a.cmd not in ("script", "submit"):
        parser.error(f"`hpcpar {a.cmd}` takes no command after --")
    try:
        return a.fn(a)
    except BrokenPipeError:
        # the reader went away (`hpcpar runs | head`): stop quietly, as `ls | head` does; point
        # stdout at /dev/null so the interpreter's final flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (HpcparError, FileNotFoundError, ValueError) as exc:
        print(f"hpcpar {a.cmd}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
