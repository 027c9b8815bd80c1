"""Large task arguments stored once per call, loaded once per worker process.

Used by :mod:`hpcpar.joblib` (keyed by content) and by the :class:`~hpcpar.Executor`'s ``map``
and ``map_reduce`` (keyed by identity, see :func:`reduce_hook`). A scikit-learn search passes the same ``X`` and ``y`` to every
fit; pickled into every task, they would be copied into every chunk (array task) of the run.
Instead the driver writes each large argument once to a private folder and the tasks carry a
small reference; a worker process loads the file the first time it meets the reference and
reuses it for every later task (the executor pickles through :func:`reduce_hook`)::

    driver                                          worker process
    X (>= min_bytes) ── joblib.hash ──► STORE/<md5>.npy ◄── numpy.load(mmap_mode="r"), cached by key
    task (X, y, ...) → (Stored(<md5>), y, ...)        unpickling Stored(<md5>) gives back the array

* **Keyed by content**, not by ``id``: equal arrays are stored once, and an array changed in
  place between two calls is stored again. The hash of an object is memoised by ``id`` (with a
  weak reference, so a recycled ``id`` is never mistaken) for one store only, that is, one
  joblib call, during which joblib itself assumes arguments are not modified.
* **Keyed by identity** for the executor (``by_content=False``): the pickler meets every
  object of a map's function and items, and one whose data reach ``min_bytes`` is written the
  first time it is met and referenced after that, with no hashing. The same array in every
  item, in a ``functools.partial`` or in a closure is thus stored once per run.
* **How it reaches workers**: a file in a private (0700) folder beside the run folders
  (``runs_dir``), which batch backends require to be shared with the compute nodes. Nothing is
  sent through the scheduler or the driver; each array task reads what it needs. A batch run
  moves the executor's folder into its run folder (``RUN_DIR/args``, see :func:`adopt`), so it
  lives and is cleaned with the run; the worker then finds the files there (:func:`use_run_dir`).
* **Read-only, like joblib's own memory mapping**: numpy arrays are ``.npy`` files that workers
  memory-map with ``mmap_mode="r"`` (joblib's default), so the processes of a node share one
  copy in the page cache and a task cannot change what the next task sees. With another
  ``mmap_mode`` each unpickling loads a private, writable copy. Other large objects (pandas,
  scipy.sparse, numpy object arrays) are pickled, loaded once per process and shared by its
  tasks, which must not modify them in place (as with loky).
"""

from __future__ import annotations

import collections
import os
import pickle
import shutil
import sys
import tempfile
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: stored objects a worker process keeps loaded (least recently used beyond this are dropped)
CACHE_MAX = 8
_CACHE: collections.OrderedDict[str, Any] = collections.OrderedDict()
#: file loads per key in this process (a test reads it to show each process loads once)
LOADS: collections.Counter[str] = collections.Counter()
_run_dir: str | None = None
#: Sub-folder of a run folder holding its stored arguments.
ARGS_DIRNAME = "args"


def use_run_dir(run_dir: str | os.PathLike | None) -> None:
    """Tell this (worker) process which run folder it serves: a stored file that is no longer
    at its recorded path is then looked for in ``RUN_DIR/args`` (see :func:`adopt`). Called by
    ``hpcpar.worker`` before it unpickles a chunk."""
    global _run_dir
    _run_dir = None if run_dir is None else os.fspath(run_dir)


def _resolve(path: str) -> str:
    if _run_dir is not None and not os.path.exists(path):
        moved = os.path.join(_run_dir, ARGS_DIRNAME, os.path.basename(path))
        if os.path.exists(moved):
            return moved
    return path


def load(key: str, path: str, kind: str, mmap_mode: str | None) -> Any:
    """The object stored under ``key`` (runs in the worker when a task is unpickled)."""
    shared = mmap_mode == "r"
    if shared and key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    path = _resolve(path)
    if kind == "npy":
        import numpy as np

        obj = np.load(path, mmap_mode="r" if shared else None, allow_pickle=False)
    else:
        with open(path, "rb") as fh:
            obj = pickle.load(fh)
    LOADS[key] += 1
    if shared:
        _CACHE[key] = obj
        while len(_CACHE) > CACHE_MAX:
            _CACHE.popitem(last=False)
    return obj


class Stored:
    """A reference to a stored object; unpickles as the object itself (see :func:`load`)."""

    __slots__ = ("key", "kind", "mmap_mode", "nbytes", "path")

    def __init__(self, key: str, path: str, kind: str, mmap_mode: str | None, nbytes: int):
        self.key, self.path, self.kind, self.mmap_mode, self.nbytes = key, path, kind, mmap_mode, nbytes

    def __reduce__(self):
        return load, (self.key, self.path, self.kind, self.mmap_mode)

    def __repr__(self) -> str:
        return f"<hpcpar stored argument {self.key[:12]} {self.nbytes} bytes>"


def nbytes(obj: Any) -> int:
    """Bytes of data held by a numpy array, pandas object or scipy.sparse matrix; 0 for
    anything else (which is never stored)."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    module = type(obj).__module__ or ""
    if module.startswith("scipy.sparse"):
        parts = ("data", "indices", "indptr", "row", "col", "offsets")
        return sum(int(getattr(obj, p).nbytes) for p in parts if hasattr(getattr(obj, p, None), "nbytes"))
    if module.startswith("pandas") and hasattr(obj, "memory_usage"):
        usage = obj.memory_usage(index=True, deep=False)
        return int(usage.sum() if hasattr(usage, "sum") else usage)
    return 0


def _is_plain_array(obj: Any) -> bool:
    np = sys.modules.get("numpy")
    return (np is not None and type(obj) in (np.ndarray, np.memmap) and not obj.dtype.hasobject)


class ArgStore:
    """The store of one joblib call: a private folder, created on the first large argument.

    Parameters
    ----------
    root : path
        Folder in which to create the store's own folder (the runs folder; it must be shared
        with the compute nodes for batch backends).
    min_bytes : int or None
        Arguments holding at least this many bytes are stored; ``None`` stores nothing.
    mmap_mode : str or None
        How workers open stored numpy arrays (``"r"``: shared read-only memory map).
    by_content : bool
        Key objects by :func:`joblib.hash` of their content (equal arrays stored once, default),
        or by identity (each distinct object once, no hashing: the executor's choice).
    prefix : str
        Start of the store folder's name.

    Attributes
    ----------
    written : list of (str, int)
        Content key and bytes of every object written (each distinct content once).
    """

    def __init__(self, root: str | os.PathLike, min_bytes: int | None, mmap_mode: str | None = "r",
                 *, by_content: bool = True, prefix: str = "joblib-args"):
        self.root = Path(root).expanduser()
        self.min_bytes = min_bytes
        self.mmap_mode = mmap_mode
        self.by_content = by_content
        self.prefix = prefix
        self.path: Path | None = None
        self.written: list[tuple[str, int]] = []
        self._by_key: dict[str, Stored] = {}
        self._by_id: dict[int, tuple[Any, Stored]] = {}

    def replace(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """``args`` and ``kwargs`` with each large value replaced by its :class:`Stored` reference."""
        if self.min_bytes is None:
            return args, kwargs
        return (tuple(self._maybe_store(a) for a in args),
                {k: self._maybe_store(v) for k, v in kwargs.items()})

    def _maybe_store(self, obj: Any) -> Any:
        if isinstance(obj, (str, bytes, int, float, bool, type(None), tuple, list, dict)):
            return obj
        ref = self.reference(obj)
        return obj if ref is None else ref

    def reference(self, obj: Any) -> Stored | None:
        """The :class:`Stored` reference of ``obj``, storing it the first time; ``None`` for an
        object below ``min_bytes`` (or any object, when ``min_bytes`` is None)."""
        if self.min_bytes is None:
            return None
        memo = self._by_id.get(id(obj))
        if memo is not None and memo[0]() is obj:
            return memo[1]
        size = nbytes(obj)
        if size < max(1, self.min_bytes):
            return None
        ref = self._store(obj, size)
        try:
            self._by_id[id(obj)] = (weakref.ref(obj), ref)
        except TypeError:           # not weakref-able: hash it again next time
            pass
        return ref

    def _store(self, obj: Any, size: int) -> Stored:
        if self.by_content:
            import joblib

            key = joblib.hash(obj)
        else:
            key = uuid.uuid4().hex
        if key in self._by_key:
            return self._by_key[key]
        folder = self._folder()
        kind = "npy" if _is_plain_array(obj) else "pkl"
        path = folder / f"{key}.{kind}"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                if kind == "npy":
                    import numpy as np

                    np.save(fh, obj, allow_pickle=False)
                else:
                    import cloudpickle

                    cloudpickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        ref = self._by_key[key] = Stored(key, str(path), kind, self.mmap_mode, size)
        self.written.append((key, size))
        return ref

    def _folder(self) -> Path:
        if self.path is None:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self.root / f"{self.prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            path.mkdir(mode=0o700)
            self.path = path
        return self.path

    def close(self) -> None:
        """Delete the store's folder (tasks still running may no longer load from it)."""
        path, self.path = self.path, None
        self._by_id.clear()
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def reduce_hook(store: ArgStore | None) -> Callable[[Any], tuple | None] | None:
    """For ``hpcpar.serialize.dumps``'s ``reduce_hook``: each object of at least
    ``store.min_bytes`` bytes of data (numpy arrays, pandas and scipy.sparse objects, by
    :func:`nbytes`) that the pickler meets, at any depth (an item's argument, a
    ``functools.partial``'s, a closure's), is written to ``store`` the first time and pickled
    as a reference; ``None`` when ``store`` is None or off."""
    if store is None or store.min_bytes is None:
        return None

    def hook(obj: Any) -> tuple | None:
        if isinstance(obj, Stored):
            return None
        ref = store.reference(obj)
        return None if ref is None else ref.__reduce__()

    return hook

def adopt(folder: str | os.PathLike, run_dir: str | os.PathLike) -> Path:
    """Move a store's ``folder`` into ``run_dir`` as ``RUN_DIR/args`` (a rename on the same
    filesystem), where workers look for files no longer at their recorded path (see
    :func:`use_run_dir`); returns the new path."""
    target = Path(run_dir) / ARGS_DIRNAME
    try:
        os.rename(folder, target)
    except OSError:                     # another filesystem: copy, then remove
        shutil.move(os.fspath(folder), target)
    return target
