"""Partial Network Cloning: the strategy (``PNC``), the network it builds (``ClonedNetwork``)
and its parts (localisation, clone modules, routers)."""
from strategies.pnc.network import ClonedNetwork, CloneModule, boundary_features  # noqa: F401
from strategies.pnc.strategy import PNC, parse_positions  # noqa: F401
