"""``clonebench``: run experiments, rebuild reports, list streams and strategies.

Bad input (unknown names, bad values, malformed config, a foreign results folder) prints one line
``clonebench: error: ...`` and exits with status 2 without touching existing results.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

from benchmark.errors import UsageError

DEFAULT_OUT = Path("results/default")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the usage too otherwise)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="clonebench", description=(
        "Benchmark Partial Network Cloning (PNC) against continual-learning baselines."))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run an experiment (default: split-digits, every "
                         "strategy, 5 seeds) and write records, tables and report")
    run.add_argument("--config", type=Path, help="experiment TOML file (flags override it)")
    run.add_argument("--stream", help="stream name, or several separated by commas")
    run.add_argument("--strategies", help="comma-separated strategy names (default: all)")
    run.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 0 1 2 3 4)")
    run.add_argument("--epochs", type=int, help="epochs per step (default: the stream's)")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"),
                     help="where to train (default: auto = cuda if available, else cpu)")
    run.add_argument("--out", type=Path, help=f"results folder (default: {DEFAULT_OUT}, or "
                     "results/<name> for a config with a name)")
    run.add_argument("--backend", choices=("local", "ray"), default="local",
                     help="execute runs in this process (local) or as Ray tasks (ray)")
    run.add_argument("--address", help="address of an existing Ray cluster (with --backend ray)")
    run.add_argument("--max-retries", type=int, help="with --backend ray: times a run whose "
                     "worker dies is retried before it is recorded as failed (default: 2)")
    run.add_argument("--cpus-per-run", type=int, help="with --backend ray: CPUs (and torch "
                     "threads) per CPU run (default: --threads)")
    run.add_argument("--data-root", help="folder holding real data sets (default: "
                     "$CLONEBENCH_DATA or ~/.cache/clonebench/data)")
    run.add_argument("--download", action="store_true",
                     help="download a missing data set into the data root (needs network; never "
                     "done by default)")
    run.add_argument("--set", dest="assignments", action="append", default=[],
                     metavar="STRATEGY.OPTION=VALUE",
                     help="set a strategy hyper-parameter, e.g. ewc.ewc_lambda=100 (repeatable)")
    run.add_argument("--threads", type=int, help="torch CPU threads per run (default: "
                     "$CLONEBENCH_THREADS or 1, fastest for small models)")
    run.add_argument("--force", action="store_true", help="recompute runs already finished")
    run.add_argument("--quiet", action="store_true", help="no progress bars, no per-run lines")

    report = sub.add_parser("report", help="rebuild tables, figures and report.html of a "
                            "results folder from its records alone")
    report.add_argument("dir", type=Path, help="results folder (holding runs/)")

    sub.add_parser("list", help="print streams and strategies with their options and defaults")
    return parser


def _experiment_from_args(args):
    from benchmark.config import Experiment, load_experiment, parse_assignment

    exp = load_experiment(args.config) if args.config else Experiment()
    if args.stream:
        exp.streams = [s.strip() for s in args.stream.split(",") if s.strip()]
    if args.strategies:
        exp.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if args.seeds:
        exp.seeds = list(args.seeds)
    if args.epochs is not None:
        exp.train["epochs"] = args.epochs
    if args.device:
        exp.device = args.device
    for text in args.assignments:
        strategy, option, value = parse_assignment(text)
        exp.strategy_options.setdefault(strategy, {})[option] = value
    if not exp.streams or not exp.strategies or not exp.seeds:
        raise UsageError("an experiment needs at least one stream, strategy and seed")
    return exp


def cmd_run(args) -> int:
    from benchmark.grid import run_experiment

    exp = _experiment_from_args(args)
    out = args.out or (Path("results") / exp.name if args.config else DEFAULT_OUT)
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"bad --threads {args.threads}: expected an integer >= 1")
        os.environ["CLONEBENCH_THREADS"] = str(args.threads)
    for flag, value in (("--address", args.address), ("--max-retries", args.max_retries),
                        ("--cpus-per-run", args.cpus_per_run)):
        if value is not None and args.backend != "ray":
            raise UsageError(f"{flag} needs --backend ray")
    start = time.perf_counter()
    counts = run_experiment(exp, out, force=args.force, backend=args.backend,
                            data_root=args.data_root, quiet=args.quiet, address=args.address,
                            download=args.download, max_retries=args.max_retries,
                            cpus_per_run=args.cpus_per_run)
    elsewhere = counts.get("elsewhere", 0)
    by_others = f", {elsewhere} by another driver" if elsewhere else ""
    print(f"{counts['planned']} runs: {counts['ok']} done, {counts['failed']} failed, "
          f"{counts['skipped'] - elsewhere} already finished{by_others}; "
          f"{time.perf_counter() - start:.1f} s; results in {out}/")
    return 0


def cmd_report(args) -> int:
    from benchmark.report import build_report

    if not (args.dir / "runs").is_dir():
        raise UsageError(f"{args.dir} is not a results folder (no runs/ inside)")
    path = build_report(args.dir)
    print(f"report rebuilt in {path}")
    return 0


def cmd_list(args) -> int:
    from benchmark.streams import STREAMS
    from strategies import STRATEGIES
    from benchmark.config import default_strategy_order

    print("Streams:")
    for name, spec in STREAMS.items():
        td = ", ".join(f"{k}={v}" for k, v in spec.train_defaults.items())
        print(f"  {name}: {spec.summary}\n      backbone {spec.backbone}; training {td}")
        for opt in spec.options:
            print(f"      {opt.name}={opt.default!r}: {opt.help}")
    print("\nStrategies:")
    for name in default_strategy_order():
        spec = STRATEGIES[name]
        role = " [reference: upper bound, not a rival]" if spec.reference else ""
        src = " [uses a source network]" if spec.uses_source else ""
        print(f"  {name}: {spec.summary}{role}{src}")
        for opt in spec.options:
            print(f"      {opt.describe()}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return {"run": cmd_run, "report": cmd_report, "list": cmd_list}[args.command](args)
    except UsageError as err:
        print(f"clonebench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clonebench: interrupted; finished runs are saved, run the same command to "
              "complete the grid", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
