"""Executing one run.

``execute_run(config)`` performs one run and returns its record; it writes nothing, so a remote
worker can run it and send the record back (``benchmark.grid`` drives whole experiments).

Evaluation after step k predicts, for every test sample of experiences 1..k, the arg-max of the
model's logits over the classes seen so far (unseen classes are masked: class-incremental, no
task label).
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
from typing import List, Optional

import numpy as np
import torch

from benchmark import metrics
from benchmark.config import RunConfig
from benchmark.errors import DivergenceError, UsageError
from benchmark.models import make_backbone
from benchmark.progress import progress_bar
from benchmark.protocol import CheckpointProvider, ExpertProvider, cache_key, provider_costs
from benchmark.store import SCHEMA
from benchmark.streams import get_stream
from strategies import StrategyContext, TrainSettings, get_strategy
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


@torch.no_grad()
def predict(strategy, x: torch.Tensor, seen: List[int], batch_size: int) -> np.ndarray:
    """Predicted labels: arg-max of the strategy's logits over the ``seen`` classes only."""
    preds = []
    seen_t = torch.tensor(sorted(seen), device=x.device)
    for start in range(0, len(x), batch_size):
        logits = strategy.predict_logits(x[start:start + batch_size])
        preds.append(seen_t[logits[:, seen_t].argmax(dim=1)])
    return torch.cat(preds).cpu().numpy() if preds else np.zeros(0, dtype=np.int64)


def cpu_threads() -> int:
    """Torch CPU threads for a run: ``$CLONEBENCH_THREADS``, default 1.

    One thread is the fastest setting for the small models of the embedded stream, and a grid
    run next to other work (or several Ray tasks on one machine) then does not oversubscribe the
    cores. Raise it for large backbones on a CPU. Recorded in ``environment.torch_threads``.
    """
    text = os.environ.get("CLONEBENCH_THREADS", "1")
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"CLONEBENCH_THREADS={text!r} must be a positive integer")
    return int(text)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build_source_provider(cfg: RunConfig, make_model, theta0, settings, device,
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


def execute_run(cfg: RunConfig, data_root: Optional[str] = None,
                expert_dir: Optional[Path] = None, show_progress: bool = False,
                download: bool = False) -> dict:
    """One run, start to end; returns its record (status ``failed`` with the reason on error).

    Bad configuration raises UsageError before any training (the grid is validated earlier).
    """
    started = time.perf_counter()
    try:
        body = _execute(cfg, data_root, expert_dir, show_progress, download)
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


def _execute(cfg: RunConfig, data_root, expert_dir, show_progress, download) -> dict:
    device = torch.device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    spec = get_stream(cfg.stream)
    data = spec.build(seed=cfg.seed, data_root=data_root, download=download,
                      **cfg.stream_options).to(device)
    settings = TrainSettings(**cfg.train)

    def make_model():
        return make_backbone(cfg.backbone, data.num_classes, data.input_shape, seed=cfg.seed)

    model = make_model().to(device)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    provider = _build_source_provider(cfg, make_model, theta0, settings, device, expert_dir)
    ctx = StrategyContext(device=device, train=settings, seed=cfg.seed,
                          num_classes=data.num_classes, source_provider=provider,
                          initial_state=theta0)
    torch.manual_seed(int(cache_key(seed=cfg.seed, strategy=cfg.strategy), 16) % 2 ** 31)
    strategy = get_strategy(cfg.strategy).build(model, ctx, **cfg.hparams)

    n = data.n_steps
    labels = [y.cpu().numpy() for _, y in data.test]
    sizes = [len(y) for y in labels]
    history: List[List[np.ndarray]] = []
    correct = [[None] * n for _ in range(n)]
    agree: List[Optional[List[int]]] = [None]
    seconds, memory, params, trainable = [], [], [], []
    bar = progress_bar(range(n), desc=f"{cfg.strategy} seed {cfg.seed}", enabled=show_progress,
                       leave=False)
    experiences = data.train_experiences()
    for k in bar:
        exp = experiences[k]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.synchronize(device)
        source_before = sum(provider.seconds.values()) if provider else 0.0
        start = time.perf_counter()
        strategy.train(exp, eval_streams=[])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        source_spent = (sum(provider.seconds.values()) if provider else 0.0) - source_before
        seconds.append(time.perf_counter() - start - source_spent)
        memory.append(_peak_memory_mb(device))
        params.append(count_parameters(strategy.model))
        report = strategy.step_reports[k] if k < len(strategy.step_reports) else {}
        trainable.append(report.get("trainable_parameters"))
        seen = [c for step in data.classes_per_step[:k + 1] for c in step]
        preds = [predict(strategy, data.test[j][0], seen, settings.eval_batch_size)
                 for j in range(k + 1)]
        for j in range(k + 1):
            correct[k][j] = int(np.sum(preds[j] == labels[j]))
        if k > 0:
            agree.append(metrics.agreement_counts(history[-1][:k], preds[:k]))
        history.append(preds)

    acc = metrics.accuracy_matrix(history, labels)
    step_loc = metrics.step_locality(agree, sizes)
    orig_agree = metrics.agreement_counts(history[0][:1], history[-1][:1])[0]
    orig_loc = metrics.original_locality(orig_agree, sizes[0]) if n > 1 else None
    memory_kind = "cuda_max_allocated" if device.type == "cuda" else "process_max_rss"
    return {
        "classes_per_step": data.classes_per_step,
        "test_sizes": sizes,
        "correct_matrix": correct,
        "accuracy_matrix": acc,
        "agreement_counts": agree,
        "original_agreement": orig_agree,
        "step_locality": step_loc,
        "original_locality": orig_loc,
        "metrics": metrics.summarize(acc, correct[-1], sizes, step_loc, orig_loc),
        "steps": [dict(r) for r in strategy.step_reports],
        "costs": {
            "seconds": seconds,
            "peak_memory_mb": memory,
            "memory_kind": memory_kind,
            "parameters": params,
            "trainable_parameters": trainable,
            "source": provider_costs(provider, n),
        },
    }
