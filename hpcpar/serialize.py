"""How hpcpar pickles what it ships: cloudpickle, with code objects that keep their source.

cloudpickle pickles functions defined in ``__main__``, a notebook or a closure *by value*: their
code objects travel inside the payload. Since cloudpickle 3.1.2 (cloudpipe/cloudpickle#560) it
renames every such code object's ``co_filename`` to ``"<dynamic-code>"`` to make payloads
deterministic, so a task that raises in a worker shows ``File "<dynamic-code>", line 20`` and no
source line: the user cannot see where the error is.

:func:`dumps` fixes that at the root. Its pickler reduces each code object with :mod:`marshal`
(the format of ``.pyc`` files, which keeps ``co_filename``, line numbers and nested code
objects) and carries the source lines it spans beside it, read from :mod:`linecache` in the
driver (so a notebook cell works too, and a file edited or deleted since, or absent on the
compute node). Unpickling, anywhere, calls :func:`_load_code`, which restores the code object
and seeds the worker's ``linecache`` with those lines, so :mod:`traceback` prints the user's
file, line number and source line. Plain :func:`pickle.loads` is enough to read the payload:
nothing else needs to know.

Like cloudpickle itself, this needs the same Python version (major.minor) on both sides.
"""

from __future__ import annotations

import io
import linecache
import marshal
import pickle
import types
from collections.abc import Callable
from typing import Any

import cloudpickle

#: Functions spanning more source than this (bytes) ship without it; the worker then reads the
#: file from its own disk if it can (the traceback names the file and line either way).
MAX_SOURCE_BYTES = 1 << 20


def _span(code: types.CodeType) -> tuple[int, int]:
    """First and last line (1-based) of ``code``, nested code objects included."""
    last = max((line for _, _, line in code.co_lines() if line is not None),
               default=code.co_firstlineno)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            last = max(last, _span(const)[1])
    return code.co_firstlineno, last


class _Pickler(cloudpickle.Pickler):
    """A cloudpickle pickler whose code objects keep ``co_filename`` and ship their source."""

    def __init__(self, file: io.BytesIO, protocol: int | None = None,
                 reduce_hook: Callable[[Any], tuple | None] | None = None):
        super().__init__(file, protocol=protocol)
        self._sources: dict[tuple[str, int, int], tuple[str, ...] | None] = {}
        self._hook = reduce_hook

    def _source(self, code: types.CodeType) -> tuple[int, tuple[str, ...] | None]:
        """The lines ``code`` spans, as the driver's ``linecache`` has them (one tuple per span,
        so the pickle memo stores them once however often they are referenced)."""
        first, last = _span(code)
        key = (code.co_filename, first, last)
        if key not in self._sources:
            lines = tuple(linecache.getlines(code.co_filename)[first - 1:last])
            size = sum(map(len, lines))
            self._sources[key] = lines if lines and size <= MAX_SOURCE_BYTES else None
        return first, self._sources[key]

    def reducer_override(self, obj: Any) -> Any:
        if self._hook is not None:
            reduced = self._hook(obj)
            if reduced is not None:
                return reduced
        if type(obj) is types.CodeType:
            try:
                data = marshal.dumps(obj)
            except ValueError:          # a hand-made code object holding unmarshallable constants
                return super().reducer_override(obj)
            return _load_code, (data, obj.co_filename, *self._source(obj))
        return super().reducer_override(obj)


def dumps(obj: Any, protocol: int | None = None,
          reduce_hook: Callable[[Any], tuple | None] | None = None) -> bytes:
    """Pickle ``obj`` as :func:`cloudpickle.dumps` does, keeping code objects' source.

    Parameters
    ----------
    obj : object
        Anything cloudpickle can pickle.
    protocol : int, optional
        Pickle protocol; default cloudpickle's (``pickle.DEFAULT_PROTOCOL``).
    reduce_hook : callable, optional
        Called with every object the pickler reduces itself (not ``None``, bools, and exact
        ints, floats, strings, bytes, lists, tuples, dicts and sets); a tuple it returns is
        that object's reduction (see :meth:`pickle.Pickler.reducer_override`), ``None`` leaves
        it to cloudpickle. :func:`hpcpar.argstore.reduce_hook` stores large objects this way.

    Returns
    -------
    bytes
        A pickle that :func:`pickle.loads` reads in any process with the same Python version
        and hpcpar importable.

    Raises
    ------
    pickle.PicklingError, TypeError, AttributeError
        As cloudpickle raises them for an object it cannot pickle.
    """
    buf = io.BytesIO()
    _Pickler(buf, protocol=protocol, reduce_hook=reduce_hook).dump(obj)
    return buf.getvalue()


#: Files whose ``linecache`` entry this process made from shipped lines (so more may be added).
_SEEDED: set[str] = set()


def _load_code(data: bytes, filename: str, first: int,
               lines: tuple[str, ...] | None) -> types.CodeType:
    """Unpickling side of :class:`_Pickler`: the code object, and its source in ``linecache``.

    The shipped lines are what ran, so they serve for ``filename`` unless this process already
    holds lines of its own for it (a file it read, a notebook cell it ran).
    """
    code = marshal.loads(data)
    if not isinstance(code, types.CodeType):
        raise pickle.UnpicklingError(f"expected a code object for {filename!r}, got {type(code)}")
    if lines:
        _seed_linecache(filename, first, lines)
    return code


def _seed_linecache(filename: str, first: int, lines: tuple[str, ...]) -> None:
    entry = linecache.cache.get(filename)
    if entry is not None and filename not in _SEEDED:
        return
    current = list(entry[2]) if entry is not None and len(entry) == 4 else []
    end = first - 1 + len(lines)
    current += ["\n"] * (end - len(current))
    current[first - 1:end] = lines
    # mtime None: linecache.checkcache keeps the entry instead of checking it against disk.
    linecache.cache[filename] = (sum(map(len, current)), None, current, filename)
    _SEEDED.add(filename)
