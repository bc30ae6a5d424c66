"""``gdumb``: GDumb (Prabhu et al. 2020), Avalanche's ``GDumbPlugin``.

Keeps: training samples in their stored form and their labels, as many as fit in
``memory_bytes``, split equally over the classes seen so far (Avalanche's
``ClassBalancedBuffer``, reservoir sampling per class). ``state_bytes`` is the buffer's inputs
and labels.

Trains: at every step the model restarts from scratch and is trained on the buffer alone (after
the step's samples entered it), for the experiment's epochs, with cross-entropy; the optimizer's
state restarts too.

Built from Avalanche: ``GDumbPlugin`` (update the buffer before training, train on the buffer,
restart the model) with ``ClassBalancedBuffer``. Adapted: the buffer is fed the experience's
stored tensors and compacted, its draws seeded by the strategy (``strategies.memory``), and
batches are drawn from its tensors on the device. Restarting from scratch: Avalanche's plugin
keeps a deep copy of the initial model between steps, which would not fit in a sample budget;
here every layer's parameters are drawn again (``reset_parameters``) from the strategy's seed, so
each step restarts from the same initial weights and only the seed (8 bytes) is kept. For the
suite's backbones, built from the same seed, these are the weights theta_0 the run started from.

Defaults: the experiment's epochs and optimizer (GDumb trains to convergence with SGD and a
cosine schedule over many epochs; the suite gives every strategy the same training settings).
"""
from __future__ import annotations

import torch
from avalanche.training.plugins import GDumbPlugin
from torch import nn

from strategies.memory import (
    FALLBACK_SAMPLES,
    ClassBalancedTemplate,
    StoredClassBalancedBuffer,
)
from strategies.registry import CLASS_INCREMENTAL, DOMAIN, MIXED, register_strategy


def reinitialise(model: nn.Module, seed: int) -> None:
    """Draws every parameter of ``model`` afresh with its layers' own initialisation
    (``reset_parameters``, in module order) from ``seed``; normalisation statistics reset too."""
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()


class FastGDumbPlugin(GDumbPlugin):
    """``GDumbPlugin`` with the stored, compacted class-balanced buffer and a restart by
    re-initialisation from a seed instead of a kept copy of the initial model."""

    def __init__(self, mem_size: int = FALLBACK_SAMPLES):
        super().__init__(mem_size)
        self.storage_policy = StoredClassBalancedBuffer(mem_size)

    def before_train_dataset_adaptation(self, strategy, **kwargs):
        reinitialise(strategy.model, strategy.seed)

    def after_train_dataset_adaptation(self, strategy, **kwargs):
        self.storage_policy.post_adapt(strategy, strategy.experience)
        strategy.adapted_dataset = self.storage_policy.buffer


@register_strategy("gdumb", summary="GDumb: a class-balanced buffer in bytes, the model "
                   "retrained from scratch on it at every step (Avalanche GDumbPlugin)",
                   family="replay", keeps_samples=True)
class GDumb(ClassBalancedTemplate):
    """Trains from scratch, at every step, on a class-balanced buffer only."""

    SCENARIOS = (CLASS_INCREMENTAL, DOMAIN, MIXED)
    BUFFER_PLUGIN = FastGDumbPlugin

    def own_plugins(self):
        return [FastGDumbPlugin()]

    def training_tensors(self):
        """The buffer (which holds the step's samples that stayed)."""
        return self.kept_samples()

    def check_model_and_optimizer(self, **kwargs):
        kwargs["reset_optimizer_state"] = True
        super().check_model_and_optimizer(**kwargs)
