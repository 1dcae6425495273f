"""Where a study's recipes run: in this process (`local`) or as Ray tasks (`ray`).

Public: `BACKENDS`, `check_backend`, `ray_results`.

With Ray, the driver (`picojoule.study.runner.run`) keeps the SQLite cache: it looks cached
recipes up first and hands only the missing ones to `ray_results`, which yields each
`(index, RecipeResult)` as its task finishes, so the driver writes it to the cache at once.
Workers never receive the model: they get the task's *factory* (a class or a closure over
importable callables, pickled by Ray's cloudpickle) and build the task once per worker process
(`_TASKS`), checking that its model has the driver's fingerprint. Each recipe runs the same
`_evaluate_recipe` as the local backend (torch seeded with 0), so the numbers are identical.

Resources: one CPU per task, plus one GPU when the cluster has GPUs (so a recipe runs where a
GPU is, one per GPU); at most as many tasks in flight as the cluster can run at once; no
retries (a recipe killed for memory is an error, not a loop). Without `address` a new local
Ray is started on this machine's cores (never one found running; its object store bounded to
`_LOCAL_STORE_BYTES`) and shut down afterwards; with one, that cluster is joined and left
running. Its workers must import picojoule (and a user model's modules) at the same version.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from picojoule.errors import ConfigError, PicojouleError
from picojoule.study.recipes import Recipe

__all__ = ["BACKENDS", "check_backend", "ray_results"]

BACKENDS = ("local", "ray")
_LOCAL_STORE_BYTES = 256 * 1024 * 1024  # results are a few kB; models never go through it


def check_backend(backend: str, address: str | None = None) -> None:
    """One `ConfigError` line for a backend that cannot run, before any work: an unknown
    name, `--address` without `ray`, ray not installed, or nothing listening at `address`."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: use {' or '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise ConfigError(f"--address {address} names a Ray cluster; add --backend ray")
    if backend != "ray":
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--backend ray needs the ray package: pip install 'picojoule[ray]'"
        ) from None
    if address is not None:
        from picojoule.dse.backends import check_address
        from picojoule.dse.errors import BackendError

        try:
            check_address(address)
        except BackendError as e:
            raise ConfigError(f"--address: {e}") from None


# --- worker side -------------------------------------------------------------------------------

_TASKS: dict[str, Any] = {}  # factory digest -> task, built once per worker process


def _worker_task(factory: Callable[[], Any], key: str, version: str) -> Any:
    task = _TASKS.get(key)
    if task is None:
        from picojoule.study.tasks import fingerprint

        task = factory()
        got = fingerprint(task.model())
        if got != version:  # e.g. a worker that trained its own digits CNN
            raise ConfigError(
                f"a Ray worker ({os.uname().nodename}) built model {got}, the driver {version}; "
                "give the workers the same weights (model cache, files, package versions)"
            )
        _TASKS[key] = task
    return task


def _evaluate(factory, key, version, recipe, targets, measured):  # type: ignore[no-untyped-def]
    from picojoule.study.runner import _evaluate_recipe

    return _evaluate_recipe(_worker_task(factory, key, version), recipe, targets, measured)


# --- driver side -------------------------------------------------------------------------------


def _connect(ray: Any, address: str | None) -> bool:
    """Join `address`, or start a bounded local Ray; True when this call started one."""
    if ray.is_initialized():
        return False  # the caller's own Ray (a notebook, a test): used as it is, left running
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is None:
        address = "local"  # a new Ray: None would join one found running (RAY_ADDRESS, /tmp/ray)
        kwargs["logging_level"] = logging.ERROR  # no start-up notices in the study's output
        kwargs["num_cpus"] = _cpus()
        kwargs["object_store_memory"] = _LOCAL_STORE_BYTES
        kwargs["_system_config"] = {"task_oom_retries": 0}
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        why = " ".join(str(e).split())[:300]
        if address == "local":
            raise PicojouleError(f"could not start a local Ray: {why}") from None
        raise PicojouleError(
            f"could not join Ray at {address}: {why} (a cluster with token authentication "
            "needs RAY_AUTH_MODE=token here, and its token: see ray get-auth-token)"
        ) from None
    return True


def _cpus() -> int:
    """The cores this process may use (its affinity), else every core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _task_resources(cluster: dict[str, float]) -> tuple[int, int]:
    """GPUs each recipe task requests (one where the cluster has any) and how many tasks may
    be in flight: as many as run at once (CPUs, and GPUs when they are requested)."""
    cpus, gpus = int(cluster.get("CPU", 1)), int(cluster.get("GPU", 0))
    return (1, max(1, min(cpus, gpus))) if gpus else (0, max(1, cpus))


def _unwrap(ray: Any, e: Exception, recipe: Recipe) -> Exception:
    """The recipe's own error for a task that raised one; one line for a worker that could
    not load its arguments (a module it cannot import) or died."""
    cause = getattr(e, "cause", None)
    if isinstance(e, ray.exceptions.RayTaskError) and isinstance(cause, Exception):
        if not isinstance(cause, ray.exceptions.RayError):
            return cause
        e = cause
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if isinstance(e, ray.exceptions.RaySystemError):  # e.g. unpickling the task's factory
        return PicojouleError(
            f"recipe {recipe.name!r}: a Ray worker could not load the task ({first[:200]}); "
            "the workers must import picojoule and your model's modules at the same versions "
            "(a local Ray's see PYTHONPATH and the working directory)"
        )
    return PicojouleError(
        f"recipe {recipe.name!r}: its Ray worker died ({first[:200]}); finished recipes are "
        "in the cache - run again to resume (on a machine with more memory if it was killed)"
    )


def ray_results(
    factory: Callable[[], Any],
    version: str,
    recipes: Sequence[Recipe],
    targets: Sequence[str],
    measured: dict | None,
    *,
    address: str | None = None,
) -> Iterator[tuple[int, Any]]:
    """Evaluate `recipes` as Ray tasks; yield `(index into recipes, RecipeResult)` as each
    finishes. Closing the generator (an error, Ctrl-C) cancels the tasks still out and shuts
    down a local Ray it started."""
    import ray
    from ray import cloudpickle  # Ray's own: what ray.put pickles the factory with

    check_backend("ray", address)
    started = _connect(ray, address)
    pending: dict[Any, int] = {}
    try:
        num_gpus, limit = _task_resources(ray.cluster_resources())
        remote = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=0)(_evaluate)
        key = hashlib.sha256(cloudpickle.dumps(factory)).hexdigest()[:16] + version
        factory_ref = ray.put(factory)  # shipped once; the task itself is built in the worker
        todo = iter(enumerate(recipes))
        while True:
            while len(pending) < limit and (nxt := next(todo, None)) is not None:
                i, recipe = nxt
                ref = remote.remote(factory_ref, key, version, recipe, tuple(targets), measured)
                pending[ref] = i
            if not pending:
                return
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as e:
                raise _unwrap(ray, e, recipes[i]) from None
            yield i, result
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
