"""Chunk claims: how pulling workers share a run's chunks without a server, safely on NFS.

A run's chunks wait in ``chunks/``. A worker takes one by *claiming* it: creating the file
``claims/<chunk>.<generation>`` with ``O_CREAT | O_EXCL``. Exactly one creator succeeds; the
others get ``FileExistsError`` and try the next chunk. The claimer runs the chunk, writes
``results/<chunk>.pkl`` (sealed, atomic rename; see :mod:`hpcpar.rundir`) and claims again,
until no chunk is left::

    claims/000042.0      worker 3 owns chunk 42 (JSON: worker index, host, pid, time);
                         its mtime is the owner's heartbeat (touched every HEARTBEAT_S)
    claims/000042.0.void the driver gave generation 0 back to the pool (its owner died)
    claims/000042.1      worker 5 owns chunk 42 now
    claims/000042.2      the driver took generation 2 itself: chunk 42 was cancelled (a
    claims/000042.2.cancel  recorded decision), so no worker can ever claim it (``refuse``)

Why this is safe on NFS
-----------------------
* Exclusive create is atomic on the server: NFSv3 and v4 carry ``O_EXCL`` as an exclusive
  CREATE (RFC 1813 section 3.3.8, RFC 7530 section 16.16), and Linux has used it since 2.6.5
  (open(2), "O_EXCL ... on NFSv3 or later on kernel 2.6 or later"). No ``flock``/``fcntl``
  lock is needed, so nothing depends on lockd, and a dead client leaves no lock behind,
  only a claim file whose owner the scheduler reports final (or whose heartbeat stops).
* A claim is never rewritten or deleted by anyone else: the driver voids a generation by
  exclusively creating ``<claim>.void``, and the next claimer takes generation + 1, again by
  exclusive create. So two workers can never both own the same generation, and a worker that
  was merely slow (not dead) learns that its claim was voided (:meth:`Claim.voided`) before it
  writes a partial result, and stops.
* Results are idempotent: a chunk's result is a pure function of its tasks, written by
  atomic rename, so even a voided owner that finishes writes a correct complete result; the
  driver resolves each chunk's future once (the first complete result it reads).
* Directory listings may be stale on an NFS client (attribute cache, ``acdirmax``); a stale
  listing only makes a worker try a chunk already claimed (its exclusive create fails) or skip
  a just-voided one until its next pass, never run a claimed one twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path

from .rundir import CHUNK_DIGITS

#: seconds between heartbeats (touches of the claim file) of a worker running a chunk
HEARTBEAT_S = 10.0
VOID = ".void"
CANCEL = ".cancel"


def claims_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "claims"


def claim_name(chunk: int, generation: int) -> str:
    return f"{chunk:0{CHUNK_DIGITS}d}.{generation}"


def parse_claim_name(name: str) -> tuple[int, int] | None:
    """``(chunk, generation)`` of a claim file's name; None for any other file of ``claims/``
    (voids, cancel refusals)."""
    stem, _, gen = name.partition(".")
    if not (stem.isdigit() and gen.isdigit()):
        return None
    return int(stem), int(gen)


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim file: ``chunk`` at ``generation``, made by worker ``worker`` (array index)."""

    path: Path
    chunk: int
    generation: int

    def voided(self) -> bool:
        """True once the driver gave this claim's chunk back to the pool."""
        return os.path.exists(str(self.path) + VOID)

    def heartbeat(self) -> None:
        """Touch the claim (its mtime is the owner's heartbeat)."""
        with contextlib.suppress(OSError):
            os.utime(self.path)


@dataclasses.dataclass(frozen=True)
class ClaimInfo:
    """What one listing of ``claims/`` says about a chunk's newest claim."""

    generation: int
    voided: bool
    mtime: float           #: the claim file's mtime (epoch seconds): the owner's last heartbeat
    name: str
    refused: bool = False  #: taken by the driver for a cancelled chunk (no worker owns it)


def try_claim(run_dir: str | os.PathLike, chunk: int, generation: int, worker: int) -> Claim | None:
    """Claim ``chunk`` at ``generation`` by exclusive create; None if someone else holds it.

    Parameters
    ----------
    run_dir : path
    chunk, generation : int
    worker : int
        The claimer's worker index (its array index), recorded in the claim.
    """
    path = claims_dir(run_dir) / claim_name(chunk, generation)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps({"worker": worker, "host": socket.gethostname(), "pid": os.getpid(),
                             "time": time.time()}))
    return Claim(path, chunk, generation)


def read_owner(run_dir: str | os.PathLike, name: str) -> int | None:
    """The worker index recorded in claim ``name`` (None if unreadable or still being written)."""
    try:
        return int(json.loads((claims_dir(run_dir) / name).read_text())["worker"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def scan(run_dir: str | os.PathLike) -> dict[int, ClaimInfo]:
    """Chunk index -> its newest claim, from one listing of ``claims/`` (chunks never claimed
    are absent)."""
    out: dict[int, ClaimInfo] = {}
    voids: set[str] = set()
    refusals: set[str] = set()
    entries: list[tuple[str, float]] = []
    with os.scandir(claims_dir(run_dir)) as it:
        for e in it:
            if e.name.endswith(VOID):
                voids.add(e.name[:-len(VOID)])
                continue
            if e.name.endswith(CANCEL):
                refusals.add(e.name[:-len(CANCEL)])
                continue
            with contextlib.suppress(FileNotFoundError):
                entries.append((e.name, e.stat().st_mtime))
    for name, mtime in entries:
        parsed = parse_claim_name(name)
        if parsed is None:
            continue
        chunk, generation = parsed
        known = out.get(chunk)
        if known is None or generation > known.generation:
            out[chunk] = ClaimInfo(generation, name in voids, mtime, name, name in refusals)
    return out


def void(run_dir: str | os.PathLike, chunk: int, generation: int) -> bool:
    """Give ``chunk`` back to the pool: void its claim at ``generation`` (the driver does this
    once the claim's owner is known dead). False if it was voided already."""
    path = claims_dir(run_dir) / (claim_name(chunk, generation) + VOID)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    return True


def refuse(run_dir: str | os.PathLike, chunk: int, attempts: int = 16) -> bool:
    """Take ``chunk`` out of the pool for good: a cancel decision (the driver's, recorded).

    The driver claims the chunk's next generation itself, by the same exclusive create a worker
    uses, so no worker can claim it afterwards (a worker only claims the generation after a
    voided one), and marks it ``<claim>.cancel``. A claim a worker holds is voided first (the
    worker drops its partial results; a complete result it still writes is harmless). Returns
    True once the chunk is refused (now or before), False if workers kept winning the race
    ``attempts`` times.
    """
    for _ in range(attempts):
        info = scan(run_dir).get(chunk)
        if info is not None and info.refused and not info.voided:
            return True
        generation = 0 if info is None else info.generation + 1
        if info is not None and not info.voided:
            void(run_dir, chunk, info.generation)
        path = claims_dir(run_dir) / claim_name(chunk, generation)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue                     # a worker claimed that generation first: void it too
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps({"worker": None, "cancelled": True, "time": time.time()}))
        os.close(os.open(str(path) + CANCEL, os.O_WRONLY | os.O_CREAT, 0o600))
        return True
    return False


def release_refused(run_dir: str | os.PathLike) -> list[int]:
    """Give every refused (cancelled) chunk back to the pool, by voiding its refusal
    (``attach(run, resubmit_cancelled=True)``); returns those chunks."""
    out = []
    for chunk, info in sorted(scan(run_dir).items()):
        if info.refused and not info.voided and void(run_dir, chunk, info.generation):
            out.append(chunk)
    return out


class Claimer:
    """A worker's side: claim the next free chunk of ``n_chunks``, lowest index first.

    ``done(i)`` says whether chunk ``i`` has a complete result (then it is never claimed).
    The cursor makes a pass over the chunks O(n) in total; a full rescan (one listing) runs
    only when the cursor reaches the end, to find chunks given back to the pool.
    """

    def __init__(self, run_dir: str | os.PathLike, n_chunks: int, worker: int):
        self.run_dir = Path(run_dir)
        self.n_chunks = n_chunks
        self.worker = worker
        self.cursor = 0

    def _candidates(self) -> Iterable[tuple[int, int]]:
        """(chunk, generation) pairs worth trying: chunks given back to the pool first (they
        are the oldest work), then unclaimed chunks past the cursor."""
        claims = scan(self.run_dir)
        for i, info in sorted(claims.items()):
            if info.voided:
                yield i, info.generation + 1
        for i in range(self.cursor, self.n_chunks):
            if i not in claims:
                yield i, 0

    def next(self, done=lambda i: False) -> Claim | None:
        """Claim the next free chunk; None when every chunk is claimed (by a live owner) or done."""
        for i, gen in self._candidates():
            if done(i):
                continue
            claim = try_claim(self.run_dir, i, gen, self.worker)
            if claim is not None:
                if gen == 0:
                    self.cursor = i + 1
                return claim
        self.cursor = self.n_chunks
        return None


__all__ = ["HEARTBEAT_S", "Claim", "ClaimInfo", "Claimer", "claims_dir", "parse_claim_name",
           "read_owner", "refuse", "release_refused", "scan", "try_claim", "void"]
