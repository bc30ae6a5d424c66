"""Partial Network Cloning: the strategy (``PNC``), its ablations (``PNCRouter``,
``PNCOracle``), the network it builds (``ClonedNetwork``) and its parts (localisation, pruning,
clone modules, routers, synthesised negatives)."""
from strategies.pnc.ablations import PNCOracle, PNCRouter  # noqa: F401
from strategies.pnc.network import ClonedNetwork, CloneModule, boundary_features  # noqa: F401
from strategies.pnc.strategy import PNC, parse_positions  # noqa: F401
