"""Joint (reference): batches the union of all experiences seen so far, restarts from theta_0 when
asked, is registered as the reference, and is the upper bound on split-digits."""
import pytest
import torch
from avalanche.training.plugins import SupervisedPlugin

from benchmark.core.models import make_backbone
from benchmark.data import get_stream
from benchmark.run.plan import Experiment
from benchmark.run.runner import execute_run
from strategies import Joint, StrategyContext, TrainSettings, get_strategy

SETTINGS = TrainSettings(epochs=1, batch_size=32, lr=0.01)


class StartRecorder(SupervisedPlugin):
    """Records, at the start of each step, the model's weights and the loader's data."""

    def __init__(self):
        super().__init__()
        self.states, self.labels = [], []

    def before_training_exp(self, strategy, **kwargs):
        self.states.append({k: v.clone() for k, v in strategy.model.state_dict().items()})
        self.labels.append(torch.cat([yb for _, yb, _ in strategy.dataloader]))


def run_joint(init: str, steps: int = 3):
    data = get_stream("split-digits").build(seed=0)
    model = make_backbone("mlp", 10, (64,), seed=0)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    recorder = StartRecorder()
    strategy = Joint(model=model, optimizer=SETTINGS.make_optimizer(model.parameters()),
                     init=init, initial_state=theta0, plugins=[recorder], train_mb_size=32,
                     train_epochs=1)
    for exp in data.train_experiences()[:steps]:
        strategy.train(exp, eval_streams=[])
    return data, theta0, recorder, strategy


def test_each_step_batches_the_union_of_the_experiences_seen_so_far():
    data, _, recorder, strategy = run_joint("current")
    for k, labels in enumerate(recorder.labels):
        expected = torch.cat([y for _, y in data.train[:k + 1]])
        # A shuffled pass may skip one final single-sample batch (see TensorLoader).
        assert len(expected) - 1 <= len(labels) <= len(expected)
        assert set(labels.tolist()) == {c for step in data.classes_per_step[:k + 1] for c in step}
    assert [r["training_samples"] for r in strategy.step_reports] == [
        sum(len(y) for _, y in data.train[:k + 1]) for k in range(3)]


@pytest.mark.parametrize("init", ["current", "theta0"])
def test_init_decides_where_each_step_starts(init):
    _, theta0, recorder, _ = run_joint(init)
    for k, state in enumerate(recorder.states):
        at_theta0 = all(torch.equal(state[n], theta0[n]) for n in theta0)
        assert at_theta0 == (k == 0 or init == "theta0")


def test_joint_is_the_registered_reference():
    spec = get_strategy("joint")
    assert spec.reference and not spec.uses_source
    assert Experiment().strategies[0] == "joint"
    model = make_backbone("mlp", 10, (64,), seed=0)
    ctx = StrategyContext(device=torch.device("cpu"), train=SETTINGS, seed=0, num_classes=10,
                          initial_state=model.state_dict())
    assert isinstance(spec.build(model, ctx, **spec.resolve({"init": "theta0"})), Joint)


def test_joint_record_on_split_digits_is_the_upper_bound():
    configs = Experiment(strategies=["joint", "finetune"], seeds=[0], train={"epochs": 2},
                         device="cpu").run_configs()
    joint, finetune = (execute_run(cfg) for cfg in configs)
    assert joint["status"] == "ok", joint["error"]
    m = joint["metrics"]
    for name in ("final_accuracy", "final_accuracy_weighted", "average_incremental_accuracy",
                 "locality", "original_locality", "old_accuracy", "new_accuracy"):
        assert 0.0 <= m[name] <= 1.0, name
    assert m["final_accuracy"] >= 0.85
    assert m["final_accuracy"] > finetune["metrics"]["final_accuracy"] + 0.3
    assert m["forgetting"] < finetune["metrics"]["forgetting"]
    samples = [s["training_samples"] for s in joint["steps"]]
    assert samples == sorted(samples) and len(set(samples)) == 5
