"""``python -m benchmark.perf``: the suite's training overhead, measured (SPEC 7).

In one process, on the same device, the same training is timed three ways:

- **plain**: a hand-written PyTorch loop (shuffled index batches over tensors on the device,
  cross-entropy, ``optimizer.step()``), the speed reference; for ``pnc`` the same loop for step 1
  and then PNC's own step function (``strategies.pnc.clone_step``) called directly, so the ratio
  is the strategy template's overhead around PNC's computation;
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

Workloads: ``split-digits`` (the default stream, MLP) and ``synthetic-cifar100``, random tensors
with CIFAR-100's shapes (3 x 32 x 32, 100 classes, 10 x 10) and its default backbone, reduced
ResNet-18. For ``finetune`` the suite and the plain loop draw the same shuffles from the same
seed, so they must end with the same weights; the command prints the largest difference as a
check that both did the same work.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import UsageError
from benchmark.models import make_backbone
from benchmark.streams import StreamData, class_order, get_stream, split_classes

WORKLOADS = ("split-digits", "synthetic-cifar100")
METHODS = ("plain", "suite", "avalanche")
SEED = 0


@dataclass
class Workload:
    """What is trained: a stream's tensors, a backbone and the training settings."""

    name: str
    data: StreamData
    backbone: str
    epochs: int
    batch_size: int
    lr: float

    def settings(self, epochs: Optional[int] = None):
        from strategies import TrainSettings

        return TrainSettings(epochs=epochs or self.epochs, batch_size=self.batch_size,
                             lr=self.lr, optimizer="adam")

    def make_model(self) -> nn.Module:
        return make_backbone(self.backbone, self.data.num_classes, self.data.input_shape,
                             seed=SEED)

    def images(self) -> int:
        """Training samples used over all experiences and epochs (1-sample last batch skipped)."""
        per_epoch = sum(len(y) - (len(y) % self.batch_size == 1) for _, y in self.data.train)
        return per_epoch * self.epochs

    def first_step(self) -> "Workload":
        """The same workload cut to its first experience and one epoch (for warm-up)."""
        d = self.data
        cut = StreamData(name=d.name, seed=d.seed, num_classes=d.num_classes,
                         input_shape=d.input_shape, backbone=d.backbone,
                         classes_per_step=d.classes_per_step[:1], train=d.train[:1],
                         test=d.test[:1], options=d.options, augment=d.augment)
        return Workload(self.name, cut, self.backbone, 1, self.batch_size, self.lr)


def synthetic_cifar100(images_per_experience: int, n_experiences: int = 10,
                       seed: int = SEED) -> StreamData:
    """Random N(0, 1) inputs of CIFAR-100's shape (3 x 32 x 32), 100 classes split into
    ``n_experiences`` equal experiences, ``images_per_experience`` training images each."""
    gen = torch.Generator().manual_seed(seed)
    classes = split_classes(class_order(100, seed), n_experiences)
    train, test = [], []
    for cls in classes:
        labels = torch.tensor(cls, dtype=torch.int64)
        y = labels[torch.arange(images_per_experience) % len(cls)]
        x = torch.randn(images_per_experience, 3, 32, 32, generator=gen)
        train.append((x, y))
        test.append((x[: len(cls)].clone(), labels.clone()))
    return StreamData(name="synthetic-cifar100", seed=seed, num_classes=100,
                      input_shape=(3, 32, 32), backbone="reduced-resnet18",
                      classes_per_step=classes, train=train, test=test,
                      options={"n_experiences": n_experiences})


def make_workload(name: str, epochs: Optional[int], images_per_experience: int,
                  device: torch.device) -> Workload:
    if name == "split-digits":
        spec = get_stream(name)
        data = spec.build(seed=SEED).to(device)
        td = spec.train_defaults
        return Workload(name, data, spec.backbone, epochs or td["epochs"], td["batch_size"],
                        td["lr"])
    if name == "synthetic-cifar100":
        data = synthetic_cifar100(images_per_experience).to(device)
        return Workload(name, data, "reduced-resnet18", epochs or 1, 32, 0.001)
    raise UsageError(f"unknown workload {name!r}; choose among {', '.join(WORKLOADS)}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_plain(work: Workload, device: torch.device) -> nn.Module:
    """The reference loop: Adam, cross-entropy, a fresh permutation from a seeded CPU generator
    per epoch, index batches on the device; a final batch of one sample is skipped."""
    model = work.make_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=work.lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(SEED)
    bs = work.batch_size
    for x, y in work.data.train:
        model.train()
        n = len(y)
        for _ in range(work.epochs):
            order = torch.randperm(n, generator=generator).to(device)
            for start in range(0, n, bs):
                idx = order[start:start + bs]
                if len(idx) < 2:
                    break
                optimizer.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                optimizer.step()
    return model


def train_suite(work: Workload, device: torch.device, strategy: str,
                hparams: Dict) -> Tuple[nn.Module, float]:
    """The strategy built through the registry and trained on each experience; returns the
    model and the seconds spent by its source provider (0 without one)."""
    from strategies import StrategyContext, get_strategy

    spec = get_strategy(strategy)
    settings = work.settings()
    model = work.make_model().to(device)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    provider = _expert_provider(work, device, theta0) if spec.uses_source else None
    ctx = StrategyContext(device=device, train=settings, seed=SEED,
                          num_classes=work.data.num_classes, source_provider=provider,
                          initial_state=theta0)
    learner = spec.build(model, ctx, **hparams)
    for experience in work.data.train_experiences():
        learner.train(experience, eval_streams=[])
    return learner.model, sum(provider.seconds.values()) if provider else 0.0


def _expert_provider(work: Workload, device: torch.device, theta0: Dict):
    from benchmark.protocol import ExpertProvider

    identity = dict(stream=work.name, seed=SEED, backbone=work.backbone, device=str(device),
                    purpose="perf")
    return ExpertProvider(work.make_model, theta0, work.settings(), identity, device)


def train_plain_pnc(work: Workload, device: torch.device, hparams: Dict
                    ) -> Tuple[nn.Module, float]:
    """PNC's reference: step 1 by the plain loop, each later step by the same ``clone_step``
    the strategy calls, from a hand-written loop with no strategy template around it, on the
    same sources. Returns the network and the seconds spent by the source provider."""
    from strategies import get_strategy
    from strategies.pnc import clone_step, parse_positions, start_network

    settings = work.settings()
    hp = dict(get_strategy("pnc").resolve(hparams))
    hp["insert_epochs"] = hp["insert_epochs"] or settings.epochs
    model = work.make_model().to(device)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    provider = _expert_provider(work, device, theta0)
    optimizer = torch.optim.Adam(model.parameters(), lr=work.lr)
    generator = torch.Generator().manual_seed(SEED)
    positions = parse_positions(hp["positions"], len(model.blocks))
    net = None
    for experience in work.data.train_experiences():
        x, y = experience.x, experience.y
        classes = experience.classes_in_this_experience
        if net is None:
            model.train()
            for _ in range(work.epochs):
                order = torch.randperm(len(y), generator=generator).to(device)
                for start in range(0, len(y), work.batch_size):
                    idx = order[start:start + work.batch_size]
                    if len(idx) < 2:
                        break
                    optimizer.zero_grad()
                    F.cross_entropy(model(x[idx]), y[idx]).backward()
                    optimizer.step()
            net = start_network(model, x, y, classes, hp)
        else:
            clone_step(net, provider(experience), x, y, classes,
                       experience.current_experience + 1, positions, hp, settings, generator)
    return net, sum(provider.seconds.values())


def train_avalanche(work: Workload, device: torch.device, benchmark) -> nn.Module:
    """Avalanche's ``Naive`` over ``benchmark``'s train stream (its DataLoader, default
    metrics, no logger)."""
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin

    model = work.make_model().to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluator = EvaluationPlugin(
            accuracy_metrics(epoch=True, experience=True, stream=True),
            loss_metrics(epoch=True, experience=True, stream=True), loggers=[])
        learner = Naive(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=work.lr),
                        criterion=nn.CrossEntropyLoss(), train_mb_size=work.batch_size,
                        train_epochs=work.epochs, device=device, evaluator=evaluator)
        for experience in benchmark.train_stream:
            learner.train(experience, eval_streams=[],
                          drop_last=len(experience.dataset) % work.batch_size == 1)
    return model


def avalanche_benchmark(work: Workload):
    """The workload's train experiences as an Avalanche benchmark (CPU datasets)."""
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

    return benchmark_from_datasets(train=[e.dataset for e in work.data.train_experiences()])


def timed(fn: Callable[[], object], device: torch.device):
    """(result, wall seconds) of ``fn()``, the device synchronised before and after."""
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return result, time.perf_counter() - start


def runners(work: Workload, device: torch.device, strategy: str, hparams: Dict):
    """One zero-argument callable per method, each returning (model, seconds)."""
    bench = avalanche_benchmark(work)

    def plain():
        if strategy == "pnc":
            (model, source_seconds), seconds = timed(
                lambda: train_plain_pnc(work, device, hparams), device)
            return model, seconds - source_seconds
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


def measure(work: Workload, device: torch.device, strategy: str, hparams: Dict,
            repeats: int) -> Dict:
    """Median seconds per method over ``repeats`` interleaved runs, after a warm-up."""
    for run in runners(work.first_step(), device, strategy, hparams).values():
        run()
    times: Dict[str, List[float]] = {m: [] for m in METHODS}
    models: Dict[str, nn.Module] = {}
    run_of = runners(work, device, strategy, hparams)
    for r in range(repeats):
        for method in METHODS[r % 3:] + METHODS[:r % 3]:  # rotated: no method always first
            models[method], seconds = run_of[method]()
            times[method].append(seconds)
    return {"seconds": {m: statistics.median(t) for m, t in times.items()},
            "suite_vs_plain_weights": max_weight_difference(models["suite"], models["plain"])}


def ratios(seconds: Dict[str, float]) -> Dict[str, float]:
    """suite/plain and avalanche/plain wall-time ratios."""
    return {"suite/plain": seconds["suite"] / seconds["plain"],
            "avalanche/plain": seconds["avalanche"] / seconds["plain"]}


COLUMNS = ("stream", "backbone", "steps", "epochs", "batch", "images", "plain s", "suite s",
           "avalanche s", "suite/plain", "avalanche/plain", "plain img/s", "suite img/s",
           "avalanche img/s")


def table_row(work: Workload, seconds: Dict[str, float]) -> List[str]:
    """One table row: the workload, median seconds, ratios and images per second."""
    r = ratios(seconds)
    n = work.images()
    steps = f"{work.data.n_steps}x{len(work.data.classes_per_step[0])}"
    return [work.name, work.backbone, steps, str(work.epochs), str(work.batch_size), str(n),
            *(f"{seconds[m]:.3f}" for m in METHODS),
            f"{r['suite/plain']:.2f}", f"{r['avalanche/plain']:.2f}",
            *(f"{n / seconds[m]:.0f}" for m in METHODS)]


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows under ``COLUMNS`` as an aligned plain-text table."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def profile_suite(work: Workload, device: torch.device, strategy: str, hparams: Dict,
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


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit status 2, like clonebench
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m benchmark.perf", description=(
        "Time a strategy's training through the suite against a plain PyTorch loop and "
        "Avalanche's Naive on the same model, data and settings."))
    p.add_argument("--strategy", default="finetune", help="registered strategy to time "
                   "(default: finetune)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="default: cuda if available, else cpu")
    p.add_argument("--epochs", type=int, help="epochs per experience (default: split-digits' "
                   "own 10; 1 for synthetic-cifar100)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per method; the median "
                   "is reported (default: 3)")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated, among {', '.join(WORKLOADS)} (default: both)")
    p.add_argument("--images-per-experience", type=int, help="training images per experience "
                   "of synthetic-cifar100 (default: 200 on cpu, 5000 on cuda)")
    p.add_argument("--threads", type=int, help="torch CPU threads during the measurement "
                   "(default: as in runs, $CLONEBENCH_THREADS or 1)")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="also print the N "
                   "functions with the most own time in one suite training (cProfile)")
    return p


def report(args, device: torch.device, works: List[Workload], hparams: Dict) -> None:
    """Measures every workload and prints the header, the table, the checks (and profiles)."""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"strategy {args.strategy} (suite) vs a plain PyTorch loop vs Avalanche Naive; "
          f"device {where}; torch {torch.__version__}; CPU threads: {torch.get_num_threads()}")
    print(f"median of {args.repeats} timed runs after a warm-up; training only, no evaluation")
    if args.strategy == "pnc":
        print("plain = PNC's own steps (plain loop for step 1, then strategies.pnc.clone_step) "
              "called without the strategy template; avalanche = Avalanche Naive (finetune), "
              "for scale only; images = finetune's epochs x samples")
    elif args.strategy != "finetune":
        print(f"plain and avalanche train plainly (finetune); the suite's {args.strategy} does "
              "its own extra work, so suite/plain is not pure overhead")
    rows, checks = [], []
    for work in works:
        result = measure(work, device, args.strategy, hparams, args.repeats)
        rows.append(table_row(work, result["seconds"]))
        diff = result["suite_vs_plain_weights"]
        checks.append(f"{work.name}: max |suite weights - plain weights| = "
                      + (f"{diff:.3g}" if diff is not None else
                         "not comparable (the strategy's model is not the plain backbone)"))
    print()
    print(format_table(rows))
    print()
    for line in checks:
        print(line)
    if args.profile:
        for work in works:
            print(f"\ncProfile of one suite training on {work.name}:")
            print(profile_suite(work, device, args.strategy, hparams, args.profile))


def main(argv: Optional[List[str]] = None) -> int:
    from benchmark.config import resolve_device
    from benchmark.runner import cpu_threads
    from strategies import get_strategy

    try:
        args = build_parser().parse_args(argv)
        device = torch.device(resolve_device(args.device))
        for name in ("epochs", "repeats", "images_per_experience", "threads"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        hparams = get_strategy(args.strategy).resolve({})
        threads = args.threads or cpu_threads()
        names = [w.strip() for w in args.workloads.split(",") if w.strip()]
        per_exp = args.images_per_experience or (5000 if device.type == "cuda" else 200)
        works = [make_workload(n, args.epochs, per_exp, device) for n in names]
    except UsageError as err:
        print(f"perf: error: {err}", file=sys.stderr)
        return 2
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        report(args, device, works, hparams)
    finally:
        torch.set_num_threads(previous_threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
