"""Issue 10's executor API: map_reduce's accumulator (Spark aggregate semantics), its refusals,
lazy input with bounded prefetch, results in completion order, big arguments stored once."""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import hpcpar
from hpcpar import SerializationError, argstore
from hpcpar.executor import LAZY_OUTSTANDING, chunk_sizes

BACKENDS = ["local", "inline"]


@pytest.fixture(params=BACKENDS)
def ex(request, tmp_path):
    with hpcpar.Executor(request.param, max_workers=2, runs_dir=str(tmp_path / "runs")) as e:
        yield e


def concat(a, b):
    return a + b


def test_non_neutral_initializer_is_copied_into_every_chunk(ex):
    """As Spark's aggregate: one copy per chunk, plus one the driver folds the chunks into."""
    items = [str(i) for i in range(10)]
    sizes = chunk_sizes(10, 4)                      # chunksize=3: 4 chunks
    expected, start = "init:", 0
    for n in sizes:
        expected += "init:" + "".join(items[start:start + n])
        start += n
    assert ex.map_reduce(str, items, concat, "init:", chunksize=3) == expected


def test_initializer_is_fresh_per_chunk_and_untouched(ex):
    zero = Counter()
    got = ex.map_reduce(str.split, ["a b", "b c", "c d"] * 5, lambda c, ws: c.update(ws) or c,
                        zero, chunksize=2)
    assert got == Counter({"a": 5, "b": 10, "c": 10, "d": 5})
    assert zero == Counter() and got is not zero


def test_combiner_merges_accumulators(ex):
    # accumulator: (count, total) pairs; reducer takes a value, combiner two accumulators
    got = ex.map_reduce(float, range(1, 11), lambda acc, v: (acc[0] + 1, acc[1] + v), (0, 0.0),
                        combiner=lambda a, b: (a[0] + b[0], a[1] + b[1]), chunksize=3)
    assert got == (10, 55.0)


def test_empty_input_gives_a_copy_of_the_initializer(ex):
    zero: list = []
    got = ex.map_reduce(str, [], lambda acc, v: acc + [v], zero)
    assert got == [] and got is not zero


@pytest.mark.parametrize("kwargs,error,match", [
    ({"reducer": 42}, TypeError, "reducer must be callable"),
    ({"combiner": "x", "initializer": 0}, TypeError, "combiner must be callable"),
    ({"combiner": concat}, ValueError, "combiner= merges accumulators"),
    ({"reducer": lambda a: a}, TypeError, "must take two positional arguments"),
    ({"initializer": threading.Lock()}, SerializationError, "cannot pickle the initializer"),
])
def test_bad_combinations_refused_before_anything_runs(tmp_path, kwargs, error, match):
    with hpcpar.Executor("local", max_workers=1) as ex:
        args = {"reducer": concat, "initializer": None, "combiner": None}
        args.update(kwargs)
        with pytest.raises(error, match=match):
            ex.map_reduce(str, [1, 2], args["reducer"], args["initializer"],
                          combiner=args["combiner"])
        assert ex.run_ids == []                     # nothing was started


def test_lazy_input_reads_with_bounded_prefetch():
    read = []

    def source():
        for i in itertools.count():
            read.append(i)
            yield i

    with hpcpar.Executor("local", max_workers=2) as ex:
        it = ex.map(abs, source(), chunksize=2, timeout=120)
        assert next(it) == 0
        # at most LAZY_OUTSTANDING windows of chunks_per_slot * slots chunks of 2 were read
        assert len(read) <= LAZY_OUTSTANDING * 4 * 2 * 2 + 1
        assert list(itertools.islice(it, 99)) == list(range(1, 100))
        it.close()
        assert len(read) <= 100 + LAZY_OUTSTANDING * 4 * 2 * 2 + 1


def test_lazy_input_errors_and_timeout():
    with hpcpar.Executor("local", max_workers=2) as ex:
        it = ex.map(time.sleep, itertools.repeat(5), timeout=0.5)
        with pytest.raises(TimeoutError):
            next(it)
        it.close()


def sleep_then(x):
    time.sleep(x)
    return x


def test_unordered_yields_in_completion_order():
    with hpcpar.Executor("local", max_workers=2) as ex:
        got = list(ex.map(sleep_then, [1.5, 0.0, 0.0, 0.0], chunksize=1, ordered=False,
                          timeout=120))
    assert sorted(got) == [0.0, 0.0, 0.0, 1.5] and got[-1] == 1.5


np = pytest.importorskip("numpy")


def total(x, i):
    return float(x[i]), os.getpid()


def stored_files(runs: Path) -> list[Path]:
    return list(runs.rglob("*.npy"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_big_array_stored_once_per_run_and_loaded_once_per_worker(tmp_path, backend):
    runs = tmp_path / "runs"
    big = np.arange(300_000, dtype=np.float64)         # 2.4 MB, above the 1 MB default
    with hpcpar.Executor(backend, max_workers=2, runs_dir=str(runs)) as ex:
        stores: list = []
        real = ex._new_store

        def spy():
            stores.append(real())
            return stores[-1]

        ex._new_store = spy
        # the same array in every item, and in a partial and a closure
        out = list(ex.map(total, [big] * 16, range(16), chunksize=1))
        assert [v for v, _ in out] == [float(i) for i in range(16)]
        part = functools.partial(total, big)
        assert [v for v, _ in ex.map(part, range(16), chunksize=1)] == [float(i) for i in range(16)]
        got = ex.map_reduce(lambda i: float(big[i]), range(16), concat, 0.0, chunksize=1)
        assert got == float(sum(range(16)))
    assert [len(s.written) for s in stores] == [1, 1, 1]
    assert [s.written[0][1] for s in stores] == [big.nbytes] * 3
    assert stored_files(runs) == []                      # deleted once each run was done
    if backend == "inline":                              # loaded once in this process
        keys = [s.written[0][0] for s in stores]
        assert [argstore.LOADS[k] for k in keys] == [1, 1, 1]


def small_total(x):
    return float(x.sum())


def test_small_and_off_are_not_stored(tmp_path):
    with hpcpar.Executor("inline", runs_dir=str(tmp_path), max_nbytes=0) as ex:
        big = np.ones(300_000)
        ex._new_store()
        assert ex._new_store() is None
        assert list(ex.map(small_total, [big])) == [300_000.0]
    with hpcpar.Executor("inline", runs_dir=str(tmp_path)) as ex:
        store = ex._new_store()
        assert store is not None and store.reference(np.ones(10)) is None
        assert store.reference(big) is store.reference(big)          # by identity, once
        assert len(store.written) == 1
        store.close()


def test_worker_finds_store_moved_into_its_run_folder(tmp_path):
    store = argstore.ArgStore(tmp_path / "runs", 1, by_content=False, prefix="args")
    arr = np.arange(10.0)
    ref = store.reference(arr)
    assert ref is not None and store.path is not None
    run = tmp_path / "runs" / "run-1"
    run.mkdir()
    argstore.adopt(store.path, run)
    assert not Path(ref.path).exists() and (run / "args" / Path(ref.path).name).exists()
    argstore.use_run_dir(run)
    try:
        loaded = argstore.load(*ref.__reduce__()[1])
    finally:
        argstore.use_run_dir(None)
    assert np.array_equal(loaded, arr) and not loaded.flags.writeable


@pytest.mark.parametrize("backend", BACKENDS)
def test_submit_stores_a_big_argument_once_per_executor(tmp_path, backend):
    runs = tmp_path / "runs"
    big = np.arange(300_000, dtype=np.float64)
    ex = hpcpar.Executor(backend, max_workers=2, runs_dir=str(runs))
    futures = [ex.submit(total, big, i) for i in range(8)]
    assert [f.result(timeout=120)[0] for f in futures] == [float(i) for i in range(8)]
    store = ex._submit_store
    assert store is not None and len(store.written) == 1
    assert len(stored_files(runs)) == 1
    ex.shutdown(wait=True)
    assert stored_files(runs) == []
