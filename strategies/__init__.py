"""Strategies: each an Avalanche strategy, registered by name.

``from strategies import PNC`` (or ``EWC``, ``LwF``, ...) gives a class to drop into one's own
Avalanche code. A strategy is added by writing one module whose class declares ``OPTIONS`` and
is decorated with ``@register_strategy``, and importing it below (or, from outside the package,
with ``clonebench run --plugins my_module``).
"""
from benchmark.core.options import Option  # noqa: F401,E402
from benchmark.core.training import TrainSettings  # noqa: F401,E402
from strategies.agem import AGEM  # noqa: F401,E402
from strategies.base import FastTemplate, Phase  # noqa: F401,E402
from strategies.der import DER  # noqa: F401,E402
from strategies.dynamic_expansion import DynamicExpansion  # noqa: F401,E402
from strategies.ewc import EWC  # noqa: F401,E402
from strategies.fecam import FeCAM  # noqa: F401,E402
from strategies.finetune import Finetune  # noqa: F401,E402
from strategies.gdumb import GDumb  # noqa: F401,E402
from strategies.icarl import ICaRL  # noqa: F401,E402
from strategies.joint import Joint  # noqa: F401,E402
from strategies.lwf import LwF  # noqa: F401,E402
from strategies.ncm import NCM  # noqa: F401,E402
from strategies.pnc import PNC  # noqa: F401,E402
from strategies.registry import (  # noqa: F401
    STRATEGIES,
    StrategyContext,
    StrategySpec,
    get_strategy,
    register_strategy,
)
from strategies.replay import Replay  # noqa: F401,E402
from strategies.slda import SLDA  # noqa: F401,E402
from strategies.weight_fusion import WeightFusion  # noqa: F401,E402
