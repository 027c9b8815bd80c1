#!/usr/bin/env python3
"""Train a random forest as independent parallel pieces, then combine them (the main job).

A 300-tree forest is 10 independent 30-tree forests with different seeds; trained in parallel
through ``hpcpar.Executor.map`` and merged by concatenating their trees (as R's
``randomForest::combine`` does), it matches the single 300-tree fit. The script prints the
merged forest's held-out accuracy and a timing table beside a single 30-tree and a single-process
300-tree fit, and the 300-tree forest fitted by scikit-learn's own ``n_jobs=-1`` through the
hpcpar joblib backend (``joblib.parallel_config(backend="hpcpar")``), which equals the
single-process fit tree for tree.

    python examples/random_forest.py                      # local backend (process pool)
    python examples/random_forest.py --backend slurm      # the same code on SLURM
    python examples/random_forest.py --dataset mnist --data-dir ~/mnist   # MNIST IDX files

Data: scikit-learn's bundled digits (1,797 8x8 images, real data, no download), or MNIST from
its four IDX files (``train-images-idx3-ubyte[.gz]`` ...) in ``--data-dir``.
"""

from __future__ import annotations

import argparse
import gzip
import socket
import struct
import sys
import time
from pathlib import Path

import joblib
import numpy as np

import hpcpar
import hpcpar.joblib

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (MNIST's format: http://yann.lecun.com/exdb/mnist/), gzipped or not.

    Raises
    ------
    ValueError
        If the magic number, type code or size does not match the format.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":                # gzip, whatever the file is called
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = np.dtype(IDX_DTYPES[data[2]])
    body = data[4 + 4 * ndim:]
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(body) != expected:
        raise ValueError(f"{path}: expected {expected} data bytes for shape {dims}, found {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _find(data_dir: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    raise FileNotFoundError(f"{stem}[.gz] not found in {data_dir}")


def load_mnist(data_dir: str | Path, limit: int | None = None):
    """MNIST train/test arrays from the four IDX files: X as float32 in [0, 1], shape (n, 784)."""
    d = Path(data_dir).expanduser()
    out = []
    for split in ("train", "t10k"):
        X = read_idx(_find(d, f"{split}-images-idx3-ubyte"))
        y = read_idx(_find(d, f"{split}-labels-idx1-ubyte"))
        if len(X) != len(y):
            raise ValueError(f"{split}: {len(X)} images but {len(y)} labels")
        X = X.reshape(len(X), -1).astype(np.float32) / 255.0
        out += [X[:limit], y[:limit].astype(np.int64)]
    X_train, y_train, X_test, y_test = out
    return X_train, X_test, y_train, y_test


def load_digits_split(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


def merge_forests(forests):
    """One forest holding every tree of ``forests`` (same classes, same features)."""
    merged = forests[0]
    for f in forests[1:]:
        if not np.array_equal(f.classes_, merged.classes_):
            raise ValueError("forests were trained on different classes")
        merged.estimators_ = merged.estimators_ + f.estimators_
    merged.n_estimators = len(merged.estimators_)
    return merged


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default=None,
                   help="hpcpar backend (default: $HPCPAR_BACKEND, the profile, else local)")
    p.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    p.add_argument("--data-dir", help="folder with the MNIST IDX files (for --dataset mnist)")
    p.add_argument("--tasks", type=int, default=10, help="independent forests (default 10)")
    p.add_argument("--trees", type=int, default=30, help="trees per forest (default 30)")
    p.add_argument("--limit", type=int, help="use only the first N training and test images")
    p.add_argument("--no-baseline", action="store_true", help="skip the single-process 300-tree fit")
    a = p.parse_args(argv)

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score

    if a.dataset == "mnist":
        if not a.data_dir:
            p.error("--dataset mnist needs --data-dir DIR with the four MNIST IDX files")
        X_train, X_test, y_train, y_test = load_mnist(a.data_dir, a.limit)
    else:
        X_train, X_test, y_train, y_test = load_digits_split()
        if a.limit:
            X_train, y_train, X_test, y_test = X_train[:a.limit], y_train[:a.limit], X_test[:a.limit], y_test[:a.limit]
    n_trees = a.tasks * a.trees
    print(f"data: {a.dataset}, {len(X_train)} training and {len(X_test)} held-out images, "
          f"{X_train.shape[1]} features")

    def fit_forest(seed: int):
        """One independent forest; returns it with the host it ran on."""
        t0 = time.perf_counter()
        forest = RandomForestClassifier(n_estimators=a.trees, random_state=seed, n_jobs=1)
        forest.fit(X_train, y_train)
        return forest, socket.gethostname(), time.perf_counter() - t0

    rows = []
    t0 = time.perf_counter()
    single, _, _ = fit_forest(10_000)
    rows.append(("single forest, 1 process", a.trees, time.perf_counter() - t0,
                 accuracy_score(y_test, single.predict(X_test))))

    if not a.no_baseline:
        t0 = time.perf_counter()
        big = RandomForestClassifier(n_estimators=n_trees, random_state=0, n_jobs=1).fit(X_train, y_train)
        rows.append(("single forest, 1 process", n_trees, time.perf_counter() - t0,
                     accuracy_score(y_test, big.predict(X_test))))

    t0 = time.perf_counter()
    with hpcpar.Executor(a.backend, job_name="random-forest", chunksize=1, mem="1GB",
                         walltime="00:20:00") as ex:
        backend = ex.backend_name
        pieces = list(ex.map(fit_forest, range(a.tasks)))
    wall = time.perf_counter() - t0
    forest = merge_forests([f for f, _, _ in pieces])
    accuracy = accuracy_score(y_test, forest.predict(X_test))
    rows.append((f"hpcpar {backend}, {a.tasks} tasks x {a.trees}", forest.n_estimators, wall, accuracy))

    # The same forest through scikit-learn's own n_jobs: joblib sends each tree to hpcpar.
    hpcpar.joblib.register()
    t0 = time.perf_counter()
    with joblib.parallel_config(backend="hpcpar", hpcpar_backend=a.backend, job_name="forest-joblib",
                                mem="1GB", walltime="00:20:00"):
        jl_forest = RandomForestClassifier(n_estimators=n_trees, random_state=0, n_jobs=-1)
        jl_forest.fit(X_train, y_train)
    rows.append((f"joblib on hpcpar {backend}, n_jobs=-1", n_trees, time.perf_counter() - t0,
                 accuracy_score(y_test, jl_forest.predict(X_test))))

    hosts: dict[str, int] = {}
    for _, host, _ in pieces:
        hosts[host] = hosts.get(host, 0) + 1
    print(f"tasks ran on: {', '.join(f'{h} ({n})' for h, n in sorted(hosts.items()))}")
    print()
    print(f"{'':34s} {'trees':>5s} {'wall time (s)':>14s} {'accuracy':>9s}")
    for name, trees, seconds, acc in rows:
        print(f"{name:34s} {trees:5d} {seconds:14.2f} {acc:9.4f}")
    print()
    if not a.no_baseline:
        same = np.array_equal(jl_forest.predict_proba(X_test), big.predict_proba(X_test))
        print(f"joblib-backend forest equals the single-process {n_trees}-tree forest "
              f"(random_state=0): {'yes' if same else 'NO'}")
    print(f"merged forest: {forest.n_estimators} trees, held-out accuracy {accuracy:.4f}")
    return 0 if accuracy >= 0.95 or a.limit else 1


if __name__ == "__main__":
    sys.exit(main())
