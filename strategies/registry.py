"""Strategy registry: a strategy is added by writing one module whose class declares its
options (``OPTIONS``) and is decorated with ``@register_strategy(name, ...)``.

The options are declared once, on the class: the constructor validates what it is given against
them (``benchmark.core.options.resolve``), ``clonebench list`` prints them, and an experiment's
values are checked against them before any run starts.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from benchmark.core.options import Option, Registry, resolve
from benchmark.core.training import TrainSettings

ROLES = ("rival", "reference", "ablation")
# The scenarios of the suite (benchmark.scenarios); a strategy class lists those it supports in
# ``SCENARIOS`` (default: class-incremental only).
CLASS_INCREMENTAL, CLONING, DOMAIN, MIXED = ("class-incremental", "cloning",
                                             "domain-incremental", "mixed")
ALL_SCENARIOS = (CLASS_INCREMENTAL, CLONING, DOMAIN, MIXED)


@dataclass
class StrategyContext:
    """What the protocol hands a strategy when the suite builds it.

    ``source_provider(experience)`` returns the step's source network (for strategies that use
    one); ``initial_state`` is theta_0, the target's initial weights; ``sample_bytes`` is what
    one stored training sample costs at the stream's native dtype (input and label), and
    ``memory_bytes`` the stream's default budget, for strategies that keep samples.
    """

    device: torch.device
    train: TrainSettings
    seed: int
    num_classes: int
    source_provider: Optional[Callable[[Any], torch.nn.Module]] = None
    initial_state: Optional[dict[str, torch.Tensor]] = None
    sample_bytes: Optional[int] = None
    memory_bytes: Optional[int] = None
    plugins: list[Any] = field(default_factory=list)
    evaluator: Optional[Any] = None

    def template_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every ``FastTemplate`` takes from the context (``plugins`` and
        ``evaluator``: extra Avalanche plugins, e.g. loggers, attached to every strategy)."""
        return dict(train_mb_size=self.train.batch_size, train_epochs=self.train.epochs,
                    eval_mb_size=self.train.eval_batch_size, device=self.device,
                    seed=self.seed, plugins=list(self.plugins), evaluator=self.evaluator)


@dataclass(frozen=True)
class StrategySpec:
    """A registered strategy: its class, options and role.

    ``role``: ``rival`` (compared with PNC), ``reference`` (a bound or an oracle, never a
    rival; ``note`` says which) or ``ablation`` (a part of PNC alone). ``family`` groups rivals
    (e.g. ``parameter-tuning``, the paper's comparison). ``check(hparams, depth)`` validates
    options that depend on the backbone's number of blocks when the grid is planned.
    ``same_source_architecture``: the strategy combines its source's weights with the target's,
    so the source must have the target's backbone. ``trained_as``: a strategy whose training is
    by definition that of another (``pnc-oracle``: PNC's); its class's ``logits_of(trained, x,
    step)`` predicts from a trained strategy of that other kind, so the suite evaluates both on
    one training. The scenarios it supports are its class's ``SCENARIOS``.
    """

    name: str
    cls: type
    summary: str
    family: str
    role: str = "rival"
    note: str = ""
    uses_source: bool = False
    keeps_samples: bool = False
    check: Optional[Callable[[dict[str, Any], int], None]] = None
    same_source_architecture: bool = False
    trained_as: Optional[str] = None

    @property
    def options(self) -> tuple[Option, ...]:
        return tuple(self.cls.OPTIONS)

    @property
    def scenarios(self) -> tuple[str, ...]:
        return tuple(getattr(self.cls, "SCENARIOS", (CLASS_INCREMENTAL,)))

    @property
    def reference(self) -> bool:
        return self.role == "reference"

    def resolve(self, given: dict[str, Any]) -> dict[str, Any]:
        """All options with defaults filled in, each value validated."""
        return resolve(self.options, given, self.name, "strategy")

    def build(self, model: torch.nn.Module, ctx: StrategyContext, **hparams):
        """The strategy over ``model`` with the protocol's context and ``hparams``."""
        return self.cls.from_context(model, ctx, **hparams)

    def info(self) -> dict[str, Any]:
        """What a record keeps about the strategy's kind."""
        return {"family": self.family, "role": self.role, "note": self.note,
                "uses_source": self.uses_source, "keeps_samples": self.keeps_samples,
                "scenarios": list(self.scenarios)}


STRATEGIES: Registry[StrategySpec] = Registry("strategy")


def register_strategy(name: str, *, summary: str, family: str, role: str = "rival",
                      note: str = "", uses_source: bool = False, keeps_samples: bool = False,
                      check: Optional[Callable[[dict[str, Any], int], None]] = None,
                      same_source_architecture: bool = False,
                      trained_as: Optional[str] = None):
    """Class decorator registering a ``FastTemplate`` subclass under ``name``."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")

    def wrap(cls):
        cls.registered_name = name
        STRATEGIES.add(StrategySpec(name, cls, summary, family, role, note, uses_source,
                                    keeps_samples, check, same_source_architecture,
                                    trained_as))
        return cls

    return wrap


def get_strategy(name: str) -> StrategySpec:
    return STRATEGIES.get(name)
