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


def test_backbone_strings_with_options_are_checked(tmp_path):
    from helpers import run_cli

    from benchmark.core.models import canonical_backbone, make_backbone

    net = make_backbone("cnn:channels=8-16", 10, (1, 28, 28), seed=0)
    assert net.widths == [1, 8, 16] and net.depth == 2
    assert canonical_backbone(" mlp:norm=gn,hidden=64-32") == "mlp:hidden=64-32,norm=gn"
    assert canonical_backbone("mlp") == "mlp"
    for bad, word in (("cnn:channels=0-8", "channels"), ("cnn:width=3", "width"),
                      ("cnn:channels", "OPTION=VALUE"), ("rnn", "rnn")):
        config = tmp_path / "exp.toml"
        config.write_text(f'stream = "split-digits"\nstrategies = ["finetune"]\nseeds = [0]\n'
                          f'[backbone]\nsplit-digits = "{bad}"\n')
        result = run_cli(["run", "--config", config, "--out", tmp_path / "out", "--quiet"])
        assert result.code == 2 and result.err.count("\n") == 1 and word in result.err, bad
        assert not (tmp_path / "out").exists()
