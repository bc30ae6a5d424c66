"""``mixed``: data- and class-incremental steps: each step brings new classes and new instances
of the classes of the step before, so a step's data hold "known instances".

Classes are split into ``n_experiences`` groups as in ``class-incremental`` (the seed's class
order). Each class's training samples are shuffled (a seeded draw per class): the first
1 - ``revisit`` of them arrive with the class's own step, the rest with the next step (the
classes of the last step arrive whole). The test set of step k holds the test samples of the
classes new at step k, so evaluation after step k covers every class seen, each once.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from benchmark.core.errors import UsageError
from benchmark.core.options import Option
from benchmark.data.base import StreamData, class_order, split_classes
from benchmark.scenarios.pool import of_classes, pooled, shuffled_members, take
from benchmark.scenarios.registry import ScenarioSpec, register_scenario

REVISIT_DRAW = 5


def check(options: dict, facts) -> None:
    if options["n_experiences"] < 2:
        raise UsageError("impossible mixed scenario: n_experiences must be at least 2 (known "
                         "instances come back at the next step)")
    split_classes(range(facts.num_classes), options["n_experiences"])


def apply(data: StreamData, seed: int, options: dict) -> StreamData:
    x_tr, y_tr, x_te, y_te = pooled(data)
    groups = split_classes(class_order(data.num_classes, seed), options["n_experiences"])
    parts: list[list[np.ndarray]] = [[] for _ in groups]
    for k, classes in enumerate(groups):
        for c in classes:
            members = shuffled_members(y_tr, c, seed, REVISIT_DRAW)
            if k == len(groups) - 1:
                parts[k].append(members)
                continue
            first = int(round((1 - options["revisit"]) * len(members)))
            parts[k].append(members[:first])
            parts[k + 1].append(members[first:])
    train = [take(x_tr, y_tr, np.concatenate(p)) for p in parts]
    train_classes = [list(groups[0])] + [list(groups[k]) + list(groups[k - 1])
                                         for k in range(1, len(groups))]
    return dataclasses.replace(data, classes_per_step=[list(g) for g in groups], train=train,
                               test=[of_classes(x_te, y_te, g) for g in groups],
                               train_classes=train_classes)


register_scenario(ScenarioSpec(
    name="mixed",
    summary="new classes and new instances of the previous step's classes at every step",
    apply=apply,
    check=check,
    receives="step k's data: its new classes' first samples and the previous classes' rest",
    evaluated="every class seen so far, no task label",
    options=(
        Option("n_experiences", int, 5, "steps (class groups)", low=2),
        Option("revisit", float, 0.5, "share of a class's training samples that arrives with "
               "the next step", low=0.05, high=0.95),
    ),
))
