"""The main job: examples/random_forest.py, and its MNIST IDX loader on small files written here."""

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import random_forest as rf  # noqa: E402


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_read_idx_roundtrip_and_errors(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x-idx3-ubyte", a)
    assert np.array_equal(rf.read_idx(tmp_path / "x-idx3-ubyte"), a)
    write_idx(tmp_path / "x.gz", a, gz=True)
    assert np.array_equal(rf.read_idx(tmp_path / "x.gz"), a)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        rf.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes((tmp_path / "x-idx3-ubyte").read_bytes()[:-1])
    with pytest.raises(ValueError, match="expected 24 data bytes"):
        rf.read_idx(tmp_path / "short")


def make_mnist(d: Path, n_train=300, n_test=100, seed=0):
    """Tiny MNIST-format files: 28x28 images whose label is which quadrant is bright."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 4, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, lab in enumerate(labels):
            r, c = divmod(int(lab), 2)
            images[i, r * 14:(r + 1) * 14, c * 14:(c + 1) * 14] += 200
        write_idx(d / f"{split}-images-idx3-ubyte", images, gz=(split == "t10k"))
        write_idx(d / f"{split}-labels-idx1-ubyte", labels)


def test_load_mnist(tmp_path):
    make_mnist(tmp_path)
    X_train, X_test, y_train, _y_test = rf.load_mnist(tmp_path)
    assert X_train.shape == (300, 784) and X_test.shape == (100, 784)
    assert X_train.dtype == np.float32 and X_train.min() >= 0.0 and X_train.max() <= 1.0
    assert set(np.unique(y_train)) <= {0, 1, 2, 3}


def run_example(*args):
    return subprocess.run([sys.executable, str(ROOT / "examples" / "random_forest.py"), *args],
                          capture_output=True, text=True, timeout=600)


def test_example_on_mnist_files(tmp_path):
    make_mnist(tmp_path)
    proc = run_example("--dataset", "mnist", "--data-dir", str(tmp_path), "--tasks", "4", "--trees", "5",
                       "--no-baseline")
    assert proc.returncode == 0, proc.stderr
    assert "data: mnist, 300 training and 100 held-out images, 784 features" in proc.stdout
    acc = float(proc.stdout.split("held-out accuracy ")[-1])
    assert acc >= 0.9


def test_main_job_on_digits_local():
    proc = run_example()
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    assert "hpcpar local, 10 tasks x 30" in out and "single forest, 1 process" in out
    acc = float(out.split("held-out accuracy ")[-1])
    assert acc >= 0.95


def test_merge_forests_concatenates_trees():
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    X, y = load_iris(return_X_y=True)
    forests = [RandomForestClassifier(n_estimators=3, random_state=s).fit(X, y) for s in range(4)]
    trees = [t for f in forests for t in f.estimators_]
    merged = rf.merge_forests(forests)
    assert merged.n_estimators == 12 and merged.estimators_ == trees
    manual = np.mean([t.predict_proba(X) for t in trees], axis=0)
    assert np.allclose(merged.predict_proba(X), manual)
