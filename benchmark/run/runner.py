"""Executing one run: ``execute_run(config, options)`` trains a strategy on every step of its
stream, evaluates after each step and returns the run's record. It writes no record, so a remote
worker can run it and send the record back (``benchmark.run.grid`` drives whole experiments);
the only files it writes are those ``options`` ask for where it executes (``ExecOptions``:
per-step checkpoints it resumes from, the final model, loggers' files; see
``benchmark.run.artifacts`` and ``benchmark.run.loggers``).
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
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from benchmark.core.errors import DivergenceError, UsageError
from benchmark.core.models import make_backbone
from benchmark.core.training import TrainSettings
from benchmark.data import get_stream
from benchmark.data.base import validation_split
from benchmark.run.artifacts import RunCheckpoints, save_model
from benchmark.run.evaluate import StepEvaluation, predict
from benchmark.run.loggers import close_evaluator, make_evaluator, named_stream
from benchmark.run.plan import ExecOptions, RunConfig
from benchmark.run.progress import progress_bar
from benchmark.run.sources import (
    CheckpointProvider,
    ExpertProvider,
    PretrainedProvider,
    cache_key,
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


def _source_provider(cfg: RunConfig, make_model, theta0, settings, device,
                     cache_dir: Optional[Path], experiences: list):
    if cfg.source is None:
        return None
    if cfg.source["provider"] == "checkpoint":
        return CheckpointProvider(make_model, cfg.source["path"], device)
    identity = dict(stream=cfg.stream, stream_options=cfg.stream_options, seed=cfg.seed,
                    backbone=cfg.backbone, device=cfg.device, evaluation=cfg.evaluation,
                    data_version=cfg.data_version)
    if cfg.source["provider"] == "pretrained":
        return PretrainedProvider(make_model, theta0, settings, identity, device, experiences,
                                  cache_dir)
    return ExpertProvider(make_model, theta0, settings, identity, device, cache_dir)


def prepare_torch(cfg: RunConfig, options: ExecOptions) -> torch.device:
    """The run's device, with torch's CPU threads and deterministic flags set for it."""
    device = torch.device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(options.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return device


def run_data(cfg: RunConfig, options: ExecOptions):
    """The run's stream data on its device (a validation split for tuning runs)."""
    data = get_stream(cfg.stream).build(seed=cfg.seed, data_root=options.data_root,
                                        download=options.download, **cfg.stream_options)
    if cfg.evaluation is not None:  # tuning: the test split is never read
        data = validation_split(data, cfg.evaluation["fraction"], cfg.seed)
    return data.to(torch.device(cfg.device))


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
    started = time.perf_counter()
    facts: dict = {}
    try:
        body = _execute(cfg, options, facts)
        status, error = "ok", None
    except UsageError:
        raise
    except Exception as err:  # a failing run is recorded, the grid goes on
        body, status, error = {}, "failed", failure_reason(err)
    env = environment(cfg.device)
    env.update(facts)
    record = empty_record(cfg, status, error, env)
    record.update(body)
    record["costs"]["total_seconds"] = time.perf_counter() - started
    return record


def _execute(cfg: RunConfig, options: ExecOptions, facts: dict) -> dict:
    device = prepare_torch(cfg, options)
    data = run_data(cfg, options)
    settings = TrainSettings(**cfg.train)

    def make_model():
        return make_backbone(cfg.backbone, data.num_classes, data.input_shape, seed=cfg.seed)

    model = make_model().to(device)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    provider = _source_provider(cfg, make_model, theta0, settings, device, options.expert_dir,
                                data.train_experiences())
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
    try:
        body = _train_and_evaluate(cfg, options, data, strategy, provider, facts)
    finally:
        close_evaluator(evaluator)
    if options.model_dir is not None:
        save_model(strategy.model, Path(options.model_dir) / f"{cfg.key}.pt")
    return {"strategy_info": spec.info(), **body}


def _source_books(provider) -> dict:
    """The provider's per-step bookkeeping (seconds, cache hits), as a checkpoint keeps it."""
    return {name: dict(getattr(provider, name)) for name in SOURCE_BOOKS
            if isinstance(getattr(provider, name, None), dict)}


def _resume(cfg: RunConfig, options: ExecOptions, strategy, provider, checkpoints, n: int):
    """(evaluation, costs, first step to train) from the run's last checkpoint, or None."""
    saved = checkpoints.latest() if checkpoints is not None else None
    if saved is None:
        return None
    strategy.restore_checkpoint_state(saved["strategy"])
    for name, book in saved["source"].items():
        getattr(provider, name).update(book)
    if not options.quiet:
        print(f"clonebench: run {cfg.key} ({cfg.strategy}, seed {cfg.seed}) resumes after step "
              f"{saved['step']} of {n} from its checkpoint", file=sys.stderr)
    return saved["evaluation"], saved["costs"], saved["step"]


def _train_and_evaluate(cfg: RunConfig, options: ExecOptions, data, strategy, provider,
                        facts: dict) -> dict:
    """Every step trained and evaluated (after the last checkpointed one, when resuming):
    the record's results and costs. ``facts`` gets ``resumed_after_step`` when resuming."""
    device = torch.device(cfg.device)
    settings = TrainSettings(**cfg.train)
    n = data.n_steps
    evaluation = StepEvaluation([y.cpu().numpy() for _, y in data.test])
    costs: dict[str, list] = {name: [] for name in STEP_COSTS}
    checkpoints = None if options.checkpoint_dir is None else RunCheckpoints(
        options.checkpoint_dir, cfg.key, options.checkpoints, options.quiet)
    first = 0
    resumed = _resume(cfg, options, strategy, provider, checkpoints, n)
    if resumed is not None:
        evaluation, costs, first = resumed
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
        evaluation.add([predict(strategy, data.test[j][0], seen, settings.eval_batch_size,
                                data.decode, step=j) for j in range(k + 1)])
        if checkpoints is not None and checkpoints.due(k + 1, n):
            checkpoints.save(k + 1, {"strategy": strategy.checkpoint_state(),
                                     "evaluation": evaluation, "costs": costs,
                                     "source": _source_books(provider)})

    steps = [dict(r) for r in strategy.step_reports]
    for report, curve in zip(steps, strategy.loss_curve):
        report["loss_curve"] = curve
    return {
        "classes_per_step": data.classes_per_step,
        "sample_bytes": data.sample_bytes,
        **evaluation.record(),
        "steps": steps,
        "costs": {
            **costs,
            "memory_kind": "cuda_max_allocated" if device.type == "cuda" else "process_max_rss",
            "source": provider_costs(provider, n),
        },
    }
