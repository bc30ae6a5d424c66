"""``icarl``: iCaRL (Rebuffi et al. 2017), from Avalanche's ``ICaRL`` machinery.

Keeps: exemplars in their stored form, chosen per class by herding on the features (the closest
running mean to the class's mean feature), as many per class as fit in ``memory_bytes`` shared
equally over the classes seen; for each exemplar its label and its herding rank (float32, which
Avalanche keeps to shrink a class's set later). ``state_bytes`` counts these. The class means
the model predicts with sit in its ``NCMClassifier`` (``model_bytes``).

Trains: the step's data and the exemplars together, with iCaRL's loss: binary cross-entropy on
sigmoid outputs whose targets are the one-hot labels, except on the classes of earlier steps,
where they are the previous model's sigmoid outputs (distillation). After the step: herding
selects the new classes' exemplars, the older classes' sets shrink to the new share, and each
class mean is recomputed from its exemplars' L2-normalised features (and their horizontal flips,
for images). Predicts the nearest class mean (``NCMClassifier``, normalised features).

Built from Avalanche: the model is Avalanche's ``TrainEvalModel`` (feature extractor; the
backbone's head for training; ``NCMClassifier(normalize=True)`` for prediction), the loss its
``ICaRLLossPlugin``, and exemplar selection, reduction and class means its ``_ICaRLPlugin``'s own
``construct_exemplar_set``, ``reduce_exemplar_set`` and ``compute_class_means``. Adaptations:

- those three methods read a view of the strategy: the experience as a dataset of its stored
  tensors (so exemplars stay uint8 where the stream stores uint8), a feature extractor that
  decodes them first, and the classes per experience that Avalanche takes from the benchmark
  (``TensorExperience`` has none);
- the memory per class is set so that it never exceeds the budget (Avalanche rounds
  ``memory_size / classes`` up, which can overshoot);
- the plugin's own dictionary of class means, a copy of the classifier's that Avalanche
  rebuilds from the exemplars of every class at the end of each step, is released once the
  classifier has them;
- the previous model that the loss distils from is copied when a step starts and released when
  it ends (Avalanche copies it when the previous step ends: the same weights), so no model copy
  is kept between steps; it shows in peak memory, not in ``state_bytes``;
- the step's training batches are drawn from the step's and the exemplars' tensors together
  (the stream's augmentation applies to both; Avalanche's default applies none to exemplars).

Defaults: Avalanche's fixed memory (``fixed_memory=True``: the budget is shared by all classes
seen), normalised NCM, the experiment's optimizer.
"""
from __future__ import annotations

import copy
import itertools
from types import SimpleNamespace

import torch
from avalanche.models import NCMClassifier, TrainEvalModel
from avalanche.training.losses import ICaRLLossPlugin
from avalanche.training.supervised.icarl import _ICaRLPlugin

from benchmark.core.tensors import stored_tensors
from strategies.base import tensor_bytes
from strategies.features import split_head
from strategies.memory import (
    FALLBACK_SAMPLES,
    BufferTemplate,
    DecodedInput,
    stored_dataset,
)
from strategies.registry import CLASS_INCREMENTAL, register_strategy

RANK_BYTES = 4  # Avalanche keeps each exemplar's herding rank as a float32


class StepDistillationLoss(ICaRLLossPlugin):
    """``ICaRLLossPlugin`` whose previous model is copied when a step starts and released when
    it ends (see the module docstring)."""

    def before_training_exp(self, strategy, **kwargs):
        if self.old_classes:
            self.old_model = copy.deepcopy(strategy.model).to(strategy.device)

    def after_training_exp(self, strategy, **kwargs):
        self.old_model = None
        self.old_classes += torch.unique(stored_tensors(strategy.experience)[1]).tolist()


class StoredICaRLPlugin(_ICaRLPlugin):
    """Avalanche's iCaRL plugin run on a view of the strategy (stored tensors, classes per
    experience), its memory per class bounded by ``capacity`` samples."""

    def __init__(self):
        super().__init__(FALLBACK_SAMPLES, buffer_transform=None, fixed_memory=True)
        self.capacity = FALLBACK_SAMPLES
        self.classes_per_exp: list[int] = []

    def before_training_exp(self, strategy, **kwargs):
        classes = list(strategy.experience.classes_in_this_experience)
        self.observed_classes.extend(classes)
        self.classes_per_exp.append(len(classes))

    def after_training_exp(self, strategy, **kwargs):
        view = self.view(strategy)
        per_class = self.capacity // len(self.observed_classes)
        self.memory_size = per_class * len(self.observed_classes)
        strategy.model.eval()
        with torch.random.fork_rng(devices=[]):  # Avalanche's DataLoaders draw base seeds
            self.construct_exemplar_set(view)
            self.reduce_exemplar_set(view)
            self.compute_class_means(view)
        self.class_means = {}
        strategy.model.train()

    def view(self, strategy) -> SimpleNamespace:
        """What Avalanche's methods read from a strategy and its experience, with the
        experience's stored tensors and a feature extractor that decodes them. The benchmark's
        classes per experience are those seen so far, then the classes not seen yet (their sum
        is the number of outputs)."""
        x, y, decode = stored_tensors(strategy.experience)
        outputs = strategy.num_outputs
        per_exp = self.classes_per_exp + [outputs - sum(self.classes_per_exp)]
        benchmark = SimpleNamespace(n_classes_per_exp=per_exp,
                                    classes_order=list(self.observed_classes))
        model = SimpleNamespace(
            feature_extractor=DecodedInput(strategy.model.feature_extractor, decode),
            eval_classifier=strategy.model.eval_classifier)
        return SimpleNamespace(
            experience=SimpleNamespace(dataset=stored_dataset(x, y), benchmark=benchmark),
            clock=SimpleNamespace(train_exp_counter=len(self.classes_per_exp) - 1),
            model=model, device=strategy.device, eval_mb_size=strategy.eval_mb_size)

    def memory(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(stored x, y) of every exemplar."""
        if not self.x_memory:
            return torch.zeros(0), torch.zeros(0, dtype=torch.int64)
        labels = list(itertools.chain.from_iterable(self.y_memory))
        return torch.cat(self.x_memory), torch.tensor(labels, dtype=torch.int64)

    def kept_bytes(self) -> int:
        """Exemplars (stored x, int64 labels), their ranks, and the plugin's class means while
        it holds them (only within a step's end)."""
        x, y = self.memory()
        return tensor_bytes([x, y, *self.order, *self.class_means.values()])


@register_strategy("icarl", summary="iCaRL: herded exemplars in bytes, distillation, nearest "
                   "mean of exemplars (Avalanche ICaRL)", family="replay", keeps_samples=True)
class ICaRL(BufferTemplate):
    """iCaRL on tensor experiences: Avalanche's model, loss and exemplar machinery."""

    SCENARIOS = (CLASS_INCREMENTAL,)

    def __init__(self, *, model, **kwargs):
        features, head = split_head(model)
        self.num_outputs = head.out_features
        self.distillation = StepDistillationLoss()
        net = TrainEvalModel(features, train_classifier=head,
                             eval_classifier=NCMClassifier(normalize=True))
        super().__init__(model=net, criterion=self.distillation, **kwargs)

    def own_plugins(self):
        return [StoredICaRLPlugin(), self.distillation]

    @property
    def icarl(self) -> StoredICaRLPlugin:
        return next(p for p in self.plugins if isinstance(p, StoredICaRLPlugin))

    def per_sample_bytes(self) -> int:
        """An exemplar's stored input and label, and its herding rank."""
        return super().per_sample_bytes() + RANK_BYTES

    def _before_training_exp(self, **kwargs):
        """Sizes the memory: the most exemplars that fit the budget."""
        self.icarl.capacity = self.sample_capacity()
        super()._before_training_exp(**kwargs)

    def training_tensors(self):
        """The step's data and the exemplars together."""
        x, y = self.experience.x.to(self.device), self.experience.y.to(self.device)
        mx, my = self.icarl.memory()
        if len(my):
            x, y = torch.cat([x, mx.to(self.device)]), torch.cat([y, my.to(self.device)])
        return x, y

    def kept_samples(self):
        return self.icarl.memory()

    def state_bytes(self) -> int:
        return self.icarl.kept_bytes()
