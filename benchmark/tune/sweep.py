"""``clonebench tune``: choose hyper-parameters on validation data, never on the test split.

Each trial is a run whose every experience has its test set replaced by a validation set carved
from its own training data (``benchmark.data.base.validation_split``: stratified, seeded by the
run's seed); the test tensors are not read. Tuning seeds must differ from the seeds reported by
the default experiments (0-9). Every strategy gets the same budget of trials
(``benchmark.tune.spaces``). The runs are ordinary records (``config.split`` = ``validation``)
in the results folder (default ``results/tuning/<stream>``), so tuning resumes like any grid;
the folder's report adds ``tables/trials.csv`` (every trial and seed, column ``split``) and
``tables/choices.csv`` (per strategy: the configuration with the best mean validation A_T,
``benchmark.report.tuning``), and the choices are printed.

    clonebench tune [--stream split-digits] [--strategies ewc,lwf,...] [--seeds 100 101]
                    [--trials 6] [--fraction 0.2] [--epochs N] [--grid ewc.ewc_lambda=1,10]
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from benchmark.core.errors import UsageError
from benchmark.report.tuning import CHOICE_METRIC, choices_table, trials_table
from benchmark.run.plan import DEFAULT_SEEDS, SHARES_OPTIONS, ExecOptions, Experiment
from benchmark.run.store import ResultsStore
from benchmark.tune.spaces import space_for, trials
from strategies import STRATEGIES


def parse_grid(items: list[str]) -> dict[str, dict[str, list[Any]]]:
    """``["ewc.ewc_lambda=1,10"]`` -> {"ewc": {"ewc_lambda": [1.0, 10.0]}}, values parsed with
    the option's type; UsageError for a bad item, strategy, option or value."""
    grids: dict[str, dict[str, list[Any]]] = {}
    for item in items:
        lhs, sep, values = item.partition("=")
        strategy, dot, option = lhs.partition(".")
        if not sep or not dot or not values.strip():
            raise UsageError(f"bad --grid {item!r}: expected STRATEGY.OPTION=V1,V2,...")
        spec = STRATEGIES.get(strategy.strip())
        known = {o.name: o for o in spec.options}
        if option.strip() not in known:
            raise UsageError(f"unknown option {option.strip()!r} for strategy {spec.name!r}")
        opt = known[option.strip()]
        grids.setdefault(spec.name, {})[opt.name] = [
            opt.parse(v.strip(), spec.name) for v in values.split(",") if v.strip()]
    return grids


def plan_trials(strategies: list[str], budget: int, grids: dict) -> dict[str, list[dict]]:
    """Per strategy, the configurations to try (same budget for all)."""
    plan = {}
    for name in strategies:
        spec = STRATEGIES.get(name)
        if name in SHARES_OPTIONS:
            raise UsageError(f"{name} takes {SHARES_OPTIONS[name]}'s options and is not tuned "
                             "on its own; leave it out of tuning")
        defaults = spec.resolve({})
        space = space_for(name, defaults, grids.get(name))
        plan[name] = trials(space, defaults, budget)
    return plan


def run_tuning(stream: str, strategies: list[str], seeds: list[int], budget: int,
               fraction: float, out: Path, grids: dict, train: dict,
               exec_options: ExecOptions, jobs: int = 1, quiet: bool = True,
               base: Optional[Experiment] = None) -> pd.DataFrame:
    """Runs every trial into ``out`` and writes the tuning tables; returns the choices.
    ``base`` (an experiment file's) gives the backbone, stream options, source and plugins of
    every trial; its strategies, seeds and options are replaced by the trials'."""
    from benchmark.run.grid import run_experiment

    reported = sorted(set(seeds) & set(DEFAULT_SEEDS))
    if reported:
        raise UsageError(f"tuning seed {reported[0]} is a reported seed (the default "
                         f"experiments report seeds {DEFAULT_SEEDS[0]}-{DEFAULT_SEEDS[-1]}); "
                         "tune on others, e.g. 100 101")
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"bad --fraction {fraction}: expected a number in (0, 1)")
    plan = plan_trials(strategies, budget, grids)
    evaluation = {"split": "validation", "fraction": fraction}
    base = base or Experiment(streams=[stream])
    experiments = [dataclasses.replace(base, name=out.name, streams=[stream],
                                       strategies=[name], seeds=list(seeds),
                                       train=dict(train), strategy_options={name: options},
                                       evaluation=evaluation, match_memory=None)
                   for name, configs in plan.items() for options in configs]
    run_experiment(experiments, out, exec_options, backend_options={"jobs": jobs},
                   quiet=quiet, build_report=False)  # one grid: validated before it runs
    from benchmark.report.build import build_report

    build_report(out, quiet=True)  # writes tables/trials.csv and tables/choices.csv too
    records = [r for r in ResultsStore(out).records()
               if r["config"].get("split") == "validation"]
    return choices_table(trials_table(records))


def run(args) -> int:
    from benchmark.run.experiment_file import load_experiment, parse_scenario_option

    base = load_experiment(args.config) if args.config else Experiment(streams=[args.stream])
    if args.scenario and args.scenario != base.scenario.get("name"):
        base.scenario = {"name": args.scenario}
    for text in args.scenario_options:
        option, value = parse_scenario_option(text)
        base.scenario[option] = value
    stream = base.streams[0] if args.config else args.stream
    strategies = ([s.strip() for s in args.strategies.split(",") if s.strip()]
                  if args.strategies else [s for s in STRATEGIES if s not in SHARES_OPTIONS and
                                           base.scenario.get("name", "class-incremental") in
                                           STRATEGIES.get(s).scenarios])
    train = dict(base.train, **({"epochs": args.epochs} if args.epochs else {}))
    out = args.out or Path("results") / "tuning" / stream
    choices = run_tuning(stream, strategies, args.seeds, args.trials, args.fraction, out,
                         parse_grid(args.grid), train,
                         ExecOptions(data_root=args.data_root), jobs=args.jobs, base=base)
    for _, row in choices.iterrows():
        mark = "" if row["chosen"] == row["defaults"] else "  (differs from the defaults)"
        print(f"{row['stream']} {row['strategy']}: {row['chosen']} -> validation A_T "
              f"{row[f'{CHOICE_METRIC}_mean']:.4f} over {row['seeds']} seeds, "
              f"{row['trials']} trials{mark}")
    print(f"tuning results: {out / 'tables' / 'choices.csv'}")
    return 0
