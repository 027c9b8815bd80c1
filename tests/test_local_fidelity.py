"""The local backend rehearses a cluster: crash isolation, SystemExit, mem, walltime, thread
caps, and Ctrl-C / SIGTERM leave no worker behind."""

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import hpcpar
from hpcpar.states import JobState


def crash_on(x, bad):
    if x == bad:
        ctypes.string_at(0)              # SIGSEGV in the worker process
    return x


def kill_self_on(x, bad):
    if x == bad:
        os.kill(os.getpid(), signal.SIGKILL)   # as the kernel's out-of-memory killer does
    return x


def exit_on(x, bad):
    if x == bad:
        sys.exit(0)
    return x


def allocate(n_bytes):
    block = bytearray(n_bytes)           # zero-filled: touched, not only reserved
    return len(block)


def nap(seconds):
    time.sleep(seconds)
    return seconds


def thread_settings(_):
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LOKY_MAX_CPU_COUNT")
    return {name: os.environ.get(name) for name in names}


def blas_threads(_):
    import numpy  # noqa: F401 - loads its BLAS
    from threadpoolctl import threadpool_info

    return sorted({pool["num_threads"] for pool in threadpool_info()
                   if pool["user_api"] == "blas"})


def test_segfaulting_task_among_ten_fails_alone_naming_sigsegv():
    with hpcpar.Executor("local", max_workers=2) as ex:
        futures = [ex.submit(crash_on, i, 6) for i in range(10)]
        for i, f in enumerate(futures):
            if i == 6:
                with pytest.raises(hpcpar.JobLostError, match="SIGSEGV") as info:
                    f.result()
                assert info.value.exit_code == -signal.SIGSEGV
                assert info.value.state is JobState.FAILED
                assert info.value.attempts == 3          # rerun max_retries (2) times, as a cluster would
            else:
                assert f.result() == i


def test_killed_chunk_of_a_map_fails_alone_naming_sigkill():
    with hpcpar.Executor("local", max_workers=2, max_retries=0) as ex:
        futures = [ex.submit(kill_self_on, i, 3) for i in range(10)]
        done = [f.exception() for f in futures]
    assert [type(e).__name__ if e else None for e in done] == [None] * 3 + ["JobLostError"] + [None] * 6
    assert "SIGKILL" in str(done[3]) and done[3].exit_code == -signal.SIGKILL
    assert [f.result() for i, f in enumerate(futures) if i != 3] == [0, 1, 2, 4, 5, 6, 7, 8, 9]


def test_sys_exit_in_a_task_raises_in_the_driver_as_that_tasks_error():
    with hpcpar.Executor("local", max_workers=2) as ex:
        futures = [ex.submit(exit_on, i, 1) for i in range(3)]
        assert futures[0].result() == 0 and futures[2].result() == 2
        with pytest.raises(hpcpar.TaskError, match=r"sys\.exit\(0\)"):
            futures[1].result()
        with pytest.raises(hpcpar.TaskError, match=r"sys\.exit\(0\)"):
            list(ex.map(exit_on, range(4), [2] * 4))


def test_sys_exit_in_a_task_does_not_end_the_driver_silently(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent("""
        import sys, hpcpar
        def stop(x):
            sys.exit(0)
        with hpcpar.Executor("local", max_workers=1) as ex:
            list(ex.map(stop, range(3)))
        print("not reached")
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          check=False, timeout=60, env=_env())
    assert proc.returncode == 1, proc.stderr
    assert "not reached" not in proc.stdout
    assert "TaskError: the task called sys.exit(0)" in proc.stderr


def test_task_over_its_memory_ends_out_of_memory():
    with hpcpar.Executor("local", max_workers=1, mem="200MB", max_retries=0) as ex:
        small = ex.submit(allocate, 50_000_000)
        big = ex.submit(allocate, 400_000_000)
        after = ex.submit(allocate, 10)
        assert small.result() == 50_000_000
        with pytest.raises(hpcpar.JobLostError) as info:
            big.result()
        assert info.value.state is JobState.OUT_OF_MEMORY
        assert after.result() == 10                     # a fresh worker takes the next chunk


def test_memory_limit_is_per_executor():
    with hpcpar.Executor("local", max_workers=1) as ex:  # no mem: no limit
        assert ex.submit(allocate, 400_000_000).result() == 400_000_000


def test_chunk_past_its_walltime_ends_timeout():
    with hpcpar.Executor("local", max_workers=2, walltime=2, max_retries=0) as ex:
        slow = ex.submit(nap, 60)
        quick = ex.submit(nap, 0)
        with pytest.raises(hpcpar.JobLostError) as info:
            slow.result(timeout=50)
        assert info.value.state is JobState.TIMEOUT
        assert quick.result() == 0
        assert ex.submit(nap, 0.1).result() == 0.1


def test_blas_and_openmp_threads_are_capped_to_cpus_per_task(monkeypatch):
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LOKY_MAX_CPU_COUNT"):
        monkeypatch.delenv(name, raising=False)
    with hpcpar.Executor("local", max_workers=1, cpus_per_task=2) as ex:
        assert ex.submit(thread_settings, 0).result() == dict.fromkeys(
            ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LOKY_MAX_CPU_COUNT"), "2")
        assert ex.submit(blas_threads, 0).result() in ([2], [])  # [] if numpy has no BLAS pool
    monkeypatch.setenv("OMP_NUM_THREADS", "3")                   # the user's choice wins
    with hpcpar.Executor("local", max_workers=1) as ex:
        settings = ex.submit(thread_settings, 0).result()
    assert settings["OMP_NUM_THREADS"] == "3" and settings["MKL_NUM_THREADS"] == "1"


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCPAR_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


DRIVER = """
import os, sys, time, hpcpar
def nap(i):
    open(os.path.join({folder!r}, str(os.getpid())), "w").close()
    time.sleep(20)
    return i
{body}
"""

BODIES = {
    "with": "with hpcpar.Executor('local', max_workers=2) as ex:\n    list(ex.map(nap, range(8), chunksize=1))",
    "bare": "ex = hpcpar.Executor('local', max_workers=2)\nlist(ex.map(nap, range(8), chunksize=1))",
}


def _session_processes(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-s", str(sid)], capture_output=True,
                         text=True, check=False, timeout=10).stdout
    return [line for line in out.splitlines() if line.split()[1][0] != "Z"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("body", sorted(BODIES))
def test_signal_to_driver_stops_every_worker(tmp_path, sig, body):
    """8 x 20 s tasks on 2 workers; the signal comes once both run. The driver must exit and
    leave no process in its session, well before any task could finish (20 s)."""
    folder = tmp_path / "started"
    folder.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(folder=str(folder), body=BODIES[body]))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(os.listdir(folder)) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the tasks never started"
            time.sleep(0.05)
        workers = _session_processes(proc.pid)
        assert len(workers) == 3, workers             # the driver and its 2 workers
        t0 = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=10)
        while _session_processes(proc.pid) and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        left = _session_processes(proc.pid)
        print(f"{sig.name} ({body}): driver and workers gone after {elapsed:.2f} s")
        assert left == [], left
        assert elapsed < 15                            # not waiting for the 20-s tasks
        assert len(os.listdir(folder)) == 2            # no queued task started meanwhile
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], check=False, timeout=10)
