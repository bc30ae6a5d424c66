"""``clonebench``: run experiments, rebuild reports, list what is registered, and the tools
(``perf``, ``tune``, ``screenshot``, ``compare``), all from one parser.

Bad input (unknown names, bad values, malformed config, a foreign results folder, a flag that
takes one value given twice) prints one line ``clonebench: error: ...`` and exits with status 2
without touching existing results. ``run`` exits with status 1 when a run it recorded failed (a
last line names them and their record files), 0 when every run is ``ok``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

from benchmark.core.errors import UsageError

DEFAULT_OUT = Path("results/default")


class _StoreOnce(argparse.Action):
    """argparse's ``store``, except that an option given twice is an error (argparse would
    silently keep the last value)."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault("_options_given", set())
        if option_string is not None and self.dest in given:
            raise UsageError(f"{'/'.join(self.option_strings)} given twice; give it once"
                             + (" (list every value after it)" if self.nargs in ("+", "*")
                                else ""))
        given.add(self.dest)
        setattr(namespace, self.dest, values)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def error(self, message):  # one line, exit 2 (argparse prints the usage too otherwise)
        raise UsageError(message)


def _add_run(sub) -> None:
    from benchmark.run.choices import AUTO_SECONDS, CHECKPOINT_POLICIES

    run = sub.add_parser("run", help="run an experiment (default: split-digits, every "
                         "strategy, 10 seeds) and write records, tables and report")
    run.add_argument("--config", type=Path, help="experiment TOML file (flags override it)")
    run.add_argument("--plugins", action="append", help="modules (dotted names or .py files, "
                     "comma-separated; repeatable) that register your own strategies or streams")
    run.add_argument("--stream", help="stream name, or several separated by commas")
    run.add_argument("--strategies", help="comma-separated strategy names (default: every "
                     "strategy that supports the scenario)")
    run.add_argument("--scenario", help="how the stream's data become steps: "
                     "class-incremental (default), cloning, domain-incremental or mixed "
                     "(`clonebench list` shows their options)")
    run.add_argument("--scenario-option", dest="scenario_options", action="append", default=[],
                     metavar="OPTION=VALUE", help="set a scenario option, e.g. shots=10 "
                     "(repeatable)")
    run.add_argument("--seeds", nargs="+", metavar="SEEDS", help="seeds: integers and "
                     "ranges, separated by spaces or commas, e.g. 0 1 2, 0,1,2 or 0-9 "
                     "(default: 0-9)")
    run.add_argument("--epochs", type=int, help="epochs per step (default: the stream's)")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"),
                     help="where to train (default: auto = cuda if available, else cpu)")
    run.add_argument("--out", type=Path, help=f"results folder (default: {DEFAULT_OUT}, or "
                     "results/<name> for a config with a name)")
    run.add_argument("--backend", choices=("local", "ray"), default="local",
                     help="execute runs in this process (local) or as Ray tasks (ray)")
    run.add_argument("--jobs", type=int, help="with the local backend: runs executed at once "
                   "in worker processes (default: 1, in this process)")
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
    run.add_argument("--match-memory", metavar="STRATEGY", help="also run every buffer rival "
                     "with the extra bytes STRATEGY kept on the same stream and seed as its "
                     "memory_bytes budget (auto: pnc when pnc and a buffer rival run; none, the "
                     "default: never)")
    run.add_argument("--threads", type=int, default=1, help="torch CPU threads per run "
                     "(default: 1, the fastest for small models)")
    run.add_argument("--batch-seeds", action="store_true", help="train the seeds of one "
                     "configuration together, in one pass over stacked weights (finetune, "
                     "joint, ewc, lwf; local backend; other runs as usual); records equal "
                     "separate runs' up to float rounding, with environment.seed_batch. Off by "
                     "default (records then are not bitwise separate runs'); measured 1.9x "
                     "(finetune) to 2.9x (joint) faster for 10 seeds of split-digits on one CPU "
                     "thread, likely more on a GPU (unmeasured); see the README's speed section")
    run.add_argument("--force", action="store_true", help="recompute runs already finished "
                     "(a failing recomputation keeps the finished record, and its failure is "
                     "written beside it)")
    run.add_argument("--save-models", action="store_true", help="save each run's final model "
                     "as DIR/models/<key>.pt (local backend)")
    run.add_argument("--checkpoints", choices=CHECKPOINT_POLICIES, default="auto",
                     help="per-step checkpoints under DIR/checkpoints/ that a killed run resumes "
                     "from: auto (default: after steps once a run has trained for "
                     f"{AUTO_SECONDS:g} s since its last one), always (after every step), off "
                     "(local backend)")
    run.add_argument("--log", action="append", metavar="csv|tensorboard", help="attach "
                     "Avalanche's loggers (comma-separated or repeated), writing under "
                     "DIR/logs/<key>/ (local backend)")
    run.add_argument("--quiet", action="store_true", help="no progress bars, no per-run lines, "
                     "no results table")


def build_parser() -> argparse.ArgumentParser:
    from benchmark.perf import arguments as perf_arguments
    from benchmark.report import screenshot
    from benchmark.tune import arguments as tune_arguments

    parser = _Parser(prog="clonebench", description=(
        "Benchmark Partial Network Cloning (PNC) against continual-learning baselines."))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(sub)
    report = sub.add_parser("report", help="rebuild tables, figures and report.html of a "
                            "results folder from its records alone")
    report.add_argument("dir", type=Path, help="results folder (holding runs/)")
    listing = sub.add_parser("list", help="print streams, backbones, strategies and backends "
                             "with their options and defaults")
    listing.add_argument("--plugins", action="append",
                         help="also load these modules (as for run)")
    perf_arguments.add_arguments(sub.add_parser(
        "perf", help="time a strategy's training through the suite against a plain PyTorch "
        "loop and plain Avalanche on the same model, data and settings"))
    tune_arguments.add_arguments(sub.add_parser(
        "tune", help="a hyper-parameter grid on tuning seeds, printed as a table"))
    screenshot.add_arguments(sub.add_parser(
        "screenshot", help="render DIR/report.html in headless chromium and check it is not "
        "blank"))
    verdict = sub.add_parser("verdict", help="the verdict map: one row per setting of several "
                             "results folders, from their tables (verdict.csv, verdict.md)")
    verdict.add_argument("dirs", type=Path, nargs="*", help="results folders (default: the "
                         "committed ones under results/ that exist)")
    verdict.add_argument("--out", type=Path, default=Path("results/verdict"),
                         help="where verdict.csv and verdict.md go (default: results/verdict)")
    readme = sub.add_parser("readme", help="rewrite the README's generated sections from the "
                            "committed tables (--check: only say whether they match)")
    readme.add_argument("--check", action="store_true", help="exit 1 when a file differs")
    readme.add_argument("files", type=Path, nargs="*", help="Markdown files with generated "
                        "sections (default: README.md docs/tuning.md docs/design.md)")
    readme.add_argument("--results", type=Path, default=Path("results"))
    compare = sub.add_parser("compare", help="whether two results folders agree within their "
                             "intervals, per stream, strategy and metric (exit 1 when not)")
    compare.add_argument("dir_a", type=Path, help="a results folder (holding runs/)")
    compare.add_argument("dir_b", type=Path, help="another results folder")
    return parser


def _experiment_from_args(args):
    from benchmark.run.experiment_file import (
        load_experiment,
        load_plugins,
        parse_assignment,
        parse_scenario_option,
    )
    from benchmark.run.plan import Experiment
    from benchmark.run.words import parse_seeds

    plugins = _names(args.plugins)
    load_plugins(plugins)
    exp = load_experiment(args.config) if args.config else Experiment()
    exp.plugins = list(dict.fromkeys(exp.plugins + plugins))
    if args.stream:
        exp.streams = [s.strip() for s in args.stream.split(",") if s.strip()]
    if args.strategies:
        exp.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if args.seeds:
        exp.seeds = parse_seeds(args.seeds)
    if args.epochs is not None:
        exp.train["epochs"] = args.epochs
    if args.device:
        exp.device = args.device
    if args.match_memory:
        exp.match_memory = None if args.match_memory == "none" else args.match_memory
    if args.scenario and args.scenario != exp.scenario.get("name"):
        exp.scenario = {"name": args.scenario}
    for text in args.scenario_options:
        option, value = parse_scenario_option(text)
        exp.scenario[option] = value
    for text in args.assignments:
        strategy, option, value = parse_assignment(text)
        exp.strategy_options.setdefault(strategy, {})[option] = value
    if not exp.streams or not exp.strategies or not exp.seeds:
        raise UsageError("an experiment needs at least one stream, strategy and seed")
    return exp


def _backend_options(args) -> dict:
    ray_only = (("--address", "address"), ("--max-retries", "max_retries"),
                ("--cpus-per-run", "cpus_per_run"))
    options = {}
    for flag, name in ray_only:
        value = getattr(args, name)
        if value is not None:
            if args.backend != "ray":
                raise UsageError(f"{flag} needs --backend ray")
            options[name] = value
    if args.jobs is not None:
        if args.backend != "local":
            raise UsageError("--jobs applies to the local backend; Ray sizes itself")
        options["jobs"] = args.jobs
    return options


def _print_results(out: Path, keys: list[str]) -> None:
    """The compact results table of the runs ``keys`` recorded in ``out``."""
    from benchmark.run.console import format_table, summary_rows
    from benchmark.run.store import ResultsStore, read_record

    store = ResultsStore(out)
    records = [read_record(store.record_path(k)) for k in dict.fromkeys(keys)
               if store.record_path(k).exists()]
    if records:
        print(format_table(summary_rows(records)))


def cmd_run(args) -> int:
    from benchmark.run.console import failure_line
    from benchmark.run.grid import run_experiment
    from benchmark.run.plan import ExecOptions

    exp = _experiment_from_args(args)
    out = args.out or (Path("results") / exp.name if args.config else DEFAULT_OUT)
    exec_options = ExecOptions(data_root=args.data_root, download=args.download,
                               threads=args.threads, checkpoints=args.checkpoints,
                               loggers=tuple(_names(args.log)), batch_seeds=args.batch_seeds)
    start = time.perf_counter()
    outcome = run_experiment(exp, out, exec_options, backend=args.backend,
                             backend_options=_backend_options(args), force=args.force,
                             quiet=args.quiet, save_models=args.save_models)
    if not args.quiet:
        _print_results(out, outcome.keys)
    by_others = f", {outcome.elsewhere} by another driver" if outcome.elsewhere else ""
    print(f"{outcome.planned} runs: {outcome.ok} done, {outcome.failed} failed, "
          f"{outcome.skipped - outcome.elsewhere} already finished{by_others}; "
          f"{time.perf_counter() - start:.1f} s; results in {out}/", flush=True)
    if outcome.failures:
        print(failure_line(outcome.failures), file=sys.stderr)
        return 1
    return 0


def cmd_report(args) -> int:
    from benchmark.report.build import build_report
    from benchmark.run.describe import write_description
    from benchmark.run.store import ResultsStore

    if not (args.dir / "runs").is_dir():
        raise UsageError(f"{args.dir} is not a results folder (no runs/ inside)")
    ResultsStore(args.dir).check()
    write_description(args.dir)
    path = build_report(args.dir)
    print(f"report rebuilt in {path}")
    return 0


def cmd_verdict(args) -> int:
    from benchmark.report.readme import committed_folders
    from benchmark.report.verdict import verdict_markdown, verdict_table
    from benchmark.run.store import atomic_write

    folders = list(args.dirs) or committed_folders(Path("results"))
    for folder in folders:
        if not (folder / "tables" / "claim.csv").is_file():
            raise UsageError(f"{folder} has no tables/claim.csv; run `clonebench report "
                             f"{folder}` first")
    table = verdict_table(folders, [f.name for f in folders])
    atomic_write(args.out / "verdict.csv", table.to_csv(index=False, float_format="%.10g"))
    atomic_write(args.out / "verdict.md", verdict_markdown(table))
    print(f"verdict map of {len(folders)} folders ({len(table)} settings) in {args.out}/")
    return 0


def cmd_readme(args) -> int:
    from benchmark.report import readme

    files = args.files or [Path("README.md"), Path("docs/tuning.md"), Path("docs/design.md")]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise UsageError(f"{missing[0]} does not exist")
    return max(readme.run(f, args.results, args.check) for f in files)


def _names(texts: Optional[list[str]]) -> list[str]:
    """Names from repeatable, comma-separated flag values."""
    return [t.strip() for text in texts or [] for t in text.split(",") if t.strip()]


def cmd_list(args) -> int:
    from benchmark.listing import listing

    print(listing(_names(args.plugins)), end="")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command in ("perf", "tune", "screenshot", "compare"):
            from benchmark.perf import speed
            from benchmark.report import compare, screenshot
            from benchmark.tune import sweep

            tool = {"perf": speed, "tune": sweep, "screenshot": screenshot,
                    "compare": compare}[args.command]
            return tool.run(args)
        return {"run": cmd_run, "report": cmd_report, "list": cmd_list, "verdict": cmd_verdict,
                "readme": cmd_readme}[args.command](args)
    except UsageError as err:
        print(f"clonebench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clonebench: interrupted; finished runs are saved, run the same command to "
              "complete the grid", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
