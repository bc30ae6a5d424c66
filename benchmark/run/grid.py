"""Running an experiment's grid of runs through a backend.

``run_experiment`` plans the grid and checks everything it will read (names, options, data,
source checkpoints, the results folder) before it writes anything; then it skips runs already
finished (status ``ok``; failed runs are tried again), and hands the rest to a backend through a
``RunQueue``. The driver alone writes each record, as soon as the backend returns it (a failed
rerun of a finished run goes beside its good record, ``benchmark.run.store``), so an
interrupted grid (Ctrl-C, ``kill -9``) loses at most the runs in flight and the same command
afterwards completes it; runs with per-step checkpoints resume after their last one
(``benchmark.run.artifacts``). At the end it rebuilds ``experiment.json`` from all the folder's
records (``benchmark.run.describe``), the tables and the report.

Several drivers may work on one results folder at once (``benchmark.run.queue``). Backends are
in ``benchmark.run.backends``.
"""
from __future__ import annotations

import dataclasses
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from benchmark.core.errors import UsageError
from benchmark.core.options import resolve
from benchmark.data import get_stream
from benchmark.run.artifacts import remove_checkpoints
from benchmark.run.backends import BACKENDS
from benchmark.run.claims import Claims
from benchmark.run.describe import write_description
from benchmark.run.matching import matched_configs
from benchmark.run.plan import ExecOptions, Experiment, RunConfig
from benchmark.run.preflight import check_sources
from benchmark.run.progress import progress_bar
from benchmark.run.queue import POLL_SECONDS, RunQueue
from benchmark.run.store import ResultsStore

CHECKPOINTS, MODELS, LOGS = "checkpoints", "models", "logs"


@dataclass
class GridOutcome:
    """What one ``run_experiment`` did.

    ``ok`` and ``failed`` count the runs this driver recorded; ``skipped`` those already
    finished or recorded by another driver meanwhile (``elsewhere`` counts the latter);
    ``keys`` are every planned run's; ``failures`` holds (config, record file) of each run this
    driver recorded as failed.
    """

    planned: int
    keys: list[str]
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    elsewhere: int = 0
    failures: list[tuple[dict, Path]] = field(default_factory=list)


def _plan_without_device(exp: Experiment) -> list[RunConfig]:
    """The runs validated on this machine except for the device, which the cluster decides."""
    if exp.device not in ("auto", "cuda"):
        return exp.run_configs()
    return dataclasses.replace(exp, device="cpu").run_configs()


def check_data(configs: list[RunConfig], data_root: Optional[str], download: bool) -> None:
    """Builds each stream that reads files once, so that missing or corrupt files stop
    the grid with one line before anything is written (the local backend reads them here
    anyway, and streams keep what they read in memory for the runs)."""
    for name in dict.fromkeys(c.stream for c in configs):
        spec = get_stream(name)
        if spec.reads_files:
            cfg = next(c for c in configs if c.stream == name)
            spec.build(seed=cfg.seed, data_root=data_root, download=download,
                       **cfg.stream_options)


def _with_run_files(exec_options: ExecOptions, out: Path, backend: str,
                    save_models: bool) -> ExecOptions:
    """``exec_options`` with the folders where runs write files (checkpoints, models, logs).

    Runs write them where they execute, so with the Ray backend (no shared disk) asking for
    them is a UsageError, and automatic checkpoints are off."""
    if backend == "ray":
        if exec_options.batch_seeds:
            raise UsageError("--batch-seeds trains a configuration's seeds together in one "
                             "process; use it with --backend local")
        asked = [flag for flag, on in (("--log", bool(exec_options.loggers)),
                                       ("--save-models", save_models),
                                       ("--checkpoints always", exec_options.checkpoints ==
                                        "always")) if on]
        if asked:
            raise UsageError(f"{asked[0]} writes files where each run executes, which the Ray "
                             "backend does not bring back; use it with --backend local")
        return dataclasses.replace(exec_options, checkpoint_dir=None, model_dir=None,
                                   log_dir=None)
    return dataclasses.replace(
        exec_options,
        checkpoint_dir=out / CHECKPOINTS if exec_options.checkpoints != "off" else None,
        model_dir=out / MODELS if save_models else None,
        log_dir=out / LOGS if exec_options.loggers else None)


def run_experiment(exp: Experiment | list[Experiment], out: Path,
                   exec_options: ExecOptions = ExecOptions(), backend: str = "local",
                   backend_options: Optional[dict[str, Any]] = None, force: bool = False,
                   quiet: bool = False, build_report: bool = True,
                   poll_seconds: float = POLL_SECONDS, save_models: bool = False
                   ) -> GridOutcome:
    """Runs every missing run of ``exp`` into ``out``; returns what happened. ``exp`` may be
    a list of experiments (e.g. the trials of ``clonebench tune``), run as one grid: their runs
    share the backend's workers, the experts and the fixed costs.

    ``backend_options`` are the backend's declared options (``benchmark.run.backends``);
    ``save_models`` writes each run's final model under ``out/models/``. Nothing is written
    before the whole input is checked (UsageError otherwise).
    """
    out = Path(out)
    experiments = exp if isinstance(exp, list) else [exp]
    spec = BACKENDS.get(backend)
    backend_options = resolve(spec.options, backend_options or {}, backend, "backend")
    run_backend = spec.load()
    plan = _plan_without_device if backend == "ray" else Experiment.run_configs
    configs = list({c.key: c for e in experiments for c in plan(e)}.values())
    exec_options = _with_run_files(exec_options, out, backend, save_models)
    if backend != "ray":
        check_data(configs, exec_options.data_root, exec_options.download)
        check_sources(configs, exec_options.data_root, exec_options.download)
    store = ResultsStore(out).check(create=True)
    finished = store.finished_keys()
    show = not quiet and sys.stderr.isatty()
    exec_options = dataclasses.replace(exec_options, expert_dir=out / "experts", quiet=quiet,
                                       show_progress=show and backend_options.get("jobs") in
                                       (None, 1))

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr)

    with ExitStack() as stack:
        if backend == "ray":
            from benchmark.run.ray_backend import RaySession

            session = stack.enter_context(RaySession(backend_options["address"]))
            device = session.resolve_device(experiments[0].device)
            configs = [dataclasses.replace(c, device=device) for c in configs]
            backend_options["session"] = session
            backend_options["poll_seconds"] = poll_seconds
            backend_options["cpus_per_run"] = session.cpus_per_run(
                backend_options["cpus_per_run"], exec_options.threads)
        outcome = GridOutcome(planned=len(configs), keys=[c.key for c in configs])
        store.mark()
        try:
            _execute(configs, finished, force, outcome, store, run_backend,
                     exec_options, backend_options, poll_seconds, show, say, out)
            references = {e.matched_to for e in experiments} - {None}
            for reference in sorted(references):
                matched, missing = matched_configs(configs, reference, store.load_all())
                for line in missing:
                    say(f"memory match skipped: {line}")
                outcome.planned += len(matched)
                outcome.keys += [c.key for c in matched]
                _execute(matched, store.finished_keys(), force, outcome, store, run_backend,
                         exec_options, backend_options, poll_seconds, show, say, out)
        finally:
            write_description(out)
    if build_report:
        from benchmark.report.build import build_report as _build

        _build(out, quiet=quiet)
    return outcome


def _execute(configs, finished, force, outcome, store, run_backend, exec_options,
             backend_options, poll_seconds, show, say, out) -> None:
    """Runs the ``configs`` not yet finished through the backend (claiming each first),
    writing each record as it arrives and counting what happened in ``outcome``."""
    todo = [c for c in configs if force or c.key not in finished]
    outcome.skipped += len(configs) - len(todo)
    claims = Claims(out)
    claims.start_heartbeat()
    queue = RunQueue(todo, store, claims, poll_seconds, on_wait=say)
    bar = progress_bar(total=len(todo), desc="runs", enabled=show)
    records = iter(run_backend(queue, exec_options, backend_options))
    try:
        for record in records:
            path = store.write(record)
            remove_checkpoints(out / CHECKPOINTS, record["key"])
            queue.finish(record["key"])
            if record["status"] == "ok":
                outcome.ok += 1
            else:
                outcome.failed += 1
                cfg = record["config"]
                outcome.failures.append((cfg, path))
                say(f"run {record['key']} ({cfg['strategy']}, seed {cfg['seed']}) failed: "
                    f"{record['error']}")
            bar.update(1)
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()
        queue.close()
        bar.close()
    outcome.elsewhere += queue.elsewhere
    outcome.skipped += queue.elsewhere
