"""Experiment files: the per-stream backbone override."""
import pytest

from benchmark.core.errors import UsageError
from benchmark.run.experiment_file import load_experiment


def write(tmp_path, text):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_backbone_override_reaches_the_runs_and_their_keys(tmp_path):
    head = 'stream = "split-mnist"\nstrategies = ["finetune"]\nseeds = [0]\n'
    base = load_experiment(write(tmp_path, head))
    other = load_experiment(write(tmp_path, head + '[backbone]\nsplit-mnist = "resnet32"\n'))
    (run_default,), (run_other,) = base.run_configs(), other.run_configs()
    assert run_default.backbone == "cnn" and run_other.backbone == "resnet32"
    assert run_default.key != run_other.key


@pytest.mark.parametrize("table, message", [
    ('[backbone]\nsplit-digits = "vgg"\n', "unknown backbone 'vgg'"),
    ('[backbone]\nsplit-mnist = "cnn"\n', "not in the experiment's streams"),
    ('[backbone]\nsplit-digits = 3\n', "must be a str"),
    ('[backbone]\nsplit-digits = "cnn"\n', "does not take split-digits's inputs"),
])
def test_bad_backbone_overrides_are_refused(tmp_path, table, message):
    with pytest.raises(UsageError, match=message):
        load_experiment(write(tmp_path, 'strategies = ["finetune"]\n' + table)).run_configs()
