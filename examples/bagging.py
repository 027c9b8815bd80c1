#!/usr/bin/env python3
"""Bagging by hand: bootstrap decision trees through ``hpcpar.Executor.map``, majority vote.

Each task draws a bootstrap sample of the training set (as many rows, with replacement) from
its own seed, fits a ``DecisionTreeClassifier`` on it and returns the tree. The driver
predicts the held-out images with every tree and takes the majority vote (ties go to the
smallest class label). The script prints that accuracy beside scikit-learn's
``BaggingClassifier`` with the same number of trees and a single tree.

    python examples/bagging.py                      # local backend (process pool)
    python examples/bagging.py --backend slurm      # the same code on SLURM
    python examples/bagging.py --estimators 100

Data: scikit-learn's bundled digits (1,797 8x8 images, real data, no download).
Seeds: one root seed (``--seed``); task i gets ``SeedSequence(seed).spawn(n)[i]``, so the
trees, and the vote, are the same on every backend.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

import numpy as np

import hpcpar


def majority_vote(predictions: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The most frequent label per column of ``predictions`` (shape (n_models, n_samples)).

    Ties go to the label that comes first in ``classes``.
    """
    votes = np.stack([(predictions == c).sum(axis=0) for c in classes])   # (n_classes, n_samples)
    return classes[votes.argmax(axis=0)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default=None,
                   help="hpcpar backend (default: $HPCPAR_BACKEND, the profile, else local)")
    p.add_argument("--estimators", type=int, default=50, help="bootstrap trees (default 50)")
    p.add_argument("--seed", type=int, default=2024, help="root seed (default 2024)")
    a = p.parse_args(argv)
    if a.estimators < 1:
        p.error("--estimators must be >= 1")

    from sklearn.datasets import load_digits
    from sklearn.ensemble import BaggingClassifier
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                        stratify=y)
    print(f"data: digits, {len(X_train)} training and {len(X_test)} held-out images, "
          f"{X_train.shape[1]} features")

    def fit_bootstrap_tree(seed: np.random.SeedSequence):
        """One tree on one bootstrap sample; X_train and y_train travel once, in the function."""
        rng = np.random.default_rng(seed)
        rows = rng.integers(0, len(X_train), len(X_train))
        tree = DecisionTreeClassifier(random_state=int(rng.integers(2**31)))
        tree.fit(X_train[rows], y_train[rows])
        return tree, socket.gethostname()

    seeds = np.random.SeedSequence(a.seed).spawn(a.estimators)
    t0 = time.perf_counter()
    with hpcpar.Executor(a.backend, job_name="bagging", mem="1GB", walltime="00:10:00") as ex:
        backend = ex.backend_name
        fitted = list(ex.map(fit_bootstrap_tree, seeds))
    wall = time.perf_counter() - t0
    trees = [t for t, _ in fitted]
    classes = np.unique(y_train)
    vote = majority_vote(np.stack([t.predict(X_test) for t in trees]), classes)
    accuracy = accuracy_score(y_test, vote)

    t0 = time.perf_counter()
    single = DecisionTreeClassifier(random_state=0).fit(X_train, y_train)
    single_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    bagging = BaggingClassifier(DecisionTreeClassifier(), n_estimators=a.estimators,
                                random_state=a.seed, n_jobs=1).fit(X_train, y_train)
    bagging_s = time.perf_counter() - t0
    rows = [("single tree, 1 process", 1, single_s, accuracy_score(y_test, single.predict(X_test))),
            ("BaggingClassifier, 1 process", a.estimators, bagging_s,
             accuracy_score(y_test, bagging.predict(X_test))),
            (f"hpcpar {backend}, majority vote", len(trees), wall, accuracy)]

    hosts: dict[str, int] = {}
    for _, host in fitted:
        hosts[host] = hosts.get(host, 0) + 1
    print(f"tasks ran on: {', '.join(f'{h} ({n})' for h, n in sorted(hosts.items()))}")
    print()
    print(f"{'':34s} {'trees':>5s} {'wall time (s)':>14s} {'accuracy':>9s}")
    for name, n, seconds, acc in rows:
        print(f"{name:34s} {n:5d} {seconds:14.2f} {acc:9.4f}")
    print()
    print(f"bagged trees: {len(trees)}, majority-vote accuracy {accuracy:.4f}, "
          f"BaggingClassifier {rows[1][3]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
