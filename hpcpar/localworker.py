"""The local backend's worker process: a fresh interpreter that runs chunks sent over a pipe.

Started by :mod:`hpcpar.backends.local` as ``python -c BOOTSTRAP CMD_FD RESULT_FD MEM DRIVER_PID`` (the
bootstrap sets ``sys.path`` to the driver's first, so the driver's modules import here). It
runs the same :func:`hpcpar.worker.run_tasks` as an array task on a cluster, one chunk at a
time, after multiprocessing's authkey (so a Manager's proxies work in tasks)::

    driver ──(key, fn payload or None, chunk bytes, chunk index, outcomes)──► worker
    driver ◄──b"ready" once, then ("ok", ChunkResult) | ("oom", text)── worker

A fresh interpreter, not a fork: its random streams are its own, it inherits no lock held by a
driver thread, and its memory is its own, so ``mem`` is measured as on a cluster.

* ``mem`` (bytes, 0 for none) becomes ``RLIMIT_DATA`` (see setrlimit(2); Linux counts the heap
  and every private writable mapping, i.e. memory *reserved*, from Linux 4.7). An allocation
  past it raises ``MemoryError``; the worker then reports the chunk OUT_OF_MEMORY and exits.
  This is stricter than a cluster's cgroup, which counts memory *touched* (resident): a task
  that reserves much more than it touches ends OUT_OF_MEMORY here and not there, and a C
  library that aborts on a failed allocation dies by SIGABRT (reported FAILED, naming it).
* SIGINT is ignored: the driver decides (Ctrl-C in a terminal reaches the whole process group).
* A watchdog thread ends the worker within 0.2 s of the driver's death (SIGKILL, SIGTERM...),
  so no worker outlives it even when it ran a task at the time.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from multiprocessing.connection import Connection

#: fn payloads a worker keeps unpickled; the driver mirrors this cache to skip resending them
CACHE_SIZE = 8
EXIT_OOM = 137 - 128 + 100          # 109: reported the chunk OUT_OF_MEMORY and left


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)


def _limit_memory(mem: int) -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    new = mem if hard == resource.RLIM_INFINITY else min(mem, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (new, new))


def _dumps_result(result) -> bytes:
    """Pickle ``("ok", result)``; a value that does not pickle becomes that task's error."""
    try:
        return pickle.dumps(("ok", result), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - a value plain pickle refuses: try cloudpickle
        from .errors import SerializationError
        from .serialize import dumps

        try:
            return dumps(("ok", result))
        except Exception:  # noqa: BLE001 - find which value does not pickle
            for i, (_ok, value, tb) in enumerate(result.outcomes):
                try:
                    dumps(value)
                except Exception as exc:  # noqa: BLE001 - becomes that task's error
                    err = SerializationError(f"cannot pickle the result of task {i} of chunk "
                                             f"{result.chunk} ({type(value).__name__}): {exc}")
                    result.outcomes[i] = (False, err, tb)
            return dumps(("ok", result))


def serve(cmd: Connection, out: Connection, mem: int) -> None:
    """Run chunks from ``cmd`` until it closes; answer each on ``out``."""
    from .rundir import ChunkResult
    from .worker import portable_exception, run_tasks

    cache: OrderedDict[str, dict] = OrderedDict()
    host, pid = socket.gethostname(), os.getpid()
    while True:
        try:
            msg = cmd.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            key, fn_payload, chunk_bytes, chunk, n_outcomes = pickle.loads(msg)
            try:
                tasks = pickle.loads(chunk_bytes)
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. an argument's class is missing here
                out.send_bytes(_dumps_result(_unreadable_chunk(chunk, n_outcomes, exc, host, pid)))
                continue
            result = ChunkResult(chunk=chunk, n_tasks=len(tasks), started=time.time(),
                                 attempts=1, host=host, pid=pid)
            payload = None
            if fn_payload is not None:
                try:
                    cache[key] = pickle.loads(fn_payload)
                except MemoryError:
                    raise
                except Exception as exc:  # noqa: BLE001 - e.g. a module the function needs is missing here
                    import traceback

                    tb = traceback.format_exc()
                    failure = (False, portable_exception(exc, tb), tb)
                    result.outcomes, result.done, result.failed = [failure] * len(tasks), len(tasks), True
                    result.finished = time.time()
                    cache.pop(key, None)
                    cache[key] = {"fn": _raiser(failure), "mode": "map", "reducer": None}
            cache.move_to_end(key)
            while len(cache) > CACHE_SIZE:
                cache.popitem(last=False)
            payload = cache[key]
            if not result.done:
                run_tasks(payload, tasks, result)
            if mem and any(not ok and isinstance(v, MemoryError) for ok, v, _ in result.outcomes):
                raise MemoryError("a task raised MemoryError")
            out.send_bytes(_dumps_result(result))
            del tasks, result, payload   # the arguments and values die now, not at the next chunk
        except MemoryError as exc:
            if not mem:
                raise
            try:
                out.send_bytes(pickle.dumps(("oom", f"{exc} past the limit of {mem} bytes")))
            finally:
                os._exit(EXIT_OOM)


def _unreadable_chunk(chunk: int, n_outcomes: int, exc: BaseException, host: str, pid: int):
    """A chunk whose arguments do not unpickle here: each of its ``n_outcomes`` outcomes (its
    tasks; 1 in reduce mode) is that error."""
    import traceback

    from .rundir import ChunkResult
    from .worker import portable_exception

    tb = traceback.format_exc()
    result = ChunkResult(chunk=chunk, n_tasks=n_outcomes, started=time.time(), attempts=1,
                         host=host, pid=pid)
    failure = (False, portable_exception(exc, tb), tb)
    result.outcomes, result.done, result.failed = [failure] * n_outcomes, n_outcomes, True
    result.finished = time.time()
    return result


def _raiser(failure):
    def fail(*args, **kwargs):
        raise failure[1]
    return fail


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cmd_fd, out_fd, mem, driver = (int(a) for a in argv[:4])
    threading.Thread(target=_watch_parent, args=(driver,), daemon=True,
                     name="hpcpar-watch-driver").start()
    cmd = Connection(cmd_fd, writable=False)
    try:
        authkey = cmd.recv_bytes()
    except (EOFError, OSError):
        return
    import multiprocessing

    multiprocessing.current_process().authkey = authkey
    if mem:
        _limit_memory(mem)
    from . import worker  # noqa: F401 - imported before "ready": the walltime starts after

    out = Connection(out_fd, readable=False)
    out.send_bytes(b"ready")
    serve(cmd, out, mem)


if __name__ == "__main__":
    main(sys.argv[1:])
