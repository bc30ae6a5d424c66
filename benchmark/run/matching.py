"""Memory-matched comparison: buffer rivals given the bytes a reference strategy (PNC) adds.

With ``match_memory = "pnc"`` in an experiment, every strategy with a ``memory_bytes`` option
also runs a second configuration whose budget, on each stream and seed, is what PNC's run on
that stream and seed kept beyond the backbone: its final ``model_bytes`` (target, clones,
routers) minus the bytes of the plain backbone, plus its final ``state_bytes``. These runs are
planned after the reference's runs have finished (their budgets come from its records) and
carry ``memory_match`` in their configuration, so the report labels them ``replay[memory_match=
pnc]`` whatever the per-seed budget.
"""
from __future__ import annotations

import dataclasses
import json

from benchmark.core.models import make_backbone
from benchmark.data import get_stream
from benchmark.run.plan import RunConfig, matchable
from strategies.base import module_bytes


def backbone_bytes(cfg: RunConfig) -> int:
    """Bytes of the run's plain backbone (parameters and buffers)."""
    spec = get_stream(cfg.stream).for_options(cfg.stream_options)
    return module_bytes(make_backbone(cfg.backbone, spec.num_classes, spec.input_shape,
                                      seed=cfg.seed))


def extra_bytes(record: dict, backbone: int) -> int:
    """What a run kept beyond the backbone after its last step: model bytes minus the
    backbone's, plus the state it keeps."""
    costs = record["costs"]
    return int(costs["model_bytes"][-1] - backbone + costs["state_bytes"][-1])


def _identity(cfg: RunConfig) -> str:
    return json.dumps([cfg.stream, cfg.stream_options, cfg.backbone, cfg.seed, cfg.train,
                       cfg.evaluation], sort_keys=True)


def matched_configs(configs: list[RunConfig], reference: str, records: dict
                    ) -> tuple[list[RunConfig], list[str]]:
    """The matched runs of ``configs`` given the finished ``records`` (by key), and a line per
    run that cannot be planned because its reference run did not finish."""
    refs = {_identity(c): c for c in configs if c.strategy == reference}
    backbones: dict[str, int] = {}  # its bytes depend on the stream and backbone, not the seed
    planned, missing = [], []
    for cfg in configs:
        if not matchable(cfg.strategy) or cfg.memory_match is not None:
            continue
        ref = refs.get(_identity(cfg))
        record = records.get(ref.key) if ref is not None else None
        if record is None or record.get("status") != "ok":
            missing.append(f"{cfg.strategy} seed {cfg.seed} on {cfg.stream}: no finished "
                           f"{reference} run to match")
            continue
        shape = json.dumps([cfg.stream, cfg.stream_options, cfg.backbone], sort_keys=True)
        if shape not in backbones:
            backbones[shape] = backbone_bytes(cfg)
        budget = max(1, extra_bytes(record, backbones[shape]))
        planned.append(dataclasses.replace(cfg, hparams=dict(cfg.hparams, memory_bytes=budget),
                                           memory_match=reference))
    return planned, missing
