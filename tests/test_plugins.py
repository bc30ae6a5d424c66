"""A user registers a strategy and a stream from their own module, without editing the
package, and runs them from the command line."""
from __future__ import annotations

import json

from helpers import run_cli

USER_MODULE = '''
import torch
from benchmark.core.options import Option
from benchmark.data import StreamData, StreamSpec, class_order, register_stream, split_classes
from strategies import FastTemplate, register_strategy


def build_blobs(seed, data_root=None, download=False, n_experiences=2, separation=3.0):
    g = torch.Generator().manual_seed(1234)
    centres = torch.randn(4, 8, generator=g) * separation
    y = torch.arange(4).repeat_interleave(60)
    x = centres[y] + torch.randn(len(y), 8, generator=g)
    classes = split_classes(class_order(4, seed), n_experiences)
    split = lambda xs, ys: [(xs[torch.isin(ys, torch.tensor(c))],
                             ys[torch.isin(ys, torch.tensor(c))]) for c in classes]
    test = torch.arange(len(y)) % 4 == 0
    return StreamData("my-blobs", seed, 4, (8,), "mlp", classes,
                      split(x[~test], y[~test]), split(x[test], y[test]),
                      {"n_experiences": n_experiences, "separation": separation})


register_stream(StreamSpec(
    "my-blobs", build_blobs, "four Gaussian blobs", "mlp",
    {"epochs": 2, "batch_size": 16, "lr": 0.01},
    options=(Option("n_experiences", int, 2, "experiences", low=1),
             Option("separation", float, 3.0, "distance scale of the blob centres", low=0.0)),
    num_classes=4, input_shape=(8,)))


@register_strategy("my-method", summary="finetuning with a frozen head", family="user")
class MyMethod(FastTemplate):
    OPTIONS = (Option("freeze_head", bool, True, "keep the head's initial weights"),)

    def make_optimizer(self, **kwargs):
        if self.hp["freeze_head"]:
            for p in self.model.head.parameters():
                p.requires_grad_(False)
        super().make_optimizer(**kwargs)
'''


def test_a_users_module_registers_a_strategy_and_a_stream(tmp_path):
    module = tmp_path / "my_plugin.py"
    module.write_text(USER_MODULE)
    listing = run_cli(["list", "--plugins", module])
    assert listing.code == 0, listing.err
    assert "my-blobs: four Gaussian blobs" in listing.out
    assert "my-method: finetuning with a frozen head" in listing.out
    assert "freeze_head=True" in listing.out

    out = tmp_path / "out"
    result = run_cli(["run", "--plugins", module, "--stream", "my-blobs", "--strategies",
                      "my-method,finetune", "--seeds", "0", "--set", "my-method.freeze_head=yes",
                      "--out", out, "--quiet"])
    assert result.code == 0, result.err
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert {r["config"]["strategy"] for r in records} == {"my-method", "finetune"}
    assert all(r["status"] == "ok" for r in records)
    mine = next(r for r in records if r["config"]["strategy"] == "my-method")
    assert mine["config"]["hparams"] == {"freeze_head": True}
    assert mine["config"]["stream_options"] == {"n_experiences": 2, "separation": 3.0}


def test_a_missing_or_broken_plugin_is_one_line(tmp_path):
    missing = run_cli(["list", "--plugins", "no_such_module_here"])
    assert missing.code == 2 and missing.err.count("\n") == 1
    assert "cannot load plugin 'no_such_module_here'" in missing.err
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('oops')\n")
    result = run_cli(["run", "--plugins", broken, "--out", tmp_path / "out"])
    assert result.code == 2 and "failed to load: RuntimeError: oops" in result.err
    assert not (tmp_path / "out").exists()
