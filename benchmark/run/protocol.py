"""What a run is handed before it trains: its device and torch settings, its stream data as
its scenario arranges them, its backbone with theta_0, the source networks of its protocol
(``source_provider``: experts, a pre-trained source, the cloning scenario's model zoo, or the
user's checkpoints) and the cloning scenario's pre-trained target; and ``prepare_sources``,
which trains those networks ahead of the runs that need them (``benchmark.run.schedule``).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import torch

from benchmark.core.models import make_backbone
from benchmark.core.training import TrainSettings
from benchmark.data import get_stream
from benchmark.data.base import validation_split
from benchmark.run.plan import ExecOptions, RunConfig
from benchmark.run.sources import (
    CheckpointProvider,
    ExpertProvider,
    PretrainedProvider,
    ZooProvider,
    pretrained_target,
    recording_trained,
)
from benchmark.scenarios import apply_scenario


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
    """The run's stream data as its scenario arranges it, on its device (a validation split
    for tuning runs: the test split is never read)."""
    data = get_stream(cfg.stream).build(seed=cfg.seed, data_root=options.data_root,
                                        download=options.download, **cfg.stream_options)
    if cfg.evaluation is not None:
        data = validation_split(data, cfg.evaluation["fraction"], cfg.seed)
    return apply_scenario(cfg.scenario, data, cfg.seed).to(torch.device(cfg.device))


def identity(cfg: RunConfig) -> dict:
    """What names a network the suite trains for a run (its sources, its pre-trained target),
    besides the step and the settings."""
    identity = dict(stream=cfg.stream, stream_options=cfg.stream_options, seed=cfg.seed,
                    backbone=cfg.backbone, device=cfg.device, evaluation=cfg.evaluation,
                    data_version=cfg.data_version)
    if cfg.scenario is not None:  # class-incremental sources keep the keys they always had
        identity["scenario"] = cfg.scenario
    return identity


def source_provider(cfg: RunConfig, make_model, theta0, settings, device,
                     cache_dir: Optional[Path], data):
    if cfg.source is None:
        return None
    if cfg.source["provider"] == "checkpoint":
        return CheckpointProvider(make_model, cfg.source["path"], device)
    if cfg.source["provider"] == "zoo":
        backbone = cfg.source.get("backbone", cfg.backbone)

        def make_source():
            return make_backbone(backbone, data.num_classes, data.input_shape, seed=cfg.seed)

        initial = theta0 if backbone == cfg.backbone else make_source().state_dict()
        return ZooProvider(make_source, initial, settings, identity(cfg), device, data.sources,
                           data.decode, cache_dir)
    if cfg.source["provider"] == "pretrained":
        return PretrainedProvider(make_model, theta0, settings, identity(cfg), device,
                                  data.train_experiences(), cache_dir)
    return ExpertProvider(make_model, theta0, settings, identity(cfg), device, cache_dir)


def prepare_sources(cfg: RunConfig, sources: Sequence[Optional[dict]] = (),
                    options: ExecOptions = ExecOptions()) -> dict:
    """The networks the runs of ``cfg``'s setting and seed train for their protocol (module
    docstring), trained here (or found in ``options.expert_dir``): {cache key: (state on the
    CPU, training seconds or None when it was cached, the source it is for, or None for the
    pre-trained target every run uses)}. For each of ``sources`` (a run configuration's
    ``source``) every later step's source is asked for (steps 2..T), as PNC and weight fusion
    do."""
    data, device, settings, model, theta0 = run_setting(cfg, options)
    found: dict = {}
    if data.pretrain is not None:
        with recording_trained() as trained:
            pretrained_target(model, theta0, settings, identity(cfg), data.pretrain,
                              data.decode, data.augment, options.expert_dir)
        found.update({k: (state, sec, None) for k, (state, sec) in trained.items()})
    for source in sources:
        run = dataclasses.replace(cfg, source=source)
        provider = source_provider(run, model_maker(run, data), theta0, settings, device,
                                    options.expert_dir, data)
        if provider is None or isinstance(provider, CheckpointProvider):
            continue
        with recording_trained() as trained:
            for experience in data.train_experiences()[1:]:
                provider(experience)
        found.update({k: (state, sec, source) for k, (state, sec) in trained.items()})
    return found


def model_maker(cfg: RunConfig, data):
    def make_model():
        return make_backbone(cfg.backbone, data.num_classes, data.input_shape, seed=cfg.seed)
    return make_model


def run_setting(cfg: RunConfig, options: ExecOptions):
    """(the run's stream data on its device, the device, training settings, its model with
    theta_0 on the device, theta_0), with torch's threads and determinism set."""
    device = prepare_torch(cfg, options)
    data = run_data(cfg, options)
    model = model_maker(cfg, data)().to(device)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return data, device, TrainSettings(**cfg.train), model, theta0
