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
- ``zoo`` (the ``cloning`` scenario, not chosen by ``[source]``): act k's source, the source
  backbone trained from its theta_0 on the training data of the act's source classes
  (``StreamData.sources``), cached like the experts.

The ``cloning`` scenario's pre-trained target is trained the same way (``pretrained_target``):
from theta_0 on the base classes' training data, once per (stream, options, seed, backbone,
settings, scenario), cached in memory and on disk, its cost recorded apart.
"""
from __future__ import annotations

import contextlib
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
# Training seconds of preloaded networks, credited to the first run of this process that asks
# for each (``preload``), and the trained states collected by ``recording_trained``.
_CREDIT: dict[str, float] = {}
_RECORDING: list[dict] = []


def preload(networks: Optional[dict]) -> None:
    """Puts networks trained elsewhere (``prepare_sources``: {key: (state, seconds or None)},
    a state None when it is in the expert cache on disk) in this process's cache. A run that
    asks for one then reports it cached, except the first to ask for one given with its
    training seconds, which reports them as its own training: every network's cost appears
    once in the records, as when runs train their sources themselves."""
    for key, (state, seconds) in (networks or {}).items():
        if state is not None:  # None: the state is in the expert cache on disk
            _MEMORY_CACHE[key] = state
        if seconds is not None:
            _CREDIT[key] = seconds


@contextlib.contextmanager
def recording_trained():
    """Collects {key: (state, seconds or None)} of every network ``trained_state`` gives within
    the block (trained, or found in a cache)."""
    found: dict = {}
    _RECORDING.append(found)
    try:
        yield found
    finally:
        _RECORDING.remove(found)


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
        model = self.make_model().to(self.device)
        state, seconds = trained_state(
            key, model, self.initial_state, lambda: self.training_data(experience),
            self.settings, getattr(experience, "augment", None), self.cache_dir)
        self.cached[step] = seconds is None
        if seconds is not None:
            self.train_seconds[step] = seconds
        return model


def trained_state(key: str, model: nn.Module, initial_state: dict[str, torch.Tensor],
                  training_data: Callable[[], tuple], settings, augment,
                  cache_dir: Optional[Path]) -> tuple[dict[str, torch.Tensor], Optional[float]]:
    """``model`` (already on its device) loaded with the network cached as ``key``, or trained
    from ``initial_state`` on ``training_data()`` = (stored x, y, decode) with ``settings`` by
    the plain loop ``fit``, its shuffles seeded by the key; returns (its state on the CPU, the
    training seconds, or None when it came from the cache in memory or under ``cache_dir``)."""
    state = _MEMORY_CACHE.get(key)
    path = Path(cache_dir) / f"{key}.pt" if cache_dir else None
    if state is None and path is not None:
        state = load_expert(path)  # None when missing or damaged (then removed)
    seconds = None if state is None else _CREDIT.pop(key, None)
    if state is None:
        start = time.perf_counter()
        device = next(model.parameters()).device
        model.load_state_dict(initial_state)
        x, y, decode = training_data()
        fit(model, x.to(device), y.to(device), settings,
            torch.Generator().manual_seed(int(key, 16) % (2 ** 31)), augment, decode)
        seconds = time.perf_counter() - start
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if path is not None:
            save_expert(path, state)
    else:
        model.load_state_dict(state)
    _MEMORY_CACHE[key] = state
    for found in _RECORDING:
        found[key] = (state, seconds)
    return state, seconds


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


class ZooProvider(TrainedProvider):
    """The cloning scenario's model zoo: act k's source trained from the source backbone's
    theta_0 on the training data of its source classes (``sources[step]`` = (classes, x, y) in
    stored form, ``decode`` their decoding)."""

    def __init__(self, make_model, initial_state, settings, identity: dict, device,
                 sources: list, decode, cache_dir: Optional[Path] = None):
        super().__init__(make_model, initial_state, settings, dict(identity, provider="zoo"),
                         device, cache_dir)
        self.sources, self.decode = sources, decode

    def source_key(self, step: int) -> str:
        return cache_key(step=step, settings=self.settings.__dict__, **self.identity)

    def training_data(self, experience):
        _, x, y = self.sources[experience.current_experience]
        return x, y, self.decode


def pretrained_target(model: nn.Module, initial_state: dict[str, torch.Tensor], settings,
                      identity: dict, pretrain: tuple, decode, augment,
                      cache_dir: Optional[Path]) -> dict:
    """Loads ``model`` with the cloning scenario's target: trained from ``initial_state`` on
    ``pretrain`` = (stored x, y) of the base classes (``trained_state``); returns its cost
    block for the record (``seconds`` of training, ``cached``)."""
    key = cache_key(target=True, settings=settings.__dict__, **identity)
    _, seconds = trained_state(key, model, initial_state, lambda: (*pretrain, decode), settings,
                               augment, cache_dir)
    return {"seconds": seconds, "cached": seconds is None}


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
