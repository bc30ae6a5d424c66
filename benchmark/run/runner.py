"""Executing one run: ``execute_run(config, options)`` trains a strategy on every step of its
stream, evaluates after each step and returns the run's record. It writes no record, so a remote
worker can run it and send the record back (``benchmark.run.grid`` drives whole experiments);
the only files it writes are those ``options`` ask for where it executes (``ExecOptions``:
per-step checkpoints it resumes from, the final model, loggers' files; see
``benchmark.run.artifacts`` and ``benchmark.run.loggers``).

``execute_runs(config, options, companions)`` also evaluates *companions*: runs of strategies
that share the trained strategy's training by definition (``StrategySpec.trained_as``:
``pnc-oracle`` evaluates PNC's own modules, told the true step), each with its own record,
equal to what its separate run gives apart from timings (the runner seeds every strategy of a
seed alike, so the separate run trains exactly these modules).

What a run is handed before it trains (its data, sources and pre-trained target) is set up by
``benchmark.run.protocol``, whose ``prepare_sources`` trains those networks ahead of the runs,
so that backends with worker processes train each once per grid and hand it to every run that
needs it (``ExecOptions.preloaded``).
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import resource
import socket
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from benchmark.core.errors import DivergenceError, UsageError
from benchmark.core.training import TrainSettings
from benchmark.data import get_stream
from benchmark.run.artifacts import RunCheckpoints, save_model
from benchmark.run.evaluate import StepEvaluation, predict
from benchmark.run.loggers import close_evaluator, make_evaluator, named_stream
from benchmark.run.plan import ExecOptions, RunConfig
from benchmark.run.progress import progress_bar
from benchmark.run.protocol import identity, model_maker, run_setting, source_provider
from benchmark.run.sources import (
    cache_key,
    preload,
    pretrained_target,
    provider_costs,
)
from benchmark.run.store import SCHEMA
from strategies import StrategyContext, get_strategy
from strategies.base import count_parameters

# Per-step costs of a record, and the source provider's per-step bookkeeping, both carried by
# a checkpoint.
STEP_COSTS = ("seconds", "peak_memory_mb", "parameters", "trainable_parameters", "model_bytes",
              "state_bytes")
SOURCE_BOOKS = ("seconds", "cached", "train_seconds")


def environment(device: str) -> dict:
    """Library versions, device and host of a run."""
    import avalanche
    import torchvision

    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "avalanche": avalanche.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    return env


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def empty_record(cfg: RunConfig, status: str, error: Optional[str], env: dict) -> dict:
    """A record skeleton: identity, status and environment, no results yet."""
    return {
        "schema": SCHEMA, "key": cfg.key, "status": status, "error": error,
        "config": cfg.as_dict(), "classes_per_step": [], "accuracy_matrix": [],
        "step_locality": [], "original_locality": None, "metrics": {}, "costs": {},
        "environment": env,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def failure_reason(err: Exception) -> str:
    """The ``error`` of a failed run's record: divergence, out of memory, or the exception and
    where it was raised."""
    if isinstance(err, DivergenceError):
        return f"diverged: {err}"
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return "out of memory on the GPU"
    if isinstance(err, MemoryError):
        return "out of memory"
    tb = traceback.extract_tb(err.__traceback__)[-1]
    return f"{type(err).__name__}: {err} (at {Path(tb.filename).name}:{tb.lineno})"


def execute_run(cfg: RunConfig, options: ExecOptions = ExecOptions()) -> dict:
    """One run, start to end; returns its record (status ``failed`` with the reason on error).

    A UsageError (missing data, say) is raised, not recorded: the plan checks the input before
    any run starts.
    """
    return execute_runs(cfg, options)[0]


def execute_runs(cfg: RunConfig, options: ExecOptions = ExecOptions(),
                 companions: Sequence[RunConfig] = ()) -> list[dict]:
    """The record of run ``cfg`` and of each of its ``companions`` (module docstring), in that
    order; a failure of the run is each companion's failure too."""
    started = time.perf_counter()
    facts: dict = {}
    preload(options.preloaded)
    try:
        bodies = _execute(cfg, options, facts, list(companions))
        status, error = "ok", None
    except UsageError:
        raise
    except Exception as err:  # a failing run is recorded, the grid goes on
        bodies, status, error = None, "failed", failure_reason(err)
    env = environment(cfg.device)
    env.update(facts)
    records = []
    for i, run in enumerate([cfg, *companions]):
        record = empty_record(run, status, error, dict(env))
        if bodies is not None:
            record.update(bodies[i])
        if i:
            record["environment"]["evaluated_with"] = cfg.key
        record["costs"]["total_seconds"] = time.perf_counter() - started
        records.append(record)
    return records


def _execute(cfg: RunConfig, options: ExecOptions, facts: dict,
             companions: list[RunConfig]) -> list[dict]:
    data, device, settings, model, theta0 = run_setting(cfg, options)
    target_cost = None
    if data.pretrain is not None:  # the cloning scenario: every strategy starts from it
        target_cost = pretrained_target(
            model, theta0, settings, identity(cfg), data.pretrain, data.decode, data.augment,
            options.expert_dir)
    provider = source_provider(cfg, model_maker(cfg, data), theta0, settings, device,
                                options.expert_dir, data)
    evaluator = make_evaluator(options.loggers, Path(options.log_dir or "logs") / cfg.key)
    ctx = StrategyContext(device=device, train=settings, seed=cfg.seed,
                          num_classes=data.num_classes, source_provider=provider,
                          initial_state=theta0, sample_bytes=data.sample_bytes,
                          memory_bytes=get_stream(cfg.stream).for_options(
                              cfg.stream_options).memory_bytes, evaluator=evaluator)
    # The global RNG is seeded by the seed alone: every strategy of a seed starts alike, so a
    # reference that shares PNC's training (pnc-oracle) builds exactly PNC's modules.
    torch.manual_seed(int(cache_key(seed=cfg.seed), 16) % 2 ** 31)
    spec = get_strategy(cfg.strategy)
    strategy = spec.build(model, ctx, **cfg.hparams)
    views = [CompanionView(get_strategy(c.strategy), strategy) for c in companions]
    try:
        bodies = _train_and_evaluate(cfg, options, data, strategy, provider, facts,
                                     dict(zip((c.key for c in companions), views)))
    finally:
        close_evaluator(evaluator)
    if options.model_dir is not None:
        save_model(strategy.model, Path(options.model_dir) / f"{cfg.key}.pt")
    infos = [spec.info()] + [get_strategy(c.strategy).info() for c in companions]
    for body in bodies:
        if target_cost is not None:
            body["costs"]["pretrained_target"] = target_cost
    return [{"strategy_info": info, **body} for info, body in zip(infos, bodies)]


class CompanionView:
    """A companion's predictions, made from the trained strategy (``spec.cls.logits_of``)."""

    def __init__(self, spec, trained):
        self.spec, self.trained = spec, trained

    def predict_logits(self, x: torch.Tensor, step: Optional[int] = None) -> torch.Tensor:
        return self.spec.cls.logits_of(self.trained, x, step)


def _source_books(provider) -> dict:
    """The provider's per-step bookkeeping (seconds, cache hits), as a checkpoint keeps it."""
    return {name: dict(getattr(provider, name)) for name in SOURCE_BOOKS
            if isinstance(getattr(provider, name, None), dict)}


def _resume(cfg: RunConfig, options: ExecOptions, strategy, provider, checkpoints, n: int,
            companions: Sequence[str]):
    """(evaluations by run key, costs, first step to train) from the run's last checkpoint, or
    None (also when it lacks a companion's evaluation: then the run starts afresh)."""
    saved = checkpoints.latest() if checkpoints is not None else None
    if saved is None:
        return None
    evaluations = {cfg.key: saved["evaluation"], **saved.get("companions", {})}
    if any(key not in evaluations for key in companions):
        return None
    strategy.restore_checkpoint_state(saved["strategy"])
    for name, book in saved["source"].items():
        getattr(provider, name).update(book)
    if not options.quiet:
        print(f"clonebench: run {cfg.key} ({cfg.strategy}, seed {cfg.seed}) resumes after step "
              f"{saved['step']} of {n} from its checkpoint", file=sys.stderr)
    return evaluations, saved["costs"], saved["step"]


def _train_and_evaluate(cfg: RunConfig, options: ExecOptions, data, strategy, provider,
                        facts: dict, views: dict) -> list[dict]:
    """Every step trained and evaluated (after the last checkpointed one, when resuming):
    the record bodies (results and costs) of the run and of each companion (``views``: run key
    -> what predicts for it), in that order. ``facts`` gets ``resumed_after_step`` when
    resuming."""
    device = torch.device(cfg.device)
    settings = TrainSettings(**cfg.train)
    n = data.n_steps
    predictors = {cfg.key: strategy, **views}
    labels = [y.cpu().numpy() for _, y in data.test]
    evaluations = {key: StepEvaluation(labels) for key in predictors}
    costs: dict[str, list] = {name: [] for name in STEP_COSTS}
    checkpoints = None if options.checkpoint_dir is None else RunCheckpoints(
        options.checkpoint_dir, cfg.key, options.checkpoints, options.quiet)
    first = 0
    resumed = _resume(cfg, options, strategy, provider, checkpoints, n, list(views))
    if resumed is not None:
        evaluations, costs, first = resumed
        facts["resumed_after_step"] = first
    seconds, memory, params = costs["seconds"], costs["peak_memory_mb"], costs["parameters"]
    trainable, model_bytes = costs["trainable_parameters"], costs["model_bytes"]
    state_bytes = costs["state_bytes"]
    bar = progress_bar(range(first, n), desc=f"{cfg.strategy} seed {cfg.seed}",
                       enabled=options.show_progress, leave=False)
    experiences = named_stream(data.train_experiences())
    for k in bar:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.synchronize(device)
        source_before = sum(provider.seconds.values()) if provider else 0.0
        start = time.perf_counter()
        strategy.train(experiences[k], eval_streams=[])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        source_spent = (sum(provider.seconds.values()) if provider else 0.0) - source_before
        seconds.append(time.perf_counter() - start - source_spent)
        memory.append(peak_memory_mb(device))
        params.append(count_parameters(strategy.model))
        model_bytes.append(strategy.model_bytes())
        state_bytes.append(strategy.state_bytes())
        report = strategy.step_reports[k] if k < len(strategy.step_reports) else {}
        trainable.append(report.get("trainable_parameters"))
        seen = [c for step in data.classes_per_step[:k + 1] for c in step]
        for key, predictor in predictors.items():
            evaluations[key].add([predict(predictor, data.test[j][0], seen,
                                          settings.eval_batch_size, data.decode, step=j)
                                  for j in range(k + 1)])
        if checkpoints is not None and checkpoints.due(k + 1, n):
            checkpoints.save(k + 1, {"strategy": strategy.checkpoint_state(),
                                     "evaluation": evaluations[cfg.key],
                                     "companions": {key: evaluations[key] for key in views},
                                     "costs": costs, "source": _source_books(provider)})

    steps = [dict(r) for r in strategy.step_reports]
    for report, curve in zip(steps, strategy.loss_curve):
        report["loss_curve"] = curve
    trained = {} if data.train_classes is None else {
        "train_classes_per_step": data.train_classes}
    cost_block = {
        **costs,
        "memory_kind": "cuda_max_allocated" if device.type == "cuda" else "process_max_rss",
        "source": provider_costs(provider, n),
    }
    bodies = [{
        "classes_per_step": data.classes_per_step,
        **trained,
        "sample_bytes": data.sample_bytes,
        **evaluations[key].record(),
        "steps": steps,
        "costs": dict(cost_block),
    } for key in predictors]
    for body in bodies[1:]:  # a companion's sources came from the run's: cached, as they
        body["costs"]["source"] = companion_sources(cost_block["source"])  # would be
    return bodies


def companion_sources(block: Optional[dict]) -> Optional[dict]:
    """A companion's source cost block: the run's, every source it had cached (it trained
    none of them)."""
    if block is None:
        return None
    return {**block, "train_seconds": [None] * len(block["train_seconds"]),
            "cached": [None if c is None else True for c in block["cached"]]}
