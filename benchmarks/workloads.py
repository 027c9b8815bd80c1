"""The workloads of issue 10's peer benchmark, each with its own check of the results.

A workload is a function and its calls: call ``i`` is ``fn(shared, *args[i])`` when the
workload has a ``shared`` object (the same big argument in every call), else ``fn(*args[i])``.
Every runner (hpcpar, submitit, dask, joblib, a plain loop) makes those calls its own way and
hands the results, in call order, to :meth:`Workload.check`, which raises ``AssertionError``
when any value is wrong. So a fast but wrong peer fails instead of winning.

========  ==========================================================================
key       what
========  ==========================================================================
W2        1,000 tiny tasks (``x * x``)
W3        40 tasks of 0.5 s (``time.sleep``)
W4        random forest on scikit-learn's digits: 10 tasks of 20 trees each
W5        16 uneven tasks: task ``i`` sleeps ``0.25 * i`` s
BIG       one 200 MB float64 array passed to 16 tasks; task ``i`` sums ``array[i::16]``
W2-100k   100,000 tiny tasks (scheduler calls per map must not grow with the task count)
========  ==========================================================================

``make(key, scale)`` builds one at the ``"full"`` sizes above, ``"quick"`` (a smoke run) or
``"tiny"`` (the offline test). The task functions are plain module-level functions; call
:func:`ship_by_value` in a driver whose workers cannot import this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["KEYS", "Workload", "fit_forest", "ideal_s", "make", "nap", "run_calls",
           "ship_by_value", "slice_sum", "task_seconds", "tiny", "title", "uneven"]

KEYS = ("W2", "W3", "W4", "W5", "BIG", "W2-100k")

# Per scale: W2 tasks, W3 (tasks, seconds), W4 (tasks, trees), W5 (tasks, unit s),
# BIG (bytes, tasks), W2-100k tasks.
_SIZES: dict[str, dict[str, Any]] = {
    "full": {"W2": 1000, "W3": (40, 0.5), "W4": (10, 20), "W5": (16, 0.25),
             "BIG": (200_000_000, 16), "W2-100k": 100_000},
    "quick": {"W2": 200, "W3": (8, 0.5), "W4": (4, 10), "W5": (6, 0.25),
              "BIG": (40_000_000, 16), "W2-100k": 10_000},
    "tiny": {"W2": 20, "W3": (3, 0.01), "W4": (2, 4), "W5": (4, 0.01),
             "BIG": (80_000, 4), "W2-100k": 50},
}
_TEST_SIZE = 0.2          # W4: the held-out share of digits
_MIN_ACCURACY = 0.8       # W4: a forest of >= 8 trees gets ~0.9 on held-out digits


# ---- the task functions (run on the workers) --------------------------------------------------

def tiny(x: int) -> int:
    """W2: ``x * x``."""
    return x * x


def nap(seconds: float) -> float:
    """W3: sleep ``seconds`` (float, s), return it."""
    time.sleep(seconds)
    return seconds


def uneven(i: int, unit_s: float) -> int:
    """W5: sleep ``unit_s * i`` seconds, return ``i``."""
    time.sleep(unit_s * i)
    return i


def fit_forest(seed: int, n_trees: int) -> Any:
    """W4: a ``RandomForestClassifier`` of ``n_trees`` trees (``random_state=seed``) fitted on
    the training part of scikit-learn's digits (1,797 8x8 images, bundled: no download)."""
    from sklearn.ensemble import RandomForestClassifier

    x_train, _, y_train, _ = _digits_split()
    return RandomForestClassifier(n_estimators=n_trees, random_state=seed, n_jobs=1).fit(
        x_train, y_train)


def slice_sum(array: Any, i: int, parts: int) -> float:
    """BIG: ``array[i::parts].sum()`` as a float."""
    return float(array[i::parts].sum())


def run_calls(fn: Callable[..., Any], calls: list[tuple]) -> list:
    """A hand-made chunk: ``[fn(*a) for a in calls]`` (how a submitit user batches tasks)."""
    return [fn(*a) for a in calls]


def _digits_split() -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return tuple(train_test_split(x, y, test_size=_TEST_SIZE, random_state=0, stratify=y))


# ---- the workloads ----------------------------------------------------------------------------

@dataclass
class Workload:
    """One workload: ``fn``, its calls' arguments, and the check of its results.

    Attributes
    ----------
    key, title : str
        ``"W2"``...; a one-line description with the sizes, for the table.
    fn : callable
        The task function (module level, so pickled by reference or by value alike).
    args : list of tuple
        Call ``i``'s arguments after ``shared``.
    shared : object, optional
        An object passed first to every call (BIG's array), or None.
    check : callable
        ``check(results)`` raises ``AssertionError`` unless ``results`` (a list, in call
        order) are this workload's correct values.
    """

    key: str
    title: str
    fn: Callable[..., Any]
    args: list[tuple]
    check: Callable[[list], None]
    shared: Any = None

    def __len__(self) -> int:
        return len(self.args)

    def calls(self) -> Iterator[tuple]:
        """Each call's full argument tuple, ``shared`` included."""
        for a in self.args:
            yield a if self.shared is None else (self.shared, *a)

    def columns(self) -> list[list]:
        """The arguments as ``map`` takes them: one list per parameter (``shared`` repeated,
        the same object, in every item)."""
        return [list(c) for c in zip(*self.calls(), strict=True)]

    def run_sequential(self) -> list:
        """The results from a plain loop in this process: the reference."""
        return [self.fn(*a) for a in self.calls()]


def make(key: str, scale: str = "full") -> Workload:
    """Build workload ``key`` (one of :data:`KEYS`) at ``scale`` (``"full"``, ``"quick"`` or
    ``"tiny"``). Raises ``ValueError`` for an unknown key or scale. ``BIG`` allocates its array
    here (200 MB at ``"full"``)."""
    if scale not in _SIZES:
        raise ValueError(f"scale={scale!r}: use one of {', '.join(_SIZES)}")
    if key not in KEYS:
        raise ValueError(f"workload {key!r}: use one of {', '.join(KEYS)}")
    size, name = _SIZES[scale][key], title(key, scale)
    if key in ("W2", "W2-100k"):
        return Workload(key, name, tiny, [(x,) for x in range(size)],
                        _expect([x * x for x in range(size)]))
    if key == "W3":
        n, s = size
        return Workload(key, name, nap, [(s,)] * n, _expect([s] * n))
    if key == "W5":
        n, unit = size
        return Workload(key, name, uneven, [(i, unit) for i in range(n)], _expect(list(range(n))))
    if key == "W4":
        n, trees = size
        return Workload(key, name, fit_forest, [(seed, trees) for seed in range(n)],
                        _check_forests(n, trees))
    nbytes, parts = size
    import numpy as np

    array = np.arange(nbytes // 8, dtype=np.float64)
    return Workload(key, name, slice_sum, [(i, parts) for i in range(parts)],
                    _check_slices(len(array), parts), shared=array)


def title(key: str, scale: str = "full") -> str:
    """The one-line description of workload ``key`` at ``scale``, without building it."""
    size = _SIZES[scale][key]
    if key in ("W2", "W2-100k"):
        return f"{size:,} tiny tasks"
    if key == "W3":
        return f"{size[0]} x {size[1]:g} s"
    if key == "W4":
        return f"random forest, {size[0]} x {size[1]} trees on digits"
    if key == "W5":
        return f"{size[0]} uneven tasks, task i sleeps {size[1]:g}*i s"
    return f"{size[0] / 1e6:g} MB array to {size[1]} tasks"


def task_seconds(key: str, scale: str = "full") -> list[float]:
    """Each call's own seconds where known by construction (W3, W5), else ``[]``."""
    size = _SIZES[scale][key]
    if key == "W3":
        return [size[1]] * size[0]
    if key == "W5":
        return [size[1] * i for i in range(size[0])]
    return []


def ideal_s(key: str, scale: str, slots: int) -> float | None:
    """Wall seconds of perfect scheduling on ``slots`` CPUs: the longest task or the total
    work / slots, whichever is larger; None where the tasks' own time is not known."""
    secs = task_seconds(key, scale)
    return max(max(secs), sum(secs) / slots) if secs else None


def ship_by_value() -> None:
    """Have cloudpickle pickle this module's functions by value, so workers that cannot import
    ``benchmarks.workloads`` (a job whose ``sys.path`` lacks this repository) still run them."""
    import sys

    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _expect(expected: list) -> Callable[[list], None]:
    def check(results: list) -> None:
        assert len(results) == len(expected), f"{len(results)} results, {len(expected)} expected"
        bad = [i for i, (r, e) in enumerate(zip(results, expected, strict=True)) if r != e]
        assert not bad, (f"{len(bad)} wrong results, first at {bad[0]}: "
                         f"{results[bad[0]]!r} != {expected[bad[0]]!r}")
    return check


def _check_slices(n: int, parts: int) -> Callable[[list], None]:
    expected = []
    for i in range(parts):       # array[i::parts] of arange(n): i, i + parts, ... (exact)
        m = len(range(i, n, parts))
        expected.append(float(m * i + parts * m * (m - 1) // 2))
    return _expect(expected)


def _check_forests(n: int, trees: int) -> Callable[[list], None]:
    def check(forests: list) -> None:
        import numpy as np

        assert len(forests) == n, f"{len(forests)} forests, {n} expected"
        assert all(len(f.estimators_) == trees for f in forests), "a forest has the wrong size"
        assert len({f.random_state for f in forests}) == n, "forests share a seed"
        _, x_test, _, y_test = _digits_split()
        # The merged forest (R's randomForest::combine): average the trees' votes.
        proba = sum(f.predict_proba(x_test) * len(f.estimators_) for f in forests)
        accuracy = float(np.mean(forests[0].classes_[np.argmax(proba, axis=1)] == y_test))
        assert accuracy >= _MIN_ACCURACY, f"held-out accuracy {accuracy:.3f} < {_MIN_ACCURACY}"
    return check
