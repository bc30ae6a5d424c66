"""Executing one run: ``execute_run(config, options)`` trains a strategy on every step of its
stream, evaluates after each step and returns the run's record. It writes nothing, so a remote
worker can run it and send the record back (``benchmark.run.grid`` drives whole experiments).
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
from benchmark.run.evaluate import StepEvaluation, predict
from benchmark.run.plan import ExecOptions, RunConfig
from benchmark.run.progress import progress_bar
from benchmark.run.sources import (
    CheckpointProvider,
    ExpertProvider,
    cache_key,
    provider_costs,
)
from benchmark.run.store import SCHEMA
from strategies import StrategyContext, get_strategy
from strategies.base import count_parameters


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


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _source_provider(cfg: RunConfig, make_model, theta0, settings, device,
                     cache_dir: Optional[Path]):
    if cfg.source is None:
        return None
    if cfg.source["provider"] == "checkpoint":
        return CheckpointProvider(make_model, cfg.source["path"], device)
    identity = dict(stream=cfg.stream, stream_options=cfg.stream_options, seed=cfg.seed,
                    backbone=cfg.backbone, device=cfg.device)
    return ExpertProvider(make_model, theta0, settings, identity, device, cache_dir)


def empty_record(cfg: RunConfig, status: str, error: Optional[str], env: dict) -> dict:
    """A record skeleton: identity, status and environment, no results yet."""
    return {
        "schema": SCHEMA, "key": cfg.key, "status": status, "error": error,
        "config": cfg.as_dict(), "classes_per_step": [], "accuracy_matrix": [],
        "step_locality": [], "original_locality": None, "metrics": {}, "costs": {},
        "environment": env,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def execute_run(cfg: RunConfig, options: ExecOptions = ExecOptions()) -> dict:
    """One run, start to end; returns its record (status ``failed`` with the reason on error).

    A UsageError (missing data, say) is raised, not recorded: the plan checks the input before
    any run starts.
    """
    started = time.perf_counter()
    try:
        body = _execute(cfg, options)
        status, error = "ok", None
    except UsageError:
        raise
    except DivergenceError as err:
        body, status, error = {}, "failed", f"diverged: {err}"
    except torch.cuda.OutOfMemoryError:
        body, status, error = {}, "failed", "out of memory on the GPU"
    except MemoryError:
        body, status, error = {}, "failed", "out of memory"
    except Exception as err:  # a failing run is recorded, the grid goes on
        tb = traceback.extract_tb(err.__traceback__)[-1]
        body, status, error = {}, "failed", (
            f"{type(err).__name__}: {err} (at {Path(tb.filename).name}:{tb.lineno})")
    record = empty_record(cfg, status, error, environment(cfg.device))
    record.update(body)
    record["costs"]["total_seconds"] = time.perf_counter() - started
    return record


def _execute(cfg: RunConfig, options: ExecOptions) -> dict:
    device = torch.device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(options.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    data = get_stream(cfg.stream).build(seed=cfg.seed, data_root=options.data_root,
                                        download=options.download,
                                        **cfg.stream_options).to(device)
    settings = TrainSettings(**cfg.train)

    def make_model():
        return make_backbone(cfg.backbone, data.num_classes, data.input_shape, seed=cfg.seed)

    model = make_model().to(device)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    provider = _source_provider(cfg, make_model, theta0, settings, device, options.expert_dir)
    ctx = StrategyContext(device=device, train=settings, seed=cfg.seed,
                          num_classes=data.num_classes, source_provider=provider,
                          initial_state=theta0, sample_bytes=data.sample_bytes,
                          memory_bytes=get_stream(cfg.stream).memory_bytes)
    torch.manual_seed(int(cache_key(seed=cfg.seed, strategy=cfg.strategy), 16) % 2 ** 31)
    spec = get_strategy(cfg.strategy)
    strategy = spec.build(model, ctx, **cfg.hparams)

    n = data.n_steps
    evaluation = StepEvaluation([y.cpu().numpy() for _, y in data.test])
    seconds, memory, params, trainable, model_bytes, state_bytes = [], [], [], [], [], []
    bar = progress_bar(range(n), desc=f"{cfg.strategy} seed {cfg.seed}",
                       enabled=options.show_progress, leave=False)
    experiences = data.train_experiences()
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
        memory.append(_peak_memory_mb(device))
        params.append(count_parameters(strategy.model))
        model_bytes.append(strategy.model_bytes())
        state_bytes.append(strategy.state_bytes())
        report = strategy.step_reports[k] if k < len(strategy.step_reports) else {}
        trainable.append(report.get("trainable_parameters"))
        seen = [c for step in data.classes_per_step[:k + 1] for c in step]
        evaluation.add([predict(strategy, data.test[j][0], seen, settings.eval_batch_size,
                                data.decode, step=j) for j in range(k + 1)])

    steps = [dict(r) for r in strategy.step_reports]
    for report, curve in zip(steps, strategy.loss_curve):
        report["loss_curve"] = curve
    return {
        "strategy_info": spec.info(),
        "classes_per_step": data.classes_per_step,
        "sample_bytes": data.sample_bytes,
        **evaluation.record(),
        "steps": steps,
        "costs": {
            "seconds": seconds,
            "peak_memory_mb": memory,
            "memory_kind": "cuda_max_allocated" if device.type == "cuda" else "process_max_rss",
            "parameters": params,
            "trainable_parameters": trainable,
            "model_bytes": model_bytes,
            "state_bytes": state_bytes,
            "source": provider_costs(provider, n),
        },
    }
