"""How hpcpar pickles what it ships: cloudpickle, with code objects that keep their source.

cloudpickle pickles functions defined in ``__main__``, a notebook or a closure *by value*: their
code objects travel inside the payload. Since cloudpickle 3.1.2 (cloudpipe/cloudpickle#560) it
renames every such code object's ``co_filename`` to ``"<dynamic-code>"`` to make payloads
deterministic, so a task that raises in a worker shows ``File "<dynamic-code>", line 20`` and no
source line: the user cannot see where the error is.

:func:`dumps` fixes that at the root. Its pickler reduces each code object with :mod:`marshal`
(the format of ``.pyc`` files, which keeps ``co_filename``, line numbers and nested code
objects) and carries the lines of its source file beside it, read from :mod:`linecache` in the
driver (so a notebook cell or a file edited since works too). Unpickling, anywhere, calls
:func:`_load_code`, which restores the code object and seeds the worker's ``linecache`` with
those lines, so :mod:`traceback` prints the user's file, line number and source line. Plain
:func:`pickle.loads` is enough to read the payload: nothing else needs to know.

Like cloudpickle itself, this needs the same Python version (major.minor) on both sides.
"""

from __future__ import annotations

import io
import linecache
import marshal
import pickle
import types
from typing import Any

import cloudpickle

#: Source files larger than this (bytes) are not shipped; the worker reads them from its own
#: disk if it can (the traceback still names the file and line).
MAX_SOURCE_BYTES = 1 << 20


class _Pickler(cloudpickle.Pickler):
    """A cloudpickle pickler whose code objects keep ``co_filename`` and ship their source."""

    def __init__(self, file: io.BytesIO, protocol: int | None = None):
        super().__init__(file, protocol=protocol)
        self._sources: dict[str, tuple[str, ...] | None] = {}

    def _source(self, filename: str) -> tuple[str, ...] | None:
        # One tuple per file: the pickle memo then stores its lines once, however many code
        # objects come from that file.
        if filename not in self._sources:
            lines = tuple(linecache.getlines(filename))
            size = sum(map(len, lines))
            self._sources[filename] = lines if lines and size <= MAX_SOURCE_BYTES else None
        return self._sources[filename]

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.CodeType:
            try:
                data = marshal.dumps(obj)
            except ValueError:          # a hand-made code object holding unmarshallable constants
                return super().reducer_override(obj)
            return _load_code, (data, obj.co_filename, self._source(obj.co_filename))
        return super().reducer_override(obj)


def dumps(obj: Any, protocol: int | None = None) -> bytes:
    """Pickle ``obj`` as :func:`cloudpickle.dumps` does, keeping code objects' source.

    Parameters
    ----------
    obj : object
        Anything cloudpickle can pickle.
    protocol : int, optional
        Pickle protocol; default cloudpickle's (``pickle.DEFAULT_PROTOCOL``).

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
    _Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def _load_code(data: bytes, filename: str, lines: tuple[str, ...] | None) -> types.CodeType:
    """Unpickling side of :class:`_Pickler`: the code object, and its source in ``linecache``.

    The shipped lines are what ran, so they take the place of whatever this process would read
    from disk under that name, unless ``linecache`` already holds lines for it.
    """
    code = marshal.loads(data)
    if not isinstance(code, types.CodeType):
        raise pickle.UnpicklingError(f"expected a code object for {filename!r}, got {type(code)}")
    if lines and filename not in linecache.cache:
        # mtime None: linecache.checkcache keeps the entry instead of checking it against disk.
        linecache.cache[filename] = (sum(map(len, lines)), None, list(lines), filename)
    return code
