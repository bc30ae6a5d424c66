"""What ``clonebench perf`` trains, and the three ways it trains it: a plain PyTorch loop, the
suite's strategy, and plain Avalanche.

Workloads: ``split-digits`` (the default stream, MLP) and ``synthetic-cifar100``, random tensors
with CIFAR-100's shapes (3 x 32 x 32, 100 classes, 10 x 10) and its default backbone, reduced
ResNet-18.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.errors import UsageError
from benchmark.core.models import make_backbone
from benchmark.core.training import TrainSettings
from benchmark.data import StreamData, class_order, get_stream, split_classes
from benchmark.perf.arguments import WORKLOADS

SEED = 0
# The CNN of the committed Fashion-MNIST results (docs/tuning.md: chosen on validation data).
FASHION_CNN = "cnn:channels=16-32-64"


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
        return TrainSettings(epochs=epochs or self.epochs, batch_size=self.batch_size,
                             lr=self.lr, optimizer="adam")

    def make_model(self) -> nn.Module:
        return make_backbone(self.backbone, self.data.num_classes, self.data.input_shape,
                             seed=SEED)

    def plain_start(self, device: torch.device):
        """What the plain reference loops start from: (the backbone on ``device``, Adam over it
        at the workload's rate, a CPU generator seeded with ``SEED``, the stream's ``decode``
        or the identity)."""
        model = self.make_model().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        decode = self.data.decode or (lambda batch: batch)
        return model, optimizer, torch.Generator().manual_seed(SEED), decode

    def images(self) -> int:
        """Training samples used over all experiences and epochs (1-sample last batch skipped)."""
        per_epoch = sum(len(y) - (len(y) % self.batch_size == 1) for _, y in self.data.train)
        return per_epoch * self.epochs

    def first_step(self) -> Workload:
        """The same workload cut to its first experience and one epoch (for warm-up)."""
        d = self.data
        cut = dataclasses.replace(d, classes_per_step=d.classes_per_step[:1], train=d.train[:1],
                                  test=d.test[:1])
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


def synthetic_fashion(images_per_experience: int, seed: int = SEED) -> StreamData:
    """Random uint8 images of Fashion-MNIST's shape (1 x 28 x 28), 10 classes in 5 x 2
    experiences, ``images_per_experience`` training images each, stored as uint8 and decoded by
    Fashion-MNIST's normalisation (as the real stream is)."""
    from benchmark.data.files import Normalise

    gen = torch.Generator().manual_seed(seed)
    classes = split_classes(class_order(10, seed), 5)
    train, test = [], []
    for cls in classes:
        labels = torch.tensor(cls, dtype=torch.int64)
        y = labels[torch.arange(images_per_experience) % len(cls)]
        x = torch.randint(0, 256, (images_per_experience, 1, 28, 28), generator=gen,
                          dtype=torch.uint8)
        train.append((x, y))
        test.append((x[: len(cls)].clone(), labels.clone()))
    return StreamData(name="synthetic-fashion", seed=seed, num_classes=10,
                      input_shape=(1, 28, 28), backbone="cnn", classes_per_step=classes,
                      train=train, test=test, options={"n_experiences": 5},
                      decode=Normalise((0.2860,), (0.3530,)))


def make_workload(name: str, epochs: Optional[int], images_per_experience: int,
                  device: torch.device, cnn: str = FASHION_CNN) -> Workload:
    if name == "split-digits":
        spec = get_stream(name)
        data = spec.build(seed=SEED).to(device)
        td = spec.train_defaults
        return Workload(name, data, spec.backbone, epochs or td["epochs"], td["batch_size"],
                        td["lr"])
    if name == "synthetic-cifar100":
        data = synthetic_cifar100(images_per_experience).to(device)
        return Workload(name, data, "reduced-resnet18", epochs or 1, 32, 0.001)
    if name == "synthetic-fashion":
        data = synthetic_fashion(images_per_experience).to(device)
        td = get_stream("split-fashion-mnist").train_defaults
        return Workload(name, data, cnn, epochs or 1, td["batch_size"], td["lr"])
    raise UsageError(f"unknown workload {name!r}; choose among {', '.join(WORKLOADS)}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_plain(work: Workload, device: torch.device) -> nn.Module:
    """The reference loop: Adam, cross-entropy, a fresh permutation from a seeded CPU generator
    per epoch, index batches on the device, each decoded from its stored form (the stream's
    ``decode``); a final batch of one sample is skipped."""
    model, optimizer, generator, decode = work.plain_start(device)
    loss_fn, bs = nn.CrossEntropyLoss(), work.batch_size
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
                loss = loss_fn(model(decode(x[idx])), y[idx])
                loss.backward()
                optimizer.step()
    return model


def train_plain_replay(work: Workload, device: torch.device, samples: int) -> nn.Module:
    """Replay's reference: the plain loop with each batch joined by as many samples of a
    class-balanced buffer of ``samples`` stored samples (a random equal share per class seen,
    refilled after each experience), drawn from shuffled passes over the buffer."""
    model, optimizer, generator, decode = work.plain_start(device)
    loss_fn, bs = nn.CrossEntropyLoss(), work.batch_size
    kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for x, y in work.data.train:
        model.train()
        memory = [torch.cat(parts) for parts in zip(*kept.values())] if kept else None
        mem_order, mem_pos = torch.zeros(0, dtype=torch.int64), 0
        for _ in range(work.epochs):
            order = torch.randperm(len(y), generator=generator).to(device)
            for start in range(0, len(y), bs):
                idx = order[start:start + bs]
                if len(idx) < 2:
                    break
                xb, yb = decode(x[idx]), y[idx]
                if memory is not None:
                    take = min(bs, len(memory[1]))
                    if mem_pos + take > len(mem_order):
                        mem_order, mem_pos = torch.randperm(len(memory[1]),
                                                            generator=generator).to(device), 0
                    m = mem_order[mem_pos:mem_pos + take]
                    mem_pos += take
                    xb, yb = torch.cat([xb, decode(memory[0][m])]), torch.cat([yb, memory[1][m]])
                optimizer.zero_grad()
                loss_fn(model(xb), yb).backward()
                optimizer.step()
        for c in y.unique().tolist():
            kept[c] = (x[y == c], y[y == c])
        for c, (cx, cy) in kept.items():
            pick = torch.randperm(len(cy), generator=generator)[:samples // len(kept)].to(device)
            kept[c] = (cx[pick], cy[pick])
    return model


def train_suite(work: Workload, device: torch.device, strategy: str,
                hparams: dict) -> tuple[nn.Module, float]:
    """The strategy built through the registry and trained on each experience; returns the
    model and the seconds spent by its source provider (0 without one)."""
    from strategies import StrategyContext, get_strategy

    spec = get_strategy(strategy)
    settings = work.settings()
    torch.manual_seed(SEED)  # as the runner does: modules a strategy creates draw from it
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


def _expert_provider(work: Workload, device: torch.device, theta0: dict):
    from benchmark.run.sources import ExpertProvider

    identity = dict(stream=work.name, seed=SEED, backbone=work.backbone, device=str(device),
                    purpose="perf")
    return ExpertProvider(work.make_model, theta0, work.settings(), identity, device)


def plain_phase(phase, learner=None) -> None:
    """A strategy's phase run by a hand-written loop (no template, no hooks). Phases that read
    the mini-batch from the strategy (``mb_x``, ``mb_y``) find it in ``learner.mbatch``;
    phases without an optimizer are forward passes only."""
    for _ in range(phase.epochs):
        for batch in phase.loader:
            if learner is not None:
                learner.mbatch = batch
            xb, yb = batch[0], batch[1]
            if phase.optimizer is None:
                with torch.no_grad():
                    phase.forward(xb)
                continue
            phase.optimizer.zero_grad()
            phase.loss(phase.forward(xb), yb).backward()
            phase.optimizer.step()


def run_plain_phases(phases, learner):
    """Every phase of a generator of phases by ``plain_phase``; returns the generator's value."""
    try:
        phase = next(phases)
        while True:
            plain_phase(phase, learner)
            phase = phases.send(None)
    except StopIteration as stop:
        return stop.value


def train_plain_pnc(work: Workload, device: torch.device, hparams: dict
                    ) -> tuple[nn.Module, float]:
    """PNC's reference: step 1 by the plain loop, then PNC's own phases (step 1's router,
    ``PNC.clone_phases`` for each later step) run by a hand-written loop with no template
    around them, on the same sources. Returns the network and the seconds spent by the source
    provider."""
    from benchmark.core.models import as_block_net
    from strategies import get_strategy
    from strategies.base import decoded_experience
    from strategies.pnc.network import ClonedNetwork
    from strategies.pnc.routing_phases import RouterTraining

    spec = get_strategy("pnc")
    torch.manual_seed(SEED)  # as train_suite: the routers' initial weights draw from it
    model = work.make_model().to(device)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    provider = _expert_provider(work, device, theta0)
    learner = spec.cls(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=work.lr),
                       source_provider=provider, train_settings=work.settings(),
                       train_mb_size=work.batch_size, train_epochs=work.epochs, device=device,
                       seed=SEED, **spec.resolve(hparams))
    hp = learner.hp
    generator = learner.generator  # step 1 draws its shuffles where the suite's step 1 does
    for experience in work.data.train_experiences():
        x, y = decoded_experience(experience, device)
        classes = [int(c) for c in experience.classes_in_this_experience]
        learner.experience = experience
        if experience.current_experience == 0:
            model.train()
            for _ in range(work.epochs):
                order = torch.randperm(len(y), generator=generator).to(device)
                for start in range(0, len(y), work.batch_size):
                    idx = order[start:start + work.batch_size]
                    if len(idx) < 2:
                        break
                    learner.optimizer.zero_grad()
                    F.cross_entropy(model(x[idx]), y[idx]).backward()
                    learner.optimizer.step()
            target = as_block_net(model, x[:2])
            learner.model = ClonedNetwork(target, classes, hp["routing"], hp["router_space"],
                                          hp["router_pool"]).to(device)
            router = RouterTraining(learner, x, y, classes)
            learner.model.base_router = run_plain_phases(router.base_phases(), learner)
        else:
            learner.model.train()
            run_plain_phases(learner.clone_phases(x, y, classes,
                                                  experience.current_experience + 1), learner)
    return learner.model, sum(provider.seconds.values())


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
