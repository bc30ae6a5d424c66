"""Avalanche's loggers on a run (``clonebench run --log csv,tensorboard``).

The loggers hang off an ``EvaluationPlugin`` with Avalanche's per-epoch loss and accuracy
metrics on the training mini-batches, handed to the strategy as its evaluator. They run in the
process that executes the run and write under ``<log_dir>/<run key>/``: ``csv/``
(``training_results.csv``: one line per epoch of every training phase) and ``tensorboard/``
(event files for ``tensorboard --logdir``). The suite's own evaluation after each step does not
go through Avalanche's ``eval``, so the loggers see training only. Metrics read the model's
outputs and change nothing: a run's record is the same with or without loggers.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional


def make_evaluator(loggers: Sequence[str], folder: Path):
    """An ``EvaluationPlugin`` with per-epoch loss and accuracy and the named loggers (``csv``,
    ``tensorboard``) writing under ``folder``; None without loggers."""
    if not loggers:
        return None
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
    from avalanche.logging import CSVLogger, TensorboardLogger
    from avalanche.training.plugins import EvaluationPlugin

    folder = Path(folder)
    made = []
    if "csv" in loggers:
        made.append(CSVLogger(log_folder=str(folder / "csv")))
    if "tensorboard" in loggers:
        made.append(TensorboardLogger(tb_log_dir=folder / "tensorboard"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return EvaluationPlugin(accuracy_metrics(epoch=True), loss_metrics(epoch=True),
                                loggers=made)


def named_stream(experiences: list, name: str = "train") -> list:
    """``experiences`` as members of a stream called ``name`` (Avalanche's metrics name their
    values after an experience's ``origin_stream``). The stream object holds no experience, so
    a strategy still cannot reach other steps' data through it."""
    from avalanche.benchmarks.scenarios.generic_scenario import CLStream

    stream = CLStream(name, [], set_stream_info=False)
    for experience in experiences:
        experience.origin_stream = stream
    return experiences


def close_evaluator(evaluator: Optional[object]) -> None:
    """Flushes and closes the evaluator's loggers (their files)."""
    for logger in getattr(evaluator, "loggers", None) or []:
        writer = getattr(logger, "writer", None)
        target = writer if writer is not None else logger
        close = getattr(target, "close", None)
        if callable(close):
            close()
