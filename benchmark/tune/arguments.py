"""``clonebench tune``'s arguments, apart from the sweep so that ``clonebench --help`` imports
nothing heavy."""
from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    """``clonebench tune``'s arguments."""
    parser.add_argument("--stream", default="split-digits")
    parser.add_argument("--strategies", help="comma-separated (default: every strategy but "
                        "the references that share another's options)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101],
                        help="tuning seeds, disjoint from reported ones (default: 100 101)")
    parser.add_argument("--trials", type=int, default=6, help="configurations tried per "
                        "strategy, the same for all (default: 6)")
    parser.add_argument("--fraction", type=float, default=0.2, help="share of each "
                        "experience's training data held out for validation (default: 0.2)")
    parser.add_argument("--grid", nargs="*", default=[], metavar="STRATEGY.OPTION=V1,V2",
                        help="replace a strategy's built-in grid")
    parser.add_argument("--epochs", type=int, help="epochs per step (default: the stream's)")
    parser.add_argument("--config", type=Path, help="experiment TOML file whose stream, "
                        "training settings, backbone and plugins tuning uses")
    parser.add_argument("--scenario", help="the scenario of every trial (default: the config's, "
                        "else class-incremental)")
    parser.add_argument("--scenario-option", dest="scenario_options", action="append",
                        default=[], metavar="OPTION=VALUE", help="a scenario option (repeatable)")
    parser.add_argument("--data-root", help="folder holding real data sets")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (worker processes)")
    parser.add_argument("--out", type=Path, help="results folder (default: "
                        "results/tuning/<stream>)")
