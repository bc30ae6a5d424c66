"""The strategies that can train several seeds together (``benchmark.run.seed_batch``), each
written again over stacked copies (``benchmark.core.stacked``): what a step trains on, what it
adds to the cross-entropy, what it keeps after the step, and the per-step facts and state bytes
its ordinary run records. Each class follows its strategy's module line by line:

- ``finetune`` (``strategies.finetune``): cross-entropy on the current experience;
- ``joint`` (``strategies.joint``): the union of every experience seen so far, in step order and
  stored form; ``init = theta0`` reloads theta_0 and a fresh optimizer before each step;
- ``ewc`` (``strategies.ewc``, Avalanche's ``EWCPlugin``): the penalty ewc_lambda * sum_i F_i
  (theta_i - theta*_i)^2 over the saved experiences (``separate``) or the running one
  (``online``), the Fisher diagonal estimated after each step in eval mode from squared
  mini-batch gradients (unshuffled batches), averaged over the batches;
- ``lwf`` (Avalanche's ``LwFPlugin``): alpha * KL(previous model || current model) at
  temperature T on the classes of the previous steps, averaged over the batch's samples; the
  previous model is the copy after the last step, run in training mode (as Avalanche's deep
  copy is), so its BatchNorm layers use the batch's statistics.

``group`` is the ``SeedGroup`` being trained (``benchmark.run.seed_training``): per-seed data,
the stacked model and optimizer, the settings.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from benchmark.core.stacked import State
from benchmark.core.tensors import TensorLoader, decoded
from benchmark.run.seed_training import masked_cross_entropy
from strategies.base import count_parameters


class SeedStrategy:
    """``finetune`` over stacked copies; the other strategies override its hooks."""

    def __init__(self, group, hp: dict[str, Any]):
        self.group = group
        self.hp = hp

    def train_set(self, s: int, k: int):
        """(stored x, y) seed ``s`` trains on at step ``k`` (0-based), on the device."""
        x, y = self.group.data[s].train[k]
        return x.to(self.group.device), y.to(self.group.device)

    def before_step(self, k: int) -> None:
        """What happens before step ``k``'s first batch."""

    def extra_loss(self, k: int, batch, logits: torch.Tensor) -> Optional[torch.Tensor]:
        """Terms added to the cross-entropy of the copies of ``batch`` (a ``Batch``), one per
        copy (None: nothing)."""
        return None

    def after_step(self, k: int) -> None:
        """What the strategy keeps once step ``k`` is trained."""

    def step_report(self, s: int, k: int) -> dict:
        return {"trainable_parameters": count_parameters(self.group.models[s],
                                                         trainable_only=True)}

    def state_bytes(self, s: int, k: int) -> int:
        """Bytes seed ``s`` keeps for later steps after step ``k``."""
        return 0


class SeedJoint(SeedStrategy):
    """``joint``: the union of the experiences seen so far."""

    def train_set(self, s: int, k: int):
        pairs = [self.group.data[s].train[j] for j in range(k + 1)]
        return (torch.cat([x.to(self.group.device) for x, _ in pairs]),
                torch.cat([y.to(self.group.device) for _, y in pairs]))

    def before_step(self, k: int) -> None:
        if self.hp["init"] == "theta0":
            self.group.stacked.load(self.group.theta0)
            self.group.optimizer.reset()

    def step_report(self, s: int, k: int) -> dict:
        samples = sum(len(y) for _, y in self.group.data[s].train[:k + 1])
        return {**super().step_report(s, k), "training_samples": samples}

    def state_bytes(self, s: int, k: int) -> int:
        return sum(t.numel() * t.element_size()
                   for pair in self.group.data[s].train[:k + 1] for t in pair)


class SeedEWC(SeedStrategy):
    """``ewc``: Fisher-weighted penalty towards the weights saved after earlier steps."""

    def __init__(self, group, hp):
        super().__init__(group, hp)
        self.saved: list[tuple[torch.Tensor, torch.Tensor]] = []  # (Fisher, weights), flat

    def extra_loss(self, k, batch, logits):
        if k == 0:
            return None
        flat = self.group.stacked.flat
        penalty = torch.zeros(self.group.size, device=logits.device)
        for importances, weights in self.saved:
            penalty = penalty + (importances * (flat - weights).pow(2)).sum(1)
        return self.hp["ewc_lambda"] * penalty

    def after_step(self, k: int) -> None:
        importances = self.fisher(k)
        if self.hp["mode"] == "online" and self.saved:
            importances = self.hp["decay_factor"] * self.saved[-1][0] + importances
            self.saved = []
        self.saved.append((importances, self.group.stacked.flat.detach().clone()))

    def fisher(self, k: int) -> torch.Tensor:
        """Squared mini-batch gradients of step ``k``'s data, averaged over each copy's batches,
        model in eval mode (``FastEWCPlugin.compute_importances``); flat, like the weights."""
        group, stacked = self.group, self.group.stacked
        importances = torch.zeros_like(stacked.flat, requires_grad=False)
        loaders = []
        for s in range(group.size):
            x, y = self.train_set(s, k)
            loaders.append(TensorLoader(decoded(x, group.data[s].decode), y,
                                        group.settings.batch_size, shuffle=False))
        for batch in group.batches(loaders):
            stacked.flat.grad = None
            logits = stacked.forward(batch.x, batch.model_mask, train=False)
            masked_cross_entropy(logits, batch).sum().backward()
            importances += stacked.flat.grad.pow(2)  # 0 for a copy without a batch
        stacked.flat.grad = None
        counts = torch.tensor([float(len(loader)) for loader in loaders], device=group.device)
        return importances / counts[:, None]

    def state_bytes(self, s: int, k: int) -> int:
        return sum(t[s].numel() * t.element_size() for pair in self.saved for t in pair)


def distillation(out: torch.Tensor, before: torch.Tensor, classes: torch.Tensor, batch,
                 temperature: float) -> torch.Tensor:
    """Avalanche's LwF distillation, per copy: KL(softmax(before / T) || softmax(out / T)) on
    each copy's ``classes`` (``[copies, classes]``), averaged over its real rows."""
    index = classes[:, None, :].expand(-1, out.shape[1], -1)
    log_p = torch.log_softmax(out.gather(2, index) / temperature, dim=2)
    q = torch.softmax(before.gather(2, index) / temperature, dim=2)
    per_row = (torch.xlogy(q, q) - q * log_p).sum(2)
    return torch.where(batch.mask, per_row, 0.0).sum(1) / batch.mask.sum(1).clamp(min=1)


class SeedLwF(SeedStrategy):
    """``lwf``: distillation from the copy saved after the previous step."""

    def __init__(self, group, hp):
        super().__init__(group, hp)
        self.previous: Optional[State] = None  # the stacked model after the previous step
        self.seen: list[set[int]] = [set() for _ in range(group.size)]
        self.old_classes: Optional[torch.Tensor] = None  # [copies, classes seen before]

    def extra_loss(self, k, batch, logits):
        if self.previous is None:
            return None
        with torch.no_grad():
            before = self.group.stacked.forward(batch.x, batch.model_mask, train=True,
                                                state=self.previous)
        return self.hp["alpha"] * distillation(logits, before, self.old_classes, batch,
                                               self.hp["temperature"])

    def after_step(self, k: int) -> None:
        self.previous = self.group.stacked.snapshot()
        for s, data in enumerate(self.group.data):  # as LwFPlugin grows its set of classes
            self.seen[s] = self.seen[s].union(int(c) for c in data.train[k][1].unique())
        self.old_classes = torch.tensor([list(classes) for classes in self.seen],
                                        dtype=torch.int64, device=self.group.device)

    def state_bytes(self, s: int, k: int) -> int:
        if self.previous is None:
            return 0
        flat, buffers = self.previous
        return sum(t[s].numel() * t.element_size() for t in [flat, *buffers.values()])


BATCHED: dict[str, type[SeedStrategy]] = {
    "finetune": SeedStrategy, "joint": SeedJoint, "ewc": SeedEWC, "lwf": SeedLwF}
