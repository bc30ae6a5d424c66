"""Stacked copies of a network (``benchmark.core.stacked``) and their optimizers
(``benchmark.core.stacked_optim``), checked against each copy run alone.

Tolerances: the stacked forward and backward use batched matrix products and, on padded
batches, BatchNorm statistics summed over masked rows, so they match a copy alone up to float
rounding (1e-5 here, on values of order 1). The optimizers are checked at PyTorch's own
precision: SGD bitwise, Adam bitwise while the stepped copies share their step count and within
one unit in the last place otherwise.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmark.core.models import make_backbone
from benchmark.core.stacked import StackedModel, stackable
from benchmark.core.stacked_optim import StackedAdam, StackedSGD

TOL = 1e-5
BACKBONES = {"mlp": (64,), "cnn": (1, 8, 8)}


def models(name: str, copies: int = 3):
    return [make_backbone(name, 10, BACKBONES[name], seed=s) for s in range(copies)]


def padded(batches):
    """x, y and mask of per-copy batches (None: none) padded to the longest."""
    rows = max(len(b[1]) for b in batches if b is not None)
    shape = next(b for b in batches if b is not None)[0].shape[1:]
    x = torch.zeros(len(batches), rows, *shape)
    y = torch.zeros(len(batches), rows, dtype=torch.int64)
    mask = torch.zeros(len(batches), rows, dtype=torch.bool)
    for s, batch in enumerate(batches):
        if batch is not None:
            n = len(batch[1])
            x[s, :n], y[s, :n], mask[s, :n] = batch[0], batch[1], True
    return x, y, mask


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_a_padded_pass_computes_what_each_copy_computes_alone(name):
    """Ragged batches (6 rows, 4 rows, none): outputs, gradients, running statistics and batch
    counts of each copy equal the copy alone; the copy without a batch keeps its buffers."""
    gen = torch.Generator().manual_seed(0)
    alone = models(name)
    stacked = StackedModel(alone)
    before = stacked.snapshot()
    batches = [(torch.rand(n, *BACKBONES[name], generator=gen),
                torch.randint(0, 10, (n,), generator=gen)) for n in (6, 4)] + [None]
    x, y, mask = padded(batches)
    out = stacked.forward(x, mask, train=True)
    ce = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view_as(y)
    (torch.where(mask, ce, 0.0).sum(1) / mask.sum(1).clamp(min=1)).sum().backward()
    grads = stacked.params(stacked.flat.grad)
    for s, (model, batch) in enumerate(zip(alone, batches)):
        if batch is None:
            assert torch.equal(stacked.flat[s], before[0][s])
            for key, value in stacked.buffers.items():
                assert torch.equal(value[s], before[1][key][s]), key
            continue
        model.train()
        own = model(batch[0])
        F.cross_entropy(own, batch[1]).backward()
        n = len(batch[1])
        assert (own - out[s, :n]).abs().max() < TOL
        for key, p in model.named_parameters():
            assert (p.grad - grads[key][s]).abs().max() < TOL, key
        for key, b in model.named_buffers():
            assert (b.float() - stacked.buffers[key][s].float()).abs().max() < TOL, key


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_an_unpadded_pass_and_eval_mode_match_each_copy(name):
    gen = torch.Generator().manual_seed(1)
    alone = models(name)
    stacked = StackedModel(alone)
    x = torch.rand(3, 5, *BACKBONES[name], generator=gen)
    out = stacked.forward(x, None, train=True)
    for s, model in enumerate(alone):
        model.train()
        assert (model(x[s]) - out[s]).abs().max() < TOL
        for key, b in model.named_buffers():
            assert (b.float() - stacked.buffers[key][s].float()).abs().max() < TOL, key
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    with torch.no_grad():
        evaluated = stacked.forward(x, mask, train=False)
    for s, model in enumerate(alone):
        model.eval()
        with torch.no_grad():
            assert (model(x[s]) - evaluated[s]).abs().max() < TOL


def test_state_dict_and_snapshots_round_trip():
    alone = models("mlp", 2)
    stacked = StackedModel(alone)
    saved = stacked.snapshot()
    with torch.no_grad():
        stacked.flat.add_(1.0)
    stacked.load(saved)
    for s, model in enumerate(alone):
        state = stacked.state_dict(s)
        assert state.keys() == model.state_dict().keys()
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_batchnorm_without_running_statistics_cannot_be_stacked():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4, momentum=None))
    assert stackable(models("mlp", 1)[0])
    assert not stackable(net)


def optimizers(kind: str, init: torch.Tensor, weight_decay: float):
    flat = init.clone().requires_grad_()
    refs = [row.clone().requires_grad_() for row in init]
    if kind == "adam":
        return (flat, StackedAdam(flat, 0.01, weight_decay), refs,
                [torch.optim.Adam([r], lr=0.01, weight_decay=weight_decay) for r in refs])
    return (flat, StackedSGD(flat, 0.05, 0.9, weight_decay), refs,
            [torch.optim.SGD([r], lr=0.05, momentum=0.9, weight_decay=weight_decay)
             for r in refs])


@pytest.mark.parametrize("kind", ["adam", "sgd"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("ragged", [False, True])
def test_stacked_optimizers_follow_torch_per_copy(kind, weight_decay, ragged):
    """Each copy follows its own ``torch.optim`` optimizer stepped only when the copy is
    active; an inactive copy's weights and state do not move (Adam's step count included)."""
    gen = torch.Generator().manual_seed(2)
    init = torch.randn(4, 50, generator=gen)
    flat, opt, refs, ref_opts = optimizers(kind, init, weight_decay)
    for it in range(30):
        grad = torch.randn(4, 50, generator=gen) * 10.0 ** torch.randint(-8, 1, (4, 50),
                                                                         generator=gen)
        active = torch.ones(4, dtype=torch.bool)
        if ragged:
            active[0] = it % 3 != 0
            active[2] = it < 20
        flat.grad = grad.clone()
        opt.step(active)
        for s in range(4):
            if active[s]:
                refs[s].grad = grad[s].clone()
                ref_opts[s].step()
    exact = kind == "sgd" or not ragged
    for s in range(4):
        if exact:
            assert torch.equal(flat[s], refs[s]), s
        else:
            assert (flat[s] - refs[s]).abs().max() <= 1e-6 * refs[s].abs().max(), s
    if kind == "adam":
        assert opt.steps.tolist() == [float(ref_opts[s].state[refs[s]]["step"])
                                      for s in range(4)]
