"""hpcpar.joblib: scikit-learn's n_jobs through hpcpar (offline: the local backend)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
from joblib import Parallel, delayed

import hpcpar
import hpcpar.joblib
from hpcpar import argstore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _registered(monkeypatch, tmp_path):
    hpcpar.joblib.register()
    monkeypatch.setenv("HPCPAR_RUNS_DIR", str(tmp_path / "runs"))


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


def test_register_is_explicit_and_import_has_no_side_effect():
    code = (
        "import joblib, hpcpar, hpcpar.joblib\n"
        "assert 'hpcpar' not in joblib.parallel.BACKENDS\n"
        "try:\n"
        "    joblib.parallel_config(backend='hpcpar')\n"
        "    raise SystemExit('parallel_config accepted an unregistered backend')\n"
        "except ValueError as exc:\n"
        "    assert 'Invalid backend' in str(exc), exc\n"
        "hpcpar.joblib.register()\n"
        "assert joblib.parallel.BACKENDS['hpcpar'] is hpcpar.joblib.HpcparBackend\n"
        "assert joblib.parallel.DEFAULT_BACKEND == 'loky'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_grid_search_equals_loky(digits):
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    X, y = digits
    grid = {"C": [1.0, 10.0], "gamma": [1e-4, 1e-3]}
    with joblib.parallel_config(backend="hpcpar") as cfg:
        ours = GridSearchCV(SVC(), grid, cv=5, n_jobs=2).fit(X, y)
    with joblib.parallel_config(backend="loky"):
        loky = GridSearchCV(SVC(), grid, cv=5, n_jobs=2).fit(X, y)
    backend = cfg["backend"]
    assert backend.hpcpar_backend == "local"
    assert ours.best_params_ == loky.best_params_
    assert ours.cv_results_["params"] == loky.cv_results_["params"]
    diff = np.abs(ours.cv_results_["mean_test_score"] - loky.cv_results_["mean_test_score"])
    assert diff.max() <= 1e-12
    # 20 fits, 2 workers: 4 groups per worker, each one submit (one run on the local backend)
    assert len(backend.run_ids) == 8


def test_cross_val_score_and_effective_n_jobs_from_the_profile(digits, tmp_path, monkeypatch):
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import cross_val_score

    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text('[profiles.lab]\nbackend = "local"\nmax_workers = 3\n')
    monkeypatch.setenv("HPCPAR_CONFIG", str(cfg_file))
    monkeypatch.setenv("HPCPAR_PROFILE", "lab")
    X, y = digits
    model = RidgeClassifier()
    expected = cross_val_score(model, X, y, cv=5, n_jobs=1)
    with joblib.parallel_config(backend="hpcpar") as cfg:           # no options: the profile
        assert joblib.effective_n_jobs(-1) == 3
        got = cross_val_score(model, X, y, cv=5, n_jobs=-1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert cfg["backend"].hpcpar_backend == "local" and cfg["backend"].run_ids


def _touch_and_square(folder: str, i: int) -> int:
    Path(folder, f"started-{i}").touch()
    return i * i


def test_generator_starts_before_iteration_and_yields_in_order(tmp_path):
    with joblib.parallel_config(backend="hpcpar"):
        gen = Parallel(n_jobs=2, return_as="generator")(
            delayed(_touch_and_square)(str(tmp_path), i) for i in range(12))
        deadline = time.monotonic() + 120          # generous: the machine is shared
        while not list(tmp_path.glob("started-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(tmp_path.glob("started-*")), "nothing ran before the generator was iterated"
        assert not isinstance(gen, list)
        assert next(gen) == 0
        assert list(gen) == [i * i for i in range(1, 12)]


def _fail_on(i: int, bad: int) -> int:
    if i == bad:
        raise ValueError(f"task {i} is bad")
    return i


def test_task_error_is_raised_with_remote_traceback():
    with joblib.parallel_config(backend="hpcpar"), pytest.raises(ValueError, match="task 5 is bad") as info:
        Parallel(n_jobs=2)(delayed(_fail_on)(i, 5) for i in range(16))
    assert isinstance(info.value.__cause__, hpcpar.errors.RemoteTraceback)
    assert "_fail_on" in str(info.value.__cause__)


def _inner_workers(n: int) -> tuple[tuple, list[tuple], str]:
    import threading

    from joblib.parallel import get_active_backend

    def where():
        return os.getpid(), threading.get_ident()

    inner = Parallel(n_jobs=2)(delayed(where)() for _ in range(n))
    return where(), inner, type(get_active_backend()[0]).__name__


def test_nested_parallel_runs_sequentially_unless_asked():
    with joblib.parallel_config(backend="hpcpar"):
        out = Parallel(n_jobs=2)(delayed(_inner_workers)(4) for _ in range(4))
    assert {name for _, _, name in out} == {"SequentialBackend"}
    assert all(set(inner) == {outer} for outer, inner, _ in out)     # same process, same thread
    assert {pid for (pid, _), _, _ in out} != {os.getpid()}          # outer tasks ran elsewhere

    # asked for: threads here (loky in a forked local-pool worker is unreliable; on a cluster
    # each array task is a fresh process, where nested="loky" is the natural choice)
    with joblib.parallel_config(backend="hpcpar", nested="threading", cpus_per_task=2):
        out = Parallel(n_jobs=2)(delayed(_inner_workers)(8) for _ in range(2))
    assert {name for _, _, name in out} == {"ThreadingBackend"}
    assert all(outer not in inner for outer, inner, _ in out)           # other threads


def _probe(X, key: str) -> tuple:
    return os.getpid(), argstore.LOADS[key], type(X).__name__, X.flags.writeable, float(X.sum())


def test_big_argument_is_stored_once_by_content(tmp_path):
    X = np.arange(300_000, dtype=np.float64)              # 2.4 MB, over joblib's 1M max_nbytes
    same = X.copy()                                       # equal content, another object
    changed = X.copy()
    changed[0] = -1.0
    key = joblib.hash(X)
    with joblib.parallel_config(backend="hpcpar") as cfg:
        out = Parallel(n_jobs=2)(delayed(_probe)(X if i % 2 else same, key) for i in range(24))
        out2 = Parallel(n_jobs=2)(delayed(_probe)(a, joblib.hash(a)) for a in (X, changed))
    backend = cfg["backend"]
    assert [n for _, n in backend.stored] == [X.nbytes, X.nbytes, X.nbytes]
    assert backend.stored[0][0] == key                      # call 1: X and its copy, once
    assert {k for k, _ in backend.stored[1:]} == {key, joblib.hash(changed)}   # call 2
    assert {r[4] for r in out} == {float(X.sum())}
    assert {r[2] for r in out} == {"memmap"} and not any(r[3] for r in out)   # read-only map
    loads_per_process: dict[int, int] = {}
    for pid, loads, *_ in out:
        loads_per_process[pid] = max(loads_per_process.get(pid, 0), loads)
    assert set(loads_per_process.values()) == {1}           # each worker process read it once
    assert out2[1][4] == float(changed.sum())
    assert not list((tmp_path / "runs").glob("joblib-args-*"))   # the stores are deleted

    with joblib.parallel_config(backend="hpcpar", max_nbytes=None) as cfg:
        Parallel(n_jobs=2)(delayed(_probe)(X, key) for _ in range(4))
    assert cfg["backend"].stored == []


def test_random_forest_n_jobs_equals_single_process(digits):
    from sklearn.ensemble import RandomForestClassifier

    X, y = digits
    single = RandomForestClassifier(n_estimators=12, random_state=0, n_jobs=1).fit(X, y)
    with joblib.parallel_config(backend="hpcpar") as cfg:
        forest = RandomForestClassifier(n_estimators=12, random_state=0, n_jobs=2).fit(X, y)
    assert cfg["backend"].run_ids
    np.testing.assert_array_equal(forest.predict_proba(X), single.predict_proba(X))


def test_a_given_executor_is_used_and_left_open():
    with hpcpar.Executor("local", max_workers=2) as ex:
        with joblib.parallel_config(backend="hpcpar", executor=ex) as cfg:
            assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(6)) == list(range(6))
            assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(6)) == list(range(6))
        assert ex.submit(abs, -3).result() == 3                 # not shut down by joblib
        assert cfg["backend"].run_ids == ex.run_ids[:-1]


@pytest.mark.parametrize("options, match", [
    ({"quue": "debug"}, "unknown option 'quue'.*did you mean 'queue'"),
    ({"hpcpar_backend": "slrum"}, "unknown backend 'slrum'.*did you mean 'slurm'"),
    ({"mem": "lots"}, "mem"),
    ({"nested": "dask-ish"}, "nested='dask-ish'"),
    ({"profile": "nope"}, "no profile 'nope'"),
])
def test_bad_options_fail_at_parallel_config(options, match):
    with pytest.raises(hpcpar.ConfigError, match=match):
        joblib.parallel_config(backend="hpcpar", **options)


def test_executor_and_options_together_are_refused():
    with hpcpar.Executor("local") as ex, pytest.raises(hpcpar.ConfigError, match="either executor="):
        joblib.parallel_config(backend="hpcpar", executor=ex, queue="debug")


def test_argstore_sizes_and_threshold(tmp_path):
    store = argstore.ArgStore(tmp_path, min_bytes=1000)
    small, big = np.zeros(10), np.zeros(1000)
    args, kwargs = store.replace((small, big, "text", [big]), {"w": big})
    assert args[0] is small and args[2] == "text" and args[3][0] is big   # only top-level values
    assert isinstance(args[1], argstore.Stored) and kwargs["w"] is args[1]
    assert store.written == [(joblib.hash(big), 8000)]
    folder = store.path
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    store.close()
    assert store.path is None and not folder.exists()


def _mark_and_nap(folder: str, i: int) -> int:
    if i == 0:
        raise RuntimeError("first task fails")
    Path(folder, f"ran-{i}").touch()
    time.sleep(0.3)
    return i


def test_an_error_cancels_the_groups_not_yet_started(tmp_path):
    with joblib.parallel_config(backend="hpcpar", chunks_per_slot=10), \
            pytest.raises(RuntimeError, match="first task"):
        Parallel(n_jobs=2)(delayed(_mark_and_nap)(str(tmp_path), i) for i in range(40))
    seen, stable_since, deadline = -1, time.monotonic(), time.monotonic() + 120
    while time.monotonic() - stable_since < 3 and time.monotonic() < deadline:
        n = len(list(tmp_path.glob("ran-*")))     # wait until whatever was running has finished
        if n != seen:
            seen, stable_since = n, time.monotonic()
        time.sleep(0.2)
    # 20 groups of 2 tasks; the failing group stops at its first task. Without cancelling, the
    # other 39 tasks would run; the local pool cannot take back the groups its 2 workers run
    # and the 3 calls it has queued (ProcessPoolExecutor queues max_workers + 1), so <= 5 x 2.
    assert seen <= 10


def test_argstore_sparse_round_trip(tmp_path):
    import pickle

    import scipy.sparse

    m = scipy.sparse.random(200, 300, density=0.05, format="csr", random_state=0)
    store = argstore.ArgStore(tmp_path, min_bytes=1000)
    (ref,), _ = store.replace((m,), {})
    assert isinstance(ref, argstore.Stored) and ref.kind == "pkl"
    assert ref.nbytes == m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
    back = pickle.loads(pickle.dumps(ref))                 # what a worker gets
    assert (back != m).nnz == 0
    store.close()


def test_a_missing_scheduler_is_a_clear_error_and_nothing_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))              # no bsub (nor anything else) here
    with joblib.parallel_config(backend="hpcpar", hpcpar_backend="lsf") as cfg, \
            pytest.raises(hpcpar.SchedulerNotFoundError, match="'bsub'"):
        Parallel(n_jobs=-1)(delayed(abs)(i) for i in range(10))
    assert cfg["backend"].run_ids == []
