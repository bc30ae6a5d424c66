"""Strategies: each an Avalanche strategy, registered by name.

``from strategies import PNC`` (or ``EWC``, ``LwF``, ...) gives a class to drop into one's own
Avalanche code. A strategy is added by writing one module that calls ``register_strategy`` and
importing it below.
"""
from strategies.registry import (  # noqa: F401
    STRATEGIES,
    Option,
    StrategyContext,
    StrategySpec,
    TrainSettings,
    get_strategy,
    register_strategy,
)
from strategies.base import FastTemplate  # noqa: F401,E402
from strategies.finetune import Finetune  # noqa: F401,E402
from strategies.ewc import EWC  # noqa: F401,E402
from strategies.lwf import LwF  # noqa: F401,E402
from strategies.pnc import PNC  # noqa: F401,E402
from strategies.dynamic_expansion import DynamicExpansion  # noqa: F401,E402
from strategies.weight_fusion import WeightFusion  # noqa: F401,E402
from strategies.joint import Joint  # noqa: F401,E402
