"""The run directory: the durable contract between the driver and its jobs.

One private (0700) folder per run, on a filesystem that the driver and the compute nodes share::

    RUN_DIR/
      run.json              backend, resources, job ids, chunk count, state (hpcpar.runstate
                            owns it and is its only writer; rewritten atomically)
      function.pkl          the function (and reducer), cloudpickled once per run
      chunks/000042.pkl     the arguments of chunk 42: a list of (args, kwargs)
      results/000042.pkl    chunk 42's outcome, one per task, plus host and timing
      logs/                 scheduler stdout/stderr, one pair per array task
      job.sh                the rendered job script
      cancel-requested      present once `hpcpar cancel` asked for the run to stop

Every ``.pkl`` is written as a sealed blob: a magic line, the payload length and its SHA-256,
then the payload, written to a temporary file and renamed into place. A reader checks all
three, so a truncated or half-copied file is reported as :class:`CorruptFileError` and never
mistaken for a result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import secrets
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from .serialize import dumps

MAGIC = b"HPCPAR1\n"
_HEADER = struct.Struct(">Q32s")          # payload length (bytes), sha256 digest
CHUNK_DIGITS = 6
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class CorruptFileError(Exception):
    """A sealed file is truncated, padded or altered (length or SHA-256 mismatch)."""


def driver_python_path() -> list[str]:
    """The driver's own code folders on ``sys.path`` (not the interpreter's or site-packages),
    plus the working folder: where a pickled-by-reference function's module is found. The
    worker appends those that exist on its node to its own ``sys.path``."""
    import sys

    prefixes = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    out = []
    for p in [os.getcwd(), *sys.path]:
        p = os.path.abspath(p or os.getcwd())
        if p not in out and os.path.isdir(p) and not p.startswith(prefixes) and "site-packages" not in p:
            out.append(p)
    return out


def seal(payload: bytes) -> bytes:
    return MAGIC + _HEADER.pack(len(payload), hashlib.sha256(payload).digest()) + payload


def unseal(blob: bytes, where: str = "blob") -> bytes:
    head = len(MAGIC) + _HEADER.size
    if len(blob) < head or not blob.startswith(MAGIC):
        raise CorruptFileError(f"{where}: not an hpcpar file or truncated header ({len(blob)} bytes)")
    length, digest = _HEADER.unpack_from(blob, len(MAGIC))
    payload = blob[head:]
    if len(payload) != length:
        raise CorruptFileError(f"{where}: expected {length} payload bytes, found {len(payload)} (truncated?)")
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptFileError(f"{where}: SHA-256 mismatch")
    return payload


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically: temporary file in the same folder, fsync, rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def dump_sealed(path: Path, obj: Any) -> None:
    atomic_write(path, seal(dumps(obj)))


def load_sealed(path: Path) -> Any:
    import pickle

    return pickle.loads(unseal(path.read_bytes(), str(path)))


@dataclasses.dataclass
class ChunkResult:
    """What a worker wrote for one chunk.

    Attributes
    ----------
    chunk : int
        Chunk index.
    n_tasks : int
        Tasks in the chunk.
    outcomes : list of tuple
        ``mode == "map"``: one ``(ok, value_or_exception, traceback_text)`` per finished task, in
        order. ``mode == "reduce"``: at most one, the chunk's running reduction (or its error).
    done : int
        Tasks finished so far; ``done < n_tasks`` marks a partial result (checkpoint, or a job
        stopped by a signal), which a later attempt resumes.
    failed : bool
        In reduce mode, a task raised and the chunk stopped.
    host, pid : str, int
        Where the last attempt ran.
    started, finished : float
        Epoch seconds of the first attempt's start and the last write.
    attempts : int
        How many attempts wrote to this result.
    stopped_by : str or None
        The signal that stopped the last attempt early (``"SIGUSR2"``, ``"SIGTERM"``), if any.
    warned : bool
        The last attempt got the scheduler's walltime warning (SIGUSR2).
    task_seconds : list of float
        Wall seconds of each finished task (map mode).
    """

    chunk: int
    n_tasks: int
    outcomes: list = dataclasses.field(default_factory=list)
    done: int = 0
    failed: bool = False
    host: str = ""
    pid: int = 0
    started: float = 0.0
    finished: float = 0.0
    attempts: int = 0
    stopped_by: str | None = None
    warned: bool = False
    task_seconds: list = dataclasses.field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.done >= self.n_tasks or self.failed


class RunDir:
    """One run folder. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- layout ------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def meta_path(self) -> Path:
        return self.path / "run.json"

    @property
    def function_path(self) -> Path:
        return self.path / "function.pkl"

    @property
    def chunks_dir(self) -> Path:
        return self.path / "chunks"

    @property
    def results_dir(self) -> Path:
        return self.path / "results"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def script_path(self) -> Path:
        return self.path / "job.sh"

    @property
    def cancel_request_path(self) -> Path:
        """``cancel-requested``: written by ``hpcpar cancel``; the run's watcher honours it."""
        return self.path / "cancel-requested"

    def chunk_path(self, i: int) -> Path:
        return self.chunks_dir / f"{i:0{CHUNK_DIGITS}d}.pkl"

    def result_path(self, i: int) -> Path:
        return self.results_dir / f"{i:0{CHUNK_DIGITS}d}.pkl"

    # -- creation ----------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, prefix: str = "run") -> RunDir:
        """Make a new private run folder under ``root`` (created 0700 if missing), without its
        ``run.json``: :func:`hpcpar.runstate.create_run` makes a run (folder and ``run.json``).

        The run id is ``<prefix>-<UTC time>-<random>``, unique without coordination.
        """
        root = Path(root).expanduser()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", prefix).strip("-.")[:40] or "run"
        run_id = f"{safe}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        path = root / run_id
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)                      # mkdir's mode is masked by umask
        for sub in ("chunks", "results", "logs"):
            (path / sub).mkdir(mode=0o700)
        return cls(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        rd = cls(path)
        if not rd.meta_path.is_file():
            raise FileNotFoundError(f"{path} is not an hpcpar run folder (no run.json)")
        return rd

    # -- run.json (owned by hpcpar.runstate, its only writer) --------------------------------
    def read_meta(self) -> dict:
        return json.loads(self.meta_path.read_text())

    # -- payloads ----------------------------------------------------------------------------
    def write_function(self, payload: bytes) -> None:
        """Store the already-cloudpickled function payload (pickled once per run)."""
        atomic_write(self.function_path, seal(payload))

    def read_function_bytes(self) -> bytes:
        return unseal(self.function_path.read_bytes(), str(self.function_path))

    def write_chunk(self, i: int, payload: bytes) -> None:
        """Store chunk ``i``'s already-cloudpickled list of ``(args, kwargs)``."""
        atomic_write(self.chunk_path(i), seal(payload))

    def read_chunk_bytes(self, i: int) -> bytes:
        return unseal(self.chunk_path(i).read_bytes(), str(self.chunk_path(i)))

    def write_result(self, result: ChunkResult) -> None:
        dump_sealed(self.result_path(result.chunk), result)

    def read_result(self, i: int) -> ChunkResult | None:
        """Chunk ``i``'s result; None if absent. Raises CorruptFileError if damaged."""
        try:
            return load_sealed(self.result_path(i))
        except FileNotFoundError:
            return None

    def result_mtimes(self) -> dict[int, float]:
        """Chunk index -> mtime of every results file, from one directory listing."""
        out = {}
        with os.scandir(self.results_dir) as it:
            for entry in it:
                name = entry.name
                if name.endswith(".pkl") and not name.startswith("."):
                    try:
                        out[int(name[:-4])] = entry.stat().st_mtime
                    except (ValueError, FileNotFoundError):
                        continue
        return out

    def quarantine_result(self, i: int) -> Path:
        """Move a damaged results file aside (kept for inspection) so the chunk can rerun."""
        src = self.result_path(i)
        dst = src.with_name(f"{src.name}.corrupt-{int(time.time())}")
        os.replace(src, dst)
        return dst

    def stderr_tail(self, job_id: str, lines: int = 20) -> str:
        """The last ``lines`` lines of an array task's stderr log (``logs/<job_id>.err``)."""
        path = self.logs_dir / f"{job_id}.err"
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 16384))
                text = fh.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
