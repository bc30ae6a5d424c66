"""Classifiers built from class statistics on a fixed feature space (``slda``, ``ncm``,
``fecam``), and the split of a backbone into feature extractor and head (also used by
``icarl``).

**Feature space** (option ``features`` where a strategy declares it):

- ``input``: the flattened input, as the stream decodes it; no network is trained;
- ``step1``: the backbone's penultimate features (the input of its linear head). Step 1 trains
  the backbone and head with cross-entropy on e_1 (as ``finetune`` does), then freezes the
  feature extractor for good (eval mode, no gradients) and discards the head: from then on the
  statistics alone classify, on these frozen features;
- ``auto``: ``input`` when the backbone is an MLP (a ``BlockNet`` without spatial features, e.g.
  on ``split-digits``), ``step1`` otherwise (pixels of images are too many, too correlated and
  too far from linearly separable for one Gaussian per class).

**Fitting runs in the template's loop**: each step ends with a forward-only phase ``fit`` (one
pass over the step's training data, no augmentation) whose iterations compute the batch's
features and hand them to the strategy (``absorb``); ``finish_fit`` then updates the
statistics. Plugins see these iterations like any other.

**Model** (Avalanche's idiom for such classifiers): ``self.model`` is an Avalanche
``TrainEvalModel``: ``feature_extractor`` (the frozen backbone without its head, or
``Flatten``), ``train_classifier`` (the head during step 1, then ``Identity``) and
``eval_classifier`` (the statistics' classifier). Every statistic lives in the classifier module
and is counted in ``model_bytes()`` (it is what predicts); nothing is kept outside the predicting
model, so ``state_bytes()`` is 0.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from avalanche.models import TrainEvalModel
from torch import nn

from benchmark.core.errors import UsageError
from benchmark.core.options import Option
from benchmark.core.tensors import TensorExperience
from strategies.base import FastTemplate, Phase
from strategies.memory import stored_dataset

FEATURES = Option(
    "features", str, "auto",
    "feature space of the class statistics: input (the flattened input), step1 (the "
    "backbone's penultimate features, trained on step 1 then frozen), auto (input for MLP "
    "backbones, step1 otherwise)", choices=("auto", "input", "step1"))


def split_head(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """(feature extractor, linear head) of a backbone, sharing its modules: a ``BlockNet`` or a
    model with ``blocks`` and a linear ``head`` (``stem`` and ``pool`` optional) gives
    stem-blocks-pool; an ``nn.Sequential`` whose last child is an ``nn.Linear`` gives the other
    children. UsageError otherwise."""
    head = getattr(model, "head", None)
    if hasattr(model, "blocks") and isinstance(head, nn.Linear):
        parts = [getattr(model, "stem", None), *model.blocks, getattr(model, "pool", None)]
        return nn.Sequential(*(p for p in parts if p is not None)), head
    if isinstance(model, nn.Sequential) and len(model) > 1 and isinstance(model[-1], nn.Linear):
        return nn.Sequential(*list(model)[:-1]), model[-1]
    raise UsageError(f"a {type(model).__name__} does not show its head: pass an nn.Sequential "
                     "whose last child is an nn.Linear, or a model with `blocks` and a linear "
                     "`head`")


class ClassStatisticsTemplate(FastTemplate):
    """A classifier of class statistics on a fixed feature space (see the module docstring).

    Subclasses give ``make_classifier(width)`` (the ``eval_classifier`` for features of
    ``width``) and ``finish_fit()`` (after the pass); ``absorb(features, labels)`` takes each fit
    batch (default: kept until ``fitted_features()`` hands them over as one dataset).
    ``DEFAULT_FEATURES`` is the space of a strategy that does not declare ``features``.
    """

    DEFAULT_FEATURES = "step1"

    def __init__(self, *, model: nn.Module, **kwargs):
        super().__init__(model=model, **kwargs)
        features, head = split_head(model)
        self.num_classes = head.out_features
        space = self.hp.get("features", self.DEFAULT_FEATURES)
        if space == "auto":
            space = "input" if getattr(model, "spatial", True) is False else "step1"
        self.feature_space = space
        if space == "input":
            self.model = TrainEvalModel(nn.Flatten(), nn.Identity(), nn.Identity())
        else:
            self.model = TrainEvalModel(features, head, nn.Identity())
        self.frozen = space == "input"
        self.fitted = False
        self._batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def training_phases(self) -> Iterator[Phase]:
        if not self.frozen:
            yield Phase("train", self.train_epochs, self.dataloader, self.optimizer)
            self.model.feature_extractor.requires_grad_(False)
            self.model.train_classifier = nn.Identity()
            self.frozen = True
        self.model.eval()
        loader = self.fit_loader()
        if not self.fitted:
            self.model.eval_classifier = self.make_classifier(self.feature_width(loader))
            self.model.eval_classifier.to(self.device)
            self.fitted = True
        yield Phase("fit", 1, loader, None, forward=self._fit_batch)
        with torch.random.fork_rng(devices=[]):  # Avalanche's DataLoaders draw base seeds
            self.finish_fit()

    def fit_loader(self):
        """One pass over the step's training data, decoded, not augmented."""
        exp = self.experience
        if isinstance(exp, TensorExperience):
            return self.tensor_loader(exp.x.to(self.device), exp.y.to(self.device),
                                      shuffle=True, decode=exp.decode)
        return torch.utils.data.DataLoader(exp.dataset.eval(), batch_size=self.train_mb_size,
                                           shuffle=True, generator=self.generator)

    @torch.no_grad()
    def feature_width(self, loader) -> int:
        x = next(iter(loader))[0][:1].to(self.device)
        return int(self.model.feature_extractor(x).shape[1])

    def _fit_batch(self, x: torch.Tensor) -> torch.Tensor:
        """The batch's features, absorbed into the statistics (the phase's output)."""
        features = self.model.feature_extractor(x)
        self.absorb(features, self.mb_y)
        return features

    def make_classifier(self, width: int) -> nn.Module:
        raise NotImplementedError

    def absorb(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self._batches.append((features, labels))

    def fitted_features(self):
        """The step's features and labels absorbed so far, as an Avalanche classification
        dataset (then forgotten)."""
        features, labels = (torch.cat(parts) for parts in zip(*self._batches))
        self._batches = []
        return stored_dataset(features, labels)

    def finish_fit(self) -> None:
        """Called after each step's fit pass (default: nothing)."""

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor, step=None) -> torch.Tensor:
        """The classifier's scores (higher is more likely) for every class it knows."""
        self.model.eval()
        return self.model(x).to(x.device)

    def step_report(self):
        report = super().step_report()
        report["feature_space"] = self.feature_space
        return report


# As for ``FastTemplate`` (see strategies.base): Avalanche's check of keyword arguments would
# refuse the options subclasses declare on their way through this __init__.
ClassStatisticsTemplate.__init__ = getattr(ClassStatisticsTemplate.__init__, "__wrapped__",
                                           ClassStatisticsTemplate.__init__)
