"""Files a run leaves beside its record: the saved final model (PNC removable after loading),
Avalanche's loggers, and the expert cache with its checksum (a damaged entry is rebuilt); the
bytes they are written from round-trip through ``torch.load``."""
from __future__ import annotations

import io

import torch
from helpers import SMALL_ARGS, comparable, load_records, override, run_cli

from benchmark.core.strategy_state import saved_bytes
from benchmark.core.tensors import decoded
from benchmark.data import get_stream
from benchmark.run import runner
from benchmark.run.expert_cache import load_expert, save_expert, state_digest
from benchmark.run.plan import ExecOptions, Experiment
from benchmark.run.runner import execute_run
from strategies.base import module_bytes
from strategies.pnc import ClonedNetwork


def test_a_saved_pnc_model_predicts_as_the_run_and_its_modules_remain_removable(
        tmp_path, monkeypatch):
    (cfg,) = Experiment(strategies=["pnc"], seeds=[0], train={"epochs": 1},
                        device="cpu").run_configs()
    final = {}
    save = runner.save_model

    def keep_and_save(model, path):
        final["model"] = model
        return save(model, path)

    monkeypatch.setattr(runner, "save_model", keep_and_save)
    record = execute_run(cfg, ExecOptions(model_dir=tmp_path / "models"))
    assert record["status"] == "ok", record["error"]
    path = tmp_path / "models" / f"{cfg.key}.pt"
    loaded = torch.load(path, weights_only=False).eval()
    assert isinstance(loaded, ClonedNetwork) and loaded is not final["model"]

    data = get_stream(cfg.stream).build(seed=cfg.seed, **cfg.stream_options)
    x = decoded(torch.cat([x for x, _ in data.test]), data.decode)
    with torch.no_grad():
        assert torch.equal(loaded(x), final["model"].eval()(x))
        # The record's last row of correct counts, recomputed from the loaded model.
        for j, (xj, yj) in enumerate(data.test):
            predicted = loaded(decoded(xj, data.decode)).argmax(dim=1)
            assert int((predicted == yj).sum()) == record["correct_matrix"][-1][j]

        assert loaded.steps, "PNC cloned no module"
        step = loaded.steps[len(loaded.steps) // 2]
        removed = loaded.clones[str(step)].classes.tolist()
        loaded.remove(step)
        assert step not in loaded.steps
        out = loaded(x)
        assert out.shape == (len(x), data.num_classes)
        assert torch.isinf(out[:, removed]).all()  # its classes are no longer predicted
        kept = [c for c in range(data.num_classes) if c not in removed]
        assert torch.isfinite(out[:, kept]).all()
        first_x, first_y = data.test[0]
        first_acc = (loaded(decoded(first_x, data.decode)).argmax(1) == first_y).float().mean()
        assert first_acc > 1 / len(kept)  # the first step's classes are still recognised


def test_save_models_from_the_cli(tmp_path):
    out = tmp_path / "out"
    result = run_cli([*SMALL_ARGS, "--save-models", "--out", out])
    assert result.code == 0, result.err
    ((key, record),) = load_records(out).items()
    model = torch.load(out / "models" / f"{key}.pt", weights_only=False)
    assert isinstance(model, torch.nn.Module)
    # the run's final model: as many bytes as its record says the predicting model had
    assert module_bytes(model) == record["costs"]["model_bytes"][-1]


def test_csv_and_tensorboard_loggers_write_per_epoch_lines_and_change_nothing(
        small_results, tmp_path):
    out = tmp_path / "logged"
    result = run_cli(override([*SMALL_ARGS, "--out", out], ["--log", "csv", "--log",
                                                             "tensorboard"]))
    assert result.code == 0, result.err
    (key, record), = load_records(out).items()
    lines = (out / "logs" / key / "csv" / "training_results.csv").read_text().splitlines()
    assert lines[0].split(",")[:5] == ["training_exp", "epoch", "training_accuracy",
                                       "val_accuracy", "training_loss"]
    assert [int(line.split(",")[0]) for line in lines[1:]] == [0, 1, 2, 3, 4]  # 1 epoch a step
    losses = [float(line.split(",")[4]) for line in lines[1:]]
    assert all(loss > 0 for loss in losses)
    assert list((out / "logs" / key / "tensorboard").glob("events.out.tfevents.*"))
    (unlogged,) = load_records(small_results).values()
    assert comparable(record) == comparable(unlogged)


# ---------------------------------------------------------------- the expert cache


def state():
    return {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}


def test_saved_bytes_round_trip_through_torch_load(tmp_path):
    saved = {"state": state(), "step": 2, "generator": torch.Generator().manual_seed(3)}
    loaded = torch.load(io.BytesIO(saved_bytes(saved)), weights_only=False)
    assert set(loaded) == set(saved) and loaded["step"] == 2
    assert all(torch.equal(loaded["state"][k], v) for k, v in state().items())
    assert loaded["state"]["n"].dtype == state()["n"].dtype
    assert torch.equal(loaded["generator"].get_state(), saved["generator"].get_state())
    (tmp_path / "s.pt").write_bytes(saved_bytes(state()))
    again = torch.load(tmp_path / "s.pt", weights_only=True)
    assert all(torch.equal(again[k], v) for k, v in state().items())


def test_an_expert_cache_entry_round_trips_with_its_checksum(tmp_path):
    path = tmp_path / "e.pt"
    save_expert(path, state())
    loaded = load_expert(path)
    assert set(loaded) == {"w", "n"} and torch.equal(loaded["w"], state()["w"])
    assert state_digest(loaded) == state_digest(state())
    assert load_expert(tmp_path / "missing.pt") is None


def test_damaged_expert_cache_entries_are_removed_with_one_notice(tmp_path, capsys):
    truncated, tampered, old_format = (tmp_path / n for n in ("t.pt", "x.pt", "o.pt"))
    save_expert(truncated, state())
    truncated.write_bytes(truncated.read_bytes()[:100])
    torch.save({"format": "clonebench.expert/1", "sha256": state_digest(state()),
                "state": {**state(), "w": torch.zeros(2, 3)}}, tampered)
    torch.save(state(), old_format)
    for path, problem in ((truncated, "unreadable"), (tampered, "checksum mismatch"),
                          (old_format, "not in the current cache format")):
        assert load_expert(path) is None
        assert not path.exists()
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and problem in err and str(path) in err


def test_a_corrupt_expert_cache_file_is_rebuilt_and_the_run_succeeds(tmp_path, monkeypatch):
    from benchmark.run import sources

    args = ["run", "--strategies", "weight-fusion", "--seeds", "0", "--epochs", "1",
            "--device", "cpu", "--quiet", "--out", tmp_path / "out"]
    monkeypatch.setattr(sources, "_MEMORY_CACHE", {})  # experts other tests trained in memory
    first = run_cli(args)
    assert first.code == 0, first.err
    experts = sorted((tmp_path / "out" / "experts").glob("*.pt"))
    assert experts
    experts[0].write_bytes(b"PK\x03\x04 not a whole zip archive")
    monkeypatch.setattr(sources, "_MEMORY_CACHE", {})  # as in a new process
    (before,) = load_records(tmp_path / "out").values()
    again = run_cli([*args, "--force"])
    assert again.code == 0, again.err
    assert again.err.count("expert cache entry") == 1 and "was removed" in again.err
    (after,) = load_records(tmp_path / "out").values()
    assert after["status"] == "ok"
    assert after["costs"]["source"]["cached"].count(False) == 1  # only that one retrained
    assert comparable(after) == comparable(before)
    assert load_expert(experts[0]) is not None
