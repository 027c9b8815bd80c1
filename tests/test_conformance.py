"""The Executor contract, run against every backend available (after CPython's executor tests).

``local`` and ``fake`` (the fake scheduler in tests/fakesched: the whole batch pipeline, offline)
always run; ``slurm`` needs the real SLURM (``scripts/slurm-single-host``), ``pbs`` the Torque
wrappers over it (with tests/torque_shim.py registered), ``lsf`` the LSF emulator over it
(tests/emulators/lsf), ``sge`` the Grid Engine container (``docker/sge/test`` runs it inside).
The same functions and assertions serve all.
"""

from __future__ import annotations

import concurrent.futures
import functools
import operator
import os
import shutil
import threading
import time
from pathlib import Path

import fakesched
import pytest
import torque_shim
from conftest import need, slurm_ready

import hpcpar
from hpcpar import SerializationError

BACKENDS = [pytest.param("local", id="local"), pytest.param("inline", id="inline"),
            pytest.param("fake", id="fake"),
            pytest.param("slurm", id="slurm", marks=pytest.mark.slurm),
            pytest.param("pbs", id="pbs", marks=pytest.mark.torque),
            pytest.param("lsf", id="lsf", marks=pytest.mark.lsf),
            pytest.param("sge", id="sge", marks=pytest.mark.sge)]
LSF_EMULATOR = Path(__file__).parent / "emulators" / "lsf"
#: per backend: extra Executor options, and seconds between status calls (first, most)
SETTINGS = {"fake": ({}, 0.1, 0.5), "slurm": ({}, 0.5, 2.0), "sge": ({}, 0.5, 2.0),
            "pbs": ({"dialect": "torque", "queue": "debug"}, 0.5, 2.0),
            "lsf": ({"queue": "debug"}, 0.5, 2.0)}


_slurm_seen_ready = False


def _slurm_ready() -> tuple[bool, str]:
    """SLURM's readiness, asked until it is once ready (slurm_ready waits out a node that is
    briefly "completing" after a test cancels its jobs); a failure is not remembered."""
    global _slurm_seen_ready
    if _slurm_seen_ready:
        return True, ""
    ok, why = slurm_ready()
    _slurm_seen_ready = ok
    return ok, why


def _scheduler(name, request, monkeypatch, tmp_path):
    """Bring up (or require) the scheduler behind backend ``name``; undo it afterwards."""
    if name == "fake":
        fakesched.register(tmp_path / "fakesched")
        request.addfinalizer(lambda: hpcpar.backends.registry.unregister_scheduler("fake"))
    elif name == "pbs":
        ok, why = _slurm_ready()
        if ok and shutil.which("qsub") is None:
            ok, why = False, "no qsub on PATH (apt-get install slurm-wlm-torque)"
        need("torque", ok, why)
        torque_shim.register()
        request.addfinalizer(torque_shim.unregister)
    elif name == "lsf":
        ok, why = _slurm_ready()
        need("lsf", ok, why)
        monkeypatch.setenv("PATH", f"{LSF_EMULATOR}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("LSF_UNIT_FOR_LIMITS", "MB")
    elif name not in ("local", "inline"):
        request.getfixturevalue(name)                   # the scheduler's fixture: skip or fail


@pytest.fixture(params=BACKENDS)
def make(request, runs_dir, monkeypatch, tmp_path):
    _scheduler(request.param, request, monkeypatch, tmp_path)
    made = []

    def factory(**kw):
        kw.setdefault("runs_dir", str(runs_dir))
        if request.param not in ("local", "inline"):
            extra, first, most = SETTINGS[request.param]
            for k, v in extra.items():
                kw.setdefault(k, v)
            kw.setdefault("poll_interval_s", first)
            kw.setdefault("max_poll_interval_s", most)
        ex = hpcpar.Executor(request.param, **kw)
        made.append(ex)
        return ex

    factory.backend = request.param
    yield factory
    for ex in made:
        ex.shutdown(wait=False, cancel_futures=True)


def square(x):
    return x * x


def add(a, b):
    return a + b


class Boom(ValueError):
    pass


def explode(x):
    if x == 3:
        raise Boom(f"task {x} failed on purpose")
    return x


def concat(a, b):
    return a + b


def test_map_is_ordered_and_complete(make):
    ex = make()
    items = list(range(57))
    assert list(ex.map(square, items)) == [x * x for x in items]
    assert list(ex.map(add, range(5), range(10, 15), chunksize=2)) == [10 + 2 * i for i in range(5)]
    assert list(ex.map(square, [])) == []


def test_submit_and_as_completed(make):
    ex = make()
    futures = {ex.submit(add, i, b=100): i for i in range(6)}
    seen = {}
    for f in concurrent.futures.as_completed(futures, timeout=300):
        seen[futures[f]] = f.result()
    assert seen == {i: i + 100 for i in range(6)}
    assert hpcpar.as_completed is concurrent.futures.as_completed


def test_exception_type_and_remote_traceback(make):
    ex = make()
    results = ex.map(explode, range(6), chunksize=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(Boom, match="task 3 failed on purpose") as err:
        next(results)
    cause = err.value.__cause__
    assert isinstance(cause, hpcpar.errors.RemoteTraceback)
    assert "in explode" in str(cause) and 'raise Boom(f"task {x} failed on purpose")' in str(cause)
    fut = ex.submit(explode, 3)
    assert isinstance(fut.exception(timeout=300), Boom)


@pytest.mark.parametrize("n,chunksize", [(1, None), (10, 3), (100, None), (37, 5)])
def test_map_reduce_equals_sequential_reduce(make, n, chunksize):
    ex = make()
    items = [str(i) for i in range(n)]          # string concatenation: associative, not commutative
    expected = functools.reduce(concat, map(str.upper, items))
    assert ex.map_reduce(str.upper, items, concat, chunksize=chunksize) == expected
    # an initializer is a zero value copied into every chunk (Spark's aggregate): a neutral
    # one gives the sequential fold (a non-neutral one: tests/test_executor_api.py)
    assert ex.map_reduce(str.upper, items, concat, "", chunksize=chunksize) == expected


def test_map_reduce_empty_input(make):
    ex = make()
    assert ex.map_reduce(square, [], operator.add, 0) == 0
    with pytest.raises(TypeError, match="reduce\\(\\) of empty iterable with no initial value"):
        ex.map_reduce(square, [], operator.add)


def test_map_reduce_error_surfaces(make):
    ex = make()
    with pytest.raises(Boom):
        ex.map_reduce(explode, range(8), operator.add, chunksize=2)


def test_unpicklable_function_rejected_at_submit(make):
    ex = make()
    lock = threading.Lock()

    def uses_lock(x):
        with lock:
            return x

    with pytest.raises(SerializationError, match="cannot pickle the function .*uses_lock.*lock"):
        ex.submit(uses_lock, 1)
    with pytest.raises(TypeError):
        ex.map(uses_lock, range(3))
    with pytest.raises(SerializationError, match=r"argument 0 of item 2 .*lock"):
        ex.map(square, [1, 2, threading.Lock()])


def test_shutdown_cancel_futures(make):
    ex = make(**({"max_workers": 1} if make.__name__ else {}))
    futures = [ex.submit(time.sleep, 0.5) for _ in range(6)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert all(f.done() for f in futures)
    if make.backend == "inline":                # each ran inside its submit: nothing left to cancel
        assert not any(f.cancelled() for f in futures)
    else:
        assert any(f.cancelled() for f in futures)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 2)


def test_context_manager_waits(make):
    with make() as ex:
        futures = [ex.submit(square, i) for i in range(4)]
    assert [f.result(timeout=0) for f in futures] == [0, 1, 4, 9]


def test_map_timeout(make):
    ex = make()
    if make.backend == "inline":     # the whole map runs inside map(): its results are there
        assert list(ex.map(time.sleep, [0.2, 0.2], timeout=0.1)) == [None, None]
        return
    it = ex.map(time.sleep, [30, 30], timeout=0.5)
    with pytest.raises(concurrent.futures.TimeoutError):
        next(it)


def count_words(c, words):
    c.update(words)
    return c


def test_word_count_accumulator_equals_sequential_counter(make):
    """The seeds' word count (issue 10, Must show 7): a reducer that updates a Counter."""
    from collections import Counter

    ex = make()
    lines = [f"the {w} and the {w}s of line {i % 7}" for i, w in
             enumerate(["cat", "dog", "cat", "owl", "bee"] * 9)]
    expected = Counter()
    for line in lines:
        expected.update(line.split())
    got = ex.map_reduce(str.split, lines, lambda c, ws: c.update(ws) or c, Counter())
    assert type(got) is Counter and got == expected
    assert ex.map_reduce(str.split, lines, count_words, Counter(), chunksize=4) == expected
    assert ex.map_reduce(str.split, iter(lines), count_words, Counter(), chunksize=8) == expected


def test_lazy_input_and_unordered_results(make):
    import itertools

    ex = make()
    first = list(itertools.islice(ex.map(square, itertools.count(), chunksize=4, timeout=300), 10))
    assert first == [x * x for x in range(10)]
    gen = (x for x in range(23))
    assert sorted(ex.map(square, gen, ordered=False)) == [x * x for x in range(23)]
    assert sorted(ex.map(square, range(23), ordered=False, chunksize=5)) == [x * x for x in range(23)]


def element(x, i):
    return float(x[i])


def test_big_argument_travels_once_per_run(make, runs_dir):
    """Issue 10: the same array in every item is stored once per run (in the run folder on a
    batch backend, where the workers find it), and nothing of it is left beside the runs."""
    np = pytest.importorskip("numpy")

    ex = make()
    big = np.arange(200_000, dtype=np.float64)          # 1.6 MB, above the 1 MB default
    assert list(ex.map(element, [big] * 6, range(6), chunksize=2)) == [float(i) for i in range(6)]
    ex.shutdown(wait=True)
    assert not list(Path(runs_dir).glob("args-*"))      # adopted by the run, or deleted
    stored = sorted(Path(runs_dir).rglob("*.npy"))
    if make.backend in ("local", "inline"):
        assert stored == []
    else:
        assert len(stored) == 1 and stored[0].parent.name == "args"
        assert stored[0].stat().st_size < 2 * big.nbytes
        chunk_files = [p for p in stored[0].parent.parent.rglob("chunks/*") if p.is_file()]
        assert chunk_files and all(p.stat().st_size < 10_000 for p in chunk_files)
