"""scikit-learn's ``n_jobs`` on any hpcpar backend: a joblib parallel backend over
:class:`hpcpar.Executor`.

>>> import joblib, hpcpar.joblib
>>> hpcpar.joblib.register()            # explicit: importing hpcpar.joblib registers nothing
>>> with joblib.parallel_config(backend="hpcpar"):     # backend chosen as hpcpar.Executor() does
...     print(joblib.Parallel(n_jobs=2)(joblib.delayed(pow)(i, 2) for i in range(4)))
[0, 1, 4, 9]

Anything ``hpcpar.Executor`` accepts goes to ``parallel_config`` (the hpcpar backend's name as
``hpcpar_backend``, since ``backend`` is joblib's)::

    with joblib.parallel_config(backend="hpcpar", hpcpar_backend="slurm", queue="debug", mem="2GB"):
        GridSearchCV(SVC(), grid, cv=5, n_jobs=-1).fit(X, y)      # one job array

How one joblib call runs (the grouping is :mod:`hpcpar.joblib_groups`)::

    Parallel(tasks) ── every task dispatched at once (pre_dispatch="all") ──► buffer
        │ joblib starts collecting results (or dispatch pauses FLUSH_IDLE_S)
        ▼
    groups: about chunks_per_slot (4) per worker, contiguous ── Executor.submit each ──► one array
        │ arguments >= max_nbytes (joblib's knob, 1M) → hpcpar.argstore, stored once by content
        ▼
    a group finishes ──► each joblib batch's future resolved, joblib's callback called

Why not joblib's own batching: joblib sends ``pre_dispatch`` (2 x n_jobs) tasks, then one new
batch each time one finishes, sized so that a batch takes 0.2-2 s. On a batch queue each of
those batches would be a separate submission (one ``sbatch`` per completion, for a grid search
hundreds), and the measured time would be queue wait and job start, not work. Dask users meet
the same starvation (joblib issue #1020, fixed there by ``pre_dispatch="all"``). So this backend
takes every task at once and cuts them into groups as ``Executor.map`` cuts chunks: about
``chunks_per_slot`` groups per worker, each one array task running seconds to minutes of work,
all of them submitted together as one job array.

Nested parallelism (a ``Parallel`` call inside a task, such as a forest's own ``n_jobs`` inside
a grid search) runs sequentially unless ``nested=`` names a joblib backend for it, which then
gets ``cpus_per_task`` workers.
"""

from __future__ import annotations

import contextlib
import copy
from concurrent.futures import Future
from typing import Any

try:
    import joblib
    from joblib.parallel import BACKENDS, ParallelBackendBase, SequentialBackend
except ImportError as exc:  # pragma: no cover - exercised only without joblib
    raise ImportError("hpcpar.joblib needs joblib >= 1.3: pip install 'hpcpar[joblib]'") from exc

from . import config
from .argstore import ArgStore
from .errors import ConfigError
from .executor import Executor
from .joblib_groups import GroupDispatcher

#: the backend's own options (everything else goes to hpcpar.Executor)
OWN_OPTIONS = ("executor", "hpcpar_backend", "nested", "profile")


def register(name: str = "hpcpar") -> None:
    """Make ``joblib.parallel_config(backend=name)`` use :class:`HpcparBackend`.

    Calls :func:`joblib.register_parallel_backend`; does not change joblib's default backend.
    Importing :mod:`hpcpar.joblib` registers nothing.

    Parameters
    ----------
    name : str
        The joblib backend name (default ``"hpcpar"``).
    """
    joblib.register_parallel_backend(name, HpcparBackend)


class HpcparBackend(ParallelBackendBase):
    """A joblib backend that runs batches of tasks as hpcpar array tasks.

    Made by joblib from ``joblib.parallel_config(backend="hpcpar", **options)`` after
    :func:`register`; every keyword below and every :class:`hpcpar.Executor` option
    (``profile``, ``queue``, ``mem``, ``walltime``, ``cpus_per_task``, ``max_running``, ...)
    may be given there.

    Parameters
    ----------
    hpcpar_backend : str, optional
        ``"local"``, ``"slurm"``, ``"pbs"``, ``"lsf"`` or ``"sge"``. Default: as
        ``hpcpar.Executor()`` chooses (``$HPCPAR_BACKEND``, ``$HPCPAR_PROFILE``, the config's
        ``default_profile``, else ``"local"``).
    profile : str, optional
        A profile of the config file.
    executor : hpcpar.Executor, optional
        Run on this executor (not shut down here) instead of one made per joblib call; then no
        other Executor option may be given.
    nested : str, optional
        A registered joblib backend (``"loky"``, ``"threading"``) for ``Parallel`` calls made
        inside a task, with ``cpus_per_task`` workers. Default: they run sequentially.
    **options
        :class:`hpcpar.Executor` options. ``job_name`` defaults to ``"joblib"``.

    Attributes
    ----------
    hpcpar_backend : str
        The hpcpar backend it runs on (``"local"``, ``"slurm"``, ...).
    run_ids : list of str
        Every hpcpar run made through this backend, in order.
    stored : list of (str, int)
        Content key and bytes of every argument written to a store (one per distinct content
        per joblib call).

    Raises
    ------
    ConfigError
        At ``parallel_config`` time, before anything runs: unknown option (the message lists
        the valid ones), unknown backend or profile, bad resource value, unknown ``nested``.

    Notes
    -----
    joblib's own knobs apply: ``n_jobs`` (``-1``: every slot the backend offers, see
    :meth:`hpcpar.Executor.slots`; a positive value also caps the array tasks running at once),
    ``max_nbytes`` (arguments at least this big are stored once per call, see
    :mod:`hpcpar.argstore`; ``None`` disables) and ``mmap_mode``.
    """

    default_n_jobs = -1
    supports_retrieve_callback = True
    supports_sharedmem = False
    uses_threads = False

    def __init__(self, hpcpar_backend: str | None = None, *, profile: str | None = None,
                 executor: Executor | None = None, nested: str | None = None,
                 nesting_level: int | None = None, inner_max_num_threads: int | None = None,
                 **options: Any):
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads)
        where = "joblib.parallel_config(backend='hpcpar', ...)"
        try:
            config.check_names(options, where, extra=OWN_OPTIONS)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(", valid options:", ", valid options (joblib's "
                                               "n_jobs, max_nbytes, ... aside):")) from None
        if executor is not None:
            if not isinstance(executor, Executor):
                raise ConfigError(f"{where}: executor={executor!r} is not an hpcpar.Executor")
            if hpcpar_backend or profile or options:
                raise ConfigError(f"{where}: give either executor= or Executor options "
                                  f"(hpcpar_backend, profile, {', '.join(sorted(options)) or '...'}), not both")
            self._resources = executor.resources
            self._max_running = executor.options.max_running
            hpcpar_backend = executor.backend_name
        else:
            name, self._resources, opts = config.resolve(hpcpar_backend, profile, options)
            self._max_running = opts.max_running
            if opts.job_name is None:
                options["job_name"] = "joblib"
            hpcpar_backend = name
        if nested is not None and (nested not in BACKENDS or nested == "hpcpar"):
            valid = sorted(n for n in BACKENDS if n != "hpcpar")
            raise ConfigError(f"{where}: nested={nested!r} is not a joblib backend this can use "
                              f"inside a task; choose one of {valid}, or None (sequential)")
        self.hpcpar_backend: str = hpcpar_backend
        self._ex_args = (hpcpar_backend, profile, options)
        self._user_ex = executor
        self._nested = nested
        self.run_ids: list[str] = []
        self.stored: list[tuple[str, int]] = []
        self._ex: Executor | None = None
        self._slots: int | None = None
        self._n_jobs = 1
        self._max_nbytes: int | None = 1024 * 1024
        self._mmap_mode: str | None = "r"
        self._store: ArgStore | None = None
        self._groups = GroupDispatcher(self._open_call)
        self._runs_before = 0
        self._saved_pre_dispatch: Any = None

    # -- sizing --------------------------------------------------------------------------------
    def _new_executor(self, **extra: Any) -> Executor:
        backend, profile, options = self._ex_args
        return Executor(backend, profile=profile, **{**options, **extra})

    def slots(self) -> int:
        """Slots of the hpcpar backend (:meth:`hpcpar.Executor.slots`), read once."""
        if self._slots is None:
            if self._user_ex is not None:
                self._slots = self._user_ex.slots()
            else:
                probe = self._new_executor()
                self._slots = probe.slots()
                probe.shutdown(wait=False)
        return self._slots

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """``n_jobs`` workers; negative values count back from the backend's slots as joblib
        counts back from the CPUs (``-1``: all of them)."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            n_jobs = self.default_n_jobs
        if n_jobs < 0:
            return max(1, self.slots() + 1 + n_jobs)
        return int(n_jobs)

    def configure(self, n_jobs: int = 1, parallel: Any = None, prefer: Any = None,
                  require: Any = None, max_nbytes: Any = "1M", mmap_mode: str | None = "r",
                  **backend_kwargs: Any) -> int:
        """Prepare one joblib call (joblib calls this); returns the effective ``n_jobs``.

        ``max_nbytes`` (bytes, or a string such as ``"1M"``; ``None`` stores nothing) and
        ``mmap_mode`` say which arguments :mod:`hpcpar.argstore` stores and how workers map them.
        """
        self.parallel = parallel
        if isinstance(max_nbytes, str):          # joblib converts it already; a direct call may not
            from joblib.disk import memstr_to_bytes

            max_nbytes = memstr_to_bytes(max_nbytes)
        self._max_nbytes = max_nbytes
        self._mmap_mode = mmap_mode
        self._n_jobs = self.effective_n_jobs(n_jobs)
        return self._n_jobs

    def _executor(self) -> Executor:
        if self._ex is None:
            if self._user_ex is not None:
                self._ex = self._user_ex
            else:
                extra: dict[str, Any] = {}
                if self._ex_args[0] == "local":             # n_jobs processes, as loky
                    extra["max_workers"] = self._n_jobs
                elif self._n_jobs < self.slots() or self._max_running:
                    extra["max_running"] = min(self._n_jobs, self._max_running or self._n_jobs)
                self._ex = self._new_executor(**extra)
            self._runs_before = len(self._ex.run_ids)
        return self._ex

    # -- one joblib call -----------------------------------------------------------------------
    def start_call(self) -> None:
        """Take every task at once: joblib's ``pre_dispatch`` is set to ``"all"`` for this call."""
        self._groups.reset()
        parallel = getattr(self, "parallel", None)
        if parallel is not None and parallel.pre_dispatch != "all":
            self._saved_pre_dispatch = parallel.pre_dispatch
            parallel.pre_dispatch = "all"

    def submit(self, func: Any, callback: Any = None) -> Future:
        """Buffer one joblib batch; it is submitted with the others (see the module docstring)."""
        return self._groups.add(func, callback)

    apply_async = submit        # the name joblib < 1.5 calls

    def retrieve_result_callback(self, out: Future) -> Any:
        """The result of a joblib batch (its list of task results), or raise its exception."""
        return out.result()

    @contextlib.contextmanager
    def retrieval_context(self):
        """joblib is about to collect results: submit what is buffered now."""
        self._groups.flush()
        yield

    def _open_call(self):
        """For each flush: the executor, the groups wanted and how to prepare a batch."""
        ex = self._executor()
        if self._store is None:
            root = ex.options.runs_dir or config.default_runs_dir()
            self._store = ArgStore(root, self._max_nbytes, self._mmap_mode)
        return ex, ex.options.chunks_per_slot * self._n_jobs, self._with_stored_args

    def _with_stored_args(self, batch: Any) -> Any:
        store = self._store
        items = getattr(batch, "items", None)
        if store is None or items is None:
            return batch
        n_before = len(store.written)
        new_items = [(f, *store.replace(args, kwargs)) for f, args, kwargs in items]
        self.stored.extend(store.written[n_before:])
        clone = copy.copy(batch)
        clone.items = new_items
        return clone

    def stop_call(self) -> None:
        """End of a joblib call's dispatch: submit what is left and restore ``pre_dispatch``."""
        self._groups.flush()
        parallel = getattr(self, "parallel", None)
        if parallel is not None and self._saved_pre_dispatch is not None:
            parallel.pre_dispatch = self._saved_pre_dispatch
            self._saved_pre_dispatch = None

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Cancel what has not run (the array tasks of an hpcpar batch backend included)."""
        self._groups.cancel()
        if not ensure_ready:
            self.terminate()

    def terminate(self) -> None:
        """End of a joblib call: shut down the executor made for it and delete the store."""
        ex, self._ex = self._ex, None
        store, self._store = self._store, None
        aborted = self._groups.aborted
        if ex is not None:
            self.run_ids.extend(ex.run_ids[self._runs_before:])
            if ex is not self._user_ex:
                ex.shutdown(wait=not aborted, cancel_futures=aborted)
        if store is not None:
            store.close()

    def get_nested_backend(self):
        """Sequential inside a task, unless ``nested=`` names a backend (``cpus_per_task`` workers)."""
        level = (self.nesting_level or 0) + 1
        if self._nested is None:
            return SequentialBackend(nesting_level=level), None
        return BACKENDS[self._nested](nesting_level=level), self._resources.cpus_per_task


__all__ = ["HpcparBackend", "register"]
