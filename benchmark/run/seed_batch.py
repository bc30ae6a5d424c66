"""Seeds trained together (``ExecOptions.batch_seeds``, ``clonebench run --batch-seeds``; off
by default).

**Groups.** The runs of one configuration that differ only by their seed (same stream and
options, strategy and hyper-parameters, backbone, training settings, device, evaluation split)
form a group (``seed_groups``). A group of two seeds or more of a strategy in
``benchmark.run.seed_strategies.BATCHED`` (finetune, joint, ewc, lwf), without loggers, whose
backbone's BatchNorm layers can be masked, trains in one pass over stacked weights
(``benchmark.run.seed_training``); every other run executes as usual (``execute_run``).

**What stays per seed.** Each seed keeps its own data (class order, split), its theta_0
(``make_backbone(..., seed=cfg.seed)``), its shuffles (a generator seeded with the seed), its
optimizer state; seeds with fewer samples take fewer optimizer steps. After every step each
seed's weights are copied into its own model, evaluated by the same ``predict`` and
``StepEvaluation`` as an ordinary run.

**Records.** Each seed's record has the schema and fields of its ordinary run's, and says it was
trained batched: ``environment.seed_batch`` is the group's size. Its ``costs.seconds`` (per
step) and ``costs.total_seconds`` are the group's wall times divided by the group's size (each
seed's share). Batched groups write no per-step checkpoints and resume from none: an
interrupted group restarts at step 1.

**Equality.** A seed's batched record equals its ordinary run's up to float rounding, not
bitwise: batched matrix products and the masked BatchNorm statistics sum in another order, and
the differences, ~1e-7 per step, grow slowly through training (``tests/test_seed_batch.py``
states the tolerances it checks).

**Speed.** ``clonebench perf --seed-batch`` times both ways side by side; the figures measured
are in docs/streams-and-speed.md.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Optional

import torch

from benchmark.core.errors import UsageError
from benchmark.core.models import make_backbone
from benchmark.core.stacked import stackable
from benchmark.core.training import TrainSettings
from benchmark.run.artifacts import save_model
from benchmark.run.evaluate import StepEvaluation, predict
from benchmark.run.plan import ExecOptions, RunConfig
from benchmark.run.progress import progress_bar
from benchmark.run.protocol import prepare_torch, run_data
from benchmark.run.runner import (
    STEP_COSTS,
    empty_record,
    environment,
    execute_run,
    failure_reason,
    peak_memory_mb,
)
from benchmark.run.seed_strategies import BATCHED
from benchmark.run.seed_training import SeedGroup
from strategies import get_strategy
from strategies.base import count_parameters, module_bytes


def batchable(cfg: RunConfig, options: ExecOptions) -> bool:
    """True for a run whose seeds can train together (see the module docstring)."""
    return (cfg.strategy in BATCHED and cfg.source is None and cfg.scenario is None
            and not options.loggers)


def group_key(cfg: RunConfig) -> str:
    """What the runs of one group share: the configuration without its seed."""
    d = dataclasses.asdict(cfg)
    del d["seed"]
    return json.dumps(d, sort_keys=True)


def seed_groups(configs: Iterable[RunConfig], options: ExecOptions) -> list[list[RunConfig]]:
    """``configs`` cut into groups, in the order of their first run: the batchable runs of one
    configuration together, every other run alone."""
    groups: dict[str, list[RunConfig]] = {}
    for cfg in configs:
        key = group_key(cfg) if batchable(cfg, options) else f"alone:{cfg.key}"
        groups.setdefault(key, []).append(cfg)
    return list(groups.values())


class _Predictor:
    """What ``predict`` reads of a strategy: one seed's model in eval mode."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def predict_logits(self, x: torch.Tensor, step: Optional[int] = None) -> torch.Tensor:
        self.model.eval()
        return self.model(x)


def execute_seed_group(configs: Sequence[RunConfig],
                       options: ExecOptions = ExecOptions()) -> list[dict]:
    """The records of ``configs``, in order: trained together when they form one batchable
    group of two seeds or more, else each by ``execute_run``. A failure of the group's training
    fails every seed's record with its reason; a seed whose loss diverges fails alone."""
    configs = list(configs)
    if len(configs) < 2 or not all(batchable(c, options) for c in configs) \
            or len({group_key(c) for c in configs}) > 1:
        return [execute_run(c, options) for c in configs]
    started = time.perf_counter()
    device = prepare_torch(configs[0], options)
    data = [run_data(cfg, options) for cfg in configs]
    models = [make_backbone(cfg.backbone, d.num_classes, d.input_shape, seed=cfg.seed).to(device)
              for cfg, d in zip(configs, data)]
    if not stackable(models[0]):
        return [execute_run(c, options) for c in configs]
    bodies: list[dict] = [{} for _ in configs]
    try:
        group = SeedGroup([c.seed for c in configs], data, models,
                          TrainSettings(**configs[0].train), device)
        bodies = _train_and_evaluate(configs, options, group)
        errors = group.errors
    except UsageError:
        raise
    except Exception as err:  # the group's records say why, the grid goes on
        errors = [failure_reason(err)] * len(configs)
    share = (time.perf_counter() - started) / len(configs)
    records = []
    for cfg, body, error in zip(configs, bodies, errors):
        env = {**environment(cfg.device), "seed_batch": len(configs)}
        record = empty_record(cfg, "ok" if error is None else "failed", error, env)
        record.update(body if error is None else {})
        record["costs"]["total_seconds"] = share
        records.append(record)
    return records


def _train_and_evaluate(configs: list[RunConfig], options: ExecOptions,
                        group: SeedGroup) -> list[dict]:
    """Every step trained for the whole group and evaluated per seed: each seed's record body
    (as ``benchmark.run.runner`` builds it)."""
    cfg, device, size = configs[0], group.device, group.size
    strategy = BATCHED[cfg.strategy](group, cfg.hparams)
    n = group.data[0].n_steps
    evaluations = [StepEvaluation([y.cpu().numpy() for _, y in d.test]) for d in group.data]
    costs = [{name: [] for name in STEP_COSTS} for _ in configs]
    reports: list[list[dict]] = [[] for _ in configs]
    seeds = f"seeds {group.seeds[0]}..{group.seeds[-1]}"
    for k in progress_bar(range(n), desc=f"{cfg.strategy} {seeds} together",
                          enabled=options.show_progress, leave=False):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        curves = group.train_step(strategy, k)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - start) / size
        group.sync()
        for s, (data, model) in enumerate(zip(group.data, group.models)):
            if group.errors[s] is not None:
                continue
            step_costs = {"seconds": seconds, "peak_memory_mb": peak_memory_mb(device),
                          "parameters": count_parameters(model), "model_bytes":
                          module_bytes(model), "state_bytes": strategy.state_bytes(s, k)}
            report = strategy.step_report(s, k)
            step_costs["trainable_parameters"] = report.get("trainable_parameters")
            for name in STEP_COSTS:
                costs[s][name].append(step_costs[name])
            reports[s].append({**report, "loss_curve": curves[s]})
            seen = [c for step in data.classes_per_step[:k + 1] for c in step]
            evaluations[s].add([predict(_Predictor(model), data.test[j][0], seen,
                                        group.settings.eval_batch_size, data.decode, step=j)
                                for j in range(k + 1)])
    info = get_strategy(cfg.strategy).info()
    bodies = []
    for s, (run, data) in enumerate(zip(configs, group.data)):
        if group.errors[s] is not None:
            bodies.append({})
            continue
        if options.model_dir is not None:
            save_model(group.models[s], Path(options.model_dir) / f"{run.key}.pt")
        bodies.append({
            "strategy_info": info, "classes_per_step": data.classes_per_step,
            "sample_bytes": data.sample_bytes, **evaluations[s].record(), "steps": reports[s],
            "costs": {**costs[s], "source": None, "memory_kind": "cuda_max_allocated"
                      if device.type == "cuda" else "process_max_rss"}})
    return bodies


def _rounds(runs: Iterable[RunConfig]) -> Iterator[list[RunConfig]]:
    """The runs to do, in lists: all of a plain iterable at once; from a ``RunQueue``, every
    run it hands out now (claimed), waiting while other drivers hold the rest."""
    take = getattr(runs, "take", None)
    if take is None:
        yield list(runs)
        return
    while not runs.exhausted:
        taken = list(iter(take, None))
        if taken:
            yield taken
        elif not runs.exhausted:
            runs.wait()


def batched_backend(runs: Iterable[RunConfig], options: ExecOptions,
                    jobs: int = 1) -> Iterator[dict]:
    """The local backend with ``batch_seeds``: the runs it can take now, grouped
    (``seed_groups``), each group executed by ``execute_seed_group`` in this process, or
    ``jobs`` groups at a time in worker processes; yields the records as each group ends."""
    for taken in _rounds(runs):
        groups = seed_groups(taken, options)
        if jobs == 1:
            for group in groups:
                yield from execute_seed_group(group, options)
            continue
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = [pool.submit(execute_seed_group, group, options) for group in groups]
            try:
                for future in as_completed(futures):
                    yield from future.result()
            finally:
                for future in futures:
                    future.cancel()
