"""Experiment files: the per-stream backbone override."""
import pytest

from benchmark.config import load_experiment
from benchmark.errors import UsageError


def write(tmp_path, text):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_backbone_override_reaches_the_runs_and_their_keys(tmp_path):
    base = load_experiment(write(tmp_path, 'strategies = ["finetune"]\nseeds = [0]\n'))
    other = load_experiment(write(tmp_path, 'strategies = ["finetune"]\nseeds = [0]\n'
                                            '[backbone]\nsplit-digits = "cnn"\n'))
    (run_default,), (run_other,) = base.run_configs(), other.run_configs()
    assert run_default.backbone == "mlp" and run_other.backbone == "cnn"
    assert run_default.key != run_other.key


@pytest.mark.parametrize("table, message", [
    ('[backbone]\nsplit-digits = "vgg"\n', "unknown backbone 'vgg'"),
    ('[backbone]\nsplit-mnist = "cnn"\n', "not in the experiment's streams"),
    ('[backbone]\nsplit-digits = 3\n', "must be a str"),
])
def test_bad_backbone_overrides_are_refused(tmp_path, table, message):
    with pytest.raises(UsageError, match=message):
        load_experiment(write(tmp_path, 'strategies = ["finetune"]\n' + table)).run_configs()
