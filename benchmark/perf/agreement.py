"""``clonebench perf --agreement``: the suite's ``replay``, ``icarl`` and ``der`` against the
same methods run by plain Avalanche.

For each seed, on the CPU, on ``split-digits`` (the seed's class order) with the MLP drawn from
the seed and the stream's training settings (Adam, learning rate, batch size; ``--epochs`` overrides
the stream's 10):

- **plain Avalanche**: ``Naive`` + ``ReplayPlugin`` with a ``ClassBalancedBuffer``,
  ``avalanche.training.ICaRL`` (fixed memory) and ``avalanche.training.DER``, over an
  ``nc_benchmark`` of the same experiences (inputs decoded to float once), trained through
  Avalanche's own data loaders, with a buffer of as many samples as the suite's strategy keeps;
- **suite**: the registered strategy, trained on the stream's ``TensorExperience``s with the
  stream's default budget in bytes (``memory_bytes``).

Both are scored the same way: final average accuracy A_T (mean over experiences of the accuracy
on its test set, predicting among all classes). The two runs of a seed share data, initial
weights and budget but not their random draws (buffer selection, shuffling), so they differ by
about the seed-to-seed spread; ``paired_summary`` gives the mean paired difference and its
spread.
"""
from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from benchmark.core.models import make_backbone
from benchmark.core.training import TrainSettings
from benchmark.data import StreamData, get_stream

STRATEGIES = ("replay", "icarl", "der")
STREAM = "split-digits"


@dataclass(frozen=True)
class Paired:
    """Final accuracies of the suite and of plain Avalanche over the same seeds."""

    strategy: str
    suite: list[float]
    plain: list[float]

    @property
    def differences(self) -> list[float]:
        return [s - p for s, p in zip(self.suite, self.plain)]


def paired_summary(suite: list[float], plain: list[float]) -> dict[str, float]:
    """Means and standard deviations of both, the mean paired difference (suite - plain), its
    standard deviation and the half-width of its 95% t-interval (nan below two seeds)."""
    from scipy.stats import t as student

    n = len(suite)
    diffs = [s - p for s, p in zip(suite, plain)]
    sd = statistics.stdev(diffs) if n > 1 else float("nan")
    half = student.ppf(0.975, n - 1) * sd / math.sqrt(n) if n > 1 else float("nan")
    return {"suite_mean": statistics.fmean(suite), "plain_mean": statistics.fmean(plain),
            "suite_sd": statistics.stdev(suite) if n > 1 else float("nan"),
            "plain_sd": statistics.stdev(plain) if n > 1 else float("nan"),
            "diff_mean": statistics.fmean(diffs), "diff_sd": sd, "diff_ci95": half}


@torch.no_grad()
def final_accuracy(logits_of, data: StreamData) -> float:
    """A_T: mean over experiences of the test accuracy of ``logits_of(x)`` (decoded inputs),
    arg-max over every class of the stream."""
    accs = []
    for x, y in data.test:
        pred = logits_of(data.inputs(x)).argmax(dim=1)
        accs.append(float((pred.cpu() == y.cpu()).float().mean()))
    return float(np.mean(accs))


def _settings(epochs: int | None) -> TrainSettings:
    td = dict(get_stream(STREAM).train_defaults)
    if epochs is not None:
        td["epochs"] = epochs
    return TrainSettings(**td)


def run_suite(strategy: str, data: StreamData, settings: TrainSettings, seed: int):
    """(A_T, samples kept at the end, the strategy) of the registered strategy with the
    stream's default budget."""
    from strategies import StrategyContext, get_strategy

    model = make_backbone("mlp", data.num_classes, data.input_shape, seed=seed)
    ctx = StrategyContext(device=torch.device("cpu"), train=settings, seed=seed,
                          num_classes=data.num_classes, sample_bytes=data.sample_bytes,
                          memory_bytes=get_stream(STREAM).memory_bytes)
    spec = get_strategy(strategy)
    learner = spec.build(model, ctx, **spec.resolve({}))
    for experience in data.train_experiences():
        learner.train(experience, eval_streams=[])
    return final_accuracy(learner.predict_logits, data), learner.buffer_samples(), learner


def avalanche_benchmark(data: StreamData):
    """The stream's experiences as an Avalanche ``nc_benchmark`` (float inputs, the seed's
    class order, original class ids)."""
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark
    from torch.utils.data import TensorDataset

    def whole(pairs):
        x = torch.cat([x for x, _ in pairs])
        return TensorDataset(data.inputs(x), torch.cat([y for _, y in pairs]))

    order = [c for step in data.classes_per_step for c in step]
    return nc_benchmark(whole(data.train), whole(data.test), n_experiences=data.n_steps,
                        task_labels=False, fixed_class_order=order)


def run_plain(strategy: str, data: StreamData, settings: TrainSettings, seed: int,
              samples: int, hparams: dict) -> float:
    """A_T of plain Avalanche's version of ``strategy`` with a buffer of ``samples``."""
    from avalanche.training import DER, ICaRL, Naive
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.storage_policy import ClassBalancedBuffer

    from strategies.base import silent_evaluator
    from strategies.features import split_head

    torch.manual_seed(seed)
    model = make_backbone("mlp", data.num_classes, data.input_shape, seed=seed)
    optimizer = settings.make_optimizer(model.parameters())
    common = dict(train_mb_size=settings.batch_size, train_epochs=settings.epochs,
                  eval_mb_size=settings.eval_batch_size, device="cpu",
                  evaluator=silent_evaluator())
    with warnings.catch_warnings(record=True):  # Avalanche's deprecation notices, kept silent
        if strategy == "replay":
            buffer = ClassBalancedBuffer(samples, adaptive_size=True)
            learner = Naive(model=model, optimizer=optimizer, criterion=nn.CrossEntropyLoss(),
                            plugins=[ReplayPlugin(samples, storage_policy=buffer)], **common)
        elif strategy == "icarl":
            features, head = split_head(model)
            learner = ICaRL(feature_extractor=features, classifier=head, optimizer=optimizer,
                            memory_size=samples, buffer_transform=None, fixed_memory=True,
                            **common)
        elif strategy == "der":
            learner = DER(model=model, optimizer=optimizer, criterion=nn.CrossEntropyLoss(),
                          mem_size=samples, alpha=hparams["alpha"], beta=hparams["beta"],
                          **common)
        else:
            raise ValueError(f"no plain Avalanche version of {strategy!r}")
        for experience in avalanche_benchmark(data).train_stream:
            learner.train(experience, eval_streams=[])
    learner.model.eval()  # ICaRL's TrainEvalModel then predicts with its NCM classifier
    return final_accuracy(learner.model, data)


def compare(strategies=STRATEGIES, seeds=(0, 1, 2), epochs: int | None = None) -> list[Paired]:
    """Suite and plain Avalanche final accuracies per strategy over ``seeds``."""
    from strategies import get_strategy

    settings = _settings(epochs)
    out = []
    for strategy in strategies:
        suite, plain = [], []
        for seed in seeds:
            data = get_stream(STREAM).build(seed=seed)
            acc, samples, _ = run_suite(strategy, data, settings, seed)
            suite.append(acc)
            hparams = get_strategy(strategy).resolve({})
            plain.append(run_plain(strategy, data, settings, seed, samples, hparams))
        out.append(Paired(strategy, suite, plain))
    return out


def report(results: list[Paired], seeds, epochs: int) -> str:
    """The comparison as text: one row per strategy."""
    lines = [f"{STREAM}, MLP, {epochs} epochs, seeds {', '.join(map(str, seeds))}: final "
             "accuracy A_T, suite vs plain Avalanche (same data, weights, budget in samples)",
             f"{'strategy':9s} {'suite':>15s} {'plain':>15s} {'suite - plain':>22s}"]
    for r in results:
        s = paired_summary(r.suite, r.plain)
        lines.append(f"{r.strategy:9s} {s['suite_mean']:.3f} ± {s['suite_sd']:.3f}   "
                     f"{s['plain_mean']:.3f} ± {s['plain_sd']:.3f}   "
                     f"{s['diff_mean']:+.3f} (95% CI ± {s['diff_ci95']:.3f})")
    lines.append("per seed (suite / plain): " + "; ".join(
        f"{r.strategy} " + " ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(r.suite, r.plain))
        for r in results))
    return "\n".join(lines)


def run(args) -> int:
    """``clonebench perf --agreement``."""
    seeds = tuple(range(args.agreement_seeds))
    epochs = args.epochs or get_stream(STREAM).train_defaults["epochs"]
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        print(report(compare(STRATEGIES, seeds, epochs), seeds, epochs))
    finally:
        torch.set_num_threads(previous)
    return 0
