"""The seed workloads as examples: bagging, word count, text PCA, a seeded simulation sweep.

Each example runs as a user runs it (``python examples/NAME.py [--backend B]``) on ``local``
offline, and on the real SLURM in the ``slurm``-marked tests. What each checks:

- bagging: majority-vote accuracy is high and close to ``BaggingClassifier``'s;
- word_count: the printed totals and top words equal a sequential ``Counter`` computed here;
  exact counts on a small corpus written here;
- text_pca: the saved SVD components equal (to 1e-9) the same pipeline run here with the
  built-in ``map``, and the printed top terms are the same;
- simulation: the SHA-256 of the results equals that of a plain loop run here (bit-identical
  on every backend), and the estimates agree with the Black-Scholes closed form.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import bagging  # noqa: E402
import simulation  # noqa: E402
import text_pca  # noqa: E402
import word_count  # noqa: E402

SLURM_ARGS = ("--backend", "slurm")


def run_example(name: str, *args: str, runs_dir: Path | None = None) -> str:
    env = dict(os.environ)
    if runs_dir is not None:
        env["HPCPAR_RUNS_DIR"] = str(runs_dir)
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / f"{name}.py"), *args],
                          check=False, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def number_after(label: str, out: str) -> float:
    match = re.search(re.escape(label) + r"\s*([0-9.]+)", out)
    assert match, f"{label!r} not in output:\n{out}"
    return float(match.group(1))


# -- bagging -------------------------------------------------------------------------------------
def test_majority_vote_counts_votes_and_breaks_ties_by_class_order():
    preds = np.array([[1, 2, 3, 0],
                      [1, 3, 3, 2],
                      [2, 3, 1, 3]])
    assert bagging.majority_vote(preds, np.array([0, 1, 2, 3])).tolist() == [1, 3, 3, 0]


def check_bagging(out: str, backend: str) -> None:
    rows = {m[0]: (int(m[1]), float(m[2])) for m in
            re.findall(r"^(\S.*?)\s+(\d+)\s+[0-9.]+\s+([0-9.]+)$", out, flags=re.MULTILINE)}
    trees, ours = rows[f"hpcpar {backend}, majority vote"]
    _, theirs = rows["BaggingClassifier, 1 process"]
    _, single = rows["single tree, 1 process"]
    assert trees == 50, out
    assert ours >= 0.93, out
    assert abs(ours - theirs) <= 0.03, out
    assert ours > single + 0.05, out      # the ensemble beats one tree


def test_bagging_local():
    check_bagging(run_example("bagging"), "local")


# -- word count ----------------------------------------------------------------------------------
def check_word_count(out: str, expected: Counter, top: int = 10) -> None:
    assert f": {sum(expected.values())} words, {len(expected)} distinct" in out, out
    printed = re.findall(r"^  (\S+)\s+(\d+)$", out, flags=re.MULTILINE)
    assert [(w, int(n)) for w, n in printed] == expected.most_common(top), out
    assert "equal to the sequential Counter: yes" in out, out


def stdlib_counter() -> Counter:
    expected = Counter()
    for _, text in word_count.read_corpus():
        expected.update(re.findall(r"[a-z]+", text.lower()))
    return expected


def test_word_count_stdlib_local():
    check_word_count(run_example("word_count"), stdlib_counter())


def test_word_count_exact_on_a_small_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("The cat, the HAT.\nthe end")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("cat2cat  hat-trick")
    (tmp_path / "skip.md").write_text("the the the")
    out = run_example("word_count", "--corpus", str(tmp_path), "--glob", "*.txt", "--top", "3")
    assert "corpus: 2 files" in out
    check_word_count(out, Counter({"the": 3, "cat": 3, "hat": 2, "end": 1, "trick": 1}), top=3)


def test_word_count_refuses_a_missing_corpus(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "word_count.py"),
                           "--corpus", str(tmp_path / "nope")],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "is not a directory" in proc.stderr


# -- text PCA ------------------------------------------------------------------------------------
def test_column_names_follow_the_hasher():
    counts, terms = text_pca.vectorize_batch(["alpha beta beta gamma", "gamma delta"])
    names = text_pca.column_names(terms)
    assert terms == Counter({"beta": 2, "gamma": 2, "alpha": 1, "delta": 1})
    for i, doc_terms in enumerate([{"alpha": 1, "beta": 2, "gamma": 1}, {"gamma": 1, "delta": 1}]):
        row = counts.getrow(i)
        assert {names[c].rstrip("*"): int(v) for c, v in zip(row.indices, row.data, strict=False)} == doc_terms


def check_text_pca(out: str, saved: Path, sequential) -> None:
    svd, _, names = sequential
    got = np.load(saved)
    np.testing.assert_allclose(got["components"], svd.components_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["explained_variance_ratio"], svd.explained_variance_ratio_,
                               rtol=0, atol=1e-12)
    for i, terms in enumerate(text_pca.top_terms(svd, names)):
        assert f"component {i}: explained variance " in out
        assert f": {' '.join(terms)}\n" in out, out


@pytest.fixture(scope="module")
def sequential_text_pca():
    return text_pca.pipeline(text_pca.read_documents(), map)


def test_text_pca_local_equals_sequential(tmp_path, sequential_text_pca):
    out = run_example("text_pca", "--save", str(tmp_path / "pca.npz"))
    assert "ran as: hpcpar local" in out
    check_text_pca(out, tmp_path / "pca.npz", sequential_text_pca)


# -- simulation ----------------------------------------------------------------------------------
def sequential_digest() -> str:
    tasks = simulation.sweep_tasks(20240917, 200_000)
    return simulation.digest([simulation.simulate(*t) for t in tasks])


def check_simulation(out: str, where: str) -> None:
    assert f"ran as: {where}" in out, out
    assert f"results sha256: {sequential_digest()}" in out, out
    assert number_after("largest |MC - exact| / std err:", out) < 4.5, out
    assert len(re.findall(r"^ 0\.\d0 +\d+\.0 ", out, flags=re.MULTILINE)) == 20, out


def test_simulation_local_and_sequential_are_bit_identical():
    check_simulation(run_example("simulation"), "hpcpar local")
    check_simulation(run_example("simulation", "--sequential"), "sequential loop")


def test_simulation_seeds_differ_per_task_and_repeat_per_root():
    a = simulation.sweep_tasks(1, 10)
    b = simulation.sweep_tasks(1, 10)
    assert [t[2].generate_state(2).tolist() for t in a] == [t[2].generate_state(2).tolist() for t in b]
    assert len({tuple(t[2].generate_state(2)) for t in a}) == len(a)


# -- the real SLURM ------------------------------------------------------------------------------
@pytest.mark.slurm
def test_bagging_slurm(slurm, runs_dir):
    check_bagging(run_example("bagging", *SLURM_ARGS, runs_dir=runs_dir), "slurm")


@pytest.mark.slurm
def test_word_count_slurm(slurm, runs_dir):
    check_word_count(run_example("word_count", *SLURM_ARGS, runs_dir=runs_dir), stdlib_counter())


@pytest.mark.slurm
def test_text_pca_slurm_equals_sequential(slurm, runs_dir, tmp_path, sequential_text_pca):
    out = run_example("text_pca", *SLURM_ARGS, "--save", str(tmp_path / "pca.npz"), runs_dir=runs_dir)
    assert "ran as: hpcpar slurm" in out
    check_text_pca(out, tmp_path / "pca.npz", sequential_text_pca)


@pytest.mark.slurm
def test_simulation_slurm_is_bit_identical(slurm, runs_dir):
    check_simulation(run_example("simulation", *SLURM_ARGS, runs_dir=runs_dir), "hpcpar slurm")
