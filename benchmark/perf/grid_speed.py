"""``clonebench perf --grid``: the same small grid of runs with source networks, on the local
backend and on a local Ray instance, side by side in one process.

The grid: ``pnc``, ``pnc-router``, ``pnc-oracle`` and ``weight-fusion`` on ``split-digits``
over ``--grid-seeds`` seeds (default 4), each run in a fresh temporary results folder (nothing
cached from an earlier grid). Local: ``--jobs`` worker processes (default: the machine's CPU
count). Ray: a local instance started for the measurement (as ``--backend ray`` with no
address does, on loopback), with as many CPUs, one CPU per run; its start-up and shut-down are
part of its time. Both schedule through ``benchmark.run.schedule``, so each source network is
trained once per grid; the printed check counts, per backend, how many times each was trained
(from the records' source costs). The ratio Ray / local is the figure to watch (target: at
most 1.3 on one machine).
"""
from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from pathlib import Path

GRID_STRATEGIES = ("pnc", "pnc-router", "pnc-oracle", "weight-fusion")


def trainings(out: Path) -> Counter:
    """How many records report having trained each (seed, step) source."""
    from benchmark.run.store import ResultsStore

    counts: Counter = Counter()
    for record in ResultsStore(out).records():
        source = (record.get("costs") or {}).get("source") or {}
        for step, seconds in enumerate(source.get("train_seconds") or []):
            if seconds is not None:
                counts[(record["config"]["seed"], step)] += 1
    return counts


def run_grid(seeds: int, jobs: int, backend: str) -> tuple[float, Counter, int]:
    """(wall seconds, trainings per source, runs) of the grid on ``backend``."""
    from benchmark.run.grid import run_experiment
    from benchmark.run.plan import ExecOptions, Experiment

    exp = Experiment(strategies=list(GRID_STRATEGIES), seeds=list(range(seeds)), device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "grid"
        options = {"jobs": jobs} if backend == "local" else {"cpus_per_run": 1}
        start = time.perf_counter()
        outcome = run_experiment(exp, out, ExecOptions(), backend=backend,
                                 backend_options=options, quiet=True, build_report=False)
        seconds = time.perf_counter() - start
        return seconds, trainings(out), outcome.ok


def run(args) -> int:
    from benchmark.core.errors import UsageError

    jobs = args.jobs or os.cpu_count() or 1
    if args.grid_seeds < 1 or jobs < 1:
        raise UsageError("--grid-seeds and --jobs must be >= 1")
    from benchmark.run import ray_backend

    ray_backend.require_ray()
    previous = ray_backend.LOCAL_NUM_CPUS
    ray_backend.LOCAL_NUM_CPUS = jobs
    try:
        local = run_grid(args.grid_seeds, jobs, "local")
        ray = run_grid(args.grid_seeds, jobs, "ray")
    finally:
        ray_backend.LOCAL_NUM_CPUS = previous
    print(f"grid: {', '.join(GRID_STRATEGIES)} on split-digits, {args.grid_seeds} seeds; "
          f"{jobs} CPUs for each backend")
    for name, (seconds, counts, ok) in (("local", local), ("ray", ray)):
        most = max(counts.values(), default=0)
        print(f"{name:5s}: {seconds:6.1f} s, {ok} runs ok, {len(counts)} sources, each trained "
              f"at most {most} time(s)")
    print(f"ray / local: {ray[0] / local[0]:.2f} (target: at most 1.3, Ray's start-up "
          "included)")
    return 0
