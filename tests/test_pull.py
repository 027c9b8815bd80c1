"""Pulling workers on the fake scheduler (tests/fakesched): array tasks are workers that claim
chunks (hpcpar.claims); results are collected from the results folder between status polls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hpcpar
from hpcpar import JobLostError
from hpcpar.backends.batch import guided_chunk_sizes


def meta_of(runs_dir: Path, run_id: str) -> dict:
    return json.loads((runs_dir / run_id / "run.json").read_text())


def owners(runs_dir: Path, run_id: str) -> dict[str, int]:
    folder = runs_dir / run_id / "claims"
    return {p.name: json.loads(p.read_text())["worker"] for p in folder.iterdir()}


@pytest.mark.parametrize("n,workers", [(1, 1), (16, 2), (1000, 2), (100_000, 250), (7, 50)])
def test_guided_chunk_sizes_cover_the_items_largest_first(n, workers):
    sizes = guided_chunk_sizes(n, workers)
    assert sum(sizes) == n and min(sizes) >= 1
    assert sizes == sorted(sizes, reverse=True)
    assert len(sizes) <= max(n // 1, 1)
    if n >= 1000:
        assert len(sizes) < n / 10                   # few claims for many tiny tasks


def test_one_worker_pulls_every_chunk(fake, runs_dir):
    with hpcpar.Executor("fake", runs_dir=str(runs_dir), max_running=1, chunksize=2,
                         poll_interval_s=0.1, max_poll_interval_s=0.5) as ex:
        assert list(ex.map(abs, range(-10, 0))) == list(range(10, 0, -1))
    run_id = ex.run_ids[0]
    (sub,) = meta_of(runs_dir, run_id)["submissions"]
    assert sub["workers"] == [0] and sub["reason"] == "initial"
    assert owners(runs_dir, run_id) == {f"{i:06d}.0": 0 for i in range(5)}


def test_results_are_collected_without_a_status_call(fake, runs_dir):
    """The first status poll is due after 60 s; every result is seen before, from the results
    folder alone."""
    with hpcpar.Executor("fake", runs_dir=str(runs_dir), chunksize=1, poll_interval_s=60,
                         max_poll_interval_s=60) as ex:
        assert list(ex.map(abs, range(-4, 0))) == [4, 3, 2, 1]
        watcher = ex._backend._watcher
    assert watcher is not None and watcher.status_calls == 0


def test_workers_that_die_before_claiming_spend_the_retries(fake, runs_dir):
    """Each worker dies at once (a broken node or Python): refills count as retries when the
    workers before them claimed nothing, so the chunk ends lost instead of refilling forever."""
    for worker in range(4):
        fake.inject("lose", chunk=worker, after_s=0.0)
    with hpcpar.Executor("fake", runs_dir=str(runs_dir), max_retries=1, max_running=1,
                         poll_interval_s=0.1, max_poll_interval_s=0.3) as ex, \
            pytest.raises(JobLostError):
        ex.submit(abs, -1).result(timeout=60)
    subs = meta_of(runs_dir, ex.run_ids[0])["submissions"]
    assert [(s["reason"], s["workers"]) for s in subs] == [("initial", [0]), ("refill", [1])]
