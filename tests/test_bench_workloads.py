"""The peer benchmark's workloads (benchmarks/workloads.py) give correct values on hpcpar's
inline and local backends at tiny sizes, their checks reject wrong values, and the benchmark's
call counting and tables work offline. No timing is asserted: the benchmark measures, the
tests only check what it measures is right."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import hpcpar  # noqa: E402
from benchmarks import bench_tables, peers, workloads  # noqa: E402

pytest.importorskip("numpy")      # the test extra has numpy and scikit-learn: these run in CI
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def by_value():
    """Local workers are fresh interpreters that cannot import ``benchmarks``: ship the task
    functions by value, as peers.py does."""
    import cloudpickle

    workloads.ship_by_value()
    yield
    cloudpickle.unregister_pickle_by_value(workloads)


@pytest.mark.parametrize("key", workloads.KEYS)
def test_sequential_results_pass_their_check(key):
    w = workloads.make(key, "tiny")
    assert len(w) > 0
    w.check(w.run_sequential())


@pytest.mark.parametrize("backend", ["inline", "local"])
@pytest.mark.parametrize("key", workloads.KEYS)
def test_workload_on_hpcpar_gives_the_right_values(key, backend, by_value, tmp_path):
    w = workloads.make(key, "tiny")
    kw = {"max_workers": 2} if backend == "local" else {}
    with hpcpar.Executor(backend, runs_dir=str(tmp_path), **kw) as ex:
        results = list(ex.map(w.fn, *w.columns()))
    w.check(results)
    if key not in ("W4", "BIG"):       # plain values: also equal to the loop's, one by one
        assert results == w.run_sequential()


def test_hand_made_chunks_give_the_same_values(by_value):
    w = workloads.make("W5", "tiny")
    calls = list(w.calls())
    halves = [calls[: len(calls) // 2], calls[len(calls) // 2:]]
    w.check([r for h in halves for r in workloads.run_calls(w.fn, h)])


@pytest.mark.parametrize("key", workloads.KEYS)
def test_check_rejects_wrong_results(key):
    w = workloads.make(key, "tiny")
    good = w.run_sequential()
    with pytest.raises(AssertionError):
        w.check(good[:-1])                               # one missing
    if len(set(map(repr, good))) == len(good) and key != "W4":      # forests may come in any order
        with pytest.raises(AssertionError):
            w.check(good[1:] + good[:1])                 # out of order
    if key != "W4":
        with pytest.raises(AssertionError):
            w.check([good[0]] + [type(g)(g + 1) for g in good[1:]])      # values off by one


def test_forest_check_rejects_forests_that_learned_nothing():
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    w = workloads.make("W4", "tiny")
    x, _, y, _ = workloads._digits_split()
    shuffled = np.random.default_rng(0).permutation(y)          # labels unrelated to images
    forests = [RandomForestClassifier(n_estimators=trees, random_state=seed).fit(x, shuffled)
               for seed, trees in w.args]
    with pytest.raises(AssertionError, match="accuracy"):
        w.check(forests)
    with pytest.raises(AssertionError, match="seed"):
        w.check([w.run_sequential()[0]] * len(w))


def test_ideal_seconds_and_titles():
    assert workloads.ideal_s("W3", "full", 2) == pytest.approx(10.0)       # 40 x 0.5 s / 2
    assert workloads.ideal_s("W5", "full", 2) == pytest.approx(15.0)       # 0.25 * 120 / 2
    assert workloads.ideal_s("W5", "full", 64) == pytest.approx(3.75)      # the longest task
    assert workloads.ideal_s("W2", "full", 2) is None
    assert workloads.title("W2", "full") == "1,000 tiny tasks"
    assert workloads.title("BIG", "full") == "200 MB array to 16 tasks"
    with pytest.raises(ValueError, match="scale"):
        workloads.make("W2", "huge")
    with pytest.raises(ValueError, match="workload"):
        workloads.make("W9", "tiny")


def test_wrappers_log_each_call_and_run_the_real_command(tmp_path, monkeypatch):
    """The PATH wrappers log, then exec the real command with its arguments and exit code."""
    real_bin = tmp_path / "real"
    real_bin.mkdir()
    fake = real_bin / "squeue"
    fake.write_text('#!/bin/sh\necho "real squeue $*"\nexit 3\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{real_bin}{os.pathsep}{os.environ['PATH']}")
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    real = peers.make_wrappers(wrappers)
    assert real["squeue"] == str(fake)
    log = tmp_path / "calls.log"
    env = dict(os.environ, HPCPAR_BENCH_CALL_LOG=str(log), SLURM_JOB_ID="")
    env.pop("SLURM_JOB_ID")
    p = subprocess.run([str(wrappers / "squeue"), "--jobs=1", "a b"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert (p.returncode, p.stdout) == (3, "real squeue --jobs=1 a b\n")
    subprocess.run([str(wrappers / "squeue")], env=dict(env, SLURM_JOB_ID="77"),
                   capture_output=True, timeout=30)
    driver, in_jobs = peers.count_calls(log, [(0, 4e9)])
    assert driver["squeue"] == 1 and in_jobs == 1
    assert sum(driver.values()) == 1
    assert peers.count_calls(log, [(0, 1)]) == (dict.fromkeys(peers.COMMANDS, 0), 0)


def test_tables_show_medians_ratios_and_errors():
    def run(wall, calls, warm=None):
        return {"wall_s": wall, "warm_wall_s": warm, "calls": {"sbatch": 1, "squeue": calls},
                "calls_in_jobs": 0, "peak_rss_bytes": 50e6, "run_dir_bytes": 2e6,
                "close_s": 0.5}

    runs = {("hpcpar", "W3"): [run(12.0, 4), run(10.0, 6), run(11.0, 5)],
            ("dask", "W3"): [run(22.0, 0, warm=11.0), {"error": "TimeoutError: no workers"},
                             run(22.0, 0, warm=11.0)],
            ("submitit-chunks", "W3"): [{"error": "SubmissionError: sbatch said no"}]}
    rep = bench_tables.report(["header"], runs, ["hpcpar", "dask", "submitit-chunks"], ["W3"],
                              "full", 2)
    assert "11.00 (1.00x)" in rep.plain                    # the median of 12, 10, 11
    assert "22.00 (2.00x) [1/2 failed]" not in rep.plain   # 1 of 3 failed, not 1 of 2
    assert "22.00 (2.00x) [1/3 failed]" in rep.plain
    assert "11.00 (1.00x) [1/3 failed]" in rep.plain       # dask warm
    assert "error: SubmissionError: sbatch said no" in rep.plain
    assert "10.00" in rep.plain                            # W3's ideal: 40 x 0.5 s on 2 slots
    assert "6 (sb 1, sq 5)" in rep.plain                   # median calls per command
    tables = [b.splitlines() for b in rep.markdown.split("\n\n") if b.startswith("|")]
    assert len(tables) == 5           # wall, calls, memory, run folder, closing (no local peer)
    for t in tables:                  # header, separator, one W3 row: all as wide
        assert len(t) == 3 and len({ln.count("|") for ln in t}) == 1, t


def test_script_runs_local_peers_end_to_end(tmp_path, capsys):
    """peers.py itself, local peers only, tiny sizes: each measurement in a child process,
    its results checked there, the tables printed and written as Markdown."""
    md = tmp_path / "table.md"
    assert peers.main(["--peers", "hpcpar-local,joblib", "--workloads", "W2,W5", "--scale",
                       "tiny", "--runs", "1", "--markdown", str(md),
                       "--cell-timeout", "300"]) == 0
    out = capsys.readouterr().out
    assert "Scheduler timers:" in out and "Local: median wall seconds" in out
    assert "error" not in out.lower()                  # every cell ran and its check passed
    rows = [ln for ln in md.read_text().splitlines() if ln.startswith("| W")]
    assert any(r.startswith("| W2: 20 tiny tasks |") and "(1.00x)" in r for r in rows), rows
    assert any(r.startswith("| W2 again, warm executor |") for r in rows), rows
