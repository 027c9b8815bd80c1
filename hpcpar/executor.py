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

import collections
import collections.abc
import concurrent.futures
import functools
import itertools
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Literal

from . import aggregate, argstore, backends, config
from ._futures import cancel_future
from .argstore import ArgStore
from .backends.base import RunHandle, RunRequest
from .errors import ConfigError, RemoteTraceback, SerializationError, TaskError
from .rundir import ChunkResult
from .serialize import dumps


def _dumps(obj: Any, what: str, store: ArgStore | None = None) -> bytes:
    try:
        return dumps(obj, reduce_hook=argstore.reduce_hook(store))
    except Exception as exc:
        text = repr(obj)
        if len(text) > 200:
            text = text[:200] + "..."
        raise SerializationError(f"cannot pickle {what} {text}: {type(exc).__name__}: {exc}") from exc


def _dumps_tasks(tasks: list, first_index: int, store: ArgStore | None = None) -> bytes:
    try:
        return dumps(tasks, reduce_hook=argstore.reduce_hook(store))
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
    def __init__(self, enabled: bool, total: int | None, desc: str):
        self.bar = None
        if enabled and total != 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="task", file=sys.stderr)
        self._desc, self._shown = desc, ""
        self._lock = threading.Lock()
        self._left = math.inf if total is None else total

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


#: Lazy input: windows running at once, and started but not yet consumed.
LAZY_RUNNING = 2
LAZY_OUTSTANDING = 3
#: Lazy input without ``chunksize``: chunks grow 1, 2, 4... tasks, up to this.
LAZY_MAX_CHUNK = 1024


class _Feed:
    """The runs of one ``map``/``map_reduce`` call, in input order.

    Input with a length is one run, started at once. Lazy input is read a window at a time
    (``n_chunks`` chunks, one run each) while fewer than :data:`LAZY_RUNNING` windows run and
    fewer than :data:`LAZY_OUTSTANDING` are unconsumed: the bounded prefetch.
    """

    def __init__(self, ex: Executor, payload: dict, what: str, mode: str, kind: str,
                 job_name: str, progress: _Progress, total: int | None):
        self.ex, self.payload, self.what = ex, payload, what
        self.mode, self.kind, self.job_name = mode, kind, job_name
        self.runs: collections.deque[RunHandle] = collections.deque()
        self.exhausted = False
        self.total = total
        self.progress = progress
        self.read = 0                       # items read from the input so far
        self._it: Iterator[tuple] | None = None
        self._fixed: int | None = None
        self._size = 1
        self._n_chunks = 1

    def start(self, items: list, sizes: list[int]) -> None:
        handle = self.ex._start_run(self.payload, self.what, items, sizes, self.read,
                                    self.mode, self.kind, self.job_name)
        self.read += len(items)
        for f, n in zip(handle.futures, sizes, strict=False):   # holding neither the feed nor
            f.add_done_callback(functools.partial(_advance, self.progress, n))  # the executor
        self.runs.append(handle)

    def lazy(self, it: Iterator[tuple], chunksize: int | None, n_chunks: int) -> None:
        self._it, self._fixed, self._n_chunks = it, chunksize, n_chunks

    def fill(self) -> None:
        """Start windows of lazy input while the prefetch bound allows."""
        while not self.exhausted and self._it is not None:
            running = sum(1 for h in self.runs if not h.done())
            if running >= LAZY_RUNNING or len(self.runs) >= LAZY_OUTSTANDING:
                return
            size = self._fixed or self._size
            window = list(itertools.islice(self._it, size * self._n_chunks))
            if len(window) < size * self._n_chunks:
                self.exhausted = True
            if window:
                with self.ex._lock:
                    if self.ex._shutdown:
                        raise RuntimeError("cannot schedule new futures after shutdown: the "
                                           "executor was shut down before this map's lazy "
                                           "input was read to its end")
                    self.start(window, chunk_sizes(len(window), math.ceil(len(window) / size)))
            if self._fixed is None:
                self._size = min(LAZY_MAX_CHUNK, self._size * 2)

    def cancel(self) -> None:
        for h in self.runs:
            h.cancel()
        self.runs.clear()
        self.exhausted = True
        self._it = None


def _advance(progress: _Progress, n: int, _future: Future) -> None:
    progress.add(n)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _in_order(done: set[Future], order: list[Future]) -> list[Future]:
    """The futures of ``done``, in the order of ``order`` (input order within a wait round)."""
    return [f for f in order if f in done]


def _close_when_done(store: ArgStore, futures: list[Future]) -> None:
    """Delete ``store``'s folder once every future is done (the run no longer needs it)."""
    if not futures:
        store.close()
        return
    left = [len(futures)]
    lock = threading.Lock()

    def one_done(_f: Future) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            store.close()

    for f in list(futures):
        f.add_done_callback(one_done)


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
        self._submit_store: ArgStore | None = None      # submit's large objects, until shutdown

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
        plan = getattr(self._backend, "chunk_plan", None)      # pulling workers: see batch.py
        if plan is not None:
            return plan(n)
        slots = max(1, self._backend.slots())
        return chunk_sizes(n, min(n, self.options.chunks_per_slot * slots))

    def _new_store(self) -> ArgStore | None:
        """A store for one run's large objects (see :mod:`hpcpar.argstore`), or None if off."""
        if not self.options.max_nbytes:
            return None
        root = self.options.runs_dir or config.default_runs_dir()
        return ArgStore(root, self.options.max_nbytes, "r", by_content=False, prefix="args")

    def _start_run(self, payload: dict, what: str, items: list, sizes: list[int], first: int,
                   mode: str, kind: str, job_name: str) -> RunHandle:
        """Pickle ``payload`` and the chunks of ``items`` (large objects into a store), start
        the run; the store goes into the run folder, or is deleted when the run is done."""
        store = self._new_store()
        try:
            fn_bytes = _dumps(payload, what, store)
            chunks: list[bytes] = []
            start = 0
            for size in sizes:
                tasks: list[tuple[tuple, dict]] = [(args, {}) for args in items[start:start + size]]
                chunks.append(_dumps_tasks(tasks, first + start, store))
                start += size
            args_dir = None if store is None or store.path is None else str(store.path)
            request = RunRequest(fn_bytes, chunks, sizes, mode=mode, kind=kind, job_name=job_name,
                                 args_dir=args_dir)
            del chunks
            handle = self._start(request)
        except BaseException:
            if store is not None:
                store.close()
            raise
        if store is not None and store.path is not None and store.path.exists():
            _close_when_done(store, handle.futures)     # not adopted by a run folder
        return handle

    def _feed(self, fn: Callable, items: Iterable[tuple], chunksize: int | None, mode: str,
              kind: str, payload: dict, what: str) -> _Feed:
        """Start the first run over ``items`` (all of them when the input has a length)."""
        size = chunksize or self.options.chunksize
        if size is not None and size < 1:
            raise ConfigError(f"chunksize={size!r} must be >= 1")
        total = len(items) if isinstance(items, list) else None
        progress = _Progress(self._progress_enabled(), total, self._job_name(fn))
        feed = _Feed(self, payload, what, mode, kind, self._job_name(fn), progress, total)
        if isinstance(items, list):
            if items:
                feed.start(items, self._chunk(items, chunksize))
            feed.exhausted = True
        else:
            feed.lazy(iter(items), size, self.options.chunks_per_slot * max(1, self._backend.slots()))
            feed.fill()
        return feed

    # -- concurrent.futures API --------------------------------------------------------------
    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        """Schedule ``fn(*args, **kwargs)``; returns a :class:`concurrent.futures.Future`.

        Calls made within ``submit_linger_s`` of each other go out as one array (one array task
        per call). The function and arguments are pickled here, so an unpicklable one raises
        :class:`SerializationError` (a ``TypeError``) at once. Large objects (``max_nbytes``,
        as in :meth:`map`) are stored once per executor, beside the run folders, until
        :meth:`shutdown` (with ``detach``, they stay for the detached jobs).
        """
        with self._lock:
            self._check_open()
            if self._submit_store is None:
                self._submit_store = self._new_store()
            store = self._submit_store
            fn_bytes = _dumps({"fn": fn, "mode": "map", "reducer": None}, "the function", store)
            task = _dumps_tasks([(args, kwargs)], 0, store)
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
            chunksize: int | None = None, ordered: bool = True) -> Iterator:
        """Like :meth:`concurrent.futures.Executor.map`: ``fn`` over zipped ``iterables``,
        each result yielded as soon as its chunk finishes.

        Input with a length (lists, tuples, ranges, arrays) is submitted at once, as one run
        (one job array: chunk i = array task i). Other input (a generator, a file, an endless
        ``itertools.count()``) is read as workers need it: a window of about
        ``chunks_per_slot`` chunks per slot at a time, one run each, with at most 2 windows
        running and 3 not yet consumed; the chunks of a window grow (1, 2, 4... tasks, up to
        1024) unless ``chunksize`` fixes them. So ``itertools.islice(ex.map(f,
        itertools.count()), 10)`` reads a few windows, returns, and cancels the rest when the
        iterator is closed or dropped.

        Objects of at least ``max_nbytes`` bytes (default 1 MB; numpy arrays, pandas and
        scipy.sparse objects) in ``fn`` or the items are stored once per run and loaded once
        per worker process (see :mod:`hpcpar.argstore` and the README's "How to pass big
        data"); tasks see numpy arrays as read-only memory maps.

        Parameters
        ----------
        fn : callable
            Called as ``fn(*item)`` for each tuple of the zipped iterables.
        *iterables : iterable
            Argument streams, zipped (the shortest ends the map).
        chunksize : int, optional
            Tasks per chunk; default: about ``chunks_per_slot`` (4) chunks per slot (see the
            class docstring).
        timeout : float, optional
            Seconds from this call after which ``next()`` raises ``TimeoutError``.
        ordered : bool
            True (default): results in input order. False: in the order their chunks finish
            (as ``multiprocessing.Pool.imap_unordered``), within a chunk in input order; pair
            each result with its input (return ``(x, f(x))``) to tell them apart.

        Returns
        -------
        iterator
            Of ``fn``'s results. A task's exception is raised by ``next()`` when its result is
            reached, with the remote traceback as ``__cause__``; closing the iterator cancels
            the chunks not yet finished.

        Raises
        ------
        SerializationError
            At once, if ``fn`` or an item cannot be pickled (the message names it); for lazy
            input, when the window holding that item is read.
        ConfigError
            ``chunksize`` below 1.
        """
        with self._lock:
            self._check_open()
            payload = {"fn": fn, "mode": "map", "reducer": None}
            items: Iterable[tuple] = zip(*iterables, strict=False)
            if all(isinstance(it, collections.abc.Sized) for it in iterables):
                items = list(items)
            feed = self._feed(fn, items, chunksize, "map", "map", payload, "the function")
        deadline = None if timeout is None else time.monotonic() + timeout
        progress = feed.progress
        if ordered:
            return self._iter_ordered(feed, deadline, progress, timeout)
        return self._iter_unordered(feed, deadline, progress, timeout)

    def _iter_ordered(self, feed: _Feed, deadline: float | None, progress: _Progress,
                      timeout: float | None = None) -> Iterator:
        # Like concurrent.futures' map: hold nothing already yielded. A chunk's future leaves
        # its handle once read (it is done: neither cancel nor shutdown needs it), and each
        # value leaves its chunk's outcomes as it is yielded.
        try:
            while feed.runs:
                pending = feed.runs[0].futures
                pending.reverse()
                while pending:
                    feed.fill()
                    result: ChunkResult = _chunk_result(pending[-1], deadline, timeout,
                                                        feed.runs[0], progress)
                    pending.pop()
                    outcomes = result.outcomes
                    del result
                    outcomes.reverse()
                    while outcomes:
                        yield outcome_value(outcomes.pop())
                feed.runs.popleft()
                feed.fill()
        finally:
            progress.close()
            feed.cancel()          # like concurrent.futures: an abandoned map cancels the rest

    def _iter_unordered(self, feed: _Feed, deadline: float | None, progress: _Progress,
                        timeout: float | None = None) -> Iterator:
        try:
            while feed.runs:
                live = [f for h in feed.runs for f in h.futures]
                done, _ = concurrent.futures.wait(live, _left(deadline),
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
                if not done:
                    why = "; ".join(filter(None, (h.describe_unfinished() for h in feed.runs)))
                    raise TimeoutError(f"{len(live)} chunk(s) unfinished after {timeout} s"
                                       + (f"; array tasks: {why}" if why else ""))
                for h in feed.runs:                    # release what is read
                    h.futures[:] = [f for f in h.futures if f not in done]
                feed.runs = collections.deque(h for h in feed.runs if h.futures)
                feed.fill()
                for f in _in_order(done, live):
                    outcomes = f.result().outcomes
                    outcomes.reverse()
                    while outcomes:
                        yield outcome_value(outcomes.pop())
                del done, live
        finally:
            progress.close()
            feed.cancel()

    def map_reduce(self, mapper: Callable, iterable: Iterable, reducer: Callable,
                   initializer: Any = None, *, combiner: Callable | None = None,
                   chunksize: int | None = None, timeout: float | None = None) -> Any:
        """Map, then fold with an accumulator: Spark's ``aggregate(zeroValue, seqOp, combOp)``.

        With ``initializer``, each chunk (array task) folds its mapped values into its own
        fresh copy of ``initializer`` (a pickle round trip) with ``reducer``, and the driver
        merges the chunks' accumulators, in item order, with ``combiner`` (default:
        ``reducer``), starting from one more copy of ``initializer``::

            chunk k:  acc_k = reducer(...reducer(copy(initializer), mapper(x_i))..., mapper(x_j))
            result = combiner(...combiner(copy(initializer), acc_0)..., acc_last)

        So the seeds' word count works with a reducer that updates its accumulator::

            ex.map_reduce(str.split, lines, lambda c, ws: c.update(ws) or c, Counter())

        As in Spark, ``initializer`` must be a zero for both (``Counter()``, ``0``, ``[]``,
        ``""``): it is used once per chunk, so a non-neutral one is counted several times.
        ``reducer`` may update and return its accumulator (each chunk has its own);
        ``combiner`` may update and return its left argument.

        Without ``initializer`` (``None``), as :func:`functools.reduce` with no initial value:
        each chunk reduces its mapped values (the first seeds it) and ``reducer`` merges the
        chunks' results, so ``reducer`` takes two mapped values. For an associative ``reducer``
        (and ``combiner``) the result equals the sequential fold, however the items are chunked.
        Merging is an order-preserving binary tree as chunks arrive in order.

        The input is read as :meth:`map` reads it (all at once if it has a length, else in
        windows), and large objects travel once per run as in :meth:`map`.

        Parameters
        ----------
        mapper : callable
            ``mapper(item) -> value``.
        iterable : iterable
            The items.
        reducer : callable
            ``reducer(acc, value) -> acc`` (Spark's ``seqOp``).
        initializer : object, optional
            The zero value (Spark's ``zeroValue``), picklable. Default None: no initializer.
        combiner : callable, optional
            ``combiner(acc, acc) -> acc`` (Spark's ``combOp``); default ``reducer``. Needs
            ``initializer``.
        chunksize : int, optional
            Items per chunk (see :meth:`map`).
        timeout : float, optional
            Seconds from this call after which ``TimeoutError`` is raised.

        Returns
        -------
        object
            The folded value; a copy of ``initializer`` for an empty iterable.

        Raises
        ------
        TypeError
            Before anything runs: ``mapper``, ``reducer`` or ``combiner`` not callable, or
            ``reducer``/``combiner`` not taking two arguments. For an empty iterable and no
            initializer, as ``functools.reduce`` does.
        ValueError
            Before anything runs: ``combiner`` without ``initializer``.
        SerializationError
            Before anything runs: ``initializer``, ``mapper``, ``reducer``, ``combiner`` or an
            item cannot be pickled.
        Exception
            The first (in item order) exception raised by ``mapper``, ``reducer`` or
            ``combiner``, with the remote traceback as ``__cause__``.
        """
        aggregate.check_callables(mapper, reducer, combiner, initializer)
        initial = None if initializer is None else _dumps(initializer, "the initializer")
        fold = aggregate.Fold(reducer, initial)
        merge = combiner or reducer
        with self._lock:
            self._check_open()
            payload = {"fn": aggregate.MapTo(mapper), "mode": "reduce", "reducer": fold,
                       "combiner": merge}
            items: Iterable[tuple] = ((x,) for x in iterable)
            if isinstance(iterable, collections.abc.Sized):
                items = list(items)
            feed = self._feed(mapper, items, chunksize, "reduce", "map_reduce", payload,
                              "the mapper, reducer or combiner")
        deadline = None if timeout is None else time.monotonic() + timeout
        progress = feed.progress
        tree = aggregate.OrderedTree(merge)
        if initial is not None:
            tree.add(fold.fresh())
        try:
            while feed.runs:
                pending = feed.runs[0].futures
                pending.reverse()
                while pending:
                    feed.fill()
                    result = _chunk_result(pending[-1], deadline, timeout, feed.runs[0], progress)
                    partial = outcome_value(result.outcomes[0])
                    del result
                    pending.pop()
                    tree.add(fold.finish(partial))
                feed.runs.popleft()
                feed.fill()
        finally:
            progress.close()
            feed.cancel()
        return tree.result()

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
        store, self._submit_store = self._submit_store, None
        if store is not None and store.path is not None and not self.options.detach:
            _close_when_done(store, [f for h in handles for f in h.futures])
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
