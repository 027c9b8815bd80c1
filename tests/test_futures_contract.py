"""The concurrent.futures contract on the local backend: RUNNING futures, shutdown from a done
callback, released map results, an executor dropped without shutdown, bad options refused."""

import gc
import os
import threading
import time
import weakref

import pytest

import hpcpar


class Payload:
    def __init__(self, i):
        self.i = i
        self.data = bytes(1000)


def make_payload(i):
    return Payload(i)


def nap(seconds):
    time.sleep(seconds)
    return os.getpid()


def pid(_):
    return os.getpid()


def _wait_for(predicate, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_future_is_running_while_its_task_runs_and_cannot_be_cancelled():
    with hpcpar.Executor("local", max_workers=1) as ex:
        running = ex.submit(nap, 1.0)
        queued = ex.submit(nap, 0)
        _wait_for(running.running)
        assert not queued.running() and not queued.done()
        assert running.cancel() is False
        assert queued.cancel() is True
        assert running.result() > 0 and not running.cancelled()
        assert queued.cancelled()


def test_shutdown_wait_from_a_done_callback_raises_instead_of_deadlocking():
    seen = []
    called = threading.Event()
    ex = hpcpar.Executor("local", max_workers=1)

    def callback(_f):
        try:
            ex.shutdown(wait=True)
        except RuntimeError as exc:
            seen.append(exc)
        finally:
            called.set()

    f = ex.submit(nap, 0)
    later = ex.submit(nap, 0.2)
    f.add_done_callback(callback)
    assert called.wait(60), "the callback never ended: shutdown deadlocked"
    assert len(seen) == 1 and "done callback" in str(seen[0])
    assert later.result(60) > 0                  # queued work still finishes
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(nap, 0)
    ex.shutdown(wait=True)


def test_consumed_map_results_are_released():
    with hpcpar.Executor("local", max_workers=2) as ex:
        refs = []
        for value in ex.map(make_payload, range(12), chunksize=3):
            refs.append(weakref.ref(value))
            del value
            gc.collect()
            assert [r() for r in refs] == [None] * len(refs)
        assert len(refs) == 12


def test_executor_dropped_without_shutdown_releases_its_workers():
    ex = hpcpar.Executor("local", max_workers=2)
    pids = set(ex.map(nap, [0.3] * 4, chunksize=1))
    assert pids and all(_alive(p) for p in pids)
    del ex
    gc.collect()
    _wait_for(lambda: not any(_alive(p) for p in pids))


def _alive(pid_):
    try:
        with open(f"/proc/{pid_}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("option", [{"max_workers": 0}, {"max_workers": -1},
                                    {"chunks_per_slot": 0}, {"max_retries": -1},
                                    {"poll_interval_s": -1.0}, {"poll_interval_s": 0}])
def test_bad_options_are_refused_in_the_constructor(option):
    with pytest.raises(hpcpar.ConfigError, match=next(iter(option))):
        hpcpar.Executor("local", **option)
