"""``Executor.map_reduce``'s accumulator: Spark's ``aggregate(zeroValue, seqOp, combOp)``.

Each chunk (array task) folds its mapped values into its own fresh copy of ``initializer`` with
``reducer``; the driver merges the chunks' accumulators, in chunk order, with ``combiner``::

    chunk 0: reducer(reducer(copy(init), mapper(x0)), mapper(x1)) ─┐
    chunk 1: reducer(copy(init), mapper(x2))                        ├─ combiner, in order ─► result
    ...                                                            ─┘

Without ``initializer`` a chunk reduces its mapped values as :func:`functools.reduce` does
(the first one seeds it) and ``reducer`` merges the chunks.

The worker's ``"reduce"`` mode knows only "first value, then ``reducer(acc, value)``", so the
fold rides on it unchanged: the mapper's values travel as :class:`Mapped`, and :class:`Fold`
starts the accumulator (a fresh copy of ``initializer``, unpickled from bytes for every chunk)
on the first fold. A one-item chunk returns its :class:`Mapped` value, which
:meth:`Fold.finish` folds in the driver.
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable, Sequence
from typing import Any


class Mapped:
    """A mapped value not yet folded into an accumulator."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __reduce__(self) -> tuple:
        return Mapped, (self.value,)


class MapTo:
    """The mapper as the worker calls it: its value wrapped in :class:`Mapped`."""

    def __init__(self, mapper: Callable):
        self.mapper = mapper

    def __call__(self, *args: Any, **kwargs: Any) -> Mapped:
        return Mapped(self.mapper(*args, **kwargs))

    @property
    def __name__(self) -> str:          # the job name and progress bar show the mapper's
        return getattr(self.mapper, "__name__", "map_reduce")


class Fold:
    """The chunk's fold: ``reducer(acc, value)`` from a fresh copy of the initializer.

    Parameters
    ----------
    reducer : callable
        ``reducer(acc, value) -> acc`` (Spark's ``seqOp``).
    initial : bytes or None
        The pickled ``initializer``; unpickled afresh for each chunk. ``None``: no initializer
        (the chunk's first mapped value seeds it).
    """

    def __init__(self, reducer: Callable, initial: bytes | None):
        self.reducer = reducer
        self.initial = initial

    def fresh(self) -> Any:
        """A new copy of the initializer (a pickle round trip)."""
        if self.initial is None:
            raise TypeError("no initializer")
        return pickle.loads(self.initial)

    def start(self, first: Mapped) -> Any:
        return first.value if self.initial is None else self.reducer(self.fresh(), first.value)

    def __call__(self, acc: Any, value: Mapped) -> Any:
        if type(acc) is Mapped:
            acc = self.start(acc)
        return self.reducer(acc, value.value)

    def finish(self, partial: Any) -> Any:
        """A chunk's accumulator (folding a one-item chunk's lone value here)."""
        return self.start(partial) if type(partial) is Mapped else partial


def combine(partials: Sequence[Any] | Any, combiner: Callable, fold: Fold) -> Any:
    """Merge chunk accumulators in order: ``combiner`` over ``[copy(initializer), *partials]``
    (Spark's driver-side fold), or over ``partials`` without an initializer."""
    tree = OrderedTree(combiner)
    if fold.initial is not None:
        tree.add(fold.fresh())
    for p in partials:
        tree.add(fold.finish(p))
    return tree.result()


class OrderedTree:
    """Combine values as they arrive, in an order-preserving binary tree: for an associative
    ``combiner`` the result equals the left-to-right fold, with O(log n) values held."""

    def __init__(self, combiner: Callable):
        self.combiner = combiner
        self._stack: list[tuple[int, Any]] = []

    def add(self, value: Any) -> None:
        level = 0
        while self._stack and self._stack[-1][0] == level:
            value = self.combiner(self._stack.pop()[1], value)
            level += 1
        self._stack.append((level, value))

    def result(self) -> Any:
        if not self._stack:
            raise TypeError("reduce() of empty iterable with no initial value")
        out = self._stack.pop()[1]
        while self._stack:
            out = self.combiner(self._stack.pop()[1], out)
        return out


def check_callables(mapper: Any, reducer: Any, combiner: Any, initializer: Any) -> None:
    """Refuse a bad ``map_reduce`` call before anything is submitted.

    Raises
    ------
    TypeError
        ``mapper``, ``reducer`` or ``combiner`` is not callable, or ``reducer``/``combiner``
        cannot take two positional arguments.
    ValueError
        ``combiner`` without ``initializer``.
    """
    for name, f in (("mapper", mapper), ("reducer", reducer)):
        if not callable(f):
            raise TypeError(f"map_reduce: {name} must be callable, got {type(f).__name__}")
    if combiner is not None and not callable(combiner):
        raise TypeError(f"map_reduce: combiner must be callable or None, got {type(combiner).__name__}")
    if combiner is not None and initializer is None:
        raise ValueError("map_reduce: combiner= merges accumulators that each chunk starts from a "
                         "copy of initializer=; without an initializer the reducer merges the "
                         "chunks' partial reductions itself. Pass initializer= (a zero value "
                         "such as Counter() or 0) or drop combiner=")
    for name, f in (("reducer", reducer), ("combiner", combiner)):
        if f is None:
            continue
        try:
            sig = inspect.signature(f)
        except (TypeError, ValueError):           # a builtin without a signature: trust it
            continue
        try:
            sig.bind(None, None)
        except TypeError as exc:
            raise TypeError(f"map_reduce: {name} {getattr(f, '__name__', f)!r} must take two "
                            f"positional arguments (accumulator, value): {exc}") from None


__all__ = ["Fold", "MapTo", "Mapped", "OrderedTree", "check_callables", "combine"]
