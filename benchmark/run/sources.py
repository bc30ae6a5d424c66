"""The protocol's source networks (docs/design.md, "Protocol"): what PNC and weight fusion are
handed to transfer from.

At step k a strategy receives the training data of e_k only. Strategies that transfer from a
network (PNC, weight fusion) also get a *source* knowing e_k's classes from a provider:

- ``expert`` (default): the stream's backbone trained on e_k alone, from the same initial
  weights theta_0 as the target, by ``benchmark.core.training.fit`` (a plain loop, same
  settings as the strategies). Experts are cached per (stream, options, seed, step, backbone,
  settings) in memory
  and, when a cache folder is given, on disk, so every strategy sees the same source and it is
  trained once. Its cost is recorded separately.
- ``pretrained`` (the paper's setting): one source per seed, the stream's backbone trained
  from theta_0 on the training data of *all* the stream's experiences (never their test data)
  with the experiment's settings, shared by every step; each step clones only the part of it
  that serves its classes. Cached like the experts; its training cost is recorded at the step
  that first asks for it.
- ``checkpoint``: a user-supplied state dict of the stream's backbone per step, from a path
  pattern containing ``{step}`` (1-based), e.g. ``zoo/expert-{step}.pt``.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from benchmark.core.errors import UsageError
from benchmark.core.tensors import stored_tensors
from benchmark.core.training import fit
from benchmark.run.expert_cache import load_expert, save_expert

SOURCE_PROVIDERS = ("expert", "pretrained", "checkpoint")


def cache_key(**parts) -> str:
    """A short stable hash of JSON-serialisable parts."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SourceProvider:
    """Callable ``provider(experience) -> frozen source network``; times what it spends."""

    def __init__(self):
        self.seconds: dict[int, float] = {}
        self.cached: dict[int, bool] = {}

    def __call__(self, experience) -> nn.Module:
        step = experience.current_experience
        start = time.perf_counter()
        model = self._get(experience)
        self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - start
        for p in model.parameters():
            p.requires_grad_(False)
        return model.eval()

    def _get(self, experience) -> nn.Module:
        raise NotImplementedError


_MEMORY_CACHE: dict[str, dict[str, torch.Tensor]] = {}


class TrainedProvider(SourceProvider):
    """Sources the suite trains from theta_0 with the experiment's settings, cached in memory
    and on disk: ``cache_key(step)`` names a source, ``training_data(experience)`` gives what it
    is trained on (stored x, y, decode)."""

    def __init__(self, make_model: Callable[[], nn.Module], initial_state: dict[str, torch.Tensor],
                 settings, identity: dict, device: torch.device,
                 cache_dir: Optional[Path] = None):
        super().__init__()
        self.make_model = make_model
        self.initial_state = initial_state
        self.settings = settings
        self.identity = identity
        self.device = device
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.train_seconds: dict[int, float] = {}

    def source_key(self, step: int) -> str:
        raise NotImplementedError

    def training_data(self, experience):
        raise NotImplementedError

    def _get(self, experience) -> nn.Module:
        step = experience.current_experience
        key = self.source_key(step)
        state = _MEMORY_CACHE.get(key)
        path = self.cache_dir / f"{key}.pt" if self.cache_dir else None
        if state is None and path is not None:
            state = load_expert(path)  # None when missing or damaged (then removed)
        model = self.make_model().to(self.device)
        if state is None:
            start = time.perf_counter()
            model.load_state_dict(self.initial_state)
            x, y, decode = self.training_data(experience)
            seed = int(key, 16) % (2 ** 31)
            fit(model, x.to(self.device), y.to(self.device), self.settings,
                torch.Generator().manual_seed(seed), getattr(experience, "augment", None),
                decode)
            self.train_seconds[step] = time.perf_counter() - start
            self.cached[step] = False
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if path is not None:
                save_expert(path, state)
        else:
            self.cached[step] = True
            model.load_state_dict(state)
        _MEMORY_CACHE[key] = state
        return model


class ExpertProvider(TrainedProvider):
    """Experts trained on e_k alone from theta_0, one per step."""

    def source_key(self, step: int) -> str:
        return cache_key(step=step, settings=self.settings.__dict__, **self.identity)

    def training_data(self, experience):
        return stored_tensors(experience)


class PretrainedProvider(TrainedProvider):
    """One source trained on every experience's training data from theta_0, shared by all
    steps (``experiences``: the stream's training experiences)."""

    def __init__(self, make_model, initial_state, settings, identity: dict, device,
                 experiences: list, cache_dir: Optional[Path] = None):
        super().__init__(make_model, initial_state, settings,
                         dict(identity, provider="pretrained"), device, cache_dir)
        self.experiences = experiences

    def source_key(self, step: int) -> str:
        return cache_key(settings=self.settings.__dict__, **self.identity)

    def training_data(self, experience):
        parts = [stored_tensors(e) for e in self.experiences]
        return (torch.cat([p[0].to(self.device) for p in parts]),
                torch.cat([p[1].to(self.device) for p in parts]), parts[0][2])


class CheckpointProvider(SourceProvider):
    """Sources loaded from user state dicts: ``pattern.format(step=k)`` for step k (1-based)."""

    def __init__(self, make_model: Callable[[], nn.Module], pattern: str, device: torch.device):
        super().__init__()
        if "{step}" not in pattern:
            raise UsageError(f"checkpoint path {pattern!r} must contain {{step}}, "
                             "e.g. zoo/m-{step}.pt")
        self.make_model = make_model
        self.pattern = pattern
        self.device = device

    def _get(self, experience) -> nn.Module:
        path = Path(os.path.expanduser(self.pattern.format(step=experience.current_experience + 1)))
        if not path.exists():
            raise UsageError(f"source checkpoint {path} is missing; save the step's source "
                             "state dict there")
        model = self.make_model().to(self.device)
        model.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
        self.cached[experience.current_experience] = True
        return model


def provider_costs(provider: Optional[SourceProvider], n_steps: int) -> Optional[dict]:
    """The source's cost block of a record: per-step seconds and whether it came from a cache."""
    if provider is None:
        return None
    train = getattr(provider, "train_seconds", {})
    return {
        "provider_seconds": [provider.seconds.get(k) for k in range(n_steps)],
        "train_seconds": [train.get(k) for k in range(n_steps)],
        "cached": [provider.cached.get(k) for k in range(n_steps)],
    }


def validate_source(source: dict) -> dict:
    """A resolved source block ``{"provider": ..., ["path": ...]}``; UsageError if bad."""
    provider = source.get("provider", "expert")
    unknown = sorted(set(source) - {"provider", "path"})
    if unknown:
        raise UsageError(f"unknown source option {unknown[0]!r}; known: provider, path")
    if provider not in SOURCE_PROVIDERS:
        raise UsageError(f"unknown source provider {provider!r}; choose expert, pretrained "
                         "or checkpoint")
    if provider == "checkpoint":
        if not isinstance(source.get("path"), str):
            raise UsageError("source provider 'checkpoint' needs path = \"zoo/model-{step}.pt\"")
        return {"provider": provider, "path": source["path"]}
    return {"provider": provider}
