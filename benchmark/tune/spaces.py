"""What tuning tries: a grid of values per strategy option, and the trials drawn from it.

Every strategy gets the same budget of trials (``trials``): its whole grid when the grid is no
larger, else a random sample of the grid (seeded) that always contains the strategy's current
defaults, so tuning can only keep or improve on them. Strategies without a grid (finetune: plain
training, whose ``lr_scale`` is a variant of dynamic expansion's comparison, not tuned) and
references that share another strategy's options (pnc-oracle takes pnc's) have one trial.
"""
from __future__ import annotations

import itertools
import random
from typing import Any

from benchmark.core.errors import UsageError

# The grids searched for the committed defaults (docs/tuning.md says what was chosen and why).
SPACES: dict[str, dict[str, list[Any]]] = {
    "ewc": {"ewc_lambda": [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0]},
    "lwf": {"alpha": [0.5, 1.0, 2.0, 5.0], "temperature": [1.0, 2.0]},
    "joint": {"init": ["current", "theta0"]},
    "dynamic-expansion": {"gap_threshold": [0.5, 1.0, 1.5], "routing": ["prototype", "logits"],
                          "lr_scale": [1.0, 0.1]},
    "weight-fusion": {"mode": ["sum", "mean", "task-arithmetic", "nonessential"]},
    "pnc": {"routing": ["gaussian", "autoencoder", "gate"],
            "router_space": ["input", "target", "input+target"]},
    "pnc-router": {"router_space": ["input", "target", "input+target"],
                   "shrinkage": [0.1, 0.5]},
    "replay": {"batch_size_mem": [None, 16, 64]},  # None: as many as the training batch
    "der": {"alpha": [0.1, 0.3, 0.5], "beta": [0.5, 1.0]},
    "agem": {"sample_size": [64, 128, 256]},
    "slda": {"features": ["auto", "step1"], "shrinkage_param": [1e-4, 1e-2, 1e-1]},
    "ncm": {"features": ["auto", "step1"], "normalize": [True, False]},
    "fecam": {"tukey1": [0.5, 1.0], "shrink1": [0.5, 1.0, 2.0]},
}


def grid(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the space's values, as option dicts (one empty dict for none)."""
    names = sorted(space)
    return [dict(zip(names, values)) for values in itertools.product(*(space[n] for n in names))]


def trials(space: dict[str, list[Any]], defaults: dict[str, Any], budget: int,
           seed: int = 0) -> list[dict[str, Any]]:
    """At most ``budget`` configurations of the space's options: the whole grid if it fits,
    else a seeded sample of it (in grid order) in which the defaults replace the last draw if
    the sample missed them; the sample does not depend on the defaults otherwise, so tuning
    again after adopting a sampled configuration as the default tries the same set."""
    if budget < 1:
        raise UsageError(f"bad trial budget {budget}: expected at least 1")
    combos = grid(space)
    if len(combos) <= budget:
        return combos
    default = {n: defaults[n] for n in space}
    picked = random.Random(seed).sample(combos, budget)
    if default not in picked:
        picked[-1] = default
    return sorted(picked, key=lambda c: combos.index(c) if c in combos else -1)


def space_for(strategy: str, options: dict, given: dict[str, list[Any]] | None = None
              ) -> dict[str, list[Any]]:
    """The grid of ``strategy``: ``given`` if any, else the built-in one, restricted to the
    options the strategy declares (UsageError for an unknown option in ``given``)."""
    space = dict(given if given is not None else SPACES.get(strategy, {}))
    unknown = sorted(set(space) - set(options))
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r} for strategy {strategy!r} in the "
                         "tuning grid")
    return space


