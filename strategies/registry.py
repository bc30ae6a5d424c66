"""Strategy registry: a strategy is added by writing one file that registers a name.

Each registered strategy declares its hyper-parameters as typed ``Option``s with a default, a
meaning and a valid range; ``clonebench list`` prints them and the runner validates every value
before a run starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch

from benchmark.errors import UsageError


@dataclass(frozen=True)
class Option:
    """A typed, documented, validated hyper-parameter."""

    name: str
    type: type
    default: Any
    help: str
    choices: Optional[Tuple[Any, ...]] = None
    low: Optional[float] = None
    high: Optional[float] = None

    def parse(self, value: Any, owner: str) -> Any:
        """``value`` (from TOML or a ``--set`` string) checked and converted; UsageError if bad."""
        where = f"{owner}.{self.name}"
        if isinstance(value, str) and self.type is not str:
            text = value.strip().lower()
            try:
                if self.type is bool:
                    if text not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError
                    value = text in ("true", "1", "yes")
                else:
                    value = self.type(text)
            except ValueError:
                raise UsageError(
                    f"bad value {value!r} for {where}: expected {self.type.__name__}"
                ) from None
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is bool and not isinstance(value, bool) or (
            self.type is not bool and (isinstance(value, bool) or not isinstance(value, self.type))
        ):
            raise UsageError(f"bad value {value!r} for {where}: expected {self.type.__name__}")
        if self.choices is not None and value not in self.choices:
            raise UsageError(
                f"bad value {value!r} for {where}: choose one of {', '.join(map(str, self.choices))}"
            )
        if self.type in (int, float):
            if value != value or (self.low is not None and value < self.low) or (
                self.high is not None and value > self.high
            ):
                raise UsageError(
                    f"bad value {value!r} for {where}: must lie in "
                    f"[{self.low if self.low is not None else '-inf'}, "
                    f"{self.high if self.high is not None else 'inf'}]"
                )
        return value

    def describe(self) -> str:
        extra = ""
        if self.choices:
            extra = f" (one of {', '.join(map(str, self.choices))})"
        elif self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else self.low
            hi = "inf" if self.high is None else self.high
            extra = f" (in [{lo}, {hi}])"
        return f"{self.name}={self.default!r}: {self.help}{extra}"


@dataclass(frozen=True)
class TrainSettings:
    """Training settings shared by every strategy of an experiment (stream defaults apply)."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    eval_batch_size: int = 512

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        params = list(params)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                                   weight_decay=self.weight_decay)
        raise UsageError(f"unknown optimizer {self.optimizer!r}; choose adam or sgd")


@dataclass
class StrategyContext:
    """What the protocol hands a strategy builder (SPEC 3).

    ``source_provider(experience)`` returns the step's source network (for strategies that use
    one); ``initial_state`` is theta_0, the target's initial weights.
    """

    device: torch.device
    train: TrainSettings
    seed: int
    num_classes: int
    source_provider: Optional[Callable[[Any], torch.nn.Module]] = None
    initial_state: Optional[Dict[str, torch.Tensor]] = None

    def template_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments every ``FastTemplate`` takes from the context."""
        return dict(
            train_mb_size=self.train.batch_size,
            train_epochs=self.train.epochs,
            eval_mb_size=self.train.eval_batch_size,
            device=self.device,
            seed=self.seed,
        )


@dataclass(frozen=True)
class StrategySpec:
    """A registered strategy: its builder, options and role."""

    name: str
    build: Callable[..., Any]
    summary: str
    options: Tuple[Option, ...] = ()
    uses_source: bool = False
    reference: bool = False
    check: Optional[Callable[[Dict[str, Any], int], None]] = None

    def resolve(self, given: Dict[str, Any]) -> Dict[str, Any]:
        """All options with defaults filled in, each value validated."""
        known = {o.name: o for o in self.options}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise UsageError(
                f"unknown option {unknown[0]!r} for strategy {self.name!r}; "
                f"known: {', '.join(known) or 'none'} (`clonebench list` shows them)"
            )
        return {n: o.parse(given[n], self.name) if n in given else o.default
                for n, o in known.items()}


STRATEGIES: Dict[str, StrategySpec] = {}


def register_strategy(name: str, *, summary: str, options: Sequence[Option] = (),
                      uses_source: bool = False, reference: bool = False,
                      check: Optional[Callable[[Dict[str, Any], int], None]] = None):
    """Decorator registering ``build(model, ctx, **hparams) -> strategy`` under ``name``.

    ``check(hparams, depth)``, if given, validates options that depend on the backbone (its
    number of blocks) when the grid is planned, before anything runs or is written."""

    def wrap(build):
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} registered twice")
        STRATEGIES[name] = StrategySpec(name, build, summary, tuple(options), uses_source,
                                        reference, check)
        return build

    return wrap


def get_strategy(name: str) -> StrategySpec:
    if name not in STRATEGIES:
        raise UsageError(
            f"unknown strategy {name!r}; choose among: {', '.join(sorted(STRATEGIES))} "
            "(`clonebench list` shows them)"
        )
    return STRATEGIES[name]
