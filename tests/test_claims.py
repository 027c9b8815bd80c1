"""hpcpar.claims: chunks pulled by concurrent workers, each run exactly once; voided claims
go back to the pool."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from hpcpar import claims


def _run_dir(tmp_path: Path) -> Path:
    (tmp_path / "claims").mkdir()
    (tmp_path / "ran").mkdir()
    return tmp_path


def _worker(run_dir: str, n_chunks: int, worker: int, start, died_on: int | None) -> None:
    """Claim and 'run' chunks until none is left: running one creates ran/<chunk>.<worker>."""
    start.wait()
    claimer = claims.Claimer(run_dir, n_chunks, worker)
    while True:
        claim = claimer.next(done=lambda i: any(Path(run_dir, "done").glob(f"{i}.*")))
        if claim is None:
            return
        Path(run_dir, "ran", f"{claim.chunk}.{claim.generation}.{worker}").touch()
        if claim.chunk == died_on:
            os._exit(9)                      # dies holding its claim
        Path(run_dir, "done", f"{claim.chunk}.{worker}").touch()


def _ran(run_dir: Path) -> list[tuple[int, int]]:
    return sorted((int(p.name.split(".")[0]), int(p.name.split(".")[1]))
                  for p in (run_dir / "ran").iterdir())


@pytest.mark.parametrize("n_workers", [2, 6])
def test_concurrent_claimers_run_every_chunk_exactly_once(tmp_path, n_workers):
    rd = _run_dir(tmp_path)
    (rd / "done").mkdir()
    n = 300
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_worker, args=(str(rd), n, w, start, None)) for w in range(n_workers)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert _ran(rd) == [(i, 0) for i in range(n)]          # each chunk once, generation 0
    owners = {int(p.name.split(".")[2]) for p in (rd / "ran").iterdir()}
    assert len(owners) > 1                                    # the work was shared
    seen = claims.scan(rd)
    assert sorted(seen) == list(range(n))
    assert all(info.generation == 0 and not info.voided for info in seen.values())


def test_a_voided_claim_goes_back_to_the_pool_once(tmp_path):
    rd = _run_dir(tmp_path)
    (rd / "done").mkdir()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    start.set()
    dying = ctx.Process(target=_worker, args=(str(rd), 5, 0, start, 2))
    dying.start()
    dying.join(60)
    assert dying.exitcode == 9
    assert _ran(rd) == [(0, 0), (1, 0), (2, 0)]
    info = claims.scan(rd)[2]
    assert (info.generation, info.voided) == (0, False)
    assert claims.read_owner(rd, info.name) == 0
    # nobody takes a chunk whose claim is not voided
    procs = [ctx.Process(target=_worker, args=(str(rd), 5, w, start, None)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert _ran(rd) == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)]
    # the driver voids it: exactly one of several concurrent claimers takes generation 1
    assert claims.void(rd, 2, 0)
    assert not claims.void(rd, 2, 0)
    procs = [ctx.Process(target=_worker, args=(str(rd), 5, w, start, None)) for w in (3, 4, 5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert _ran(rd) == [(0, 0), (1, 0), (2, 0), (2, 1), (3, 0), (4, 0)]
    assert claims.scan(rd)[2].generation == 1


def test_claim_knows_when_it_is_voided_and_done_chunks_are_skipped(tmp_path):
    rd = _run_dir(tmp_path)
    claimer = claims.Claimer(rd, 3, worker=7)
    first = claimer.next(done=lambda i: i == 0)
    assert (first.chunk, first.generation) == (1, 0)
    assert not first.voided()
    claims.void(rd, 1, 0)
    assert first.voided()
    again = claimer.next()
    assert (again.chunk, again.generation) == (1, 1)
    assert claims.read_owner(rd, again.path.name) == 7
    last = claimer.next()
    assert (last.chunk, last.generation) == (2, 0)
    assert claimer.next(done=lambda i: i == 0) is None


def test_a_refused_chunk_is_never_claimed_until_released(tmp_path):
    """A cancel decision takes a chunk out of the pool (claims.refuse): the driver claims its
    next generation itself, so no worker can; releasing it (attach's resubmit_cancelled)
    voids the refusal and a worker claims the generation after it."""
    rd = _run_dir(tmp_path)
    assert claims.refuse(rd, 1)                            # never claimed: refused at 0
    held = claims.try_claim(rd, 2, 0, worker=0)          # held by a worker: voided, refused at 1
    assert held is not None and claims.refuse(rd, 2)
    assert held.voided()                                  # its owner drops a partial result
    assert claims.refuse(rd, 2)                           # idempotent
    seen = claims.scan(rd)
    assert (seen[1].generation, seen[1].refused, seen[1].voided) == (0, True, False)
    assert (seen[2].generation, seen[2].refused, seen[2].voided) == (1, True, False)
    assert claims.read_owner(rd, seen[1].name) is None    # no worker owns a refusal
    taken = []
    claimer = claims.Claimer(rd, 4, worker=3)
    while (c := claimer.next()) is not None:
        taken.append((c.chunk, c.generation))
    assert taken == [(0, 0), (3, 0)]                      # 1 and 2 are not in the pool
    assert claims.release_refused(rd) == [1, 2]
    assert claims.release_refused(rd) == []
    again = claims.Claimer(rd, 4, worker=4)
    assert [(c.chunk, c.generation) for c in iter(again.next, None)] == [(1, 1), (2, 2)]


def test_refuse_wins_against_concurrent_claimers(tmp_path):
    """Claimers racing the refusal of chunk 0 (given back to the pool): afterwards the chunk's
    newest claim is the refusal, and any claim a worker won before it is voided."""
    rd = _run_dir(tmp_path)
    (rd / "done").mkdir()
    first = claims.try_claim(rd, 0, 0, worker=9)
    assert first is not None and claims.void(rd, 0, 0)     # back to the pool
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_worker, args=(str(rd), 1, w, start, None)) for w in range(3)]
    for p in procs:
        p.start()
    start.set()
    assert claims.refuse(rd, 0)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    info = claims.scan(rd)[0]
    assert info.refused and not info.voided
    won = [claims.Claim(rd / "claims" / claims.claim_name(0, g), 0, g)
           for g in range(1, info.generation)]
    assert all(c.voided() for c in won)                    # a worker that won first was voided
    assert all(gen < info.generation for _, gen in _ran(rd))   # none claimed it after
