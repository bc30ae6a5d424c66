"""``dynamic-expansion``: the "dynamic neural network" seed (shared frozen trunk, a branch per
step when the domain gap is large, distillation on known instances otherwise).

The backbone (a ``BlockNet``) is split at a block boundary: blocks before it form the shared
**trunk**, the remaining blocks (with the pooling) form the first **branch**, followed by a
linear **head** over the classes of step 1. Choice: every BatchNorm of the backbone, trunk
included, is converted to GroupNorm at construction (same affine values, no running
statistics), so no part of the network carries statistics that new data could shift.

- Step 1 trains trunk, branch and head with cross-entropy; the trunk is then frozen for good
  (``requires_grad`` off, never in an optimizer again: its state dict stays bitwise equal).
- Each later step measures the **gap** between what the model knows and the new data, before
  learning anything from it (``gap_measure``; the units, means and spreads are those of
  ``strategies.expansion_net``):
  - ``feature-distance`` (default): mean over the new samples of min over units of
    d^2 / s_u (about 1 for a known class's own data; larger is farther);
  - ``confidence``: 1 - mean over the new samples of the current model's max softmax
    probability over the classes seen so far (in [0, 1]).
  If gap > ``gap_threshold`` the model **expands** (``expansion = gap``; ``never`` always
  distils, ``always`` always expands): a new branch (a copy of the latest branch, GroupNorm,
  trainable) and a new head for the step's classes, trained with cross-entropy over them;
  everything else frozen. Otherwise it **distils**: the head of the branch that the new data
  routes to gets rows for the step's classes it lacks, and that branch and head are trained
  with cross-entropy over the head's classes plus ``distill_alpha`` times a temperature-2
  distillation (KL) from the model before the step on the head's old classes, on the *known
  instances* only (new samples whose max softmax under the model before the step is at least
  ``known_confidence``). Steps after the first train at ``lr_scale`` times the learning rate
  (the small-learning-rate trick; 1 = off).
- Prediction over all heads (``routing``):
  - ``prototype``: per class, log sum over the branches knowing it of p(branch | x)
    softmax(head logits)[c], with p(branch | x) the mass of a softmax over units of
    -d^2 / (s_u tau) (tau = ``route_temperature``), summed over the branch's units;
  - ``logits``: each head's raw logits placed in its classes' columns.
  The routing keeps one mean vector and one spread per unit (of the frozen trunk's
  features, computed at the end of the unit's step): class statistics, no stored samples.
  Columns of classes not yet seen hold ``UNSEEN_LOGIT``.

New heads are drawn from the strategy's own generator (seed + 1), never the global RNG.
Per step the record gets the decision (``initial``, ``expand`` or ``distil``), the gap, the
branch trained, the number of known instances and the trainable parameter count.

Defaults (docs/strategies-rivals.md has the figures): the threshold is chosen on validation
data (docs/tuning.md); on class-incremental split-digits the feature-distance gaps of new classes
were 0.72 to 4.8, of rotated domains 1.0 to 1.7 and of mixed steps 0.8 to 3.0 (seeds 0-2, 10
epochs): in this trunk's feature space a new class and a new domain of known classes are not
apart. The routing temperature 1.0 scored best of 0.25 to 4 (differences within seed noise);
``logits`` routing scored 0.39.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.errors import UsageError
from benchmark.core.models import norm_layer
from benchmark.core.options import Option
from benchmark.core.tensors import experience_tensors
from strategies.base import FastTemplate, count_parameters
from strategies.expansion_net import UNSEEN_LOGIT, ExpandingNet  # noqa: F401
from strategies.registry import CLASS_INCREMENTAL, DOMAIN, MIXED, register_strategy

GAP_MEASURES = ("feature-distance", "confidence")
ROUTINGS = ("prototype", "logits")
EXPANSIONS = ("gap", "never", "always")
DISTILL_TEMPERATURE = 2.0


def batchnorm_to_groupnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm replaced, in place, by a GroupNorm over the same channels
    (groups as ``benchmark.models.norm_layer``) carrying the same affine weight and bias."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            gn = norm_layer("gn", child.num_features, 2)
            if child.affine:
                with torch.no_grad():
                    gn.weight.copy_(child.weight)
                    gn.bias.copy_(child.bias)
            setattr(module, name, gn.to(child.weight.device if child.affine else "cpu"))
        else:
            batchnorm_to_groupnorm(child)
    return module


def trunk_cut(trunk_blocks: int, depth: int) -> int:
    """The boundary where the trunk ends; UsageError unless 1 <= cut <= depth - 1."""
    cut = trunk_blocks if trunk_blocks >= 0 else depth + trunk_blocks
    if not 1 <= cut <= depth - 1:
        raise UsageError(f"bad value {trunk_blocks} for dynamic-expansion.trunk_blocks: the "
                         f"backbone has {depth} blocks; the trunk needs 1..{depth - 1} of them "
                         f"(or -1..-{depth - 1} from the end)")
    return cut


def split_backbone(model: nn.Module, trunk_blocks: int):
    """(trunk, first branch, trunk width, branch width) of a ``BlockNet`` split at a boundary."""
    cut = trunk_cut(trunk_blocks, len(model.blocks))
    trunk = nn.Sequential(*model.blocks[:cut])
    branch = nn.Sequential(*model.blocks[cut:], model.pool)
    return trunk, branch, model.widths[cut], model.widths[-1]


@register_strategy("dynamic-expansion", summary="shared frozen trunk; a new branch and head when "
                   "the domain gap is large, else distillation on known instances (GroupNorm)",
                   family="expansion",
                   check=lambda hp, depth: trunk_cut(hp["trunk_blocks"], depth))
class DynamicExpansion(FastTemplate):
    """Frozen shared trunk; a new branch and head when the gap is large, else distillation."""

    SCENARIOS = (CLASS_INCREMENTAL, DOMAIN, MIXED)

    OPTIONS = (
        Option("gap_measure", str, "feature-distance",
               "how far the new data lies from what the model knows", choices=GAP_MEASURES),
        Option("gap_threshold", float, 0.5,
               "expand when the gap exceeds it, else distil (feature-distance: ratio, ~1 for "
               "known data; confidence: in [0, 1])",
               low=0.0),
        Option("expansion", str, "gap", "when to expand: by the gap (the method), never "
               "(always distil) or always", choices=EXPANSIONS),
        Option("lr_scale", float, 1.0, "learning rate of the steps after the first, as a "
               "multiple of the experiment's (the small-learning-rate trick: < 1)", low=1e-6),
        Option("trunk_blocks", int, -1,
               "backbone blocks in the shared trunk; negative counts from the end (-1: all but the "
               "last)"),
        Option("routing", str, "prototype", "how the heads are combined at test time",
               choices=ROUTINGS),
        Option("route_temperature", float, 1.0, "temperature of the prototype routing", low=1e-3),
        Option("known_confidence", float, 0.9,
               "max-softmax confidence from which a new sample is a known instance", low=0.0,
               high=1.0),
        Option("distill_alpha", float, 1.0, "weight of the distillation loss (distil steps)",
               low=0.0),
    )

    def __init__(self, *, model, **kwargs):
        if not hasattr(model, "blocks"):
            raise UsageError("dynamic-expansion needs a BlockNet backbone (blocks, pool, head)")
        super().__init__(model=model, **kwargs)
        trunk, branch, feature_width, branch_width = split_backbone(model,
                                                                    self.hp["trunk_blocks"])
        trunk = nn.Sequential(model.stem, *trunk)
        net = ExpandingNet(batchnorm_to_groupnorm(trunk), batchnorm_to_groupnorm(branch),
                           feature_width, branch_width, model.num_classes, self.hp["routing"],
                           self.hp["route_temperature"])
        self.model = self.net = net
        self.init_generator = torch.Generator().manual_seed(self.seed + 1)
        self.gap_measure, self.gap_threshold = self.hp["gap_measure"], self.hp["gap_threshold"]
        self.known_confidence = self.hp["known_confidence"]
        self.distill_alpha = self.hp["distill_alpha"]
        self.active = 0
        self.teacher: Optional[ExpandingNet] = None
        self.teacher_classes = 0
        self.local_label = torch.zeros(model.num_classes, dtype=torch.long)
        self._trunk_batch: Optional[torch.Tensor] = None
        self._last: dict = {}

    # ------------------------------------------------------------------ adaptation per step
    @torch.no_grad()
    def measure_gap(self, x: torch.Tensor) -> float:
        """The gap of ``gap_measure`` between the current model and the inputs ``x``."""
        self.net.eval()
        if self.gap_measure == "feature-distance":
            return float(self.net.feature_gap(x).mean())
        known = self.net.known
        return float(1 - torch.softmax(self.net(x)[:, known], dim=1).max(dim=1).values.mean())

    def expands(self, gap: float) -> bool:
        """Whether a later step with this gap expands (``expansion``: by the threshold, never
        or always)."""
        return {"gap": gap > self.gap_threshold, "never": False,
                "always": True}[self.hp["expansion"]]

    @torch.no_grad()
    def _target_branch(self, x: torch.Tensor) -> int:
        """The branch most of ``x``'s routing mass goes to."""
        if len(self.net.heads) == 1:
            return 0
        route = self.net.log_routing(self.net.trunk_features(x)).exp()
        return int(route.sum(dim=0).argmax())

    def check_model_and_optimizer(self, **kwargs):
        """Decides the step (initial / expand / distil), grows the model, freezes the rest and
        builds a fresh optimizer over the trainable parameters only (at ``lr_scale`` times the
        learning rate after the first step)."""
        x, _ = experience_tensors(self.experience)
        x = x.to(self.device)
        classes = list(self.experience.classes_in_this_experience)
        self.teacher = None
        gap, known = None, None
        for p in self.net.parameters():
            p.requires_grad_(False)
        if len(self.net.heads) == 0:
            decision, self.active = "initial", 0
            self.net.set_head(0, classes, self.init_generator)
            trainable = [self.net.trunk, self.net.branches[0], self.net.heads[0]]
        else:
            gap = self.measure_gap(x)
            if self.expands(gap):
                decision = "expand"
                self.net.branches.append(copy.deepcopy(self.net.branches[-1]))
                self.active = len(self.net.branches) - 1
                self.net.set_head(self.active, classes, self.init_generator)
            else:
                decision = "distil"
                self.active = self._target_branch(x)
                self.teacher = copy.deepcopy(self.net).eval()
                old = self.net.head_classes[self.active]
                self.teacher_classes = len(old)
                self.net.set_head(self.active, old + [c for c in classes if c not in old],
                                  self.init_generator)
                with torch.no_grad():
                    conf = torch.softmax(self.teacher(x)[:, self.teacher.known], dim=1)
                known = int((conf.max(dim=1).values >= self.known_confidence).sum())
            trainable = [self.net.branches[self.active], self.net.heads[self.active]]
        for module in trainable:
            for p in module.parameters():
                p.requires_grad_(True)
        self.local_label = torch.zeros(self.net.num_classes, dtype=torch.long, device=self.device)
        head_classes = self.net.head_classes[self.active]
        self.local_label[torch.as_tensor(head_classes, device=self.device)] = torch.arange(
            len(head_classes), device=self.device)
        self.net.to(self.device).train()
        params = [p for p in self.net.parameters() if p.requires_grad]
        defaults = dict(self.optimizer.defaults)
        if decision != "initial":
            defaults["lr"] = defaults["lr"] * self.hp["lr_scale"]
        self.optimizer = type(self.optimizer)(params, **defaults)
        self._last = {"decision": decision, "gap": gap, "gap_measure": self.gap_measure,
                      "branch": self.active, "branches": len(self.net.branches),
                      "known_instances": known,
                      "trainable_parameters": count_parameters(self.net, trainable_only=True)}

    # ------------------------------------------------------------------ training
    def forward(self):
        if self.is_training:
            self._trunk_batch = self.net.trunk_features(self.mb_x)
            return self.net.branch_logits(self._trunk_batch, self.active)
        return super().forward()

    def criterion(self):
        if not self.is_training:
            return super().criterion()
        loss = F.cross_entropy(self.mb_output, self.local_label[self.mb_y])
        if self.teacher is not None and self.distill_alpha > 0 and self.teacher_classes > 1:
            loss = loss + self.distill_alpha * self._distillation()
        return loss

    def _distillation(self) -> torch.Tensor:
        """KL(teacher || student) on the active head's old classes, known instances only. The
        trunk is frozen and shared, so the teacher reads the student's trunk features of the
        batch (one trunk pass per batch)."""
        with torch.no_grad():
            h = self._trunk_batch.detach()
            teacher = self.teacher
            logits = [teacher.branch_logits(h, b) for b in range(len(teacher.heads))]
            probs = torch.softmax(teacher.output(h, logits)[:, teacher.known], dim=1)
            known = probs.max(dim=1).values >= self.known_confidence
            if not bool(known.any()):
                return self.mb_output.new_zeros(())
            t = logits[self.active][known] / DISTILL_TEMPERATURE
        n_old = self.teacher_classes
        s = self.mb_output[known][:, :n_old] / DISTILL_TEMPERATURE
        kl = F.kl_div(torch.log_softmax(s, dim=1), torch.log_softmax(t, dim=1),
                      reduction="batchmean", log_target=True)
        return kl * DISTILL_TEMPERATURE ** 2

    def _after_training_exp(self, **kwargs):
        x, y = experience_tensors(self.experience)
        self.net.eval()
        self.net.add_prototypes(x.to(self.device), y.to(self.device),
                                list(self.experience.classes_in_this_experience), self.active)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.teacher = None
        self._trunk_batch = None
        super()._after_training_exp(**kwargs)

    def step_report(self) -> dict:
        return dict(self._last)
