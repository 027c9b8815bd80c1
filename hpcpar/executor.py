"""The Executor: a :class:`concurrent.futures.Executor` over any backend.

Data flow::

    Executor.map(fn, items)                      Executor.submit(fn, *args)
        │ pickle fn once, split items into chunks     │ pickle now, gather calls for submit_linger_s
        ▼                                             ▼
    backend.start(RunRequest) ──► RunHandle: one Future per chunk (resolves to a ChunkResult)
        │                                             │
        ▼                                             ▼
    results yielded in order as chunks finish     one Future per call

``map_reduce`` reduces inside each chunk, then combines the chunks' partial results in an
order-preserving binary tree, so the result equals ``functools.reduce`` for an associative
reducer.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Literal

from . import backends, config
from ._futures import cancel_future
from .backends.base import RunHandle, RunRequest
from .errors import ConfigError, RemoteTraceback, SerializationError, TaskError
from .rundir import ChunkResult
from .serialize import dumps


def _dumps(obj: Any, what: str) -> bytes:
    try:
        return dumps(obj)
    except Exception as exc:
        text = repr(obj)
        if len(text) > 200:
            text = text[:200] + "..."
        raise SerializationError(f"cannot pickle {what} {text}: {type(exc).__name__}: {exc}") from exc


def _dumps_tasks(tasks: list, first_index: int) -> bytes:
    try:
        return dumps(tasks)
    except Exception:
        for offset, (args, kwargs) in enumerate(tasks):     # name the culprit
            for pos, arg in enumerate(args):
                _dumps(arg, f"argument {pos} of item {first_index + offset}")
            for k, v in kwargs.items():
                _dumps(v, f"keyword argument {k!r} of item {first_index + offset}")
        raise


def outcome_value(outcome: tuple) -> Any:
    """The value of a task outcome, or raise its exception with the remote traceback as cause."""
    ok, value, tb = outcome
    if ok:
        return value
    if isinstance(value, SystemExit):
        # the task's own ending, not the driver's: re-raised as is it would end the driver
        # silently (exit code 0 for sys.exit(0)) and drop the rest of a map
        err = TaskError(f"the task called sys.exit({value.code!r}) (SystemExit)", tb)
        raise err from RemoteTraceback(tb) if tb else value
    if tb:
        value.__cause__ = RemoteTraceback(tb)
    raise value


def chunk_sizes(n_items: int, n_chunks: int) -> list[int]:
    """Split ``n_items`` into ``n_chunks`` contiguous sizes differing by at most one."""
    q, r = divmod(n_items, n_chunks)
    return [q + 1] * r + [q] * (n_chunks - r)


class _Progress:
    def __init__(self, enabled: bool, total: int, desc: str):
        self.bar = None
        if enabled and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="task", file=sys.stderr)
        self._desc, self._shown = desc, ""
        self._lock = threading.Lock()
        self._left = total

    def add(self, n: int) -> None:
        if self.bar is None:
            return
        with self._lock:
            self.bar.update(n)
            self._left -= n
            if self._left <= 0:
                self.bar.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def describe(self, text: str) -> None:
        """Show what the unfinished chunks wait for (e.g. a pending reason) after the name."""
        if self.bar is not None and text != self._shown:
            self._shown = text
            self.bar.set_description(f"{self._desc} [{text}]" if text else self._desc)


#: seconds between looks at the unfinished chunks' states while a progress bar waits
_DESCRIBE_EVERY_S = 2.0


def _chunk_result(f: Future, deadline: float | None, timeout: float | None, handle: RunHandle,
                  progress: _Progress) -> Any:
    """``f.result()`` by ``deadline`` (monotonic s); the progress bar shows what the unfinished
    chunks wait for, and a TimeoutError says it (their states and pending reasons)."""
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        step = (left if progress.bar is None else
                _DESCRIBE_EVERY_S if left is None else min(left, _DESCRIBE_EVERY_S))
        try:
            return f.result(step)
        except TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                unfinished = sum(not g.done() for g in handle.futures)
                why = handle.describe_unfinished()
                raise TimeoutError(
                    f"{unfinished} chunk(s) of run {handle.run_id} unfinished after {timeout} s" + (f"; array tasks: {why}" if why else "")
                ) from None
            progress.describe(handle.describe_unfinished())


class Executor(concurrent.futures.Executor):
    """Run functions in parallel on a backend: ``local`` (the default), ``inline`` (in the
    driver, for debugging), ``slurm``, ``pbs``, ``lsf`` or ``sge``.

    Parameters
    ----------
    backend : str, optional
        Backend name. Default: ``$HPCPAR_BACKEND``, else the profile's backend, else ``"local"``.
    profile : str, optional
        A profile in the config file (see :mod:`hpcpar.config`); default ``$HPCPAR_PROFILE``.
    cpus_per_task, mem, walltime, gpus, nodes, queue, account, qos, extra_directives, setup
        Resources per array task (:class:`hpcpar.Resources`): ``mem`` as bytes or ``"4GB"``,
        ``walltime`` as seconds or ``"1:30:00"``.
    max_workers : int, optional
        Local backend: worker processes (default: the CPUs this process may use).
    chunksize : int, optional
        Tasks per chunk (one chunk = one array task). Default: about ``chunks_per_slot`` (4)
        chunks per slot the backend reports, which balances load and keeps jobs few.
    runs_dir : str, optional
        Batch backends: where run folders go (default ``$HPCPAR_RUNS_DIR``, else
        ``platformdirs.user_data_dir("hpcpar")/runs``). Must be shared with the compute nodes.
    job_name : str, optional
        Job name shown by the scheduler (default: the function's name).
    max_retries : int
        Resubmissions of an array task that ended without results (default 2).
    max_running : int, optional
        Array tasks allowed to run at once (``%N`` in SLURM's ``--array``).
    progress : bool, optional
        tqdm bar for ``map``/``map_reduce``; default: only when stderr is a terminal.
    detach : bool
        Leave jobs running on exceptions and signals, for a later :func:`hpcpar.attach` (default False).
    poll_interval_s, max_poll_interval_s : float
        Watcher poll interval, backing off from the first to the second (default 1 s to 30 s).
    submit_linger_s : float, optional
        ``submit`` gathers calls made within this many seconds into one array
        (default 0 for local, 0.2 s for batch backends).
    signal_s : int
        Batch backends: ask for SIGUSR2 this many seconds before walltime; the worker then saves
        finished tasks and the rest are requeued (default 60).
    checkpoint_s : float
        Seconds between a worker's partial-result checkpoints (default 10).
    template_dir : str, optional
        A folder of job-script templates searched before the shipped ones.
    python : str, optional
        Python interpreter on the compute nodes (default: this one, ``sys.executable``).
    chunks_per_slot, workdir, command_timeout_s, dialect, pe, mem_unit
        Further options (``dialect`` for PBS, ``pe`` for Grid Engine, ``mem_unit`` for LSF);
        :class:`hpcpar.config.Options` documents every option.

    Raises
    ------
    ConfigError
        Unknown backend (the message lists the valid ones), unknown option (lists the valid
        ones), missing profile (names the config path), or a malformed resource.
    """

    def __init__(self, backend: str | None = None, *, profile: str | None = None, **options: Any):
        name, resources, opts = config.resolve(backend, profile, options)
        self.backend_name = name
        self.resources = resources
        self.options = opts
        self._backend = backends.create(name, resources, opts)
        self._handles: list[RunHandle] = []  # runs that may be unfinished (pruned now and then)
        self._prune_at = 64
        self.run_ids: list[str] = []          # every run started, in order (see hpcpar.attach)
        self._lock = threading.RLock()
        self._shutdown = False
        self._checked = False
        linger = opts.submit_linger_s
        self._linger_s = self._backend.submit_linger_s if linger is None else linger
        self._pending: list[tuple[bytes, bytes, Callable, Future]] = []
        self._timer: threading.Timer | None = None

    def __repr__(self) -> str:
        return f"<hpcpar.Executor backend={self.backend_name!r} {self.resources}>"

    # -- helpers -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if not self._checked:
            self._backend.check()
            self._checked = True

    def _progress_enabled(self) -> bool:
        if self.options.progress is not None:
            return self.options.progress
        return sys.stderr.isatty()

    def _progress(self, handle: RunHandle, sizes: list[int], fn: Callable) -> _Progress:
        """A progress bar (when enabled) advanced by each chunk's size as it finishes."""
        progress = _Progress(self._progress_enabled(), sum(sizes), self._job_name(fn))
        for f, n in zip(handle.futures, sizes, strict=False):
            f.add_done_callback(functools.partial(_advance, progress, n))
        return progress

    def _job_name(self, fn: Any) -> str:
        return self.options.job_name or getattr(fn, "__name__", None) or "hpcpar"

    def _start(self, request: RunRequest) -> RunHandle:
        handle = self._backend.start(request)
        with self._lock:
            self.run_ids.append(handle.run_id)
            self._handles.append(handle)
            if len(self._handles) >= self._prune_at:     # amortised O(1) per call
                self._handles = [h for h in self._handles if not h.done()]
                self._prune_at = max(64, 2 * len(self._handles))
        return handle

    def _chunk(self, items: list, chunksize: int | None) -> list[int]:
        n = len(items)
        size = chunksize or self.options.chunksize
        if size is not None:
            if size < 1:
                raise ConfigError(f"chunksize={size!r} must be >= 1")
            return chunk_sizes(n, math.ceil(n / size))
        slots = max(1, self._backend.slots())
        return chunk_sizes(n, min(n, self.options.chunks_per_slot * slots))

    def _start_items(self, fn: Callable, items: list, mode: str, kind: str,
                     chunksize: int | None, reducer: Callable | None = None) -> tuple[RunHandle, list[int]]:
        payload = _dumps({"fn": fn, "mode": mode, "reducer": reducer},
                         "the function" if reducer is None else "the mapper or reducer")
        sizes = self._chunk(items, chunksize)
        chunks: list[bytes] = []
        start = 0
        for size in sizes:
            tasks: list[tuple[tuple, dict]] = [(args, {}) for args in items[start:start + size]]
            chunks.append(_dumps_tasks(tasks, start))
            start += size
        request = RunRequest(payload, chunks, sizes, mode=mode, kind=kind, job_name=self._job_name(fn))
        return self._start(request), sizes

    # -- concurrent.futures API --------------------------------------------------------------
    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        """Schedule ``fn(*args, **kwargs)``; returns a :class:`concurrent.futures.Future`.

        Calls made within ``submit_linger_s`` of each other go out as one array (one array task
        per call). The function and arguments are pickled here, so an unpicklable one raises
        :class:`SerializationError` (a ``TypeError``) at once.
        """
        with self._lock:
            self._check_open()
            fn_bytes = _dumps({"fn": fn, "mode": "map", "reducer": None}, "the function")
            task = _dumps_tasks([(args, kwargs)], 0)
            fut: Future = Future()
            self._pending.append((fn_bytes, task, fn, fut))
            if self._linger_s <= 0:
                self._flush_locked()
            elif self._timer is None:
                self._timer = threading.Timer(self._linger_s, self._flush)
                self._timer.daemon = True
                self._timer.start()
            return fut

    def _flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        groups: dict[bytes, list] = {}
        for fn_bytes, task, fn, fut in pending:
            if fut.cancelled():
                continue
            groups.setdefault(fn_bytes, []).append((task, fn, fut))
        for fn_bytes, calls in groups.items():
            futs = [c[2] for c in calls]
            request = RunRequest(fn_bytes, [c[0] for c in calls], [1] * len(calls),
                                 kind="submit", job_name=self._job_name(calls[0][1]))
            try:
                handle = self._start(request)
            except BaseException as exc:  # noqa: BLE001 - surfaced through every future
                for f in futs:
                    if f.set_running_or_notify_cancel():
                        f.set_exception(exc)
                continue
            for f, cf in zip(futs, handle.futures, strict=False):
                link = getattr(cf, "add_running_callback", None)
                if link is not None:            # the call's future is RUNNING while it runs
                    link(f.set_running_or_notify_cancel)
                cf.add_done_callback(functools.partial(_resolve_call, f))
                f.add_done_callback(functools.partial(_cancel_chunk, cf))

    def map(self, fn: Callable, *iterables: Iterable, timeout: float | None = None,
            chunksize: int | None = None) -> Iterator:
        """Like :meth:`concurrent.futures.Executor.map`: ``fn`` over zipped ``iterables``, results
        in order, yielded as soon as their chunk finishes.

        Everything is submitted before this returns, as one job array (chunk i = array task i).

        Parameters
        ----------
        chunksize : int, optional
            Tasks per chunk; default: about 4 chunks per slot (see the class docstring).
        timeout : float, optional
            Seconds from this call after which ``next()`` raises ``TimeoutError``.

        Raises
        ------
        SerializationError
            At once, if ``fn`` or an item cannot be pickled (the message names it).
        """
        with self._lock:
            self._check_open()
            items = list(zip(*iterables, strict=False))
            if not items:
                return iter(())
            handle, sizes = self._start_items(fn, items, "map", "map", chunksize)
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._iter_results(handle, deadline, self._progress(handle, sizes, fn), timeout)

    def _iter_results(self, handle: RunHandle, deadline: float | None, progress: _Progress,
                      timeout: float | None = None) -> Iterator:
        # Like concurrent.futures' map: hold nothing already yielded. A chunk's future leaves
        # the handle once read (it is done: neither cancel nor shutdown needs it), and each
        # value leaves its chunk's outcomes as it is yielded.
        pending = handle.futures
        pending.reverse()
        try:
            while pending:
                result: ChunkResult = _chunk_result(pending[-1], deadline, timeout, handle, progress)
                pending.pop()
                outcomes = result.outcomes
                del result
                outcomes.reverse()
                while outcomes:
                    yield outcome_value(outcomes.pop())
        finally:
            progress.close()
            handle.cancel()        # like concurrent.futures: an abandoned map cancels the rest

    def map_reduce(self, mapper: Callable, iterable: Iterable, reducer: Callable,
                   initializer: Any = None, *, chunksize: int | None = None,
                   timeout: float | None = None) -> Any:
        """``functools.reduce(reducer, map(mapper, iterable)[, initializer])``, in parallel.

        Each chunk reduces its own mapped values inside its job; the driver then combines the
        partial results in an order-preserving binary tree, with ``initializer`` (if not None)
        on the far left. For an associative ``reducer`` the result equals the sequential reduce.

        Returns
        -------
        The reduced value; ``initializer`` for an empty iterable.

        Raises
        ------
        TypeError
            For an empty iterable and no initializer, as ``functools.reduce`` does.
        Exception
            The first (in item order) exception raised by ``mapper`` or ``reducer``, with the
            remote traceback as ``__cause__``.
        """
        with self._lock:
            self._check_open()
            items = [(x,) for x in iterable]
            if not items:
                if initializer is None:
                    raise TypeError("reduce() of empty iterable with no initial value")
                return initializer
            handle, sizes = self._start_items(mapper, items, "reduce", "map_reduce", chunksize, reducer)
        deadline = None if timeout is None else time.monotonic() + timeout
        progress = self._progress(handle, sizes, mapper)
        stack: list[tuple[int, Any]] = []          # (tree level, value), an order-preserving tree
        try:
            for f in handle.futures:
                value = outcome_value(_chunk_result(f, deadline, timeout, handle, progress).outcomes[0])
                level = 0
                while stack and stack[-1][0] == level:
                    value = reducer(stack.pop()[1], value)
                    level += 1
                stack.append((level, value))
        finally:
            progress.close()
            handle.cancel()
        result = stack.pop()[1]
        while stack:
            result = reducer(stack.pop()[1], result)
        return result if initializer is None else reducer(initializer, result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; with ``cancel_futures``, cancel what has not finished (and its
        jobs, unless ``detach``); with ``wait``, block until the rest is done.

        Raises
        ------
        RuntimeError
            ``wait=True`` from one of this executor's own threads (a done callback): waiting
            there would deadlock, so the executor shuts down without waiting, then this raises.
        """
        if wait and self._in_own_thread():
            self.shutdown(wait=False, cancel_futures=cancel_futures)
            raise RuntimeError("shutdown(wait=True) was called from a done callback, which runs "
                               "in the executor's own thread and cannot wait for it; the executor "
                               "is shut down without waiting (use shutdown(wait=False) there)")
        with self._lock:
            if cancel_futures:
                for _, _, _, fut in self._pending:
                    cancel_future(fut)
            self._flush_locked()
            self._shutdown = True
            handles = list(self._handles)
        if cancel_futures:
            for h in handles:
                h.cancel()
        if wait:
            for h in handles:
                concurrent.futures.wait(h.futures)
        self._backend.shutdown(wait=wait, cancel=cancel_futures and not self.options.detach)

    def _in_own_thread(self) -> bool:
        owns = getattr(self._backend, "owns_thread", None)
        current = threading.current_thread()
        if owns is not None:
            return owns(current)
        return current.name.startswith("hpcpar-watcher")

    def __exit__(self, exc_type, exc_val, exc_tb) -> Literal[False]:
        failed = exc_type is not None and not self.options.detach
        if failed and hasattr(self._backend, "stop_running"):
            self._backend.stop_running()      # local: kill running tasks too (Ctrl-C, an error)
        self.shutdown(wait=True, cancel_futures=failed)
        return False

    def slots(self) -> int:
        """How many chunks can run at once; ``map`` makes about ``chunks_per_slot`` chunks per slot.

        Local: ``max_workers`` (default: the CPUs this process may use). Batch backends: the
        queue's CPUs divided by ``cpus_per_task`` (read once from the scheduler; 8 if it does not
        say), at most ``max_running`` and at most 250.

        Returns
        -------
        int
            At least 1.
        """
        return max(1, self._backend.slots())

    # -- dry run -----------------------------------------------------------------------------
    def job_script(self, command: list[str] | None = None, *, array_size: int | None = None) -> str:
        """The job script this executor would submit, without writing or submitting anything.

        Parameters
        ----------
        command : list of str, optional
            Run this argv instead of the hpcpar worker.
        array_size : int, optional
            Array tasks (chunks, for a run) to ask for: the script then carries the array
            request as the submission makes it (``#SBATCH --array=0-N%max_running``,
            ``#PBS -J``/``-t``, ``#BSUB -J "name[1-N]%max"``, ``#$ -t 1-N`` and ``-tc``),
            the same directives a run's ``job.sh`` holds (on PBS Professional none: a run passes
            ``-J`` on the command line only, see ``PbsProSpec.array_directives_in_runs``).
            Default: no array request.
        """
        return self._backend.job_script(command, array_size=array_size, for_run=True)


def _advance(progress: _Progress, n: int, _future: Future) -> None:
    progress.add(n)


def _resolve_call(fut: Future, chunk_future: Future) -> None:
    if chunk_future.cancelled():
        cancel_future(fut)
        return
    if not fut.running() and not fut.set_running_or_notify_cancel():
        return
    exc = chunk_future.exception()
    if exc is not None:
        fut.set_exception(exc)
        return
    try:
        fut.set_result(outcome_value(chunk_future.result().outcomes[0]))
    except BaseException as task_exc:  # noqa: BLE001 - the task's own exception
        fut.set_exception(task_exc)


def _cancel_chunk(chunk_future: Future, fut: Future) -> None:
    if fut.cancelled():
        cancel_future(chunk_future)


__all__ = ["Executor", "chunk_sizes", "outcome_value"]
