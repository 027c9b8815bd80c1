"""Finding and describing run folders (used by the CLI and :func:`hpcpar.attach`)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from . import runstate
from .config import default_runs_dir
from .rundir import RunDir


def resolve_run(run: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> RunDir:
    """A run folder from a path or a run id (looked up in ``runs_dir`` or the default runs dir).

    Raises
    ------
    FileNotFoundError
        Naming the places searched.
    """
    path = Path(run).expanduser()
    if (path / "run.json").is_file():
        return RunDir.open(path)
    root = Path(runs_dir).expanduser() if runs_dir else default_runs_dir()
    candidate = root / str(run)
    if (candidate / "run.json").is_file():
        return RunDir.open(candidate)
    raise FileNotFoundError(f"no run {str(run)!r}: not a run folder, and not in {root}")


def list_runs(runs_dir: str | os.PathLike | None = None) -> list[RunDir]:
    """The run folders under ``runs_dir``, oldest first (by ``created`` in run.json; a run
    whose run.json cannot be read sorts by its folder's change time)."""
    root = Path(runs_dir).expanduser() if runs_dir else default_runs_dir()
    if not root.is_dir():
        return []
    keyed = []
    for p in root.iterdir():
        rd = RunDir(p)
        if not rd.meta_path.is_file():
            continue
        try:
            created = float(runstate.read(rd)["created"])
        except (OSError, ValueError, KeyError, TypeError):
            created = p.stat().st_ctime
        keyed.append((created, rd.run_id, rd))
    return [rd for _, _, rd in sorted(keyed, key=lambda t: t[:2])]


def summary(rd: RunDir) -> dict:
    """A run's description for ``hpcpar runs`` and ``status``: its phase as recorded, or as its
    recorded outcomes imply (:func:`hpcpar.runstate.shown_phase`); ``results`` counts results
    files, or for a command run its array tasks with a recorded end; ``array_tasks`` counts
    the array tasks submitted (a pull run's workers, which claim its ``chunks``)."""
    meta = rd.read_meta()
    n = meta.get("n_chunks", 0)
    if meta.get("kind") == "command":
        outcomes = runstate.read_outcomes(rd)
        ended = sum(runstate.task_ended(outcomes.get(t))
                    for t in runstate.latest_tasks(meta).values())
    else:
        ended = len(rd.result_mtimes())
    phase = runstate.shown_phase(rd, meta)
    return {
        "run_id": rd.run_id,
        "backend": meta.get("backend", "?"),
        "kind": meta.get("kind", "?"),
        "job_name": meta.get("job_name", "?"),
        "state": phase.value,
        "phase": phase,
        "chunks": n,
        "results": ended,
        "job_ids": sorted({s["job_id"] for s in meta.get("submissions", [])}, key=lambda j: (len(j), j)),
        # array tasks submitted: a pull run's are its workers, a push run's one per chunk sent
        "array_tasks": sum(len(s.get("workers" if meta.get("pull") else "indices", []))
                           for s in meta.get("submissions", [])),
        "created": meta.get("created", 0.0),
    }


def clean(older_than_s: float, runs_dir=None, dry_run: bool = False, all_states: bool = False) -> list[Path]:
    """Remove run folders not modified for ``older_than_s`` seconds (0: any age) that are
    finished (or, with ``all_states``, in any state); returns them."""
    removed = []
    now = time.time()
    for rd in list_runs(runs_dir):
        meta = rd.read_meta()
        finished = runstate.shown_phase(rd, meta).finished or (
            meta.get("n_chunks") is not None and len(rd.result_mtimes()) >= meta["n_chunks"])
        if not (finished or all_states):
            continue
        newest = max((p.stat().st_mtime for p in rd.path.rglob("*") if p.is_file()), default=0.0)
        if now - max(newest, rd.meta_path.stat().st_mtime) < older_than_s:
            continue
        removed.append(rd.path)
        if not dry_run:
            shutil.rmtree(rd.path)
    return removed


def tail_lines(path: str | os.PathLike, n: int, block_bytes: int = 65536) -> str:
    """The last ``n`` lines of the file ``path``, read backwards from its end in blocks of
    ``block_bytes``, so a log of gigabytes costs about as much as its last lines.

    Returns
    -------
    str
        The lines (decoded as UTF-8, bad bytes replaced), with their newlines.
    """
    if n <= 0:
        return ""
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        pos, data = end, b""
        # n lines need n + 1 newlines before them, unless the file starts first
        while pos > 0 and data.count(b"\n") <= n:
            step = min(block_bytes, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-n:]).decode(errors="replace")
