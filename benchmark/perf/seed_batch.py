"""``clonebench perf --seed-batch``: what training a configuration's seeds together saves
(``benchmark.run.seed_batch``).

For each strategy (default ``finetune`` and ``joint``) on ``split-digits`` with its default
training (``--epochs`` overrides its 10), seeds 0..N-1 (``--seed-count``, default 10), in one
process, on one device, with the same torch thread count, two ways:

- **separate**: the N runs one after another, each by ``execute_run``, as ``clonebench run``
  does by default;
- **batched**: the N runs as one group, by ``execute_seed_group`` (``--batch-seeds``).

Both produce the full records (training and the evaluation after every step). Figures: the
median wall seconds of each way over ``--repeats`` (the two ways alternated, their order rotated
each repeat, after an untimed warm-up of both), the training seconds the records report (sum of
``costs.seconds``), the ratios separate / batched, and, as a check that both did the same work,
the largest difference between the two ways' records: correct predictions of a test-set cell,
and final accuracy A_T in points.
"""
from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from benchmark.core.errors import UsageError
from benchmark.run.plan import ExecOptions, Experiment, RunConfig
from benchmark.run.runner import execute_run
from benchmark.run.seed_batch import BATCHED, execute_seed_group

STREAM = "split-digits"
COLUMNS = ("strategy", "seeds", "epochs", "separate s", "batched s", "speed-up",
           "separate train s", "batched train s", "train speed-up", "max cell diff",
           "max |A_T diff|")


def configs(strategy: str, seeds: int, epochs, device: str) -> list[RunConfig]:
    """The runs of one strategy on split-digits, seeds 0..seeds-1."""
    train = {} if epochs is None else {"epochs": epochs}
    return Experiment(streams=[STREAM], strategies=[strategy], seeds=list(range(seeds)),
                      device=device, train=train).run_configs()


def record_difference(a: list[dict], b: list[dict]) -> tuple[int, float]:
    """(largest difference of correct counts in a cell, of final accuracy in points) between
    two ways' records of the same runs."""
    cells, final = 0, 0.0
    for ra, rb in zip(a, b):
        for row_a, row_b in zip(ra["correct_matrix"], rb["correct_matrix"]):
            cells = max([cells] + [abs(x - y) for x, y in zip(row_a, row_b) if x is not None])
        final = max(final, 100 * abs(ra["metrics"]["final_accuracy"]
                                     - rb["metrics"]["final_accuracy"]))
    return cells, final


def measure(runs: list[RunConfig], options: ExecOptions, repeats: int) -> dict:
    """Median wall and training seconds of both ways, and the records' difference."""
    ways = {"separate": lambda: [execute_run(c, options) for c in runs],
            "batched": lambda: execute_seed_group(runs, options)}
    warm = [dataclasses.replace(c, train={**c.train, "epochs": 1}) for c in runs[:2]]
    execute_run(warm[0], options)
    execute_seed_group(warm, options)
    wall: dict[str, list[float]] = {w: [] for w in ways}
    train: dict[str, list[float]] = {w: [] for w in ways}
    records: dict[str, list[dict]] = {}
    names = list(ways)
    for r in range(repeats):
        for way in names[r % 2:] + names[:r % 2]:
            start = time.perf_counter()
            records[way] = ways[way]()
            wall[way].append(time.perf_counter() - start)
            failed = [rec["error"] for rec in records[way] if rec["status"] != "ok"]
            if failed:
                raise UsageError(f"a {way} run failed: {failed[0]}")
            train[way].append(sum(sum(rec["costs"]["seconds"]) for rec in records[way]))
    cells, final = record_difference(records["separate"], records["batched"])
    return {"wall": {w: statistics.median(t) for w, t in wall.items()},
            "train": {w: statistics.median(t) for w, t in train.items()},
            "cells": cells, "final": final}


def row(strategy: str, seeds: int, epochs: int, result: dict) -> list[str]:
    wall, train = result["wall"], result["train"]
    return [strategy, str(seeds), str(epochs), f"{wall['separate']:.2f}",
            f"{wall['batched']:.2f}", f"{wall['separate'] / wall['batched']:.2f}",
            f"{train['separate']:.2f}", f"{train['batched']:.2f}",
            f"{train['separate'] / train['batched']:.2f}", str(result["cells"]),
            f"{result['final']:.2f}"]


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def run(args, device: torch.device) -> int:
    """Measures every strategy of ``--seed-batch`` and prints the table."""
    strategies = [s.strip() for s in args.seed_batch.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in BATCHED]
    if unknown:
        raise UsageError(f"--seed-batch: {unknown[0]!r} cannot train its seeds together; "
                         f"choose among {', '.join(BATCHED)}")
    if args.seed_count < 2:
        raise UsageError(f"--seed-count must be >= 2, got {args.seed_count}")
    options = ExecOptions(threads=args.threads, quiet=True)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"seeds trained separately (execute_run, one after another) vs together "
          f"(execute_seed_group) on {STREAM}; device {where}; torch {torch.__version__}; "
          f"CPU threads: {args.threads}")
    print(f"median of {args.repeats} timed runs after a warm-up; whole runs (training and "
          "evaluation after every step); train s = the records' training seconds")
    rows = []
    previous_threads = torch.get_num_threads()
    try:
        for strategy in strategies:
            runs = configs(strategy, args.seed_count, args.epochs, str(device))
            result = measure(runs, options, args.repeats)
            rows.append(row(strategy, args.seed_count, runs[0].train["epochs"], result))
    finally:
        torch.set_num_threads(previous_threads)
    print()
    print(format_table(rows))
    return 0
