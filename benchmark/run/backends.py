"""Backends: how the runs of a grid are executed. A backend is registered by name with its
options; ``load()`` gives ``backend(runs, exec_options, backend_options) -> iterable of records``,
which takes runs from ``runs`` (a ``RunQueue``, or any iterable of ``RunConfig``), executes them
and yields each record when done. The driver alone writes records.

- ``local``: in this process, one run after another; with ``jobs`` > 1, that many runs at once
  in worker processes of this machine (each with the run's thread count). Records are the same
  as one after another's (each run is seeded by its configuration).
- ``ray``: each run a Ray task on a cluster (``benchmark.run.ray_backend``; optional extra).
"""
from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from benchmark.core.options import Option, Registry
from benchmark.run.plan import ExecOptions, RunConfig
from benchmark.run.runner import execute_run

Backend = Callable[[Iterable[RunConfig], ExecOptions, dict[str, Any]], Iterable[dict]]


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend: ``load()`` imports and returns its function."""

    name: str
    summary: str
    load: Callable[[], Backend]
    options: tuple[Option, ...] = ()


def _waiting(runs: Iterable[RunConfig]):
    """``runs``' next run, or None when the queue says the others hold all that remain."""
    take = getattr(runs, "take", None)
    if take is None:
        iterator = iter(runs)
        return lambda: next(iterator, None), lambda: True
    return take, lambda: runs.exhausted


def local_backend(runs: Iterable[RunConfig], exec_options: ExecOptions,
                  backend_options: dict[str, Any]) -> Iterator[dict]:
    """Runs in this process, or ``jobs`` at a time in worker processes."""
    jobs = backend_options.get("jobs") or 1
    if exec_options.batch_seeds:  # seeds trained together where they can be
        from benchmark.run.seed_batch import batched_backend

        yield from batched_backend(runs, exec_options, jobs)
        return
    if jobs == 1:
        for cfg in runs:
            yield execute_run(cfg, exec_options)
        return
    take, exhausted = _waiting(runs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        in_flight = {}
        try:
            while True:
                while len(in_flight) < jobs:
                    cfg = take()
                    if cfg is None:
                        break
                    in_flight[pool.submit(execute_run, cfg, exec_options)] = cfg
                if not in_flight:
                    if exhausted():
                        return
                    runs.wait()
                    continue
                done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                for future in done:
                    in_flight.pop(future)
                    yield future.result()
        finally:
            for future in in_flight:
                future.cancel()


def _load_local() -> Backend:
    return local_backend


def _load_ray() -> Backend:
    from benchmark.run.ray_backend import ray_backend, require_ray

    require_ray()
    return ray_backend


BACKENDS: Registry[BackendSpec] = Registry("backend")
BACKENDS.add(BackendSpec(
    "local", "runs in this process (jobs > 1: that many worker processes)", _load_local,
    (Option("jobs", int, 1, "runs executed at once on this machine", low=1),)))
BACKENDS.add(BackendSpec(
    "ray", "each run a Ray task on a cluster (pip install 'clonebench[ray]')", _load_ray,
    (Option("address", str, None, "address of an existing Ray cluster (default: start a local "
            "instance)", nullable=True),
     Option("max_retries", int, 2, "times a run whose worker dies is retried", low=0),
     Option("cpus_per_run", int, None, "CPUs (and torch threads) per CPU run (default: the "
            "thread count)", low=1, nullable=True))))
