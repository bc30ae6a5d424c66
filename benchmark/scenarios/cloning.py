"""``cloning``: the PNC paper's setting as far as its abstract and introduction describe it.

A *target* network is pre-trained on ``base`` classes; its training data are then withheld
from every strategy, except at most ``base_memory`` bytes of them (default 0) that a strategy
may keep before cloning starts. Then come ``acts`` cloning acts. Act k brings a *source* from a
model zoo, pre-trained on ``source_classes`` classes disjoint from the base classes (and from
the other acts' sources), and training data for only ``clone`` of them (the clone is partial):
``shots`` samples per cloned class (or ``all``). Every strategy starts from the same
pre-trained target and receives the same data; those that use a source (PNC, weight fusion)
receive the act's source. The source's backbone is ``source_backbone`` (default: the target's).

Class order (the seed's ``class_order``): the first ``base`` classes are the target's; act k's
source knows the next ``source_classes``, of which the first ``clone`` are cloned.

Steps as the runner sees them: step 1 is the pre-trained target (a ``pretrained`` experience
holding the ``base_memory`` samples: a class-balanced draw, none by default); step 1 + k is act
k. Evaluated after each step on the test sets of the base classes and of each act's cloned
classes (no task label): A_T averages base and cloned; the base and cloned accuracies are
reported apart, and the original locality is measured on the base classes.

What is ours, not the paper's: the class counts, the shots, training the target and the zoo
from the run's theta_0 with the experiment's settings, and one source per act.
"""
from __future__ import annotations

import dataclasses

from benchmark.core.errors import UsageError
from benchmark.core.options import Option
from benchmark.data.base import StreamData, class_order
from benchmark.scenarios.pool import balanced_draw, of_classes, per_class_counts, pooled
from benchmark.scenarios.registry import CountOrAll, ScenarioSpec, register_scenario

MEMORY_DRAW, SHOTS_DRAW = 1, 2  # purposes of the seeded draws (benchmark.scenarios.pool)


def cloning_classes(num_classes: int, seed: int, base: int, source_classes: int, clone: int,
                    acts: int) -> tuple[list[int], list[list[int]], list[list[int]]]:
    """(base classes, each act's source classes, each act's cloned classes)."""
    order = class_order(num_classes, seed)
    sources = [order[base + k * source_classes: base + (k + 1) * source_classes]
               for k in range(acts)]
    return order[:base], sources, [s[:clone] for s in sources]


def check(options: dict, facts) -> None:
    need = options["base"] + options["acts"] * options["source_classes"]
    if need > facts.num_classes:
        raise UsageError(f"impossible cloning scenario: base {options['base']} + acts "
                         f"{options['acts']} x source_classes {options['source_classes']} = "
                         f"{need} classes, but the stream has {facts.num_classes}")
    if options["clone"] > options["source_classes"]:
        raise UsageError(f"impossible cloning scenario: clone {options['clone']} exceeds "
                         f"source_classes {options['source_classes']}")


def apply(data: StreamData, seed: int, options: dict) -> StreamData:
    """The stream as target pre-training data, the base memory and the acts (module
    docstring)."""
    x_tr, y_tr, x_te, y_te = pooled(data)
    base, sources, clones = cloning_classes(data.num_classes, seed, options["base"],
                                            options["source_classes"], options["clone"],
                                            options["acts"])
    kept = options["base_memory"] // data.sample_bytes
    memory = balanced_draw(x_tr, y_tr, per_class_counts(kept, base), seed, MEMORY_DRAW)
    train, test = [memory], [of_classes(x_te, y_te, base)]
    for clone in clones:
        pool = of_classes(x_tr, y_tr, clone)
        if options["shots"] == "all":
            train.append(pool)
        else:
            train.append(balanced_draw(*pool, dict.fromkeys(clone, options["shots"]), seed,
                                       SHOTS_DRAW))
        test.append(of_classes(x_te, y_te, clone))
    zoo = [None] + [(list(s), *of_classes(x_tr, y_tr, s)) for s in sources]
    return dataclasses.replace(data, classes_per_step=[base] + clones, train=train, test=test,
                               pretrain=of_classes(x_tr, y_tr, base), sources=zoo)


register_scenario(ScenarioSpec(
    name="cloning",
    summary="a target pre-trained on base classes, then acts cloning part of a pre-trained "
            "source of a model zoo, from a few samples",
    apply=apply,
    check=check,
    receives="the pre-trained target; per act, shots samples of each cloned class (and the "
             "act's source for strategies that use one); no base sample beyond base_memory",
    evaluated="base and cloned classes together (A_T), and apart; original locality on base",
    options=(
        Option("base", int, 6, "classes the target is pre-trained on", low=1),
        Option("source_classes", int, 4, "classes each act's source is pre-trained on "
               "(disjoint from the base and from other acts')", low=1),
        Option("clone", int, 2, "of those, the classes cloned (whose samples are given)", low=1),
        CountOrAll("shots", int, 10, "training samples given per cloned class, or all"),
        Option("acts", int, 1, "cloning acts, each from its own source", low=1),
        Option("base_memory", int, 0, "bytes of the target's training data (stored form) a "
               "strategy may keep before cloning", low=0),
        Option("source_backbone", str, None, "the sources' backbone (a backbone name, options "
               "allowed: mlp:hidden=256-256); none: the target's", nullable=True),
    ),
))
