"""EMULATOR: not IBM LSF; translates to SLURM for integration tests; real
guarantee comes from documented-format parser tests.

Shared implementation of the ``bsub``, ``bjobs`` and ``bkill`` emulators in
this directory.  They translate the LSF 10.1 command-line interface (as
documented by IBM) onto a running SLURM cluster (see
scripts/slurm-single-host) so hpcpar's LSF backend can be exercised end to
end.  Only the subset of LSF that hpcpar uses is emulated; anything else is
rejected loudly rather than silently misbehaving.

Identity mapping: the LSF job ID *is* the SLURM job ID (for arrays, the SLURM
array master id %A); an LSF array index is the SLURM array task id.

Python 3 standard library only.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterable

DEFAULT_QUEUE = "normal"
COMMENT_TAG = "lsfemu:"

# ------------------------------------------------------------------ helpers --


def die(prog: str, msg: str, code: int = 255) -> None:
    sys.stderr.write(f"{prog}: {msg}\n")
    sys.exit(code)


def run(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True)


def queue_to_partition(queue: str | None) -> str | None:
    """LSF queue -> SLURM partition.  ``normal`` (LSF's usual default queue)
    maps to SLURM's default partition.  LSFEMU_QUEUE_MAP="q1=p1,q2=p2"
    overrides; any other queue name is used as the partition name."""
    mapping = {}
    for item in os.environ.get("LSFEMU_QUEUE_MAP", "").split(","):
        if "=" in item:
            k, v = item.split("=", 1)
            mapping[k.strip()] = v.strip()
    if queue is None:
        return mapping.get(DEFAULT_QUEUE) or None
    if queue in mapping:
        return mapping[queue] or None
    if queue == DEFAULT_QUEUE:
        return None
    return queue


_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2, "P": 1024**3, "E": 1024**4}


def mem_to_mb(value: str, default_unit: str) -> int:
    """'4096', '4GB', '512M', '100KB' -> MiB (rounded up, at least 1)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTPE]?)B?\s*!?\s*", value, re.IGNORECASE)
    if not m:
        raise ValueError(f"bad memory value {value!r}")
    unit = (m.group(2) or default_unit[:1]).upper()
    mb = float(m.group(1)) * _UNITS[unit]
    return max(1, int(mb + 0.999999))


def lsf_limit_unit() -> str:
    return os.environ.get("LSF_UNIT_FOR_LIMITS", "KB").upper()


def walltime_to_minutes(value: str) -> int:
    """bsub -W [hour:]minute[/host_name | /host_model]"""
    value = value.split("/", 1)[0]
    m = re.fullmatch(r"(?:(\d+):)?(\d+)", value.strip())
    if not m:
        raise ValueError(f"bad run limit {value!r}")
    return int(m.group(1) or 0) * 60 + int(m.group(2))


# LSF job name with array specification: name[1-10:2,15]%3
_ARRAY_RE = re.compile(r"^(?P<name>.*?)\[(?P<spec>[0-9,:\-\s]+)\](?:%(?P<max>\d+))?$")


def parse_job_name(jname: str) -> tuple[str, str | None, int | None]:
    m = _ARRAY_RE.match(jname)
    if not m:
        return jname, None, None
    spec = m.group("spec").replace(" ", "")
    for part in spec.split(","):
        pm = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not pm:
            raise ValueError(f"bad array index list {spec!r}")
        lo = int(pm.group(1))
        hi = int(pm.group(2) or lo)
        if lo < 1 or hi < lo:
            # LSF array indices start at 1
            raise ValueError(f"bad array index {part!r} (LSF indices are >= 1)")
    return m.group("name"), spec, int(m.group("max")) if m.group("max") else None


def encode_meta(meta: dict[str, str]) -> str:
    return COMMENT_TAG + urllib.parse.urlencode(meta)


def decode_meta(comment: str | None) -> dict[str, str]:
    if not comment or not comment.startswith(COMMENT_TAG):
        return {}
    return dict(urllib.parse.parse_qsl(comment[len(COMMENT_TAG):], keep_blank_values=True))


# -------------------------------------------------------------------- bsub --

# options taking a value / flags (LSF 10.1 bsub); anything else is an error
_VALUE_OPTS = {
    "-J", "-n", "-M", "-R", "-W", "-q", "-P", "-o", "-oo", "-e", "-eo", "-G",
    "-cwd", "-env", "-u", "-app", "-sla", "-We", "-c", "-v", "-S", "-D", "-F",
    "-T", "-L", "-g", "-Jd", "-sp", "-m", "-b", "-t", "-E", "-Ep", "-i", "-is",
    "-w", "-outdir", "-gpu", "-alloc_flags", "-ext",
}
_FLAG_OPTS = {"-x", "-B", "-N", "-r", "-rn", "-H", "-ul"}
# accepted but without effect on SLURM (documented in README.md)
_IGNORED = {"-u", "-app", "-sla", "-We", "-c", "-v", "-S", "-D", "-F", "-T",
            "-L", "-g", "-Jd", "-sp", "-m", "-E", "-Ep", "-ext", "-alloc_flags",
            "-B", "-N", "-ul", "-G", "-env"}
_UNSUPPORTED = {"-I", "-Is", "-Ip", "-IS", "-ISs", "-ISp", "-IX", "-K", "-w",
                "-b", "-t", "-i", "-is", "-gpu", "-outdir", "-H"}


def parse_bsub_args(args: list[str], prog: str = "bsub") -> tuple[dict[str, object], list[str]]:
    opts: dict[str, object] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if not a.startswith("-") or a == "-":
            break
        if a in _UNSUPPORTED:
            die(prog, f"option {a} is not supported by this LSF emulator")
        if a in _FLAG_OPTS:
            opts[a] = True
            i += 1
            continue
        if a in _VALUE_OPTS:
            if i + 1 >= len(args):
                die(prog, f"option {a} requires an argument")
            if a == "-R":  # -R may be repeated
                opts.setdefault("-R", [])
                opts["-R"].append(args[i + 1])  # type: ignore[union-attr]
            else:
                opts[a] = args[i + 1]
            i += 2
            continue
        die(prog, f"illegal option -- {a.lstrip('-')}")
    return opts, args[i:]


def embedded_bsub_args(script: str) -> list[str]:
    """#BSUB lines before the first command line of the script."""
    out: list[str] = []
    for n, line in enumerate(script.splitlines()):
        s = line.strip()
        if n == 0 and s.startswith("#!"):
            continue
        if not s:
            continue
        if s.startswith("#BSUB"):
            out.extend(shlex.split(s[len("#BSUB"):], comments=True))
            continue
        if s.startswith("#"):
            continue
        break
    return out


def _lsf_pattern_to_slurm(path: str, is_array: bool) -> str:
    # %J = job id (array: the array job id), %I = array index (0 if not array)
    path = path.replace("%J", "%A" if is_array else "%j")
    path = path.replace("%I", "%a" if is_array else "0")
    return path


def build_wrapper(body: str, jobname: str, queue: str, project: str, ncpus: int) -> str:
    # The body is embedded base64-encoded: sbatch scans the *whole* script
    # for #SBATCH/#PBS/#BSUB-style directives (it would choke on the user's
    # #BSUB lines), so the user's text must not appear verbatim.
    import base64
    b64 = base64.b64encode(body.encode()).decode()
    lines = "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76))
    qname = shlex.quote(queue)
    return f"""#!/bin/bash
# Generated by the LSF emulator (tests/emulators/lsf): NOT IBM LSF.
export LSB_JOBID="${{SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}}"
export LSB_JOBINDEX="${{SLURM_ARRAY_TASK_ID:-0}}"
if [ -n "${{SLURM_ARRAY_TASK_ID:-}}" ]; then
    export LSB_JOBINDEX_END="${{SLURM_ARRAY_TASK_MAX}}"
    export LSB_JOBINDEX_STEP="${{SLURM_ARRAY_TASK_STEP:-1}}"
    export LSB_JOBNAME={shlex.quote(jobname)}"[$SLURM_ARRAY_TASK_ID]"
else
    export LSB_JOBNAME={shlex.quote(jobname)}
fi
export LSB_QUEUE={qname}
export LSB_PROJECT_NAME={shlex.quote(project)}
export LSB_MAX_NUM_PROCESSORS={ncpus}
export LSB_DJOB_NUMPROC={ncpus}
export LSB_HOSTS="$(for i in $(seq 1 {ncpus}); do printf '%s ' "$(hostname -s)"; done)"
export LSB_MCPU_HOSTS="$(hostname -s) {ncpus}"
export LS_SUBCWD="$SLURM_SUBMIT_DIR"
export LSB_SUBCWD="$SLURM_SUBMIT_DIR"
_lsfemu_body="${{TMPDIR:-/tmp}}/lsfemu.$SLURM_JOB_ID.$$"
base64 -d > "$_lsfemu_body" <<'LSFEMU_EOF'
{lines}
LSFEMU_EOF
chmod 700 "$_lsfemu_body"
if head -c 2 "$_lsfemu_body" | grep -q '^#!'; then
    "$_lsfemu_body"
else
    /bin/sh "$_lsfemu_body"
fi
_lsfemu_rc=$?
rm -f "$_lsfemu_body"
exit $_lsfemu_rc
"""


def bsub_main(argv: list[str]) -> int:
    prog = "bsub"
    cli_opts, command = parse_bsub_args(argv, prog)
    if command:
        body = " ".join(command)  # LSF runs the command line through a shell
        script_opts: dict[str, object] = {}
    else:
        if sys.stdin.isatty():
            die(prog, "no command given and no job script on stdin")
        body = sys.stdin.read()
        script_opts, rest = parse_bsub_args(embedded_bsub_args(body), prog)
        if rest:
            die(prog, f"bad #BSUB line near {' '.join(rest)!r}")
    # command line overrides embedded options (-R accumulates)
    opts: dict[str, object] = dict(script_opts)
    for k, v in cli_opts.items():
        if k == "-R" and "-R" in opts:
            opts["-R"] = list(opts["-R"]) + list(v)  # type: ignore[arg-type]
        else:
            opts[k] = v

    sb: list[str] = ["sbatch", "--parsable"]
    jname = str(opts.get("-J", "") or "")
    try:
        base, array_spec, array_max = parse_job_name(jname)
    except ValueError as e:
        die(prog, f"Bad job name. Job not submitted. ({e})")
    if not base:
        base = (command[0] if command else "lsfjob")
        base = os.path.basename(base)
    is_array = array_spec is not None
    sb += ["-J", base]
    if is_array:
        sb.append("--array=" + array_spec + (f"%{array_max}" if array_max else ""))

    ncpus = 1
    if "-n" in opts:
        m = re.fullmatch(r"(\d+)(?:,\d+)?", str(opts["-n"]))
        if not m:
            die(prog, f"bad -n value {opts['-n']!r}")
        ncpus = int(m.group(1))
    sb.append(f"--cpus-per-task={ncpus}")
    sb.append("--ntasks=1")

    mem_mb: int | None = None
    try:
        if "-M" in opts:
            mem_mb = mem_to_mb(str(opts["-M"]), lsf_limit_unit())
        for r in opts.get("-R", []) or []:  # type: ignore[union-attr]
            for m in re.finditer(r"rusage\[([^\]]*)\]", str(r)):
                for kv in m.group(1).split(","):
                    k, _, v = kv.partition("=")
                    if k.strip() == "mem":
                        v = v.split(":")[0].split("/")[0]
                        unit = os.environ.get("LSF_UNIT_FOR_LIMITS", "MB")
                        rm = mem_to_mb(v, unit.upper())
                        mem_mb = max(mem_mb or 0, rm)
    except ValueError as e:
        die(prog, f"{e}. Job not submitted.")
    if mem_mb is not None:
        sb.append(f"--mem={mem_mb}M")

    if "-W" in opts:
        try:
            sb.append(f"--time={walltime_to_minutes(str(opts['-W']))}")
        except ValueError as e:
            die(prog, f"{e}. Job not submitted.")

    queue = opts.get("-q")
    part = queue_to_partition(queue)  # type: ignore[arg-type]
    if part:
        sb.append(f"--partition={part}")
    project = str(opts.get("-P", "default"))
    if "-P" in opts:
        sb.append(f"--account={opts['-P']}")
    if "-cwd" in opts:
        sb.append(f"--chdir={opts['-cwd']}")
    if opts.get("-x"):
        sb.append("--exclusive")
    if opts.get("-rn"):
        sb.append("--no-requeue")
    elif opts.get("-r"):
        sb.append("--requeue")

    # output: -o appends, -oo overwrites; -e likewise.  With -o but no -e,
    # LSF writes stderr into the -o file.  Without -o, LSF would mail the
    # output; the emulator discards it.
    out = opts.get("-oo") or opts.get("-o")
    err = opts.get("-eo") or opts.get("-e")
    overwrite = bool(opts.get("-oo") or opts.get("-eo"))
    sb.append("--open-mode=" + ("truncate" if overwrite else "append"))
    sb.append("--output=" + (_lsf_pattern_to_slurm(str(out), is_array) if out else "/dev/null"))
    if err:
        sb.append("--error=" + _lsf_pattern_to_slurm(str(err), is_array))
    elif not out:
        sb.append("--error=/dev/null")

    qname = str(queue) if queue else DEFAULT_QUEUE
    sb.append("--comment=" + encode_meta({
        "q": qname, "P": project, "J": jname or base, "G": str(opts.get("-G", "")),
    }))
    wrapper = build_wrapper(body, base, qname, project, ncpus)
    if os.environ.get("LSFEMU_DEBUG"):
        sys.stderr.write("lsfemu: " + " ".join(shlex.quote(a) for a in sb) + "\n")
    res = run(sb, stdin=wrapper)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        # LSF rejects with a reason and "Job not submitted."
        msg = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "sbatch failed"
        msg = re.sub(r"^sbatch: error: (Batch job submission failed: )?", "", msg)
        if "Invalid partition name" in msg:
            msg = f"{queue}: No such queue"  # LSF wording
        sys.stderr.write(f"{msg}. Job not submitted.\n")
        return 255
    jobid = res.stdout.strip().split(";")[0]
    if queue:
        print(f"Job <{jobid}> is submitted to queue <{qname}>.")
    else:
        print(f"Job <{jobid}> is submitted to default queue <{qname}>.")
    return 0


# ------------------------------------------------------------ SLURM query --

_KEY_RE = re.compile(r"(?:(?<=\s)|^)([A-Za-z][A-Za-z0-9_/:]*)=")


def parse_scontrol_line(line: str) -> dict[str, str]:
    """Parse one `scontrol show job -o` line into a dict.  Values may contain
    spaces (e.g. JobName, Comment); a token belongs to the previous key unless
    it looks like `Key=`."""
    rec: dict[str, str] = {}
    matches = list(_KEY_RE.finditer(line))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        rec[m.group(1)] = line[m.end():end].strip()
    return rec


def slurm_jobs() -> list[dict[str, str]]:
    res = run(["scontrol", "show", "job", "-o"])
    if res.returncode != 0:
        if "No jobs in the system" in res.stdout + res.stderr:
            return []
        sys.stderr.write(res.stderr)
        sys.exit(255)
    return [parse_scontrol_line(l) for l in res.stdout.splitlines() if l.startswith("JobId=")]


def expand_task_ids(spec: str) -> list[int]:
    """'2-9%2' / '1,3,5-7' / '0-10:2' -> list of indices."""
    spec = spec.split("%", 1)[0]
    out: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not m:
            continue
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        step = int(m.group(3) or 1)
        out.extend(range(lo, hi + 1, step))
    return out


_HELD_REASONS = {"JobHeldUser", "JobHeldAdmin", "ResvDeleted"}


def lsf_stat(rec: dict[str, str]) -> str:
    st = rec.get("JobState", "")
    reason = rec.get("Reason", "")
    if st in ("PENDING", "REQUEUED", "REQUEUE_FED"):
        return "PSUSP" if reason in _HELD_REASONS else "PEND"
    if st in ("REQUEUE_HOLD", "RESV_DEL_HOLD"):
        return "PSUSP"
    if st in ("RUNNING", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"):
        return "RUN"
    if st == "SUSPENDED":
        return "SSUSP"
    if st == "STOPPED":
        return "USUSP"
    if st == "COMPLETED":
        return "DONE"
    if st in ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
              "BOOT_FAIL", "DEADLINE", "PREEMPTED", "SPECIAL_EXIT", "REVOKED"):
        return "EXIT"
    return "UNKWN"


_EXIT_REASONS = {
    "CANCELLED": "TERM_OWNER: job killed by owner",
    "TIMEOUT": "TERM_RUNLIMIT: job killed after reaching LSF run time limit",
    "OUT_OF_MEMORY": "TERM_MEMLIMIT: job killed after reaching LSF memory usage limit",
    "NODE_FAIL": "TERM_ZOMBIE: job killed while in zombie state",
    "PREEMPTED": "TERM_PREEMPT: job killed after preemption",
    "DEADLINE": "TERM_DEADLINE: job killed after deadline expires",
}


def lsf_exit_code(rec: dict[str, str]) -> str:
    """LSF shows EXIT_CODE only for EXIT jobs (empty for DONE/unfinished)."""
    if lsf_stat(rec) != "EXIT":
        return ""
    code, _, sig = rec.get("ExitCode", "0:0").partition(":")
    try:
        c, s = int(code), int(sig or 0)
    except ValueError:
        return ""
    if s:
        return str(128 + s)
    if c:
        return str(c)
    return ""


def _fmt_time(value: str | None) -> str:
    # LSF style "Nov 20 23:09" (no year); '' when unknown
    if not value or value in ("Unknown", "None", "N/A"):
        return ""
    try:
        t = time.strptime(value, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return value
    return time.strftime("%b %d %H:%M", t)


class Element:
    """One LSF job or array element derived from a SLURM record."""

    def __init__(self, rec: dict[str, str], jobid: str, index: int):
        self.rec = rec
        self.jobid = jobid
        self.index = index
        self.meta = decode_meta(rec.get("Comment"))

    def finished(self) -> bool:
        return lsf_stat(self.rec) in ("DONE", "EXIT")

    def field(self, name: str) -> str:
        r, meta = self.rec, self.meta
        name = name.lower()
        stat = lsf_stat(r)
        base = r.get("JobName", "")
        if name in ("jobid", "id"):
            return self.jobid
        if name == "jobindex":
            return str(self.index)
        if name in ("stat", "state"):
            return stat
        if name == "exit_code":
            return lsf_exit_code(r)
        if name == "exit_reason":
            return _EXIT_REASONS.get(r.get("JobState", ""), "") if stat == "EXIT" else ""
        if name in ("job_name", "name"):
            return f"{base}[{self.index}]" if self.index else base
        if name == "queue":
            return meta.get("q", DEFAULT_QUEUE)
        if name in ("proj_name", "proj", "project"):
            return meta.get("P", "default")
        if name == "user":
            return re.sub(r"\(.*\)$", "", r.get("UserId", ""))
        if name == "submit_time":
            return _fmt_time(r.get("SubmitTime"))
        if name == "start_time":
            return _fmt_time(r.get("StartTime")) if stat not in ("PEND", "PSUSP") else ""
        if name == "finish_time":
            return _fmt_time(r.get("EndTime")) if stat in ("DONE", "EXIT") else ""
        if name == "from_host":
            return re.sub(r":.*", "", r.get("AllocNode:Sid", ""))
        if name == "exec_host":
            return r.get("BatchHost", "") if stat not in ("PEND", "PSUSP") else ""
        if name in ("nreq_slot", "slots", "nalloc_slot"):
            return r.get("NumCPUs", "")
        if name == "pend_reason":
            return r.get("Reason", "") if stat in ("PEND", "PSUSP") else ""
        if name == "runtimelimit":
            return r.get("TimeLimit", "")
        if name in ("memlimit", "mem_limit"):
            return r.get("MinMemoryNode", r.get("MinMemoryCPU", ""))
        if name == "slurm_state":  # emulator extension, useful when debugging
            return r.get("JobState", "")
        raise KeyError(name)


def lsf_elements(jobs: Iterable[dict[str, str]]) -> list[Element]:
    """Expand SLURM records (incl. pending array ranges) into LSF elements."""
    out: list[Element] = []
    for r in jobs:
        ajid = r.get("ArrayJobId")
        if ajid:
            tids = r.get("ArrayTaskId", "")
            for idx in expand_task_ids(tids):
                out.append(Element(r, ajid, idx))
        else:
            out.append(Element(r, r.get("JobId", ""), 0))
    out.sort(key=lambda e: (int(e.jobid) if e.jobid.isdigit() else 0, e.index))
    return out


def parse_job_spec(spec: str) -> tuple[str, list[int] | None]:
    """'123' -> ('123', None); '123[3]' / '123[1-3,7]' -> ('123', [..])"""
    m = re.fullmatch(r"\s*(\d+)(?:\[([0-9,\-:]+)\])?\s*", spec)
    if not m:
        raise ValueError(spec)
    return m.group(1), (expand_task_ids(m.group(2)) if m.group(2) else None)


# ------------------------------------------------------------------- bjobs --


def bjobs_main(argv: list[str]) -> int:
    prog = "bjobs"
    fmt: str | None = None
    as_json = False
    show_all = False
    done_only = False
    noheader = False
    specs: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-o":
            if i + 1 >= len(argv):
                die(prog, "option -o requires an argument")
            fmt = argv[i + 1]
            i += 2
            continue
        if a == "-json":
            as_json = True
        elif a == "-a":
            show_all = True
        elif a == "-d":
            done_only = True
        elif a == "-noheader":
            noheader = True
        elif a in ("-w", "-W", "-X", "-r", "-p", "-s"):
            pass
        elif a == "-u":
            i += 1  # single-user test cluster: ignore the user filter
        elif a.startswith("-"):
            die(prog, f"option {a} is not supported by this LSF emulator")
        else:
            specs.append(a)
        i += 1
    if as_json and not fmt:
        fmt = os.environ.get("LSB_BJOBS_FORMAT")
        if not fmt:
            die(prog, "-json requires -o")
    if as_json and noheader:
        die(prog, "-json cannot be used with -noheader")

    fields: list[str] = []
    delimiter = None
    if fmt:
        m = re.search(r"delimiter='(.)'", fmt)
        if m:
            delimiter = m.group(1)
            fmt = fmt[: m.start()] + fmt[m.end():]
        for tok in fmt.split():
            fields.append(tok.split(":", 1)[0])
    else:
        fields = ["jobid", "user", "stat", "queue", "from_host", "exec_host",
                  "job_name", "submit_time"]

    elements = lsf_elements(slurm_jobs())
    selected: list[Element] = []
    errors: list[str] = []
    if specs:
        for s in specs:
            try:
                jid, idxs = parse_job_spec(s)
            except ValueError:
                errors.append(f"{s}: Illegal job ID.")
                continue
            found = [e for e in elements if e.jobid == jid and (idxs is None or e.index in idxs)]
            if not found:
                errors.append(f"Job <{s}> is not found")
            selected.extend(found)
    else:
        for e in elements:
            if done_only and not e.finished():
                continue
            if not (show_all or done_only) and e.finished():
                continue
            selected.append(e)

    def value(e: Element, f: str) -> str:
        try:
            return e.field(f)
        except KeyError:
            die(prog, f"{f}: Illegal field name")
            return ""

    if as_json:
        records = [{f.upper(): value(e, f) for f in fields} for e in selected]
        # jobs that do not exist are reported as records carrying ERROR
        for err in errors:
            records.append({"ERROR": err})
        doc = {"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": records}
        print(json.dumps(doc, indent=2, separators=(",", ":")))
        return 0 if selected or not errors else 255

    for err in errors:
        sys.stderr.write(err + "\n")
    if not selected:
        if not specs:
            sys.stderr.write("No unfinished job found\n" if not show_all else "No job found\n")
        return 0 if not errors else 255
    rows = [[value(e, f) for f in fields] for e in selected]
    header = [f.upper() for f in fields]
    if delimiter:
        if not noheader:
            print(delimiter.join(header))
        for r in rows:
            print(delimiter.join(r))
    else:
        table = ([header] if not noheader else []) + rows
        widths = [max(len(r[c]) for r in table) for c in range(len(fields))]
        for r in table:
            print(" ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)).rstrip())
    return 0


# ------------------------------------------------------------------- bkill --


def bkill_main(argv: list[str]) -> int:
    prog = "bkill"
    specs = [a for a in argv if not a.startswith("-")]
    for a in argv:
        if a.startswith("-") and a != "-r":
            die(prog, f"option {a} is not supported by this LSF emulator")
    if not specs:
        die(prog, "job ID required")
    elements = lsf_elements(slurm_jobs())
    rc = 0
    for s in specs:
        try:
            jid, idxs = parse_job_spec(s)
        except ValueError:
            sys.stderr.write(f"{s}: Illegal job ID.\n")
            rc = 255
            continue
        found = [e for e in elements if e.jobid == jid and (idxs is None or e.index in idxs)]
        if not found:
            sys.stderr.write(f"Job <{s}>: No matching job found\n")
            rc = 255
            continue
        if all(e.finished() for e in found):
            sys.stderr.write(f"Job <{s}>: Job has already finished\n")
            rc = 255
            continue
        if idxs is None:
            targets = [jid]
        else:
            targets = [f"{jid}_{e.index}" for e in found if not e.finished()]
        res = run(["scancel"] + targets)
        if res.returncode != 0:
            sys.stderr.write(res.stderr)
            rc = 255
            continue
        if idxs is None:
            print(f"Job <{jid}> is being terminated")
        else:
            for e in found:
                if not e.finished():
                    print(f"Job <{jid}[{e.index}]> is being terminated")
    return rc
