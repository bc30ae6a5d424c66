"""Backends: how the runs of a grid are executed. A backend is registered by name with its
options; ``load()`` gives ``backend(runs, exec_options, backend_options) -> iterable of records``,
which takes runs from ``runs`` (a ``RunQueue``, or any iterable of ``RunConfig``), executes them
and yields each record when done. The driver alone writes records.

- ``local``: in this process, one run after another; with ``jobs`` > 1, that many runs at once
  in worker processes of this machine (each with the run's thread count), scheduled by
  ``benchmark.run.schedule`` as Ray's tasks are. Records are the same as one after another's
  (each run is seeded by its configuration).
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
from benchmark.run.protocol import prepare_sources
from benchmark.run.queue import POLL_SECONDS, RunGroup, RunQueue
from benchmark.run.runner import execute_runs
from benchmark.run.schedule import schedule, split_prepared, with_networks

Backend = Callable[[Iterable[RunConfig], ExecOptions, dict[str, Any]], Iterable[dict]]


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend: ``load()`` imports and returns its function."""

    name: str
    summary: str
    load: Callable[[], Backend]
    options: tuple[Option, ...] = ()


def local_backend(runs: Iterable[RunConfig], exec_options: ExecOptions,
                  backend_options: dict[str, Any]) -> Iterator[dict]:
    """Runs in this process, or ``jobs`` at a time in worker processes (``schedule``: each
    network a run trains for its protocol is trained once, by a task of its own, and read by
    the runs from the expert cache on disk)."""
    queue = runs if isinstance(runs, RunQueue) else RunQueue(runs)
    jobs = backend_options.get("jobs") or 1
    if exec_options.batch_seeds:  # seeds trained together where they can be
        from benchmark.run.seed_batch import batched_backend

        yield from batched_backend(runs, exec_options, jobs)
        return
    if jobs == 1:
        while not queue.exhausted:
            group = queue.take_group()
            if group is None:
                queue.wait()
                continue
            yield from execute_runs(group.primary, exec_options, group.companions)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as executor:
        yield from schedule(queue, ProcessPool(executor, jobs), exec_options,
                            backend_options.get("poll_seconds") or POLL_SECONDS)


def _prepare_on_disk(cfg: RunConfig, sources: list, options: ExecOptions):
    """A local preparation: the networks go to the expert cache on disk (``expert_dir``), and
    the driver is told only their seconds and uses."""
    _, seconds = split_prepared(prepare_sources(cfg, sources, options))
    return None, seconds


def _group_task(group: RunGroup, options: ExecOptions) -> list[dict]:
    return execute_runs(group.primary, options, group.companions)


class ProcessPool:
    """``jobs`` worker processes of this machine (``schedule``'s ``WorkerPool``)."""

    def __init__(self, executor: ProcessPoolExecutor, jobs: int):
        self.executor, self.jobs = executor, jobs

    def slots(self, cfg: RunConfig) -> int:
        return self.jobs

    def submit_group(self, group, options, networks, credit):
        return self.executor.submit(_group_task, group, with_networks(options, networks, credit))

    def submit_prepare(self, cfg, sources, options):
        return self.executor.submit(_prepare_on_disk, cfg, sources, options)

    def wait(self, handles, timeout):
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        return list(done)

    def outcome(self, handle):
        return handle.result()

    def cancel(self, handle):
        handle.cancel()


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
