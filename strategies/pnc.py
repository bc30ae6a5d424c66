"""``pnc``: Partial Network Cloning.

Moves the ability to recognise a step's classes from a *source* network into the *target*
network without changing one parameter or buffer of the target; each step's clone is a separate
module that ``remove(step)`` deletes, after which the target's outputs are exactly the original
ones. The authors' code was never released; this is the suite's design (SPEC 4.1), every choice
a parameter:

Step 1 trains the target normally (cross-entropy on e_1), then freezes it (eval mode for good:
its BatchNorm statistics never move again). Each later step k, given the step's source:

1. **Localise.** Learnable channel gates sigmoid(g) on the output of every source block are
   trained on e_k's data to keep the source's own predictions on e_k's classes (KL distillation at
   temperature ``distill_temperature``) plus ``sparsity`` x mean gate value (L1); the source's
   weights stay fixed. Gates are then binarised at ``gate_threshold`` (at least one channel per
   block is kept).
2. **Insert.** For each candidate position p (a block boundary of the target, ``positions``), a
   module is built: target features at p -> adapter (linear / 1x1 conv, identity-initialised,
   optional norm) -> the source's gated blocks p..L-1 (frozen copies) -> pooling -> a new head over
   e_k's classes (initialised from the source's head rows). Only the adapter and the new head
   train (cross-entropy), on a (1 - ``val_fraction``) split of e_k; the position with the best
   accuracy on the held-out split wins (ties: the later position, which adds fewer parameters),
   and with ``refit`` the chosen module is trained again on all of e_k.
3. **Combine (routing).** Every module, and the target for e_1's classes, scores how much an input
   belongs to its classes; scores are turned into step probabilities p(s | x) and the output for
   class c of step s is log p(s | x) + log p(c | x, s) (the step's own softmax). ``routing``:
   - ``gaussian``: a class-conditional Gaussian per step with a shared, shrunk covariance, fitted
     on the step's training data in a feature space common to all steps (``router_space``:
     the input, the frozen target's penultimate features, or both concatenated); the step's score
     is the log-likelihood of its mixture. Uses only the step's data and the frozen target.
   - ``energy``: the step's free energy, logsumexp of its head's logits (no statistics).
   - ``logits``: no routing; raw logits of the step's head, concatenated.
4. **Remove.** ``model.remove(k)`` deletes step k's module and its routing statistics; with no
   module left the network returns ``target(x)`` itself.

Usable from one's own Avalanche code: ``PNC(model=..., optimizer=..., source_provider=fn)`` where
``fn(experience)`` returns the source for that experience; without a provider PNC trains an
expert itself on each experience from the model's initial weights.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data import TensorLoader, experience_tensors
from benchmark.errors import DivergenceError, UsageError
from strategies.base import FastTemplate, count_parameters
from strategies.registry import Option, register_strategy

ROUTINGS = ("gaussian", "energy", "logits")
ROUTER_SPACES = ("input+target", "target", "input")
INPUT_FEATURES_MAX = 512  # larger inputs are average-pooled to 4x4 per channel for routing

OPTIONS = (
    Option("routing", str, "gaussian", "how modules' outputs are combined", choices=ROUTINGS),
    Option("router_space", str, "input", "feature space of the gaussian router",
           choices=ROUTER_SPACES),
    Option("shrinkage", float, 0.1, "covariance shrinkage towards a scaled identity", low=0.0,
           high=1.0),
    Option("positions", str, "auto", "candidate insertion positions: auto (every block "
           "boundary) or comma-separated indices, 0 = input"),
    Option("gate_epochs", int, 10, "epochs of gate training (localisation)", low=0),
    Option("gate_lr", float, 0.05, "learning rate of the gates (Adam)", low=0.0),
    Option("sparsity", float, 0.5, "weight of the L1 penalty on the gates", low=0.0),
    Option("gate_threshold", float, 0.5, "gates above this value are kept", low=0.0, high=1.0),
    Option("distill_temperature", float, 2.0, "temperature of the gate distillation", low=1e-3),
    Option("insert_epochs", int, 0, "epochs of adapter and head training; 0 = the experiment's "
           "epochs", low=0),
    Option("val_fraction", float, 0.2, "share of the step's data held out to choose the "
           "position", low=0.0, high=0.9),
    Option("refit", bool, True, "train the chosen module again on all the step's data"),
    Option("adapter_norm", bool, False, "add a normalisation layer after the adapter"),
)


def experience_classes(experience) -> List[int]:
    """The experience's classes (Avalanche's attribute, else the labels found in its data)."""
    classes = getattr(experience, "classes_in_this_experience", None)
    if classes is None:
        classes = sorted(set(experience_tensors(experience)[1].tolist()))
    return [int(c) for c in classes]


def boundary_features(net: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """Features of a ``BlockNet`` at every block boundary 0..L (index 0 is ``x``)."""
    feats = [x]
    for block in net.blocks:
        feats.append(block(feats[-1]))
    return feats


def _channel_view(mask: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return mask.view(1, -1, *([1] * (h.dim() - 2)))


def make_adapter(c_in: int, c_out: int, spatial: bool, norm: bool) -> nn.Module:
    """Linear (or 1x1 conv) map, identity-initialised when the shapes match."""
    layer = nn.Conv2d(c_in, c_out, 1) if spatial else nn.Linear(c_in, c_out)
    if c_in == c_out:
        with torch.no_grad():
            layer.weight.zero_()
            layer.weight.view(c_out, c_in).copy_(torch.eye(c_out))
            layer.bias.zero_()
    if not norm:
        return layer
    return nn.Sequential(layer, nn.BatchNorm2d(c_out) if spatial else nn.BatchNorm1d(c_out))


class GaussianRouter(nn.Module):
    """Class-conditional Gaussians of one step with a shared covariance (LDA-style).

    ``score(z)`` is log sum_c N(z; mu_c, Sigma), the step's log-likelihood of a mixture with one
    unit-weight component per class. Sigma = (1 - a) S + a (tr S / D) I + 1e-4 I with S the pooled
    within-class covariance and a the shrinkage.
    """

    def __init__(self, z: torch.Tensor, y: torch.Tensor, classes: Sequence[int], shrinkage: float):
        super().__init__()
        z = z.double()
        index = {int(c): i for i, c in enumerate(classes)}
        means = torch.stack([z[y == c].mean(0) for c in classes])
        centred = z - means[torch.tensor([index[int(c)] for c in y.tolist()], device=z.device)]
        d = z.shape[1]
        cov = centred.T @ centred / max(len(z) - len(classes), 1)
        cov = (1 - shrinkage) * cov + shrinkage * torch.trace(cov) / d * torch.eye(d, dtype=cov.dtype,
                                                                                     device=cov.device)
        cov = cov + 1e-4 * torch.eye(d, dtype=cov.dtype, device=cov.device)
        chol = torch.linalg.cholesky(cov)
        self.register_buffer("means", means.float())
        self.register_buffer("precision", torch.cholesky_inverse(chol).float())
        self.register_buffer("log_norm", (-0.5 * (2 * torch.log(torch.diagonal(chol)).sum()
                                                  + d * math.log(2 * math.pi))).float())

    def score(self, z: torch.Tensor) -> torch.Tensor:
        diff = z.unsqueeze(1) - self.means.unsqueeze(0)                 # N x C x D
        maha = torch.einsum("ncd,de,nce->nc", diff, self.precision, diff)
        return torch.logsumexp(-0.5 * maha + self.log_norm, dim=1)


class CloneModule(nn.Module):
    """One step's clone: adapter -> gated frozen source blocks -> pooling -> new head."""

    def __init__(self, source: nn.Module, masks: Sequence[torch.Tensor], position: int,
                 target_widths: Sequence[int], classes: Sequence[int], spatial: bool,
                 adapter_norm: bool):
        super().__init__()
        self.position = position
        self.adapter = make_adapter(target_widths[position], source.widths[position], spatial,
                                    adapter_norm)
        self.blocks = copy.deepcopy(source.blocks[position:])
        self.pool = copy.deepcopy(source.pool)
        for module in (self.blocks, self.pool):
            for p in module.parameters():
                p.requires_grad_(False)
        for i, mask in enumerate(masks[position:]):
            self.register_buffer(f"mask{i}", mask.float().clone())
        self.register_buffer("classes", torch.tensor(list(classes), dtype=torch.int64))
        self.head = nn.Linear(source.widths[-1], len(classes))
        with torch.no_grad():
            self.head.weight.copy_(source.head.weight[list(classes)])
            self.head.bias.copy_(source.head.bias[list(classes)])
        self.router: Optional[GaussianRouter] = None

    def train(self, mode: bool = True):
        super().train(mode)
        self.blocks.eval()  # the cloned source blocks keep the source's statistics
        self.pool.eval()
        return self

    def forward(self, target_feature: torch.Tensor) -> torch.Tensor:
        h = self.adapter(target_feature)
        for i, block in enumerate(self.blocks):
            h = block(h)
            h = h * _channel_view(getattr(self, f"mask{i}"), h)
        return self.head(self.pool(h))

    def trainable_parameters(self) -> int:
        return count_parameters(self.adapter) + count_parameters(self.head)


class ClonedNetwork(nn.Module):
    """The frozen target plus removable clone modules, one per step (keys are 1-based steps)."""

    def __init__(self, target: nn.Module, base_classes: Sequence[int], routing: str = "gaussian",
                 router_space: str = "input"):
        super().__init__()
        self.target = target.eval()
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.register_buffer("base_classes", torch.tensor(list(base_classes), dtype=torch.int64))
        self.clones = nn.ModuleDict()
        self.routing = routing
        self.router_space = router_space
        self.base_router: Optional[GaussianRouter] = None

    def train(self, mode: bool = True):
        super().train(mode)
        self.target.eval()  # the target's BatchNorm statistics never change
        return self

    @property
    def steps(self) -> List[int]:
        return [int(k) for k in self.clones]

    def add(self, step: int, module: CloneModule) -> None:
        self.clones[str(step)] = module

    def remove(self, step: int) -> None:
        """Deletes the module of ``step`` (1-based); the others keep working."""
        if str(step) not in self.clones:
            raise KeyError(f"no cloned module for step {step}; present: {self.steps}")
        del self.clones[str(step)]

    def router_features(self, x: torch.Tensor, feats: List[torch.Tensor]) -> torch.Tensor:
        """The routing space: flattened (pooled, for large) input and/or target embedding."""
        parts = []
        if "input" in self.router_space:
            flat = x.flatten(1)
            if flat.shape[1] > INPUT_FEATURES_MAX and x.dim() == 4:
                flat = F.adaptive_avg_pool2d(x, 4).flatten(1)
            parts.append(flat)
        if "target" in self.router_space:
            parts.append(self.target.pool(feats[-1]))
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not len(self.clones):
            return self.target(x)
        feats = boundary_features(self.target, x)
        base_logits = self.target.head(self.target.pool(feats[-1]))[:, self.base_classes]
        step_logits = [base_logits] + [m(feats[m.position]) for m in self.clones.values()]
        step_classes = [self.base_classes] + [m.classes for m in self.clones.values()]
        out = torch.full((len(x), self.target.num_classes), float("-inf"), device=x.device,
                         dtype=base_logits.dtype)
        if self.routing == "logits":
            for logits, classes in zip(step_logits, step_classes):
                out[:, classes] = logits
            return out
        if self.routing == "energy":
            scores = torch.stack([torch.logsumexp(l, dim=1) for l in step_logits], dim=1)
        else:
            z = self.router_features(x, feats)
            routers = [self.base_router] + [m.router for m in self.clones.values()]
            scores = torch.stack([r.score(z) for r in routers], dim=1)
        log_step = torch.log_softmax(scores, dim=1)
        for s, (logits, classes) in enumerate(zip(step_logits, step_classes)):
            out[:, classes] = log_step[:, s:s + 1] + torch.log_softmax(logits, dim=1)
        return out


def check_finite(loss: Optional[torch.Tensor], what: str) -> None:
    """DivergenceError when the last loss of an epoch is NaN or infinite (checked once per epoch,
    so a GPU is not synchronised at every batch)."""
    if loss is not None and not bool(torch.isfinite(loss.detach()).all()):
        raise DivergenceError(f"PNC {what} loss became {float(loss.detach())}")


def train_gates(source: nn.Module, x: torch.Tensor, classes: Sequence[int], epochs: int,
                lr: float, sparsity: float, temperature: float, batch_size: int,
                generator: torch.Generator, augment=None) -> List[torch.Tensor]:
    """Soft channel gates (sigmoid values, one vector per source block) that keep the source's
    predictions on ``classes`` under an L1 penalty; the source's weights are not touched."""
    logits = [torch.full((w,), 3.0, device=x.device, requires_grad=True)
              for w in source.widths[1:]]
    optimizer = torch.optim.Adam(logits, lr=lr)
    cls = torch.tensor(list(classes), device=x.device)
    loader = TensorLoader(x, torch.zeros(len(x), dtype=torch.int64, device=x.device), batch_size,
                          generator=generator, augment=augment)
    source.eval()
    loss = None
    for _ in range(epochs):
        for xb, _, _ in loader:
            with torch.no_grad():
                teacher = torch.log_softmax(source(xb)[:, cls] / temperature, dim=1)
            h = xb
            for block, g in zip(source.blocks, logits):
                h = block(h)
                h = h * _channel_view(torch.sigmoid(g), h)
            student = torch.log_softmax(source.head(source.pool(h))[:, cls] / temperature, dim=1)
            kl = F.kl_div(student, teacher, log_target=True, reduction="batchmean")
            l1 = torch.cat([torch.sigmoid(g) for g in logits]).mean()
            loss = kl * temperature ** 2 + sparsity * l1
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        check_finite(loss, "gate training")
    return [torch.sigmoid(g).detach() for g in logits]


def binarise(gates: Sequence[torch.Tensor], threshold: float) -> List[torch.Tensor]:
    """Hard masks from gate values; the strongest channel of a block is kept if none passes."""
    masks = []
    for g in gates:
        m = g > threshold
        if not bool(m.any()):
            m = torch.zeros_like(m)
            m[g.argmax()] = True
        masks.append(m)
    return masks


def fit_module(module: CloneModule, target: nn.Module, x: torch.Tensor, y_local: torch.Tensor,
               epochs: int, settings, generator: torch.Generator, augment=None) -> None:
    """Trains the adapter and the new head (cross-entropy on the step's classes)."""
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = settings.make_optimizer(params)
    loader = TensorLoader(x, y_local, settings.batch_size, generator=generator, augment=augment)
    module.train()
    loss = None
    for _ in range(epochs):
        for xb, yb, _ in loader:
            with torch.no_grad():
                feat = target.features(xb, module.position)
            loss = F.cross_entropy(module(feat), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        check_finite(loss, "adapter and head training")
    module.eval()


@torch.no_grad()
def module_accuracy(module: CloneModule, target: nn.Module, x: torch.Tensor,
                    y_local: torch.Tensor, batch_size: int = 512) -> float:
    module.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        pred = module(target.features(xb, module.position)).argmax(1)
        correct += int((pred == y_local[start:start + batch_size]).sum())
    return correct / max(len(x), 1)


@torch.no_grad()
def fit_router(net: ClonedNetwork, x: torch.Tensor, y: torch.Tensor, classes: Sequence[int],
               shrinkage: float) -> GaussianRouter:
    """The Gaussian router of one step, fitted on that step's data in the network's router
    space."""
    feats = []
    for start in range(0, len(x), 512):
        xb = x[start:start + 512]
        feats.append(net.router_features(xb, boundary_features(net.target, xb)))
    return GaussianRouter(torch.cat(feats), y, classes, shrinkage).to(x.device)


def start_network(target: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: Sequence[int],
                  hp: Dict) -> ClonedNetwork:
    """The step-1 network: the trained target wrapped, frozen, with its router fitted on e_1."""
    net = ClonedNetwork(target, classes, hp["routing"], hp["router_space"]).to(x.device)
    if hp["routing"] == "gaussian":
        net.base_router = fit_router(net, x, y, classes, hp["shrinkage"])
    return net


def clone_step(net: ClonedNetwork, source: nn.Module, x: torch.Tensor, y: torch.Tensor,
               classes: Sequence[int], step: int, positions: Sequence[int], hp: Dict, settings,
               generator: torch.Generator, augment=None) -> Dict:
    """One later step of PNC: localise, insert at the best position, fit the router, add the
    module to ``net`` as ``step``; returns the step's facts for the record."""
    net.eval()
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    y_local = torch.tensor([index[int(c)] for c in y.tolist()], device=x.device)
    gates = train_gates(source, x, classes, hp["gate_epochs"], hp["gate_lr"], hp["sparsity"],
                        hp["distill_temperature"], settings.batch_size, generator, augment)
    masks = binarise(gates, hp["gate_threshold"])

    def new_module(position):
        return CloneModule(source, masks, position, net.target.widths, classes,
                           net.target.spatial, hp["adapter_norm"]).to(x.device)

    perm = torch.randperm(len(y), generator=generator).to(x.device)
    n_val = int(round(len(y) * hp["val_fraction"]))
    train_idx, val_idx = perm[n_val:], perm[:n_val]
    held_out = val_idx if n_val else train_idx
    scores, best = {}, None
    for p in positions:
        module = new_module(p)
        fit_module(module, net.target, x[train_idx], y_local[train_idx], hp["insert_epochs"],
                   settings, generator, augment)
        scores[p] = module_accuracy(module, net.target, x[held_out], y_local[held_out])
        if best is None or scores[p] >= scores[best[0]]:
            best = (p, module)
    position, module = best
    if hp["refit"] and n_val:
        module = new_module(position)
        fit_module(module, net.target, x, y_local, hp["insert_epochs"], settings, generator,
                   augment)
    if hp["routing"] == "gaussian":
        module.router = fit_router(net, x, y, classes, hp["shrinkage"])
    net.add(step, module)
    return {
        "step": step,
        "position": position,
        "position_scores": {str(k): v for k, v in scores.items()},
        "kept_fraction": float(torch.cat(masks).float().mean()),
        "parameters_added": count_parameters(module),
        "trainable_parameters": module.trainable_parameters() + sum(m.numel() for m in masks),
    }


def parse_positions(text: str, depth: int) -> List[int]:
    """Candidate positions from ``auto`` (0..depth) or ``"0,2"``; UsageError if out of range."""
    if text == "auto":
        return list(range(depth + 1))
    try:
        positions = sorted({int(p) for p in text.split(",")})
    except ValueError:
        raise UsageError(f"bad PNC positions {text!r}: use auto or indices like 0,1") from None
    if not positions or positions[0] < 0 or positions[-1] > depth:
        raise UsageError(f"bad PNC positions {text!r}: indices must lie in 0..{depth}")
    return positions


class PNC(FastTemplate):
    """Partial Network Cloning as an Avalanche strategy (see the module docstring)."""

    def __init__(self, *, model, optimizer, source_provider: Optional[Callable] = None,
                 routing: str = "gaussian", router_space: str = "input",
                 shrinkage: float = 0.1, positions: str = "auto", gate_epochs: int = 10,
                 gate_lr: float = 0.05, sparsity: float = 0.5, gate_threshold: float = 0.5,
                 distill_temperature: float = 2.0, insert_epochs: int = 0,
                 val_fraction: float = 0.2, refit: bool = True, adapter_norm: bool = False,
                 train_settings=None, **kwargs):
        super().__init__(model=model, optimizer=optimizer, **kwargs)
        if routing not in ROUTINGS:
            raise UsageError(f"bad PNC routing {routing!r}; choose one of {', '.join(ROUTINGS)}")
        if router_space not in ROUTER_SPACES:
            raise UsageError(f"bad PNC router_space {router_space!r}")
        self.source_provider = source_provider
        self.hp = dict(routing=routing, router_space=router_space, shrinkage=shrinkage,
                       positions=positions, gate_epochs=gate_epochs, gate_lr=gate_lr,
                       sparsity=sparsity, gate_threshold=gate_threshold,
                       distill_temperature=distill_temperature,
                       insert_epochs=insert_epochs or self.train_epochs,
                       val_fraction=val_fraction, refit=refit, adapter_norm=adapter_norm)
        self.settings = train_settings
        self.initial_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._positions = parse_positions(positions, len(model.blocks))
        self._report: Dict = {}

    # ---- Avalanche hooks -------------------------------------------------------------
    def _train_exp(self, experience, eval_streams=None, **kwargs):
        if experience.current_experience == 0 or not isinstance(self.model, ClonedNetwork):
            super()._train_exp(experience, eval_streams, **kwargs)
            x, y = self._tensors(experience)
            target = self.model
            self.model = start_network(target, x, y, experience_classes(experience), self.hp)
            self._report = {"step": 1, "position": None, "kept_fraction": None,
                            "parameters_added": 0,
                            "trainable_parameters": count_parameters(target)}
        else:
            x, y = self._tensors(experience)
            source = self._source(experience).to(self.device).eval()
            self._report = clone_step(self.model, source, x, y, experience_classes(experience),
                                      experience.current_experience + 1, self._positions,
                                      self.hp, self._settings(), self.generator,
                                      getattr(experience, "augment", None))

    def step_report(self) -> Dict:
        report, self._report = self._report, {}
        return report

    def _settings(self):
        if self.settings is not None:
            return self.settings
        from strategies.registry import TrainSettings

        lr = self.optimizer.param_groups[0]["lr"]
        return TrainSettings(epochs=self.train_epochs, batch_size=self.train_mb_size, lr=lr)

    def _tensors(self, experience):
        x, y = experience_tensors(experience)
        return x.to(self.device), y.to(self.device)

    def _source(self, experience) -> nn.Module:
        if self.source_provider is not None:
            return self.source_provider(experience)
        from benchmark.protocol import fit

        expert = copy.deepcopy(self.model.target)
        expert.load_state_dict(self.initial_state)
        for p in expert.parameters():
            p.requires_grad_(True)
        x, y = self._tensors(experience)
        return fit(expert, x, y, self._settings(), self.generator,
                   getattr(experience, "augment", None))


@register_strategy("pnc", summary="Partial Network Cloning: frozen target + removable cloned "
                   "source parts, routed", options=OPTIONS, uses_source=True,
                   check=lambda hp, depth: parse_positions(hp["positions"], depth))
def build_pnc(model, ctx, **hp):
    return PNC(model=model, optimizer=ctx.train.make_optimizer(model.parameters()),
               source_provider=ctx.source_provider, train_settings=ctx.train, **hp,
               **ctx.template_kwargs())
