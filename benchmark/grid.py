"""Running an experiment's grid of runs through a backend.

``run_experiment`` plans the grid, skips runs already finished (status ``ok``; failed runs are
tried again), and hands the rest to a backend through a ``RunQueue``. The driver alone writes
each record, as soon as the backend returns it, so an interrupted grid (Ctrl-C, ``kill -9``)
loses at most the runs in flight and the same command afterwards completes it. At the end it
rebuilds the tables and report.

Several drivers may work on one results folder at once: the queue claims each run before it is
started (``benchmark.claims``), so no run is computed twice at the same time, a run that another
driver records meanwhile is not recomputed, and a driver that runs out of unclaimed runs waits
for the runs the others hold (taking over those whose driver died) before it builds the report.

A backend is ``backend(runs, options) -> iterable of records``: it takes runs from ``runs`` (a
``RunQueue``, or any iterable of ``RunConfig``), executes them and yields each record when done.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional

from benchmark.claims import Claims
from benchmark.config import Experiment, RunConfig
from benchmark.errors import UsageError
from benchmark.progress import progress_bar
from benchmark.runner import cpu_threads, empty_record, environment, execute_run
from benchmark.store import ResultsStore, atomic_write
from benchmark.streams import get_stream

Backend = Callable[[Iterable[RunConfig], dict], Iterable[dict]]
POLL_SECONDS = 1.0


class RunQueue:
    """The runs a driver still has to do, handed out one at a time, each claimed first.

    ``take()`` returns the next run that no other driver holds, claimed for this one, or None
    when every remaining run is held by another driver right now. A run whose record file
    changed since the grid was planned was recorded by another driver: it is dropped and
    counted in ``elsewhere``. Without a store and claims it simply hands out the runs in order.
    """

    def __init__(self, configs: Iterable[RunConfig], store: Optional[ResultsStore] = None,
                 claims: Optional[Claims] = None, poll_seconds: float = POLL_SECONDS,
                 on_wait: Optional[Callable[[str], None]] = None):
        self.pending: List[RunConfig] = list(configs)
        self.store = store
        self.claims = claims
        self.poll_seconds = poll_seconds
        self.on_wait = on_wait
        self.elsewhere = 0
        self._stamps = {c.key: self._stamp(c.key) for c in self.pending}
        self._told_wait = False

    def _stamp(self, key: str):
        if self.store is None:
            return None
        try:
            st = (self.store.runs / f"{key}.json").stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _recorded_elsewhere(self, cfg: RunConfig) -> bool:
        return self._stamp(cfg.key) != self._stamps[cfg.key]

    @property
    def exhausted(self) -> bool:
        """True once every run was handed out or recorded by another driver."""
        return not self.pending

    def take(self) -> Optional[RunConfig]:
        """The next run, now claimed by this driver; None if the others hold all that remain."""
        for cfg in list(self.pending):
            if self._recorded_elsewhere(cfg):
                self._drop_elsewhere(cfg)
                continue
            if self.claims is None:
                self.pending.remove(cfg)
                return cfg
            if not self.claims.acquire(cfg.key):
                continue
            if self._recorded_elsewhere(cfg):  # finished by another driver just before
                self.claims.release(cfg.key)
                self._drop_elsewhere(cfg)
                continue
            self.pending.remove(cfg)
            return cfg
        return None

    def _drop_elsewhere(self, cfg: RunConfig) -> None:
        self.pending.remove(cfg)
        self.elsewhere += 1

    def wait(self) -> None:
        """Sleeps while other drivers hold the remaining runs (says so once)."""
        if not self._told_wait and self.on_wait is not None and self.claims is not None:
            holders = self.claims.holders(c.key for c in self.pending)
            names = sorted({o.describe() for o in holders.values()})
            if names:
                self.on_wait(f"waiting for {len(self.pending)} run(s) claimed by another driver "
                             f"({', '.join(names)}); they are taken over if it dies")
                self._told_wait = True
        time.sleep(self.poll_seconds)

    def finish(self, key: str) -> None:
        """Releases run ``key`` once its record is written."""
        if self.claims is not None:
            self.claims.release(key)

    def close(self) -> None:
        """Releases the claims of runs handed out but not finished (interrupted)."""
        if self.claims is not None:
            self.claims.close()

    def __iter__(self) -> Iterator[RunConfig]:
        """Blocking iteration, for backends that run one run at a time."""
        while not self.exhausted:
            cfg = self.take()
            if cfg is not None:
                yield cfg
            elif not self.exhausted:
                self.wait()


def failed_record(cfg: RunConfig, error: str) -> dict:
    """The record of a run that ended without a result of its own (e.g. its worker died).

    Its environment is the driver's, marked ``recorded_by: driver``.
    """
    env = environment("cpu")
    env.update(device=cfg.device, recorded_by="driver")
    return empty_record(cfg, "failed", error, env)


def local_backend(configs: Iterable[RunConfig], options: dict) -> Iterable[dict]:
    """Runs one after another in this process, yielding each record when done."""
    for cfg in configs:
        yield execute_run(cfg, options.get("data_root"), options.get("expert_dir"),
                          options.get("show_progress", False), options.get("download", False))


BACKENDS: Dict[str, Backend] = {"local": local_backend}


def get_backend(name: str) -> Backend:
    """The backend called ``name``; for ``ray``, UsageError if Ray is not installed."""
    if name == "ray":
        from benchmark.ray_backend import ray_backend, require_ray

        require_ray()
        BACKENDS.setdefault("ray", ray_backend)
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose local or ray")
    return BACKENDS[name]


def _plan_without_device(exp: Experiment) -> List[RunConfig]:
    """The runs validated on this machine except for the device, which the cluster decides."""
    if exp.device not in ("auto", "cuda"):
        return exp.run_configs()
    return dataclasses.replace(exp, device="cpu").run_configs()


def check_data(configs: List[RunConfig], data_root: Optional[str], download: bool) -> None:
    """Builds each stream that reads a data root once, so that missing or corrupt files stop
    the grid with one line before anything is written (the local backend reads them here
    anyway, and streams keep what they read in memory for the runs)."""
    for name in dict.fromkeys(c.stream for c in configs):
        spec = get_stream(name)
        if spec.needs_data_root:
            cfg = next(c for c in configs if c.stream == name)
            spec.build(seed=cfg.seed, data_root=data_root, download=download,
                       **cfg.stream_options)


def run_experiment(exp: Experiment, out: Path, force: bool = False, backend: str = "local",
                   data_root: Optional[str] = None, quiet: bool = False,
                   address: Optional[str] = None, build_report: bool = True,
                   download: bool = False, max_retries: Optional[int] = None,
                   cpus_per_run: Optional[int] = None,
                   poll_seconds: float = POLL_SECONDS) -> dict:
    """Runs every missing run of ``exp`` into ``out``; returns counts of what happened.

    Counts: ``planned``, ``ok`` and ``failed`` (runs this driver recorded), ``skipped`` (already
    finished, or recorded by another driver meanwhile; ``elsewhere`` counts the latter).
    ``max_retries`` and ``cpus_per_run`` apply to the Ray backend (see ``benchmark.ray_backend``).
    """
    out = Path(out)
    if max_retries is not None and (isinstance(max_retries, bool)
                                    or not isinstance(max_retries, int) or max_retries < 0):
        raise UsageError(f"bad max retries {max_retries!r}: expected an integer >= 0")
    run_backend = get_backend(backend)
    configs = _plan_without_device(exp) if backend == "ray" else exp.run_configs()
    if backend == "local":
        cpu_threads()  # a bad $CLONEBENCH_THREADS stops here, not inside the first run
        check_data(configs, data_root, download)
    store = ResultsStore(out).check(create=True)
    finished = store.finished_keys()
    show = not quiet and sys.stderr.isatty()
    options = {"data_root": data_root, "expert_dir": out / "experts", "show_progress": show,
               "address": address, "download": download, "max_retries": max_retries,
               "cpus_per_run": cpus_per_run, "poll_seconds": poll_seconds}

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr)

    with ExitStack() as stack:
        if backend == "ray":
            from benchmark.ray_backend import RaySession

            session = stack.enter_context(RaySession(address))
            device = session.resolve_device(exp.device)
            configs = [dataclasses.replace(c, device=device) for c in configs]
            options["ray_session"] = session
            options["cpus_per_run"] = session.cpus_per_run(cpus_per_run)
        todo = [c for c in configs if force or c.key not in finished]
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "experiment.json", json.dumps(exp.as_dict(), indent=1) + "\n")
        claims = Claims(out)
        claims.start_heartbeat()
        queue = RunQueue(todo, store, claims, poll_seconds, on_wait=say)
        counts = {"planned": len(configs), "skipped": len(configs) - len(todo), "ok": 0,
                  "failed": 0, "elsewhere": 0}
        bar = progress_bar(total=len(todo), desc="runs", enabled=show)
        records = iter(run_backend(queue, options))
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
        from benchmark.report import build_report as _build

        _build(out, quiet=quiet)
    return counts

