"""Local-backend robustness: a worker process that dies is replaced and its chunk rerun."""

import os
import subprocess
import sys

import pytest

import hpcpar


def die_once(x, marker):
    if x == 2 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(9)                      # like an out-of-memory kill
    return x


def always_die(x):
    os._exit(9)


def test_dead_worker_chunk_is_rerun(tmp_path):
    marker = str(tmp_path / "died")
    with hpcpar.Executor("local", max_workers=2) as ex:
        assert list(ex.map(die_once, range(6), [marker] * 6, chunksize=1)) == list(range(6))
    assert os.path.exists(marker)


def test_worker_that_always_dies_gives_job_lost_error():
    with hpcpar.Executor("local", max_workers=1, max_retries=1) as ex:
        with pytest.raises(hpcpar.JobLostError, match="died"):
            list(ex.map(always_die, [1]))


def test_progress_bar_is_optional(capsys):
    with hpcpar.Executor("local", progress=True) as ex:
        assert list(ex.map(abs, [-1, -2])) == [1, 2]
    assert "2/2" in capsys.readouterr().err
    with hpcpar.Executor("local") as ex:                 # not a terminal: no bar
        list(ex.map(abs, [-1]))
    assert capsys.readouterr().err == ""


def test_task_that_exits_the_process_raises_job_lost_error_within_10_s():
    """``os._exit(1)`` in a task breaks the process pool. On Python 3.12+ the pool's done
    callbacks run under its shutdown lock, and replacing the broken pool from there once hung the
    driver forever; this runs on every supported Python in CI. A subprocess, so that a hang
    fails the test instead of the test run."""
    code = (
        "import os, sys, hpcpar\n"
        "def die(x):\n"
        "    os._exit(1)\n"
        "with hpcpar.Executor('local', max_workers=2) as ex:\n"
        "    try:\n"
        "        list(ex.map(die, range(4)))\n"
        "    except hpcpar.JobLostError as exc:\n"
        "        print('JobLostError:', exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCPAR_")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=10, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("JobLostError:"), proc.stdout + proc.stderr
    assert "died" in proc.stdout


def draw(_):
    import numpy as np

    return float(np.random.rand())


def test_workers_draw_from_distinct_random_streams():
    """Forked workers must not replay the driver's numpy random stream: on a cluster each array
    task has its own, so simulations and bagging must not differ between local and cluster."""
    import numpy as np

    np.random.seed(0)                       # the driver's state, which every fork inherits
    with hpcpar.Executor("local", max_workers=2) as ex:
        values = list(ex.map(draw, range(40), chunksize=1))
    assert len(set(values)) == 40
