"""Local-backend robustness: a worker process that dies is replaced and its chunk rerun."""

import os

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
