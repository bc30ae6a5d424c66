"""``clonebench perf``: the suite's training overhead, measured.

In one process, on the same device, the same training is timed three ways:

- **plain**: a hand-written PyTorch loop (shuffled index batches over tensors on the device,
  cross-entropy, ``optimizer.step()``), the speed reference; for ``pnc`` the same loop for step 1
  and then PNC's own phases (``PNC.clone_phases``) run by a hand-written loop, so the ratio
  is the strategy template's overhead around PNC's computation; for ``replay`` the same loop
  with each batch joined by as many samples of a class-balanced buffer of 200 stored samples
  (``train_plain_replay``), the size the suite's ``replay`` keeps here;
- **suite**: a registered strategy (default ``finetune``) built through the registry with a
  ``StrategyContext`` and trained by ``strategy.train(experience)`` on the stream's
  ``TensorExperience``s, as the runner does (for a strategy that uses a source network, the
  source's cost is subtracted, as in run records);
- **avalanche**: Avalanche's ``Naive`` over the same data through its ``DataLoader``, with
  Avalanche's default metrics (accuracy and loss per epoch, experience and stream) and no logger.

Same backbone and initial weights, data, batch size, epochs and optimizer (Adam) for all three.
Only training is timed (no evaluation); each figure is the median of ``--repeats`` timed runs
(the three ways interleaved, their order rotated each repeat) after one untimed warm-up of each
way (one epoch of the first experience). On a GPU the clock is
read after ``torch.cuda.synchronize``. Images per second count every training sample used per
epoch (a final batch of one sample is skipped, by all three).

Workloads: ``split-digits`` (the default stream, MLP), ``synthetic-fashion``, random uint8
images of Fashion-MNIST's shape (1 x 28 x 28, 10 classes, 5 x 2) decoded as the real stream is,
on the CNN of the committed Fashion-MNIST results (``--cnn`` for another), and
``synthetic-cifar100``, random tensors with CIFAR-100's shapes (3 x 32 x 32, 100 classes,
10 x 10) and its default backbone, reduced ResNet-18. For ``finetune`` the suite and the plain
loop draw the same shuffles from the same seed, so they must end with the same weights; the
command prints the largest difference as a check that both did the same work.

``--agreement`` instead compares the final accuracies of the suite's ``replay``, ``icarl`` and
``der`` with plain Avalanche's (``benchmark.perf.agreement``); ``--seed-batch`` times seeds run
one after another against seeds trained together (``benchmark.perf.seed_batch``).
"""
from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Optional

import torch
from torch import nn

from benchmark.core.errors import UsageError
from benchmark.perf.workloads import (
    Workload,
    _sync,
    avalanche_benchmark,
    make_workload,
    train_avalanche,
    train_plain,
    train_plain_pnc,
    train_plain_replay,
    train_suite,
)

METHODS = ("plain", "suite", "avalanche")


def timed(fn: Callable[[], object], device: torch.device):
    """(result, wall seconds) of ``fn()``, the device synchronised before and after."""
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return result, time.perf_counter() - start


def runners(work: Workload, device: torch.device, strategy: str, hparams: dict):
    """One zero-argument callable per method, each returning (model, seconds)."""
    bench = avalanche_benchmark(work)

    def plain():
        if strategy == "pnc":
            (model, source_seconds), seconds = timed(
                lambda: train_plain_pnc(work, device, hparams), device)
            return model, seconds - source_seconds
        if strategy == "replay":
            from strategies.memory import FALLBACK_SAMPLES

            return timed(lambda: train_plain_replay(work, device, FALLBACK_SAMPLES), device)
        return timed(lambda: train_plain(work, device), device)

    def suite():
        (model, source_seconds), seconds = timed(
            lambda: train_suite(work, device, strategy, hparams), device)
        return model, seconds - source_seconds

    def avalanche():
        return timed(lambda: train_avalanche(work, device, bench), device)

    return {"plain": plain, "suite": suite, "avalanche": avalanche}


def max_weight_difference(a: nn.Module, b: nn.Module) -> Optional[float]:
    """Largest absolute difference between two models' parameters and buffers; None when the
    models differ in structure (a strategy that grows or wraps the backbone)."""
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        return None
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def measure(work: Workload, device: torch.device, strategy: str, hparams: dict,
            repeats: int) -> dict:
    """Median seconds per method over ``repeats`` interleaved runs, after a warm-up."""
    for run in runners(work.first_step(), device, strategy, hparams).values():
        run()
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    models: dict[str, nn.Module] = {}
    run_of = runners(work, device, strategy, hparams)
    for r in range(repeats):
        for method in METHODS[r % 3:] + METHODS[:r % 3]:  # rotated: no method always first
            models[method], seconds = run_of[method]()
            times[method].append(seconds)
    return {"seconds": {m: statistics.median(t) for m, t in times.items()},
            "suite_vs_plain_weights": max_weight_difference(models["suite"], models["plain"])}


def ratios(seconds: dict[str, float]) -> dict[str, float]:
    """suite/plain and avalanche/plain wall-time ratios."""
    return {"suite/plain": seconds["suite"] / seconds["plain"],
            "avalanche/plain": seconds["avalanche"] / seconds["plain"]}


COLUMNS = ("stream", "backbone", "steps", "epochs", "batch", "images", "plain s", "suite s",
           "avalanche s", "suite/plain", "avalanche/plain", "plain img/s", "suite img/s",
           "avalanche img/s")


def table_row(work: Workload, seconds: dict[str, float]) -> list[str]:
    """One table row: the workload, median seconds (4 significant digits, so that the ratios
    and rates can be recomputed from the row), ratios and images per second."""
    r = ratios(seconds)
    n = work.images()
    steps = f"{work.data.n_steps}x{len(work.data.classes_per_step[0])}"
    return [work.name, work.backbone, steps, str(work.epochs), str(work.batch_size), str(n),
            *(f"{seconds[m]:.4g}" for m in METHODS),
            f"{r['suite/plain']:.2f}", f"{r['avalanche/plain']:.2f}",
            *(f"{n / seconds[m]:.0f}" for m in METHODS)]


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows under ``COLUMNS`` as an aligned plain-text table."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def profile_suite(work: Workload, device: torch.device, strategy: str, hparams: dict,
                  top: int) -> str:
    """cProfile of one suite training: the ``top`` functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    train_suite(work, device, strategy, hparams)
    _sync(device)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def report(args, device: torch.device, works: list[Workload], hparams: dict) -> None:
    """Measures every workload and prints the header, the table, the checks (and profiles)."""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"strategy {args.strategy} (suite) vs a plain PyTorch loop vs Avalanche Naive; "
          f"device {where}; torch {torch.__version__}; CPU threads: {torch.get_num_threads()}")
    print(f"median of {args.repeats} timed runs after a warm-up; training only, no evaluation")
    if args.strategy == "pnc":
        print("plain = PNC's own steps (plain loop for step 1, then PNC.clone_phases by a "
              "plain loop) without the strategy template; avalanche = Avalanche Naive (finetune), "
              "for scale only; images = finetune's epochs x samples")
    elif args.strategy == "replay":
        print("plain = a hand-written replay loop (class-balanced buffer of as many samples as "
              "the suite's replay keeps, one memory batch per batch); avalanche = Avalanche "
              "Naive (finetune), for scale only; images = finetune's epochs x samples")
    elif args.strategy != "finetune":
        print(f"plain and avalanche train plainly (finetune); the suite's {args.strategy} does "
              "its own extra work, so suite/plain is not pure overhead")
    rows, checks = [], []
    for work in works:
        result = measure(work, device, args.strategy, hparams, args.repeats)
        rows.append(table_row(work, result["seconds"]))
        diff = None if args.strategy == "replay" else result["suite_vs_plain_weights"]
        checks.append(f"{work.name}: max |suite weights - plain weights| = "
                      + (f"{diff:.3g}" if diff is not None else
                         "not comparable (not the plain backbone, or other random draws)"))
    print()
    print(format_table(rows))
    print()
    for line in checks:
        print(line)
    if args.profile:
        for work in works:
            print(f"\ncProfile of one suite training on {work.name}:")
            print(profile_suite(work, device, args.strategy, hparams, args.profile))


def run(args) -> int:
    from benchmark.run.plan import resolve_device
    from strategies import get_strategy

    device = torch.device(resolve_device(args.device))
    for name in ("epochs", "repeats", "images_per_experience", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.grid:
        from benchmark.perf import grid_speed

        return grid_speed.run(args)
    if args.agreement:
        if args.agreement_seeds < 1:
            raise UsageError(f"--agreement-seeds must be >= 1, got {args.agreement_seeds}")
        from benchmark.perf import agreement

        return agreement.run(args)
    if args.seed_batch is not None:
        from benchmark.perf import seed_batch

        return seed_batch.run(args, device)
    hparams = get_strategy(args.strategy).resolve({})
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    def images(name: str) -> int:
        if args.images_per_experience:
            return args.images_per_experience
        if device.type == "cuda":
            return 5000
        return 1000 if name == "synthetic-fashion" else 200

    from benchmark.core.models import canonical_backbone
    from benchmark.perf.workloads import FASHION_CNN

    cnn = canonical_backbone(args.cnn) if args.cnn else FASHION_CNN
    works = [make_workload(n, args.epochs, images(n), device, cnn) for n in names]
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        report(args, device, works, hparams)
    finally:
        torch.set_num_threads(previous_threads)
    return 0
