"""Where designs are evaluated: a local process pool (default) or a Ray cluster.

Public: `Job`, `Outcome`, `Backend`, `LocalBackend`, `RayBackend`, `make_backend`,
`batch_size`, `check_address`.

Both backends take a picklable `Job` - a callable from a design's parameter dict to an
`Outcome` - ship it to each worker once, and evaluate batches of designs, yielding each
batch's outcomes as it finishes, so the caller can commit every finished point before the next
one arrives. A job is a pure function of the design, so the two backends return identical
numbers; only the order in which batches arrive differs.

Batches are pulled from the caller's iterable lazily, at most `max_inflight` at a time (two per
worker: one running, one queued), so the caller can claim each batch just before it is sent -
which is how two runs on one database split the work (`picojoule.dse.results`).

Stopping: `drain()` hands back batches that finished but were not yet yielded (so an interrupted
run keeps them), and `close(now=True)` kills the workers instead of waiting for their batches.
Pool workers ignore SIGINT (a Ctrl-C reaches the whole process group; the run decides) and die
with the run even when it is killed with SIGKILL (`picojoule.procs`).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol

from picojoule.dse.errors import BackendError
from picojoule.procs import ProcessId, die_with_parent, this_process, watch_owner

__all__ = [
    "Job",
    "Outcome",
    "Backend",
    "LocalBackend",
    "RayBackend",
    "make_backend",
    "batch_size",
    "check_address",
    "ray_memory_plan",
]

# (metrics, error): metrics is None exactly when the design could not be evaluated.
Outcome = tuple[dict[str, Any] | None, str | None]
Job = Callable[[dict[str, Any]], Outcome]
Batch = list[tuple[str, dict[str, Any]]]  # (design key, parameters)
Results = list[tuple[str, Outcome]]


class Backend(Protocol):
    name: str
    workers: int
    max_inflight: int  # batches submitted at once

    def run(self, items: Sequence[tuple[str, dict[str, Any]]]) -> Iterator[Results]:
        """Evaluate `(key, design)` pairs; yield each batch's `(key, outcome)` list as it
        completes."""
        ...

    def run_batches(self, batches: Iterable[Batch]) -> Iterator[Results]:
        """As `run`, on batches pulled lazily from `batches`."""
        ...

    def drain(self) -> list[Results]:
        """Batches that finished but were not yielded (after `run_batches` was interrupted)."""
        ...

    def close(self, *, now: bool = False) -> None: ...


def batch_size(n: int, workers: int) -> int:
    """About four batches per worker (load balance), at most 16 designs each (so a kill
    loses little, and progress is smooth)."""
    return max(1, min(16, math.ceil(n / (4 * workers))))


def _batches(items: Sequence[tuple[str, dict[str, Any]]], workers: int) -> list[Batch]:
    size = batch_size(len(items), workers)
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _run_batch(job: Job, batch: Batch) -> Results:
    return [(key, job(design)) for key, design in batch]


# --- local process pool ----------------------------------------------------------------------

_WORKER_JOB: Job | None = None


def _init_worker(job: Job, owner: ProcessId) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle, not ours
    die_with_parent()  # parent: the forkserver, which itself dies with the run
    watch_owner(owner)  # portable fallback, and covers a forkserver that outlived the run


def _pool_batch(batch: Batch) -> Results:
    assert _WORKER_JOB is not None, "worker started without a job"
    return _run_batch(_WORKER_JOB, batch)


class LocalBackend:
    """A `ProcessPoolExecutor` of `workers` processes (`workers=1`: run in this process).

    Workers come from a forkserver, not a fork of this (threaded) process, so a script that
    calls this needs the usual `if __name__ == "__main__":` guard.
    """

    name = "local"

    def __init__(self, job: Job, *, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.max_inflight = 2 * self.workers
        self._job = job
        self._pool: ProcessPoolExecutor | None = None
        self._inflight: set[Future[Results]] = set()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("forkserver")
            # The server imports the job's module once; workers fork from it ready to run
            # (a no-op if this process's forkserver is already up). The guard makes the
            # server die with this process.
            ctx.set_forkserver_preload(["picojoule._forkserver_guard", type(self._job).__module__])
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(self._job, this_process()),
            )
        return self._pool

    def run(self, items: Sequence[tuple[str, dict[str, Any]]]) -> Iterator[Results]:
        if not items:
            return iter(())
        return self.run_batches(_batches(items, self.workers))

    def run_batches(self, batches: Iterable[Batch]) -> Iterator[Results]:
        if self.workers == 1:
            for batch in batches:
                yield _run_batch(self._job, batch)
            return
        feed = iter(batches)
        pool: ProcessPoolExecutor | None = None
        try:
            while True:
                while len(self._inflight) < self.max_inflight:
                    batch = next(feed, None)
                    if batch is None:
                        break
                    pool = pool or self._executor()
                    self._inflight.add(pool.submit(_pool_batch, batch))
                if not self._inflight:
                    return
                done, _ = wait(self._inflight, return_when=FIRST_COMPLETED)
                for fut in done:
                    self._inflight.discard(fut)
                    yield fut.result()
        finally:
            for fut in self._inflight:
                fut.cancel()

    def drain(self) -> list[Results]:
        out = [
            f.result()
            for f in self._inflight
            if f.done() and not f.cancelled() and f.exception() is None
        ]
        self._inflight.clear()
        return out

    def close(self, *, now: bool = False) -> None:
        pool, self._pool = self._pool, None
        self._inflight.clear()
        if pool is None:
            return
        if now:
            # Do not wait for running batches (up to 16 designs each): kill the workers.
            # (`ProcessPoolExecutor.terminate_workers` arrives in Python 3.14.)
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                p.kill()
            for p in procs:
                p.join(timeout=1.0)
        pool.shutdown(wait=True, cancel_futures=True)


# --- Ray ---------------------------------------------------------------------------------------

_CONNECT_TIMEOUT_S = 5.0


def _ray_batch(job: Job, batch: Batch) -> Results:
    return _run_batch(job, batch)


def check_address(address: str) -> None:
    """Fail fast, with one message, when nothing listens at a Ray address (`ray.init` would
    otherwise retry for a minute and end in a traceback). `auto` is left to Ray."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, sep, port_text = target.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise BackendError(
            f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379 for a cluster "
            "head, or ray://10.0.0.5:10001 for Ray Client)"
        )
    try:
        with socket.create_connection((host, int(port_text)), timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        raise BackendError(
            f"no Ray cluster answers at {address} ({e.strerror or e}); start one with "
            "`ray start --head` there, check the address, or drop --address to start a "
            "local Ray"
        ) from None


def _mem_available() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None off Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


_MiB = 1024 * 1024
_RAY_TASK_MEMORY = 512 * _MiB  # reserved per batch task: a worker's cost model, with margin
_RAY_STORE_SHARE = 0.1  # of available memory, for a local Ray's object store ...
_RAY_STORE_MIN, _RAY_STORE_MAX = 128 * _MiB, 2048 * _MiB  # ... within these bounds
_RAY_OOM_RETRIES = 1  # a task killed for memory is retried once, then the run stops


def ray_memory_plan(workers: int, available: int | None) -> dict[str, int]:
    """Object-store bytes for a local Ray, and the memory each task reserves, so that
    `workers` tasks fit in `available` bytes (None: unknown, Ray's defaults apply)."""
    if available is None:
        return {"task_memory": _RAY_TASK_MEMORY}
    store = int(min(_RAY_STORE_MAX, max(_RAY_STORE_MIN, _RAY_STORE_SHARE * available)))
    per_task = min(_RAY_TASK_MEMORY, max(64 * _MiB, (available - store) // (2 * workers)))
    return {"object_store_memory": store, "task_memory": per_task}


class RayBackend:
    """Ray tasks, one per batch. Without `address` a local Ray with `workers` CPUs is started
    (and stopped on `close`); with one, the cluster at that address is joined.

    Memory is bounded, not left to Ray's OOM killer (which by default retries a killed task
    forever): a local Ray gets an object store of a tenth of the available memory (128 MiB to
    2 GiB) and gives up on a task killed for memory after one retry; every task reserves
    `task_memory` of Ray's `memory` resource, so Ray runs no more at once than fit; and at
    most `max_inflight` batches (two per CPU, fewer if memory holds fewer) are submitted.
    """

    name = "ray"

    def __init__(self, job: Job, *, address: str | None = None, workers: int | None = None):
        try:
            import ray
        except ImportError:
            raise BackendError(
                "--backend ray needs the ray package: pip install 'picojoule[ray]'"
            ) from None
        self._ray = ray
        if address is not None:
            check_address(address)
        self._started = not ray.is_initialized()
        want = max(1, workers or os.cpu_count() or 1)
        plan = ray_memory_plan(want, _mem_available() if address is None else None)
        if self._started:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                kwargs["num_cpus"] = want
                kwargs["_system_config"] = {"task_oom_retries": _RAY_OOM_RETRIES}
                if "object_store_memory" in plan:
                    kwargs["object_store_memory"] = plan["object_store_memory"]
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError) as e:
                raise BackendError(f"could not join Ray at {address}: {e}") from None
        resources = ray.cluster_resources()
        self.workers = max(1, int(resources.get("CPU", 1)))
        self.task_memory = int(plan["task_memory"])
        total_memory = resources.get("memory")
        if total_memory:
            self.task_memory = min(self.task_memory, int(total_memory // self.workers))
        fit = int(total_memory // self.task_memory) if total_memory else self.workers
        self.max_inflight = max(1, min(2 * self.workers, fit))
        self._job_ref = ray.put(job)
        self._task = ray.remote(num_cpus=1, memory=self.task_memory, max_retries=1)(_ray_batch)
        self._pending: list[Any] = []

    def run(self, items: Sequence[tuple[str, dict[str, Any]]]) -> Iterator[Results]:
        return self.run_batches(_batches(items, self.workers))

    def run_batches(self, batches: Iterable[Batch]) -> Iterator[Results]:
        ray = self._ray
        feed = iter(batches)
        try:
            while True:
                while len(self._pending) < self.max_inflight:
                    batch = next(feed, None)
                    if batch is None:
                        break
                    self._pending.append(self._task.remote(self._job_ref, batch))
                if not self._pending:
                    return
                done, self._pending = ray.wait(self._pending, num_returns=1)
                for ref in done:
                    yield self._get(ref)
        finally:
            for ref in self._pending:
                ray.cancel(ref)

    def _get(self, ref: Any) -> Results:
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.OutOfMemoryError as e:
            raise BackendError(
                "Ray killed a worker for lack of memory (and its retry); the points "
                "committed so far are kept - resume with fewer --workers, or on a machine "
                f"with more memory ({str(e).splitlines()[0]})"
            ) from None

    def drain(self) -> list[Results]:
        ray = self._ray
        pending, self._pending = self._pending, []
        if not pending:
            return []
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
        out = []
        for ref in ready:
            try:
                out.append(ray.get(ref, timeout=0))
            except Exception:  # cancelled or failed: nothing to keep
                continue
        return out

    def close(self, *, now: bool = False) -> None:
        for ref in self._pending:
            self._ray.cancel(ref, force=now)
        self._pending = []
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()


def make_backend(
    kind: str, job: Job, *, workers: int | None = None, address: str | None = None
) -> Backend:
    """`local` or `ray`; `address` only makes sense with `ray`."""
    if kind == "local":
        if address is not None:
            raise BackendError("--address names a Ray cluster; add --backend ray")
        return LocalBackend(job, workers=workers)
    if kind == "ray":
        return RayBackend(job, address=address, workers=workers)
    raise BackendError(f"unknown backend {kind!r}; use local or ray")
