"""The generic batch backend: run folder + one job array per run, for any scheduler spec.

For each run it writes the run folder, renders ``job.sh`` once, and submits the chunks as an
array (``spec.submissions``); resubmissions pass only the lost indices and reuse the same
script. A :class:`~hpcpar.watcher.Watcher` thread (one per executor) polls all live jobs with
one status call and resolves, requeues or resubmits chunks.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import subprocess
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from .. import _signals, _subprocess, argstore, claims, pool, runstate, templates
from .._futures import ChunkFuture
from ..config import default_runs_dir, usable_runs_root
from ..errors import ConfigError, HpcparError, SchedulerNotFoundError, StatusError, SubmissionError
from ..resources import format_bytes, format_hms
from ..rundir import atomic_write, driver_python_path
from ..runstate import ChunkState, Run, RunPhase
from ..states import JobState
from ..watcher import Watcher
from .base import Backend, RunHandle, RunRequest
from .spec import QueueInfo, SchedulerSpec, TaskStatus

log = logging.getLogger("hpcpar")

#: most chunks a map makes by default (each chunk is one array task; far more only adds
#: scheduler overhead). ``chunksize=`` overrides.
DEFAULT_SLOT_CAP = 250
_UNSET = object()


def guided_chunk_sizes(n_items: int, workers: int, min_size: int = 1) -> list[int]:
    """Guided self-scheduling (Polychronopoulos and Kuck, IEEE Trans. Computers 36(12), 1987,
    as OpenMP's ``schedule(guided)``): each chunk takes ``ceil(left / (2 * workers))`` of the
    tasks left, at least ``min_size``. Pulling workers take the big chunks first and the small
    ones last, so they finish together without knowing task durations, and the chunk count
    grows only as ``2 * workers * ln(n_items / workers)`` (few claims for many tiny tasks).

    >>> guided_chunk_sizes(16, 2)
    [4, 3, 3, 2, 1, 1, 1, 1]
    """
    sizes, left = [], n_items
    while left > 0:
        size = min(left, max(min_size, -(-left // (2 * max(1, workers)))))
        sizes.append(size)
        left -= size
    return sizes


class BatchBackend(Backend):
    """A batch scheduler driven by a :class:`~hpcpar.backends.spec.SchedulerSpec`; never
    subclassed (everything scheduler-specific is in the spec).

    Parameters
    ----------
    spec : SchedulerSpec
        The scheduler. A spec with dialects (PBS) is narrowed to one here, from the options or
        by running its :meth:`~hpcpar.backends.spec.SchedulerSpec.detect_argv` once.
    resources : hpcpar.Resources
    options : hpcpar.config.Options

    Raises
    ------
    ConfigError
        The spec refuses one of its options (e.g. an unknown PBS ``dialect``).
    """

    submit_linger_s = 0.2

    def __init__(self, spec: SchedulerSpec, resources, options):
        super().__init__(resources, options)
        spec.check_options(options)
        self.spec = spec.variant(options, self._detect(spec, options))
        self.name = spec.name
        self.template = self.spec.template
        self.array_index_var = self.spec.array_index_var
        self.array_index_base = self.spec.array_index_base
        self.on_warning = self.spec.on_warning
        self._lock = threading.RLock()
        self._probe: dict | None = None
        self._queue: QueueInfo | object | None = _UNSET
        self._slots: int | None = None
        self._watcher: Watcher | None = None
        #: warm workers (keep_workers_s > 0): the pool folder, made by the first run
        self._pool: Path | None = None
        self._pool_beat: pool.DriverHeartbeat | None = None
        self._pool_runs: list[Run] = []            # runs whose workers may serve later runs
        self._pool_every: list[Run] = []           # every run of the pool (shutdown's cancel)
        self._cancelled_jobs: set[str] = set()     # worker jobs this executor cancelled

    @staticmethod
    def _detect(spec: SchedulerSpec, options) -> tuple[str, int] | None:
        """Run the spec's detection command once, if it has one and it is on PATH."""
        argv = spec.detect_argv(options)
        if not argv or shutil.which(argv[0]) is None:
            return None
        try:
            proc = subprocess.run(argv, check=False, capture_output=True, text=True,
                                  timeout=min(10.0, options.command_timeout_s))
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("%s: `%s` failed (%s)", spec.name, " ".join(argv), exc)
            return None
        return proc.stdout + proc.stderr, proc.returncode

    @property
    def lost_grace_s(self) -> float:
        """Seconds a job may be final without a visible results file before it counts as lost
        (the spec's :meth:`~hpcpar.backends.spec.SchedulerSpec.lost_grace_s`)."""
        return self.spec.lost_grace_s(self.probe())

    # -- capabilities ------------------------------------------------------------------------
    def check(self) -> None:
        for cmd in self.spec.commands:
            if shutil.which(cmd) is None:
                raise SchedulerNotFoundError(cmd, self.name)

    def run_cmd(self, argv, input: str | None = None, check: bool = True, env=None):
        return _subprocess.run(argv, self.name, timeout_s=self.options.command_timeout_s,
                               input=input, check=check, env=env)

    def _once(self, argv, parse, what: str):
        if not argv:
            return None
        try:
            return parse(self.run_cmd(argv).stdout)
        except HpcparError as exc:
            log.warning("%s: could not read %s (%s); assuming defaults", self.name, what, exc)
            return None

    def probe(self) -> dict:
        """Scheduler facts read once per executor (array size limit, accounting)."""
        with self._lock:
            if self._probe is None:
                self._probe = {"max_array_size": None, "accounting": False}
                self._probe.update(self._once(self.spec.config_argv(), self.spec.parse_config,
                                              "the scheduler's configuration") or {})
            return self._probe

    def queue_info(self) -> QueueInfo | None:
        """The queue's CPUs and walltime limit, read once per executor."""
        with self._lock:
            if self._queue is _UNSET:
                queue = self.resources.queue
                self._queue = self._once(self.spec.queue_argv(queue),
                                         lambda out: self.spec.parse_queue(out, queue), "the queue")
            assert self._queue is None or isinstance(self._queue, QueueInfo)
            return self._queue

    def validate(self) -> None:
        """Refuse, before anything is written or submitted, what the queue cannot run.

        One queue probe (SLURM: one ``sinfo`` call, read once per executor) gives the queue's
        walltime limit, nodes, and the CPUs and memory of its largest node; a number the
        scheduler does not report is not checked.

        Raises
        ------
        SchedulerNotFoundError
            A scheduler command is missing.
        ConfigError
            Naming the field: ``walltime`` over the queue's limit; ``cpus_per_task`` or ``mem``
            over the queue's largest node; ``nodes`` > 1 (each array task runs one worker
            process, which cannot use a second node); ``workdir`` not an existing folder; the
            runs folder (``runs_dir=`` / ``$HPCPAR_RUNS_DIR``) not a writable folder.
        """
        self.check()
        res, info = self.resources, self.queue_info()
        where = f"{self.name} queue {info.name!r}" if info else f"the {self.name} queue"
        if res.nodes > 1:
            also = (f" (and {where} has {info.nodes} node{'s' * (info.nodes != 1)})"
                    if info and info.nodes is not None and res.nodes > info.nodes else "")
            raise ConfigError(
                f"nodes={res.nodes}{also}: each array task runs one hpcpar worker process, which "
                "cannot use a second node; use nodes=1 (the default) and more array tasks, or "
                "`hpcpar script` for a job script of your own multi-node command")
        wt = res.walltime
        if info and info.max_walltime_s and wt and wt > info.max_walltime_s:
            raise ConfigError(
                f"walltime={format_hms(wt)} exceeds the time limit {format_hms(info.max_walltime_s)} "
                f"of {where}; ask for less, or choose another queue")
        if info and info.cpus_per_node and res.cpus_per_task > info.cpus_per_node:
            raise ConfigError(
                f"cpus_per_task={res.cpus_per_task} exceeds the {info.cpus_per_node} CPUs of the "
                f"largest node of {where}; ask for fewer, or choose another queue")
        if info and info.mem_per_node and res.mem and res.mem > info.mem_per_node:
            raise ConfigError(
                f"mem={format_bytes(res.mem)} exceeds the {format_bytes(info.mem_per_node)} of the "
                f"largest node of {where}; ask for less, or choose another queue")
        workdir = self.options.workdir
        if workdir and not Path(workdir).expanduser().is_dir():
            raise ConfigError(f"workdir={workdir!r} is not an existing folder (the job would fail "
                              "on `cd`); create it, or give another")
        usable_runs_root(self.options.runs_dir)

    def slots(self) -> int:
        """Array tasks that fit at once: the queue's CPUs / cpus_per_task (8 if unknown),
        at most ``max_running`` and at most 250 (so at most 1,000 chunks by default)."""
        with self._lock:
            if self._slots is None:
                info = self.queue_info()
                slots = (info.total_cpus // self.resources.cpus_per_task
                         if info and info.total_cpus else None) or 8
                if self.options.max_running:
                    slots = min(slots, self.options.max_running)
                self._slots = max(1, min(slots, DEFAULT_SLOT_CAP))
            return self._slots

    def chunk_plan(self, n_items: int) -> list[int]:
        """Chunk sizes for ``n_items`` tasks pulled by ``min(slots, n_items)`` workers (the
        default when ``chunksize=`` is not given): see :func:`guided_chunk_sizes`."""
        return guided_chunk_sizes(n_items, min(self.slots(), n_items) or 1)

    def runs_root(self) -> Path:
        return Path(self.options.runs_dir).expanduser() if self.options.runs_dir else default_runs_dir()

    def signal_seconds(self) -> int | None:
        """Seconds before walltime at which the worker is warned (SIGUSR2); at most half of it."""
        if not self.options.signal_s:
            return None
        if self.resources.walltime:
            return max(1, min(self.options.signal_s, self.resources.walltime // 2))
        return self.options.signal_s

    def script_context(self, job_name, command, run_dir=None, log_dir=None, array_file=None,
                       workdir=None, **extra):
        if self.resources.qos and not self.spec.supports_qos:
            log.warning("%s: %s has no quality of service; qos=%r is not rendered",
                        self.name, self.name.upper(), self.resources.qos)
        extra = {**self.spec.template_context(self.resources, self.options), **extra}
        ctx = super().script_context(job_name, command, run_dir, log_dir, array_file, workdir, **extra)
        if command and command[:4] == self.worker_command("")[:4]:
            ctx["signal_s"] = self.signal_seconds()
        return ctx

    def render_script(self, context: dict) -> str:
        return templates.render(self.template, context, self.options.template_dir,
                                self.spec.template_dir)

    def planned_submissions(self, n_tasks: int, job_name: str, script: str = "job.sh",
                            max_array_size: int | None = None):
        """The submissions of ``n_tasks`` array tasks (chunks 0..n-1), from the spec (pure)."""
        return self.spec.planned_submissions(range(n_tasks), self.options.max_running,
                                             max_array_size, job_name, script)

    def array_directives(self, n_tasks, job_name, max_array_size=None, for_run=False):
        """The first submission's array options as directive bodies, each word shell-quoted
        (``--array=0-9%2``; ``-J 'name[1-10]%2'``). They come from the same
        :class:`~hpcpar.backends.spec.Submission` as the submit command, so the script asks for
        what is submitted; when more than one submission is needed (more tasks than the
        scheduler's array size limit) the script carries the first one's. ``for_run``: for a
        run's job.sh, which resubmissions reuse (none where the spec says
        ``array_directives_in_runs = False``)."""
        if not n_tasks or (for_run and not self.spec.array_directives_in_runs):
            return []
        subs = self.planned_submissions(n_tasks, job_name, max_array_size=max_array_size)
        return [" ".join(templates.q(w) for w in option) for option in subs[0].array_options]

    def submit_commands(self, n_tasks, job_name, script="job.sh", max_array_size=None):
        return [sub.argv for sub in self.planned_submissions(n_tasks, job_name, script, max_array_size)]

    # -- running -----------------------------------------------------------------------------
    def start(self, request: RunRequest) -> RunHandle:
        self.validate()
        probe = self.probe()
        meta = {
            "pull": True,
            "backend": self.name,
            "kind": request.kind,
            "mode": request.mode,
            "job_name": request.job_name,
            "n_chunks": len(request.chunks),
            "chunk_sizes": request.chunk_sizes,
            "resources": self.resources.to_json(),
            "options": dataclasses.asdict(self.options),
            "python": self.python(),
            "python_path": driver_python_path(),
            "driver": {"host": os.uname().nodename, "pid": os.getpid()},
            "submissions": [],
            "accounting": probe["accounting"],
        }
        warm_on = self.options.keep_workers_s > 0
        if warm_on:
            meta["first_worker"] = max((r.next_worker_index() for r in self._pool_runs),
                                       default=0)
        rd = runstate.create_run(self.runs_root(), prefix=request.job_name, meta=meta)
        pool_dir = self._pool_folder(rd.path) if warm_on else None
        if pool_dir is not None:
            run_meta = runstate.read(rd)
            run_meta["pool"] = str(pool_dir)
            runstate.Run(rd, {}, run_meta).save()
        if request.args_dir is not None:        # stored arguments live and go with the run
            argstore.adopt(request.args_dir, rd.path)
        rd.write_function(request.fn_payload)
        for i, chunk in enumerate(request.chunks):
            rd.write_chunk(i, chunk)
        (rd.path / "claims").mkdir(mode=0o700)
        n_workers = min(self.slots(), len(request.chunks))
        command = [*self.worker_command(str(rd.path)), "--pull"]
        if pool_dir is not None:
            command += ["--pool", str(pool_dir), "--keep-workers-s", f"{self.options.keep_workers_s:g}"]
            if self.resources.walltime:
                command += ["--walltime-s", str(self.resources.walltime)]
        script = self.render_script(self.script_context(
            request.job_name, command, run_dir=str(rd.path),
            log_dir=str(rd.logs_dir), workdir=self.options.workdir or os.getcwd(),
            array_directives=self.array_directives(n_workers, request.job_name,
                                                   probe.get("max_array_size"), for_run=True)))
        atomic_write(rd.script_path, script.encode(), mode=0o700)
        chunks = {i: ChunkState(i, ChunkFuture(), size) for i, size in enumerate(request.chunk_sizes)}
        run = Run(rd, chunks, runstate.read(rd))
        warm = self.warm_workers() if pool_dir is not None else {}
        for job_id, tasks in _by_job(warm).items():
            run.record_workers(job_id, tasks, "warm", job_id_of=self.spec.job_id_of)
            for tid in tasks.values():        # running (its heartbeat is fresh) until polled
                run.worker_status[tid] = TaskStatus(JobState.RUNNING, "warm")
        try:
            if pool_dir is not None:
                run.save()                # the warm workers are the run's before they see it
                pool.publish(pool_dir, rd.path)
                self._pool_runs.append(run)
                self._pool_every.append(run)
            if n_workers > len(warm):
                self.submit_workers(run, n_workers - len(warm), reason="initial")
        except BaseException:
            run.set_phase(RunPhase.SUBMIT_FAILED)
            raise
        if warm:
            log.info("%s: run %s taken by %d warm worker(s)", self.name, rd.run_id, len(warm))
        run.set_phase(RunPhase.SUBMITTED)
        self.watch(run)
        return _BatchHandle(rd.run_id, run.futures, self, run)

    # -- warm workers (hpcpar.pool) ---------------------------------------------------------------
    def _pool_folder(self, first_run: Path) -> Path:
        """The executor's pool folder, made (with its driver heartbeat thread) on first use,
        in its first run's folder (so ``hpcpar clean`` of that run removes it too)."""
        with self._lock:
            if self._pool is None:
                self._pool = pool.create(first_run)
                beat = pool.DriverHeartbeat(self._pool)
                beat.start()
                weakref.finalize(self, _close_pool, self._pool, beat)
                self._pool_beat = beat
            return self._pool

    def warm_workers(self) -> dict[str, tuple[int, str]]:
        """Live workers of the executor's earlier runs that may take a new run: array task id
        -> (worker index, job id), for each worker the scheduler last saw live (or has not
        polled) whose heartbeat file in the pool is fresh (``pool.WORKER_STALE_S``)."""
        if self._pool is None:
            return {}
        ended = {t for r in self._pool_runs for t, st in r.worker_status.items()
                 if st is not None and not st.state.is_live}
        out: dict[str, tuple[int, str]] = {}
        keep: list[Run] = []
        for r in self._pool_runs:
            fresh = {t: (w, r.worker_jobs[t]) for w, t in r.workers.items()
                     if t not in ended and r.worker_jobs[t] not in self._cancelled_jobs
                     and pool.worker_fresh(self._pool, w)}
            out.update(fresh)
            if fresh or r.unfinished:
                keep.append(r)
        if self._pool_runs:
            keep = keep or self._pool_runs[-1:]          # keeps the next worker index
        self._pool_runs = keep
        return out

    def watch(self, run: Run) -> None:
        owner = weakref.ref(self)           # a future kept by the user does not keep the backend

        def on_done(f: Future, run: Run = run, c: ChunkState | None = None) -> None:
            backend = owner()
            if f.cancelled() and backend is not None and c is not None:
                backend._watcher_for().cancel_later(run, c)

        for c in run.chunks.values():
            c.future.add_done_callback(functools.partial(on_done, run=run, c=c))
        _signals.register(self)
        self._watcher_for().add(run, self)

    def _watcher_for(self) -> Watcher:
        with self._lock:
            if self._watcher is None or not self._watcher.is_alive():
                self._watcher = Watcher(self)
                self._watcher.start()
            return self._watcher

    # -- the watcher's port (hpcpar.watcher.WatchPort): poll, resubmit, cancel -----------------
    def poll(self, job_ids: Sequence[str]) -> dict[str, TaskStatus]:
        """Every array task of ``job_ids``, from one status call.

        Raises
        ------
        StatusError
            The status command failed (other than saying the jobs are gone) or timed out.
        """
        argv = self.spec.status_argv(job_ids)
        try:
            proc = self.run_cmd(argv, check=False)
        except SubmissionError as exc:                    # timed out
            raise StatusError(exc.argv, exc.returncode, exc.stderr, exc.stdout) from exc
        if proc.returncode != 0:
            if self.spec.status_failed_means_gone(proc.stderr):
                return {}
            raise StatusError(argv, proc.returncode, proc.stderr, proc.stdout)
        return self.spec.parse_status(proc.stdout)

    def final_states(self, task_ids: Sequence[str]) -> dict[str, TaskStatus]:
        """Final states from accounting (sacct), one call, when the scheduler has it; else
        from the scheduler's job record (``scontrol show job``), one call per job."""
        if not task_ids:
            return {}
        if not self.probe().get("accounting"):
            return self.job_records(task_ids)
        argv = self.spec.final_status_argv(task_ids)
        if not argv:
            return {}
        proc = self.run_cmd(argv, check=False)
        if proc.returncode != 0:
            log.warning("%s: %s exited %d: %s", self.name, argv[0], proc.returncode, proc.stderr.strip())
            return {}
        return self.spec.parse_final_status(proc.stdout)

    def job_records(self, task_ids: Sequence[str]) -> dict[str, TaskStatus]:
        """Final states and exit codes from the scheduler's own job record (no accounting):
        one call per job; {} where the spec has none or the job is forgotten."""
        out: dict[str, TaskStatus] = {}
        for job in dict.fromkeys(self.spec.job_id_of(t) for t in task_ids):
            argv = self.spec.job_record_argv(job)
            if not argv:
                return out
            try:
                proc = self.run_cmd(argv, check=False)
            except HpcparError as exc:
                log.warning("%s: %s", self.name, exc)
                continue
            if proc.returncode == 0:
                out.update(self.spec.parse_job_record(proc.stdout))
        return out

    def resubmit(self, run: Run, indices: list[int], reason: str) -> None:
        """Push runs: submit ``indices`` again. Pull runs: void the dead owners' claims of
        ``indices`` (the chunks go back to the pool), then submit workers only if no live
        one remains to take them."""
        if not run.pull:
            self.submit_chunks(run, indices, reason)
            return
        lost_by = ""
        idle = reason == "refill" and run.claims_seen <= run.claims_at_submit
        for i in indices:
            c = run.chunks[i]
            c.retries += idle            # the last workers ended without claiming anything
            if reason != "refill" and c.claim is not None and not c.claim.voided:
                claims.void(run.rd.path, i, c.claim.generation)
                c.claim = dataclasses.replace(c.claim, voided=True)
                c.retries += reason == "retry"
                c.done_at_submit = c.partial.done if c.partial else 0
                lost_by = lost_by or c.job_id or ""
            c.status, c.final_since, c.task_id, c.job_id = None, None, None, None
        if run.meta.get("pool"):         # (the run's own pool: also after attach)
            try:                     # warm workers that left the run come back for the chunks
                pool.publish(Path(run.meta["pool"]), run.rd.path)
            except OSError as exc:
                log.warning("cannot publish run %s to the pool: %s", run.rd.run_id, exc)
        if not run.live_workers():
            with run.lock:
                waiting = len(run.unfinished)
            self.submit_workers(run, min(self.slots(), max(1, waiting)), reason, indices)
        elif reason != "refill":
            run.record_workers(lost_by, {}, reason, indices=indices)
            run.save()

    def cancel(self, ids: Sequence[str]) -> None:
        self.cancel_ids(ids)

    def log_stem(self, task_id: str) -> str:
        return self.spec.log_stem(task_id)

    def submit_workers(self, run: Run, n: int, reason: str, chunks: Sequence[int] = ()) -> None:
        """Submit ``n`` pulling workers for ``run`` (array indices continue after the last
        worker's, so each worker's index is unique in the run), for ``chunks`` given back to
        the pool; record them in run.json."""
        first = run.next_worker_index()
        self.submit_chunks(run, list(range(first, first + n)), reason, workers=list(chunks))

    def submit_chunks(self, run: Run, indices: list[int], reason: str,
                      workers: list[int] | None = None) -> None:
        """Submit ``indices`` of ``run`` as array job(s); record them in run.json (as pulling
        workers when ``workers`` is a list: the chunks they are submitted for)."""
        probe = self.probe()
        subs = self.spec.submissions(str(run.rd.script_path), indices, self.options.max_running,
                                     probe.get("max_array_size"))
        done_jobs: list[str] = []
        for sub in subs:
            proc = None
            try:
                proc = self.run_cmd(sub.argv, input=sub.stdin)
                task_ids = self.spec.parse_submit(proc.stdout, sub)
                missing = sorted(set(sub.indices) - set(task_ids))
                if missing:
                    raise ValueError(f"no task id for chunk(s) {missing} in {proc.stdout!r}")
            except (SubmissionError, ValueError) as exc:
                if done_jobs and reason == "initial":          # all or nothing
                    self.run_cmd(self.spec.cancel_argv(done_jobs), check=False)
                if isinstance(exc, ValueError) and proc is not None:
                    raise SubmissionError(sub.argv, proc.returncode, proc.stderr, proc.stdout,
                                          reason=f"its output has no job id ({exc})") from exc
                raise
            job_ids = list(dict.fromkeys(self.spec.job_id_of(task_ids[i]) for i in sub.indices))
            done_jobs.extend(job_ids)
            if workers is None:
                run.record_submission(job_ids[0], {i: task_ids[i] for i in sub.indices}, reason,
                                      sub.offset, job_id_of=self.spec.job_id_of)
            else:
                run.record_workers(job_ids[0], {i: task_ids[i] for i in sub.indices}, reason,
                                   sub.offset, job_id_of=self.spec.job_id_of, indices=workers)
                workers = []                  # the chunks are recorded with the first array
            log.info("%s: submitted job %s (%d array tasks, %s) for run %s", self.name,
                     " ".join(job_ids), len(sub.indices), reason, run.rd.run_id)

    def cancel_ids(self, ids: Sequence[str | None]) -> None:
        """One cancel command for these job ids or array task ids; failures are logged."""
        todo = sorted({i for i in ids if i})
        if not todo:
            return
        proc = self.run_cmd(self.spec.cancel_argv(todo), check=False)
        if proc.returncode != 0:
            log.warning("%s: cancel exited %d: %s", self.name, proc.returncode, proc.stderr.strip())

    def cancel_run(self, run: Run) -> None:
        """Cancel every unfinished chunk of ``run``: whole array jobs (their finished tasks are
        unaffected), in one call."""
        with run.lock:
            pending = list(run.unfinished.values())
        if pending:
            try:
                runstate.request_cancel(run.rd)       # a recorded decision: attach honours it
            except OSError as exc:
                log.warning("cannot record the cancel in %s: %s", run.rd.path, exc)
        for c in pending:
            run.cancel_chunk(c)
        workers: list[str | None] = [run.worker_jobs[t] for t in run.live_workers()] if run.pull else []
        self.cancel_ids([c.job_id for c in pending] + workers)
        # those worker jobs are gone: a later run must not adopt them as warm workers before
        # a status poll reports them ended (their pool heartbeats are still fresh)
        self._cancelled_jobs.update(j for j in workers if j)
        try:
            run.settle()
        except OSError as exc:
            log.warning("cannot update %s: %s", run.rd.meta_path, exc)

    def on_driver_signal(self, signame: str) -> None:
        if self.options.detach:
            return
        watcher = self._watcher
        if watcher is None:
            return
        runs = watcher.live_runs()
        if runs:
            log.warning("hpcpar: %s received; cancelling %d run(s)", signame, len(runs))
        for run in runs:
            self.cancel_run(run)
        self._release_pool()

    def shutdown(self, wait: bool = True, cancel: bool = False) -> None:
        """Stop the watcher once no run is live (``wait``: join it), then tell the warm
        workers to exit (the pool's shutdown marker; they see it within ``pool.WAIT_MAX_S``).
        ``cancel``: cancel the live runs first."""
        watcher = self._watcher
        if watcher is None:
            self._release_pool()
            return
        if cancel:
            for run in watcher.live_runs():
                self.cancel_run(run)
        watcher.stop_when_idle()
        if wait:
            watcher.join()
            self._release_pool()
        elif self._pool is not None:      # workers still serve the live runs: release after
            threading.Thread(target=_release_after, args=(watcher, self._release_pool),
                             name="hpcpar-pool-release", daemon=True).start()

    def _release_pool(self) -> None:
        """Tell the warm workers to leave (the shutdown marker) and cancel the workers that
        never started (no heartbeat in the pool: still pending, or gone), so none starts
        after the executor is closed."""
        with self._lock:
            if self._pool is None:
                return
            _close_pool(self._pool, self._pool_beat)
            runs, self._pool_every = self._pool_every, []
            folder = self._pool
        unstarted = [t for r in runs for w, t in r.workers.items()
                     if (r.worker_status.get(t) is None or r.worker_status[t].state.is_live)
                     and not pool.worker_started(folder, w)]
        if unstarted:
            try:
                self.cancel_ids(unstarted)
            except (HpcparError, OSError) as exc:     # at exit: say so, raise nothing
                log.warning("cannot cancel the workers that never started (%s): %s",
                            " ".join(unstarted), exc)


def _by_job(workers: dict[str, tuple[int, str]]) -> dict[str, dict[int, str]]:
    """Warm workers grouped by job id: job id -> {worker index: array task id}."""
    out: dict[str, dict[int, str]] = {}
    for tid, (w, job) in sorted(workers.items(), key=lambda kv: kv[1][0]):
        out.setdefault(job, {})[w] = tid
    return out


def _close_pool(pool_dir: Path, beat: pool.DriverHeartbeat | None) -> None:
    if beat is not None:
        beat.stop()
    pool.request_shutdown(pool_dir)


def _release_after(watcher: Watcher, release) -> None:
    watcher.join()
    release()


class _BatchHandle(RunHandle):
    def __init__(self, run_id, futures, backend: BatchBackend, run: Run):
        super().__init__(run_id, futures)
        self.backend = backend
        self.run = run

    def cancel(self) -> None:
        if not self.done():
            self.backend.cancel_run(self.run)

    def describe_unfinished(self) -> str:
        with self.run.lock:
            statuses = [c.status for c in self.run.unfinished.values()]
        return describe_statuses(statuses)


def describe_statuses(statuses) -> str:
    """Array tasks counted by state and pending reason: ``"PENDING (BeginTime): 2, RUNNING: 1"``.

    ``statuses`` are :class:`~hpcpar.backends.spec.TaskStatus` (None: not polled yet, shown as
    PENDING).
    """
    counts: dict[str, int] = {}
    for st in statuses:
        name = "PENDING" if st is None else (st.native or st.state.name)
        reason = getattr(st, "reason", "")
        key = f"{name} ({reason})" if reason else name
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
