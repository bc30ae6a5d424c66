"""Running an experiment's grid of runs through a backend.

``run_experiment`` plans the grid, skips runs already finished (status ``ok``; failed runs are
tried again), and hands the rest to a backend through a ``RunQueue``. The driver alone writes
each record, as soon as the backend returns it, so an interrupted grid (Ctrl-C, ``kill -9``)
loses at most the runs in flight and the same command afterwards completes it. At the end it
rebuilds the tables and report.

Several drivers may work on one results folder at once (``benchmark.run.queue``). Backends are
in ``benchmark.run.backends``.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Optional

from benchmark.core.options import resolve
from benchmark.data import get_stream
from benchmark.run.backends import BACKENDS
from benchmark.run.claims import Claims
from benchmark.run.plan import ExecOptions, Experiment, RunConfig
from benchmark.run.progress import progress_bar
from benchmark.run.queue import POLL_SECONDS, RunQueue
from benchmark.run.store import ResultsStore, atomic_write


def _plan_without_device(exp: Experiment) -> list[RunConfig]:
    """The runs validated on this machine except for the device, which the cluster decides."""
    if exp.device not in ("auto", "cuda"):
        return exp.run_configs()
    return dataclasses.replace(exp, device="cpu").run_configs()


def check_data(configs: list[RunConfig], data_root: Optional[str], download: bool) -> None:
    """Builds each stream that reads a data root once, so that missing or corrupt files stop
    the grid with one line before anything is written (the local backend reads them here
    anyway, and streams keep what they read in memory for the runs)."""
    for name in dict.fromkeys(c.stream for c in configs):
        spec = get_stream(name)
        if spec.needs_data_root:
            cfg = next(c for c in configs if c.stream == name)
            spec.build(seed=cfg.seed, data_root=data_root, download=download,
                       **cfg.stream_options)


def run_experiment(exp: Experiment, out: Path, exec_options: ExecOptions = ExecOptions(),
                   backend: str = "local", backend_options: Optional[dict[str, Any]] = None,
                   force: bool = False, quiet: bool = False, build_report: bool = True,
                   poll_seconds: float = POLL_SECONDS) -> dict:
    """Runs every missing run of ``exp`` into ``out``; returns counts of what happened.

    Counts: ``planned``, ``ok`` and ``failed`` (runs this driver recorded), ``skipped`` (already
    finished, or recorded by another driver meanwhile; ``elsewhere`` counts the latter).
    ``backend_options`` are the backend's declared options (``benchmark.run.backends``).
    """
    out = Path(out)
    spec = BACKENDS.get(backend)
    backend_options = resolve(spec.options, backend_options or {}, backend, "backend")
    run_backend = spec.load()
    configs = _plan_without_device(exp) if backend == "ray" else exp.run_configs()
    if backend != "ray":
        check_data(configs, exec_options.data_root, exec_options.download)
    store = ResultsStore(out).check(create=True)
    finished = store.finished_keys()
    show = not quiet and sys.stderr.isatty()
    exec_options = dataclasses.replace(exec_options, expert_dir=out / "experts",
                                       show_progress=show and backend_options.get("jobs") in
                                       (None, 1))

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr)

    with ExitStack() as stack:
        if backend == "ray":
            from benchmark.run.ray_backend import RaySession

            session = stack.enter_context(RaySession(backend_options["address"]))
            device = session.resolve_device(exp.device)
            configs = [dataclasses.replace(c, device=device) for c in configs]
            backend_options["session"] = session
            backend_options["poll_seconds"] = poll_seconds
            backend_options["cpus_per_run"] = session.cpus_per_run(
                backend_options["cpus_per_run"], exec_options.threads)
        todo = [c for c in configs if force or c.key not in finished]
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "experiment.json", json.dumps(exp.as_dict(), indent=1) + "\n")
        claims = Claims(out)
        claims.start_heartbeat()
        queue = RunQueue(todo, store, claims, poll_seconds, on_wait=say)
        counts = {"planned": len(configs), "skipped": len(configs) - len(todo), "ok": 0,
                  "failed": 0, "elsewhere": 0}
        bar = progress_bar(total=len(todo), desc="runs", enabled=show)
        records = iter(run_backend(queue, exec_options, backend_options))
        try:
            for record in records:
                store.write(record)
                queue.finish(record["key"])
                counts[record["status"]] += 1
                if record["status"] == "failed":
                    cfg = record["config"]
                    say(f"run {record['key']} ({cfg['strategy']}, seed {cfg['seed']}) failed: "
                        f"{record['error']}")
                bar.update(1)
        finally:
            close = getattr(records, "close", None)
            if close is not None:
                close()
            queue.close()
            bar.close()
        counts["elsewhere"] = queue.elsewhere
        counts["skipped"] += queue.elsewhere
    if build_report:
        from benchmark.report.build import build_report as _build

        _build(out, quiet=quiet)
    return counts
