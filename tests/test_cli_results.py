"""``clonebench run`` as a new user meets it: seeds as lists and ranges, what it prints about
the results, its exit status when runs fail, and refusals that come before anything is
written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import SMALL_ARGS, load_records, run_cli, snapshot

from benchmark.cli import _experiment_from_args, build_parser
from benchmark.core.errors import UsageError
from benchmark.core.models import make_backbone
from benchmark.run.console import failure_line, format_table, readable_bytes, summary_rows
from benchmark.run.words import parse_seeds

REPO = Path(__file__).resolve().parents[1]
LOUD_ARGS = [a for a in SMALL_ARGS if a != "--quiet"]


# ---------------------------------------------------------------- seeds


@pytest.mark.parametrize("words, seeds", [
    (["0", "1", "2"], [0, 1, 2]),
    (["0,1,2"], [0, 1, 2]),
    (["0-9"], list(range(10))),
    (["0-2,5", "7"], [0, 1, 2, 5, 7]),
    (["0,", " 1 ,2"], [0, 1, 2]),
    (["4-4"], [4]),
])
def test_seed_lists_and_ranges(words, seeds):
    assert parse_seeds(words) == seeds


@pytest.mark.parametrize("words, message", [
    (["x"], "bad --seeds value 'x'"),
    (["3-1"], "ends before it starts"),
    (["-1"], "bad --seeds value '-1'"),
    (["1.5"], "bad --seeds value"),
    ([","], "at least one seed"),
    (["0-99999999"], "at most"),
])
def test_bad_seed_words(words, message):
    with pytest.raises(UsageError, match=message):
        parse_seeds(words)


@pytest.mark.parametrize("flag, seeds", [
    (["0,1"], [0, 1]), (["0-3"], [0, 1, 2, 3]), (["0", "2-3"], [0, 2, 3]),
])
def test_the_cli_takes_seed_lists_and_ranges(flag, seeds):
    args = build_parser().parse_args(["run", "--strategies", "finetune", "--seeds", *flag])
    assert _experiment_from_args(args).seeds == seeds


def test_plugins_and_logs_are_repeatable_and_comma_separated():
    args = build_parser().parse_args(["run", "--log", "csv", "--log", "tensorboard",
                                      "--plugins", "a,b", "--plugins", "c"])
    assert args.log == ["csv", "tensorboard"] and args.plugins == ["a,b", "c"]


# ---------------------------------------------------------------- the results table


def record(strategy, seed, final, forgetting, locality, model_bytes, state_bytes,
           status="ok", stream="split-digits"):
    return {"key": f"{stream}-{strategy}-{seed}",
            "config": {"stream": stream, "strategy": strategy, "seed": seed}, "status": status,
            "metrics": {"final_accuracy": final, "forgetting": forgetting,
                        "locality": locality},
            "costs": {"model_bytes": [1, model_bytes], "state_bytes": [0, state_bytes]}}


def test_readable_bytes():
    assert [readable_bytes(n) for n in (0, 1000, 1536, 5 * 2 ** 20, 3 * 2 ** 30, None)] == [
        "0 B", "1.0 kB", "1.5 kB", "5.2 MB", "3.2 GB", "-"]


def test_summary_rows_average_the_successful_runs():
    rows = summary_rows([
        record("pnc", 0, 0.5, 0.1, 0.9, 2048, 0),
        record("pnc", 1, 0.7, 0.3, 1.0, 4096, 0),
        record("ewc", 0, 0.2, 0.6, 0.4, 1024, 1024),
        {**record("ewc", 1, None, None, None, 0, 0, status="failed"), "metrics": {},
         "costs": {}},
    ])
    assert rows == [
        {"strategy": "pnc", "n": "2", "A_T": "0.600 ± 0.141", "forgetting": "0.200 ± 0.141",
         "L": "0.950 ± 0.071", "memory": "3.1 kB"},
        {"strategy": "ewc", "n": "1 (1 failed)", "A_T": "0.200", "forgetting": "0.600",
         "L": "0.400", "memory": "2.0 kB"},
    ]


def test_summary_rows_name_the_stream_when_there_are_several():
    rows = summary_rows([record("pnc", 0, 0.5, 0.1, 0.9, 10, 0),
                         record("pnc", 0, 0.5, 0.1, 0.9, 10, 0, stream="split-mnist")])
    assert [r["strategy"] for r in rows] == ["split-digits: pnc", "split-mnist: pnc"]


def test_format_table_aligns_columns():
    table = format_table([{"strategy": "pnc", "n": "5", "A_T": "0.5", "forgetting": "0.1",
                           "L": "1.0", "memory": "3.1 kB"}])
    header, rule, row = table.splitlines()
    assert header.split() == ["strategy", "n", "A_T", "forgetting", "L", "memory"]
    assert len(header) == len(rule) == len(row)
    assert row.startswith("pnc") and row.endswith("3.1 kB")


def test_failure_line():
    failures = [({"strategy": "pnc", "seed": s}, Path(f"r/runs/{s}.json")) for s in range(12)]
    assert failure_line(failures[:1]) == (
        '1 run failed: pnc seed 0 (r/runs/0.json); see their "error"')
    line = failure_line(failures)
    assert line.startswith("12 runs failed: pnc seed 0 (r/runs/0.json), pnc seed 1 ")
    assert line.endswith(', and 2 more; see their "error"') and "seed 9 " in line
    assert "seed 10 " not in line


def test_a_run_prints_the_table_of_its_experiment_before_the_counts(small_copy):
    result = run_cli([*LOUD_ARGS, "--out", small_copy])
    assert result.code == 0, result.err
    (rec,) = load_records(small_copy).values()
    lines = result.out.splitlines()
    assert lines[0].split() == ["strategy", "n", "A_T", "forgetting", "L", "memory"]
    cells = lines[2].split("  ")
    cells = [c.strip() for c in cells if c.strip()]
    memory = rec["costs"]["model_bytes"][-1] + rec["costs"]["state_bytes"][-1]
    assert cells == ["finetune", "1", f"{rec['metrics']['final_accuracy']:.3f}",
                     f"{rec['metrics']['forgetting']:.3f}", f"{rec['metrics']['locality']:.3f}",
                     readable_bytes(memory)]
    assert lines[-1].startswith("1 runs: 0 done, 0 failed, 1 already finished;")
    assert len(lines) == 4


def test_the_table_covers_this_experiment_not_the_whole_folder(small_copy):
    result = run_cli(["run", "--strategies", "lwf", "--seeds", "0", "--epochs", "1",
                      "--device", "cpu", "--out", small_copy])
    assert result.code == 0, result.err
    rows = [line.split()[0] for line in result.out.splitlines()[2:-1]]
    assert rows == ["lwf"]


def test_quiet_prints_only_the_counts(small_copy):
    result = run_cli([*SMALL_ARGS, "--out", small_copy])
    assert result.out.count("\n") == 1 and result.out.startswith("1 runs:")


# ---------------------------------------------------------------- nothing written before


def pnc_from_checkpoints(tmp_path, pattern):
    config = tmp_path / "sources.toml"
    config.write_text('strategies = ["pnc"]\nseeds = [0]\ndevice = "cpu"\n[train]\nepochs = 1\n'
                      f'[source]\nprovider = "checkpoint"\npath = "{pattern}"\n')
    return config


def test_a_missing_source_checkpoint_is_refused_before_anything_is_written(small_copy,
                                                                             tmp_path):
    config = pnc_from_checkpoints(tmp_path, f"{tmp_path}/zoo/m-{{step}}.pt")
    before = snapshot(small_copy)
    result = run_cli(["run", "--config", config, "--out", small_copy, "--quiet"])
    assert result.code == 2
    assert result.err == (f"clonebench: error: source checkpoint {tmp_path}/zoo/m-1.pt (step 1 "
                          "of split-digits) is missing; save the step's source state dict "
                          "there\n")
    assert snapshot(small_copy) == before


def test_a_source_checkpoint_of_another_network_is_refused(small_copy, tmp_path):
    (tmp_path / "zoo").mkdir()
    for step in range(1, 6):
        torch.save(make_backbone("cnn", 10, (1, 28, 28), seed=0).state_dict(),
                   tmp_path / "zoo" / f"m-{step}.pt")
    config = pnc_from_checkpoints(tmp_path, f"{tmp_path}/zoo/m-{{step}}.pt")
    before = snapshot(small_copy)
    result = run_cli(["run", "--config", config, "--out", small_copy, "--quiet"])
    assert result.code == 2 and "is not a state dict of backbone 'mlp'" in result.err
    assert result.err.count("\n") == 1
    assert snapshot(small_copy) == before


def test_a_checkpoint_pattern_without_step_is_refused(tmp_path):
    config = pnc_from_checkpoints(tmp_path, "zoo/model.pt")
    result = run_cli(["run", "--config", config, "--out", tmp_path / "out", "--quiet"])
    assert result.code == 2 and "must contain {step}" in result.err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- exit status


@pytest.mark.slow
def test_the_real_command_exits_1_when_runs_fail(tmp_path):
    config = tmp_path / "diverge.toml"
    config.write_text('strategies = ["finetune"]\nseeds = [0]\ndevice = "cpu"\n'
                      '[train]\nepochs = 1\nlr = 1e12\noptimizer = "sgd"\n')
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--config", str(config),
                           "--out", str(tmp_path / "out"), "--quiet"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    (key,) = load_records(tmp_path / "out")
    assert proc.stderr.splitlines()[-1] == (
        f'1 run failed: finetune seed 0 ({tmp_path / "out" / "runs" / key}.json); '
        'see their "error"')
