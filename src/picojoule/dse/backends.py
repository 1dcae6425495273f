"""Where designs are evaluated: a local process pool (default) or a Ray cluster.

Public: `Job`, `Outcome`, `Backend`, `LocalBackend`, `RayBackend`, `make_backend`.

Both backends take a picklable `Job` - a callable from a design's parameter dict to an
`Outcome` - ship it to each worker once, send designs in small batches, and yield outcomes as
batches finish, so the caller can commit every finished point before the next one arrives.
A job is a pure function of the design, so the two backends return identical numbers; only
the order in which batches arrive differs.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol

from picojoule.dse.errors import BackendError

__all__ = [
    "Job",
    "Outcome",
    "Backend",
    "LocalBackend",
    "RayBackend",
    "make_backend",
    "check_address",
]

# (metrics, error): metrics is None exactly when the design could not be evaluated.
Outcome = tuple[dict[str, Any] | None, str | None]
Job = Callable[[dict[str, Any]], Outcome]
Batch = list[tuple[str, dict[str, Any]]]  # (design key, parameters)
Results = list[tuple[str, Outcome]]


class Backend(Protocol):
    name: str
    workers: int

    def run(self, items: Sequence[tuple[str, dict[str, Any]]]) -> Iterator[Results]:
        """Evaluate `(key, design)` pairs; yield each batch's `(key, outcome)` list as it
        completes."""
        ...

    def close(self) -> None: ...


def _batches(items: Sequence[tuple[str, dict[str, Any]]], workers: int) -> list[Batch]:
    """About four batches per worker (load balance), at most 16 designs each (so a kill
    loses little, and progress is smooth)."""
    size = max(1, min(16, math.ceil(len(items) / (4 * workers))))
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _run_batch(job: Job, batch: Batch) -> Results:
    return [(key, job(design)) for key, design in batch]


# --- local process pool ----------------------------------------------------------------------

_WORKER_JOB: Job | None = None


def _init_worker(job: Job) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job


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
        self._job = job
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("forkserver")
            # The server imports the job's module once; workers fork from it ready to run
            # (a no-op if this process's forkserver is already up).
            ctx.set_forkserver_preload([type(self._job).__module__])
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(self._job,),
            )
        return self._pool

    def run(self, items: Sequence[tuple[str, dict[str, Any]]]) -> Iterator[Results]:
        if not items:
            return
        if self.workers == 1:
            for batch in _batches(items, 1):
                yield _run_batch(self._job, batch)
            return
        pool = self._executor()
        pending: set[Future[Results]] = {
            pool.submit(_pool_batch, b) for b in _batches(items, self.workers)
        }
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


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


class RayBackend:
    """Ray tasks, one per batch. Without `address` a local Ray with `workers` CPUs is started
    (and stopped on `close`); with one, the cluster at that address is joined."""

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
        if self._started:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                kwargs["num_cpus"] = max(1, workers or os.cpu_count() or 1)
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError) as e:
                raise BackendError(f"could not join Ray at {address}: {e}") from None
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._job_ref = ray.put(job)
        self._task = ray.remote(num_cpus=1)(_ray_batch)

    def run(self, items: Sequence[tuple[str, dict[str, Any]]]) -> Iterator[Results]:
        ray = self._ray
        pending = [self._task.remote(self._job_ref, b) for b in _batches(items, self.workers)]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    yield ray.get(ref)
        finally:
            for ref in pending:
                ray.cancel(ref)

    def close(self) -> None:
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
