"""Running an experiment's grid of runs through a backend.

``run_experiment`` plans the grid, skips runs already finished (status ``ok``; failed runs are
tried again), executes the rest through a backend and has the driver alone write each record as
soon as it arrives, so an interrupted grid loses at most the runs in flight and the same command
afterwards completes it. At the end it rebuilds the tables and report.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

from benchmark.config import Experiment, RunConfig
from benchmark.errors import UsageError
from benchmark.progress import progress_bar
from benchmark.runner import execute_run
from benchmark.store import ResultsStore, atomic_write_text


Backend = Callable[[List[RunConfig], dict], Iterable[dict]]


def local_backend(configs: List[RunConfig], options: dict) -> Iterable[dict]:
    """Runs one after another in this process, yielding each record when done."""
    for cfg in configs:
        yield execute_run(cfg, options.get("data_root"), options.get("expert_dir"),
                          options.get("show_progress", False), options.get("download", False))


BACKENDS: Dict[str, Backend] = {"local": local_backend}


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``ray`` is imported only when asked for)."""
    if name == "ray" and "ray" not in BACKENDS:
        from benchmark.ray_backend import ray_backend

        BACKENDS["ray"] = ray_backend
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose local or ray")
    return BACKENDS[name]


def run_experiment(exp: Experiment, out: Path, force: bool = False, backend: str = "local",
                   data_root: Optional[str] = None, quiet: bool = False,
                   address: Optional[str] = None, build_report: bool = True,
                   download: bool = False) -> dict:
    """Runs every missing run of ``exp`` into ``out``; returns counts of what happened."""
    out = Path(out)
    configs = exp.run_configs()
    store = ResultsStore(out).check(create=True)
    existing = store.load_all()
    run_backend = get_backend(backend)
    todo = [c for c in configs
            if force or existing.get(c.key, {}).get("status") != "ok"]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "experiment.json", json.dumps(exp.as_dict(), indent=1) + "\n")
    show = not quiet and sys.stderr.isatty()
    options = {"data_root": data_root, "expert_dir": out / "experts", "show_progress": show,
               "address": address, "download": download}
    counts = {"planned": len(configs), "skipped": len(configs) - len(todo), "ok": 0, "failed": 0}
    bar = progress_bar(total=len(todo), desc="runs", enabled=show)
    for record in run_backend(todo, options):
        store.write(record)
        counts[record["status"]] += 1
        if record["status"] == "failed" and not quiet:
            print(f"run {record['key']} ({record['config']['strategy']}, seed "
                  f"{record['config']['seed']}) failed: {record['error']}", file=sys.stderr)
        bar.update(1)
    bar.close()
    if build_report:
        from benchmark.report import build_report as _build

        _build(out, quiet=quiet)
    return counts
