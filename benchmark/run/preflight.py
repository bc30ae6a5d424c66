"""Checks of what the runs will read, made before anything is written.

``check_sources``: every source checkpoint a run will load (``[source] provider =
"checkpoint"``) exists, loads as a state dict and fits the stream's backbone, so that a missing
or wrong file stops the command with one line before the results folder is touched, instead of
failing every run that reaches it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import torch

from benchmark.core.errors import UsageError, first_line
from benchmark.core.models import make_backbone
from benchmark.data import get_stream
from benchmark.run.plan import RunConfig


def _shape(cfg: RunConfig, data_root: Optional[str], download: bool) -> tuple:
    """(steps, classes, input shape) of a run's stream: from its declaration and options when
    they say, else from the stream built once."""
    spec = get_stream(cfg.stream)
    steps = cfg.stream_options.get("n_experiences")
    if steps is not None and spec.num_classes is not None and spec.input_shape is not None:
        return steps, spec.num_classes, tuple(spec.input_shape)
    data = spec.build(seed=cfg.seed, data_root=data_root, download=download,
                      **cfg.stream_options)
    return data.n_steps, data.num_classes, tuple(data.input_shape)


def check_checkpoint_file(path: Path, backbone: str, num_classes: int,
                          input_shape: tuple, where: str) -> None:
    """UsageError unless ``path`` holds a state dict of ``backbone`` (``where`` names the
    step and stream in the message)."""
    if not path.is_file():
        raise UsageError(f"source checkpoint {path} ({where}) is missing; save the step's "
                         "source state dict there")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unreadable for any reason: name the file and the reason
        raise UsageError(f"source checkpoint {path} ({where}) cannot be loaded "
                         f"({type(err).__name__}); save a state dict there with torch.save"
                         ) from None
    model = make_backbone(backbone, num_classes, input_shape, seed=0)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise UsageError(f"source checkpoint {path} ({where}) is not a state dict of backbone "
                         f"{backbone!r}: {first_line(err)}") from None


def check_sources(configs: list[RunConfig], data_root: Optional[str] = None,
                  download: bool = False) -> None:
    """Checks every source checkpoint file the runs of ``configs`` will load, once each."""
    distinct = {}
    for cfg in configs:
        if cfg.source and cfg.source.get("provider") == "checkpoint":
            ident = (cfg.stream, json.dumps(cfg.stream_options, sort_keys=True), cfg.backbone,
                     cfg.source["path"])
            distinct.setdefault(ident, cfg)
    for cfg in distinct.values():
        pattern = cfg.source["path"]
        try:
            if pattern.format(step=1) == pattern.format(step=2):
                raise KeyError("step")
        except (KeyError, IndexError, ValueError):
            raise UsageError(f"checkpoint path {pattern!r} must contain {{step}} (and no other "
                             "braces), e.g. zoo/m-{step}.pt") from None
        steps, classes, shape = _shape(cfg, data_root, download)
        for step in range(1, steps + 1):
            path = Path(os.path.expanduser(cfg.source["path"].format(step=step)))
            check_checkpoint_file(path, cfg.backbone, classes, shape,
                                  f"step {step} of {cfg.stream}")
