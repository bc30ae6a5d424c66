"""``ewc``: Elastic Weight Consolidation (Kirkpatrick et al. 2017) through Avalanche's
``EWCPlugin``.

The penalty is ewc_lambda * sum_i F_i (theta_i - theta*_i)^2 over the importances F (squared
mini-batch gradients, Avalanche's estimate) saved after each experience. ``FastEWCPlugin``
computes the same importances from the experience's tensors instead of a ``DataLoader``.
"""
from avalanche.training.plugins import EWCPlugin
from avalanche.training.utils import zerolike_params_dict

from benchmark.data import TensorLoader, experience_tensors
from strategies.base import FastTemplate
from strategies.registry import Option, register_strategy

OPTIONS = (
    Option("ewc_lambda", float, 10000.0, "weight of the EWC penalty (tuned on split-digits)",
           low=0.0),
    Option("mode", str, "separate", "keep one Fisher per experience or a running one",
           choices=("separate", "online")),
    Option("decay_factor", float, 0.9, "decay of the running Fisher (mode=online only)",
           low=0.0, high=1.0),
)


class FastEWCPlugin(EWCPlugin):
    """``EWCPlugin`` whose importances are computed on the experience's tensors (same estimate:
    squared mini-batch gradients averaged over the mini-batches, model in eval mode)."""

    def after_training_exp(self, strategy, **kwargs):
        self._experience = strategy.experience
        super().after_training_exp(strategy, **kwargs)

    def compute_importances(self, model, criterion, optimizer, dataset, device, batch_size,
                            num_workers=0):
        model.eval()
        importances = zerolike_params_dict(model)
        x, y = experience_tensors(self._experience)
        loader = TensorLoader(x.to(device), y.to(device), batch_size, shuffle=False)
        for xb, yb, _ in loader:
            optimizer.zero_grad()
            criterion(model(xb), yb).backward()
            for (_, p), imp in zip(model.named_parameters(), importances.values()):
                if p.grad is not None:
                    imp.data += p.grad.data.pow(2)
        for imp in importances.values():
            imp.data /= float(len(loader))
        model.train()
        return importances


class EWC(FastTemplate):
    """Finetuning plus the EWC penalty."""

    def __init__(self, *, model, optimizer, ewc_lambda: float = 10000.0, mode: str = "separate",
                 decay_factor: float = 0.9, plugins=None, **kwargs):
        plugin = FastEWCPlugin(ewc_lambda, mode=mode,
                               decay_factor=decay_factor if mode == "online" else None)
        super().__init__(model=model, optimizer=optimizer, plugins=[plugin] + list(plugins or []), **kwargs)


@register_strategy("ewc", summary="Elastic Weight Consolidation (Avalanche EWCPlugin)",
                   options=OPTIONS)
def build_ewc(model, ctx, ewc_lambda, mode, decay_factor):
    return EWC(model=model, optimizer=ctx.train.make_optimizer(model.parameters()), ewc_lambda=ewc_lambda,
               mode=mode, decay_factor=decay_factor, **ctx.template_kwargs())
