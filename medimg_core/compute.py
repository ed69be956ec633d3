"""Where medimg's heavy work runs: this process, a local Dask cluster, or a remote one.

This is the only module that knows whether a cluster is in use. Every heavy step (image
features, large-table cleaning, cross-validation fits, bootstrap replicates, batch prediction)
hands its work to :func:`current` as a list of independent tasks::

    from medimg_core import compute

    results = compute.current().map(fit_one_fold, folds, shared={"X": X, "y": y})

The choice is made once, by whoever starts the work:

* nothing set (the default): tasks run in this process, exactly as medimg always has (image
  features may still use a local process pool, see ``workers``);
* ``MEDIMG_SCHEDULER=tcp://host:8786`` or ``medimg --scheduler tcp://host:8786``: tasks go to an
  existing Dask cluster; its workers need medimg installed and must see any file paths given;
* ``local:N``: a Dask ``LocalCluster`` of N worker processes on this machine.

Results never depend on where tasks ran: every task carries its own inputs and seed, task
boundaries never depend on the number of workers, and results are gathered in task order.
A worker that dies mid-run has its tasks run again elsewhere (Dask's own retry).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import math
import multiprocessing
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from medimg_core.errors import Cancelled, ClusterError, ConfigError

__all__ = [
    "JOB_MEMORY_ENV",
    "JOB_WORKERS_ENV",
    "SCHEDULER_ENV",
    "Engine",
    "PolledTask",
    "Scheduler",
    "current",
    "default_workers",
    "job_scheduler",
    "parse_scheduler",
    "pool_forks",
    "running_on",
    "start_job_cluster",
]

SCHEDULER_ENV = "MEDIMG_SCHEDULER"
MAX_LOCAL_WORKERS = 256

T = TypeVar("T")
R = TypeVar("R")

_ADDRESS = re.compile(
    r"^(?P<proto>tcp|tls|ws|wss|inproc)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+)"
    r"(?::(?P<port>\d{1,5}))?/?$"
)
_BARE = re.compile(r"^(?P<host>[A-Za-z0-9_.\-]+):(?P<port>\d{1,5})$")
_HOW = (
    "use tcp://HOST:PORT for a Dask cluster, local:N for N worker processes on this machine, "
    "or leave it empty to run in this process"
)


@dataclass(frozen=True)
class Scheduler:
    """Where heavy work runs.

    Attributes
    ----------
    address : a Dask scheduler address (``tcp://host:8786``), or None.
    local_workers : N for ``local:N`` (a ``LocalCluster`` started by medimg), or None.
    Both None: this process (the default).
    """

    address: str | None = None
    local_workers: int | None = None

    @property
    def kind(self) -> str:
        """``"inline"``, ``"local"`` or ``"cluster"``."""
        if self.address is not None:
            return "cluster"
        return "local" if self.local_workers is not None else "inline"

    @property
    def distributed(self) -> bool:
        return self.kind != "inline"

    def describe(self) -> str:
        """One line for pages, notes and model cards."""
        if self.address is not None:
            return f"the Dask cluster at {self.address}"
        if self.local_workers is not None:
            n = self.local_workers
            return f"a local Dask cluster of {n} worker process{'es' if n != 1 else ''}"
        return "this process"

    def __str__(self) -> str:
        if self.address is not None:
            return self.address
        if self.local_workers is not None:
            return f"local:{self.local_workers}"
        return ""


INLINE = Scheduler()


def parse_scheduler(text: str | None) -> Scheduler:
    """Read ``--scheduler`` / ``MEDIMG_SCHEDULER``.

    Accepts an empty value (this process), ``local`` (one worker per core), ``local:N`` and a
    Dask address (``tcp://host:port``; a bare ``host:port`` means tcp).

    Raises
    ------
    ConfigError
        When the value is none of these; the message says what is accepted.
    """
    value = (text or "").strip()
    if value.lower() in ("", "none", "inline", "off"):
        return INLINE
    if value.lower() == "local":
        return Scheduler(local_workers=default_workers())
    if value.lower().startswith("local:"):
        count = value.split(":", 1)[1].strip()
        if not count.isdigit() or not 1 <= int(count) <= MAX_LOCAL_WORKERS:
            raise ConfigError(
                f"Scheduler {value!r}: local:N needs a whole number of workers from 1 to "
                f"{MAX_LOCAL_WORKERS}, e.g. local:2."
            )
        return Scheduler(local_workers=int(count))
    match = _ADDRESS.match(value) or _BARE.match(value)
    if match is None or (match["port"] is not None and not 0 < int(match["port"]) < 65536):
        raise ConfigError(f"Scheduler {value!r} is not a scheduler address: {_HOW}.")
    if "://" not in value:
        value = f"tcp://{value}"
    return Scheduler(address=value.rstrip("/"))


def default_workers() -> int:
    """The cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def pool_forks() -> bool:
    """Whether a local pool started now would fork: on Linux, in a single-threaded process.

    Forked workers start at once with everything imported and inherit the map's inputs; other
    start methods import medimg afresh in every worker, which only pays for long tasks.
    """
    methods = multiprocessing.get_all_start_methods()
    return sys.platform.startswith("linux") and "fork" in methods and threading.active_count() == 1


def _pool_context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    if pool_forks():
        # A single-threaded process (command line, scripts, benchmarks) forks safely: workers
        # start at once with everything already imported and need no __main__ guard.
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        # Threaded hosts (Streamlit) must not fork: workers come from a fork server that has
        # already imported medimg's task code, so each still starts fast.
        ctx = multiprocessing.get_context("forkserver")
        # scikit-image too, which image-feature tasks import on first use: otherwise every
        # worker of every extraction imports it again (0.2-0.4 s of CPU each).
        ctx.set_forkserver_preload(
            [
                "medimg_core.imaging.features",
                "skimage.feature",
                "skimage.transform",
            ]
        )
        return ctx
    return multiprocessing.get_context("spawn")


def _call(fn: Callable[..., R], item: Any, shared: Mapping[str, Any]) -> R:
    return fn(item, **shared)


_worker_shared: dict[str, Any] = {}
"""In a local pool's worker process: the running map's shared inputs (see :func:`_install`)."""


def _install(shared: Mapping[str, Any]) -> None:
    """A local pool worker's initializer: keep the map's shared inputs for all its tasks.

    They reach each worker once (inherited by a forked worker, pickled once otherwise), not
    once per task: a large table is not pickled again for every fold.
    """
    _worker_shared.clear()
    _worker_shared.update(shared)


def _call_installed(fn: Callable[..., R], item: Any) -> R:
    return fn(item, **_worker_shared)


class Engine:
    """Runs lists of independent tasks; see the module docstring.

    Use :func:`current` rather than building one: the engine in force is chosen by whoever
    started the work (:func:`running_on`, ``MEDIMG_SCHEDULER``).
    """

    def __init__(self, scheduler: Scheduler = INLINE, client: Any = None) -> None:
        self.scheduler = scheduler
        self._client = client

    @property
    def distributed(self) -> bool:
        """True when tasks go to a Dask cluster."""
        return self._client is not None

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (for the few Dask-native steps, such as dataframes)."""
        if self._client is None:
            raise RuntimeError("This engine runs in this process; it has no Dask client.")
        return self._client

    def describe(self) -> str:
        if self._client is not None:
            n = len(self._client.scheduler_info(n_workers=-1).get("workers", {}))
            return f"{self.scheduler.describe()} ({n} worker{'s' if n != 1 else ''} now)"
        return self.scheduler.describe()

    def map(
        self,
        fn: Callable[..., R],
        items: Sequence[Any],
        *,
        shared: Mapping[str, Any] | None = None,
        workers: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        name: str | None = None,
        on_result: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        """``[fn(item, **shared) for item in items]``, run where this engine runs.

        Parameters
        ----------
        fn : a module-level function (tasks are sent by reference to worker processes).
        items : one task each; keep them small (paths, index arrays, seeds).
        shared : large inputs every task needs (tables, labels); sent to the cluster once.
        workers : in this process only: above 1, a local pool of that many processes (image
            features); ignored on a cluster, which has its own workers, and inside a Dask
            worker (a daemonic process may not start processes).
        progress : ``progress(done, total)`` as each task finishes (in completion order).
        cancelled : polled as tasks finish; when it returns True the remaining tasks are
            cancelled and :class:`~medimg_core.errors.Cancelled` is raised.
        name : a label for the cluster's dashboard (Dask task-name prefix).
        on_result : ``on_result(index, result)``, called in this process as each task
            finishes and before ``progress`` (progress counted in what tasks did, e.g. images).

        Returns
        -------
        list
            The results in the order of ``items``, whatever order tasks finished in.
        """
        shared = dict(shared or {})
        n = len(items)
        if n == 0:
            return []
        if self._client is not None:
            return self._map_cluster(fn, items, shared, progress, cancelled, name, on_result)
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}; use 1 to run inline.")
        # A daemonic process (a Dask worker running a whole job) may not start a pool: inline.
        daemon = multiprocessing.current_process().daemon
        if workers is not None and workers > 1 and n > 1 and not daemon:
            return self._map_pool(fn, items, shared, workers, progress, cancelled, on_result)
        results: list[R] = []
        for i, item in enumerate(items, start=1):
            if cancelled is not None and cancelled():
                raise Cancelled("Stopped at your request; nothing was saved.")
            results.append(fn(item, **shared))
            if on_result is not None:
                on_result(i - 1, results[-1])
            if progress is not None:
                progress(i, n)
        return results

    def imap(
        self,
        fn: Callable[..., R],
        items: Sequence[Any],
        *,
        shared: Mapping[str, Any] | None = None,
        max_in_flight: int = 4,
        cancelled: Callable[[], bool] | None = None,
        name: str | None = None,
        ordered: bool = False,
    ) -> Iterator[tuple[int, R]]:
        """Like :meth:`map`, but yields ``(index, result)`` as tasks finish, with at most
        ``max_in_flight`` tasks submitted and not yet consumed: memory stays bounded by a few
        tasks' results (batch prediction writes each partition as it arrives).

        ``ordered=True`` yields in item order instead (a task that finishes early waits on
        the cluster, still at most ``max_in_flight`` of them), for consumers that number
        what they write.
        """
        shared = dict(shared or {})
        n = len(items)
        if n == 0:
            return
        if self._client is None:
            for i, item in enumerate(items):
                if cancelled is not None and cancelled():
                    raise Cancelled("Stopped at your request; nothing was saved.")
                yield i, fn(item, **shared)
            return
        from distributed import as_completed

        client = self._client
        inputs = _SharedInputs(client, shared)
        prefix = name or getattr(fn, "__name__", "medimg-task")
        token = _token()

        def submit(i: int, again: bool = False) -> Any:
            return client.submit(
                _call,
                fn,
                items[i],
                inputs.futures(),
                key=f"{prefix}-{_token() if again else token}-{i}",
                pure=False,
            )

        limit = max(1, int(max_in_flight))
        if ordered:
            yield from _imap_ordered(client, submit, n, limit, cancelled)
            return
        first = [submit(i) for i in range(min(limit, n))]
        index = {future.key: i for i, future in enumerate(first)}
        following = min(limit, n)
        queue = as_completed(first, loop=client.loop)
        live = set(first)
        try:
            for future in queue:
                live.discard(future)
                i = index.pop(future.key)
                result = _result(future, functools.partial(submit, i, again=True))
                if following < n:
                    nxt = submit(following)
                    index[nxt.key] = following
                    live.add(nxt)
                    queue.add(nxt)
                    following += 1
                yield i, result
                if cancelled is not None and cancelled() and (live or following < n):
                    raise Cancelled("Stopped at your request; nothing was saved.")
        finally:
            client.cancel([f for f in live if not f.done()])

    def _map_pool(
        self,
        fn: Callable[..., R],
        items: Sequence[Any],
        shared: Mapping[str, Any],
        workers: int,
        progress: Callable[[int, int], None] | None,
        cancelled: Callable[[], bool] | None,
        on_result: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        n = len(items)
        out: dict[int, R] = {}
        # At most two tasks per worker in flight: inputs stay small in the queue and no worker
        # holds more than one task's data at a time.
        with ProcessPoolExecutor(
            max_workers=min(workers, n),
            mp_context=_pool_context(),
            initializer=_install,
            initargs=(shared,),
        ) as pool:
            pending: dict[Future[R], int] = {}

            def drain(until: int) -> None:
                nonlocal pending
                while len(pending) > until:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        i = pending.pop(future)
                        out[i] = future.result()
                        if on_result is not None:
                            on_result(i, out[i])
                        if progress is not None:
                            progress(len(out), n)
                    if cancelled is not None and cancelled():
                        for future in pending:
                            future.cancel()
                        raise Cancelled("Stopped at your request; nothing was saved.")

            for i, item in enumerate(items):
                pending[pool.submit(_call_installed, fn, item)] = i
                drain(2 * workers - 1)
            drain(0)
        return [out[i] for i in range(n)]

    def _map_cluster(
        self,
        fn: Callable[..., R],
        items: Sequence[Any],
        shared: Mapping[str, Any],
        progress: Callable[[int, int], None] | None,
        cancelled: Callable[[], bool] | None,
        name: str | None,
        on_result: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        from distributed import as_completed

        client = self._client
        n = len(items)
        inputs = _SharedInputs(client, shared)
        prefix = name or getattr(fn, "__name__", "medimg-task")

        def submit(i: int) -> Any:
            key = f"{prefix}-{_token()}-{i}"
            return client.submit(_call, fn, items[i], inputs.futures(), key=key, pure=False)

        futures = [submit(i) for i in range(n)]
        index = {future.key: i for i, future in enumerate(futures)}
        out: dict[int, R] = {}
        try:
            for future in as_completed(futures, loop=client.loop):
                i = index[future.key]
                out[i] = _result(future, functools.partial(submit, i))
                if on_result is not None:
                    on_result(i, out[i])
                if progress is not None:
                    progress(len(out), n)
                if cancelled is not None and cancelled() and len(out) < n:
                    raise Cancelled("Stopped at your request; nothing was saved.")
        finally:
            client.cancel([f for f in futures if not f.done()])
        return [out[i] for i in range(n)]


def _imap_ordered(
    client: Any,
    submit: Callable[..., Any],
    n: int,
    limit: int,
    cancelled: Callable[[], bool] | None,
) -> Iterator[tuple[int, Any]]:
    """:meth:`Engine.imap` in item order: ``limit`` tasks ahead of the one awaited."""
    window = [submit(i) for i in range(min(limit, n))]
    following = len(window)
    try:
        for i in range(n):
            result = _result(window.pop(0), functools.partial(submit, i, True))
            if following < n:
                window.append(submit(following))
                following += 1
            yield i, result
            if cancelled is not None and cancelled() and i + 1 < n:
                raise Cancelled("Stopped at your request; nothing was saved.")
    finally:
        client.cancel([f for f in window if not f.done()])


def _scatter(client: Any, shared: Mapping[str, Any]) -> dict[str, Any]:
    # One future per value: scatter() splits a dict or list into one future per entry, and a
    # dict's entries keep the dict's own keys, which a later call would share and release.
    # broadcast: a copy on every worker (each would fetch one for its first task anyway), so a
    # worker that dies mid-run takes no input with it and Dask reruns its tasks elsewhere.
    return {
        key: client.scatter([value], broadcast=True, hash=False)[0] for key, value in shared.items()
    }


class _SharedInputs:
    """A map's shared inputs on the cluster, scattered again when the cluster lost them.

    Dask cannot recompute scattered data: when every worker holding a copy dies (its
    memory manager keeps a single copy once few tasks still need it), the tasks that need it
    are cancelled. They are then submitted again with a fresh copy (see :func:`_result`).
    """

    def __init__(self, client: Any, values: Mapping[str, Any]) -> None:
        self._client = client
        self._values = values
        self._futures = _scatter(client, values)

    def futures(self) -> dict[str, Any]:
        if any(f.status != "finished" for f in self._futures.values()):
            self._futures = _scatter(self._client, self._values)
        return self._futures


_RESUBMITS = 3
"""Times a task whose inputs the cluster lost is submitted again before giving up."""


def _result(future: Any, again: Callable[[], Any] | None = None) -> Any:
    """A task's result. A task the cluster cancelled because it lost its inputs (the workers
    holding them died) is submitted again with ``again()``; a cluster that keeps losing them,
    or a task that killed every worker that ran it, is said in plain words
    (:class:`~medimg_core.errors.ClusterError`)."""
    from distributed import CancelledError
    from distributed.scheduler import KilledWorker

    for attempt in range(_RESUBMITS + 1):
        try:
            return future.result()
        except KilledWorker as exc:
            raise ClusterError(
                f"Every Dask worker that ran task {future.key} died (most often it ran out of "
                "memory); nothing was saved. Give the workers more memory or use smaller "
                "batches, then run it again."
            ) from exc
        except CancelledError as exc:
            if again is None or attempt == _RESUBMITS:
                raise ClusterError(
                    f"The Dask cluster lost the work of task {future.key} (the workers holding "
                    "its inputs left, or the scheduler restarted); nothing was saved. Check the "
                    "cluster's workers and run it again."
                ) from exc
            future = again()
    raise AssertionError("unreachable")  # pragma: no cover


class PolledTask:
    """One task that a server follows by polling (its job manager), not by waiting on it.

    Its ``shared`` inputs go to the cluster as :meth:`Engine.map`'s do (:class:`_SharedInputs`).
    When the cluster cancels the task because it lost them (the workers holding them died,
    most often the one running it), :meth:`resubmit` sends it again with a fresh copy, at most
    ``_RESUBMITS`` times, as :func:`_result` does for a task that is waited on.

    ``submit(inputs, attempt)`` submits the task with ``inputs`` (the scattered futures, by
    name) under a key unique to ``attempt`` (0 for the first) and returns its future.
    """

    def __init__(
        self,
        client: Any,
        submit: Callable[[dict[str, Any], int], Any],
        shared: Mapping[str, Any],
    ) -> None:
        self._submit = submit
        self._inputs = _SharedInputs(client, shared)
        self.attempt = 0
        self.future = submit(self._inputs.futures(), 0)

    def lost(self) -> bool:
        """True when the task ended cancelled although nobody here cancelled it."""
        return bool(self.future.status == "cancelled")

    def resubmit(self) -> bool:
        """Submit the task again (inputs scattered again where lost); False once it was
        submitted again ``_RESUBMITS`` times (the cluster keeps losing it: give up)."""
        if self.attempt >= _RESUBMITS:
            return False
        self.attempt += 1
        self.future = self._submit(self._inputs.futures(), self.attempt)
        return True


def _token() -> str:
    return os.urandom(6).hex()


_active: ContextVar[Engine | None] = ContextVar("medimg_engine", default=None)
_from_env: dict[str, Engine] = {}
_env_lock = threading.Lock()
_INLINE_ENGINE = Engine()


def _inside_worker() -> bool:
    if "distributed" not in sys.modules:
        return False
    try:
        from distributed import get_worker

        get_worker()
    except (ValueError, ImportError):
        return False
    return True


def current() -> Engine:
    """The engine in force: the one :func:`running_on` set, else ``MEDIMG_SCHEDULER``'s.

    Inside a Dask worker this is always this process: a task never starts a cluster of its
    own. ``MEDIMG_SCHEDULER`` is read on first use and its cluster kept for the life of the
    process (a server shares it between sessions).
    """
    engine = _active.get()
    if engine is not None:
        return engine
    spec = parse_scheduler(os.environ.get(SCHEDULER_ENV))
    if not spec.distributed or _inside_worker():
        return _INLINE_ENGINE
    key = str(spec)
    with _env_lock:
        if key not in _from_env:
            _from_env[key] = _start(spec)[0]
        return _from_env[key]


_QUIET_LOCAL_CLUSTER = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    # Dask's default (65536) makes glibc hand freed memory back after every large
    # allocation; model fits and feature extraction allocate and free constantly, and paid
    # for it in CPU (an HGB fold fit 0.28 s instead of 0.125 s). glibc's own default applies.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}


def _start(spec: Scheduler) -> tuple[Engine, Callable[[], None]]:
    if not spec.distributed:
        return _INLINE_ENGINE, lambda: None
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise ConfigError(
            f"Running on {spec.describe()} needs Dask's 'distributed' package: pip install "
            "'distributed'."
        ) from exc
    if spec.address is not None:
        try:
            client = Client(spec.address, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"Could not reach the Dask scheduler at {spec.address} ({exc}). Check the "
                f"address and that 'dask scheduler' is running there, or unset "
                f"{SCHEDULER_ENV} / --scheduler to run in this process."
            ) from exc

        def close_remote() -> None:
            with contextlib.suppress(Exception):
                client.close()

        return Engine(spec, client), close_remote
    assert spec.local_workers is not None
    if "streamlit" in sys.modules:
        # In a Streamlit server __main__ is the app script, which every spawned worker would
        # run again: start the workers as fresh interpreters instead (as the job cluster does).
        return _subprocess_cluster(spec, memory_limit=None)
    import dask

    # medimg shows no Dask dashboard, so its workers need not sample their own stacks for the
    # dashboard's profiler nor time their event loop 50 times a second: on image features this
    # cut the CPU of a worker process by about a quarter (benchmarks/bench_distributed.py).
    with dask.config.set(_QUIET_LOCAL_CLUSTER):
        cluster = LocalCluster(
            n_workers=spec.local_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=40,
        )
    client = Client(cluster, set_as_default=False)

    def close_local() -> None:
        with contextlib.suppress(Exception):
            client.close()
        with contextlib.suppress(Exception):
            cluster.close()

    atexit.register(close_local)
    return Engine(spec, client), close_local


@contextlib.contextmanager
def running_on(scheduler: Scheduler | str | None) -> Iterator[Engine]:
    """Run the heavy steps inside the block on ``scheduler``; connect or start it, and close
    what was started here when the block ends.

    ``None`` keeps whatever is in force (``MEDIMG_SCHEDULER`` or this process).

    Raises
    ------
    ConfigError
        When the scheduler cannot be parsed or reached.
    """
    if scheduler is None:
        yield current()
        return
    spec = scheduler if isinstance(scheduler, Scheduler) else parse_scheduler(scheduler)
    engine, close = _start(spec)
    token = _active.set(engine)
    try:
        yield engine
    finally:
        _active.reset(token)
        close()


JOB_WORKERS_ENV = "MEDIMG_JOB_WORKERS"
JOB_MEMORY_ENV = "MEDIMG_JOB_MEMORY"


def job_scheduler() -> Scheduler:
    """Where the dashboard's jobs run unless an admin chose otherwise.

    The cluster of ``MEDIMG_SCHEDULER`` when it names one; else a local cluster of
    ``MEDIMG_JOB_WORKERS`` worker processes (default two, one on a one-core machine), so that a
    server never runs more heavy jobs at once than its cores can carry.

    Raises
    ------
    ConfigError
        When ``MEDIMG_SCHEDULER`` or ``MEDIMG_JOB_WORKERS`` cannot be read.
    """
    spec = parse_scheduler(os.environ.get(SCHEDULER_ENV))
    if spec.distributed:
        return spec
    text = os.environ.get(JOB_WORKERS_ENV, "").strip()
    if not text:
        return Scheduler(local_workers=min(2, default_workers()))
    if not text.isdigit() or not 1 <= int(text) <= MAX_LOCAL_WORKERS:
        raise ConfigError(
            f"{JOB_WORKERS_ENV}={text!r}: the number of job workers must be a whole number from "
            f"1 to {MAX_LOCAL_WORKERS}, e.g. 2; unset it for the default."
        )
    return Scheduler(local_workers=int(text))


def start_job_cluster(spec: Scheduler) -> tuple[Engine, Callable[[], None]]:
    """Start (``local:N``) or connect (an address) the cluster that runs the dashboard's jobs.

    The cluster of ``MEDIMG_SCHEDULER`` is shared with :func:`current` rather than started
    twice. A local cluster's workers each get a memory limit: ``MEDIMG_JOB_MEMORY`` (e.g.
    ``2GB``), by default this machine's memory / (N + 1), so that N workers at their limit
    still leave a share for the server; a worker above it is restarted by Dask.

    Its scheduler and workers are fresh interpreters (``python -m dask spec``), not processes
    spawned from this one: a spawned process first re-runs the parent's ``__main__`` file,
    which in a Streamlit server is the app script.

    Returns
    -------
    (Engine, close)
        ``close()`` closes what this call started (nothing for a shared cluster).

    Raises
    ------
    ConfigError
        When the scheduler cannot be reached or ``MEDIMG_JOB_MEMORY`` cannot be read.
    """
    if not spec.distributed:
        raise ConfigError(f"Jobs need a Dask cluster: {_HOW.split(', or')[0]}.")
    if spec == parse_scheduler(os.environ.get(SCHEDULER_ENV)):
        return current(), lambda: None
    if spec.local_workers is None:
        return _start(spec)
    from dask.utils import parse_bytes
    from distributed.system import MEMORY_LIMIT

    text = os.environ.get(JOB_MEMORY_ENV, "").strip()
    try:
        limit = parse_bytes(text) if text else int(MEMORY_LIMIT / (spec.local_workers + 1))
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{JOB_MEMORY_ENV}={text!r} is not an amount of memory; write it like 2GB or "
            "1500MB, or unset it for the default."
        ) from exc
    return _subprocess_cluster(spec, memory_limit=int(limit))


def _subprocess_cluster(
    spec: Scheduler, memory_limit: int | None
) -> tuple[Engine, Callable[[], None]]:
    """A local cluster whose scheduler and workers are fresh interpreters (``python -m dask
    spec``) that close themselves when this process is gone (:func:`dask_setup`)."""
    import dask
    from distributed import Client
    from distributed.deploy.subprocess import SubprocessCluster

    assert spec.local_workers is not None
    worker_kwargs: dict[str, Any] = {"preload_nanny": [__name__]}
    if memory_limit is not None:
        worker_kwargs["memory_limit"] = memory_limit
    with dask.config.set(_QUIET_LOCAL_CLUSTER):
        cluster = SubprocessCluster(
            n_workers=spec.local_workers,
            threads_per_worker=1,
            dashboard_address=None,  # type: ignore[arg-type]  # None: no dashboard (its docs)
            scheduler_kwargs={"preload": [__name__]},
            worker_kwargs=worker_kwargs,
            silence_logs=40,
        )
    client = Client(cluster, set_as_default=False)
    # Fresh interpreters take a few seconds to import; describe() should count them.
    with contextlib.suppress(Exception):
        client.wait_for_workers(spec.local_workers, timeout=60)

    def close_local() -> None:
        with contextlib.suppress(Exception):
            client.close()
        with contextlib.suppress(Exception):
            cluster.close()

    atexit.register(close_local)
    return Engine(spec, client), close_local


def dask_setup(server: Any) -> None:
    """Dask's preload hook, run in the job cluster's scheduler and nanny processes: close them
    once the process that started them is gone (a server killed without its exit handlers
    would otherwise leave its cluster running)."""
    from tornado.ioloop import PeriodicCallback

    parent = os.getppid()
    closing: list[asyncio.Future[Any]] = []

    def check() -> None:
        if os.getppid() != parent and not closing:
            closing.append(asyncio.ensure_future(server.close()))

    server.periodic_callbacks["medimg-parent"] = PeriodicCallback(check, 2000)


def chunks(n: int, size: int) -> list[range]:
    """Fixed task boundaries over ``n`` items: ``size`` each (never depends on worker count)."""
    size = max(1, int(size))
    return [range(start, min(n, start + size)) for start in range(0, n, size)]


def chunk_size(n: int, *, target_tasks: int = 64, cap: int = 256) -> int:
    """A task size for ``n`` items that depends on ``n`` only (identical results anywhere)."""
    return max(1, min(cap, math.ceil(n / target_tasks)))
