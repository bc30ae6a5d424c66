"""The ``clonebench`` command: ``list``, and bad input: exit 2, one line on stderr
starting with ``clonebench: error:``, and nothing in the results folder touched."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SMALL_ARGS, override, run_cli, snapshot

from benchmark.data import STREAMS
from strategies import STRATEGIES

REPO = Path(__file__).resolve().parents[1]


def assert_one_error_line(err: str, *names: str):
    """``err`` is exactly one line ``clonebench: error: ...`` mentioning each of ``names``."""
    assert err.startswith("clonebench: error:"), err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    for name in names:
        assert name in err, (name, err)


class TestList:
    def test_prints_every_stream_and_strategy_with_options(self):
        result = run_cli(["list"])
        assert result.code == 0 and result.err == ""
        for name, spec in STREAMS.items():
            assert f"  {name}: " in result.out
            for opt in spec.options:
                assert f"{opt.name}={opt.default!r}" in result.out
        for name, spec in STRATEGIES.items():
            assert f"  {name}: " in result.out
            for opt in spec.options:
                assert f"{opt.name}={opt.default!r}: {opt.help}" in result.out

    def test_shows_the_foundation_defaults(self):
        out = run_cli(["list"]).out
        assert "split-digits" in out and "n_experiences=5" in out
        assert "ewc_lambda=100000.0" in out and "mode='separate'" in out
        assert "      alpha=1.0: " in out and "      temperature=2.0: " in out
        assert "finetune" in out


def _stray_file(root):
    (root / "notes.txt").write_text("my notes\n")


def _non_json_in_runs(root):
    (root / "runs" / "README.md").write_text("not a record\n")


def _foreign_json_in_runs(root):
    (root / "runs" / "0000000000000000.json").write_text(json.dumps({"loss": [1, 2, 3]}))


def _truncated_record(root):
    path = next((root / "runs").glob("*.json"))
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def _renamed_record(root):
    path = next((root / "runs").glob("*.json"))
    path.rename(path.with_name("ffffffffffffffff.json"))


def _config(text):
    def write(root):
        (root.parent / "exp.toml").write_text(text)
    return write


CONFIG = ["--config", "{cfg}"]
# (id, change to the folder before the call, extra arguments, words the message must name)
BAD_INPUTS = [
    ("unknown-stream", None, ["--stream", "split-nope"], ["split-nope"]),
    ("unknown-strategy", None, ["--strategies", "finetune,magic"], ["magic"]),
    ("unknown-option", None, ["--strategies", "ewc", "--set", "ewc.lambda=5"], ["lambda"]),
    ("option-for-absent-strategy", None, ["--set", "lwf.alpha=2"], ["lwf"]),
    ("negative-lambda", None, ["--strategies", "ewc", "--set", "ewc.ewc_lambda=-1"],
     ["ewc.ewc_lambda"]),
    ("bad-choice", None, ["--strategies", "ewc", "--set", "ewc.mode=bogus"], ["bogus"]),
    ("not-a-number", None, ["--strategies", "lwf", "--set", "lwf.alpha=lots"], ["lots"]),
    ("malformed-set", None, ["--set", "ewc_lambda"], ["--set"]),
    ("zero-epochs", None, ["--epochs", "0"], ["epochs"]),
    ("bad-device", None, ["--device", "tpu"], ["tpu"]),
    ("duplicate-seeds", None, ["--seeds", "0", "0"], ["duplicate seed"]),
    ("toml-syntax", _config("seeds = [0, 1\nstrategies = ['ewc']\n"), CONFIG, ["exp.toml"]),
    ("toml-unknown-key", _config("seed = 3\n"), CONFIG, ["'seed'"]),
    ("toml-wrong-type", _config('seeds = "0 1"\n'), CONFIG, ["seeds"]),
    ("toml-wrong-train-type", _config('[train]\nlr = "fast"\n'), CONFIG, ["'fast'", "lr"]),
    ("toml-unknown-train-key", _config("[train]\nepoch = 2\n"), CONFIG, ["'epoch'"]),
    ("toml-missing", None, ["--config", "{missing}"], ["missing.toml"]),
    ("impossible-split", _config("[stream_options.split-digits]\nn_experiences = 3\n"), CONFIG,
     ["impossible split"]),
    ("unknown-stream-option", _config("[stream_options.split-digits]\nexperiences = 3\n"),
     CONFIG, ["experiences"]),
    ("stray-file", _stray_file, [], ["notes.txt"]),
    ("non-json-in-runs", _non_json_in_runs, [], ["README.md"]),
    ("foreign-json-in-runs", _foreign_json_in_runs, [], ["0000000000000000.json"]),
    ("truncated-record", _truncated_record, [], ["corrupt"]),
    ("renamed-record", _renamed_record, [], ["ffffffffffffffff"]),
    ("repeated-epochs", None, ["--epochs", "1", "--epochs", "2"], ["--epochs given twice"]),
    ("repeated-device", None, ["--device", "cpu", "--device", "cpu"],
     ["--device given twice"]),
    ("repeated-out", None, ["--out", "{here}", "--out", "elsewhere"], ["--out given twice"]),
    ("repeated-seeds", None, ["--seeds", "0", "--seeds", "1"], ["--seeds given twice"]),
    ("repeated-backend", None, ["--backend", "local", "--backend", "ray"],
     ["--backend given twice"]),
    ("repeated-config", _config("seeds = [0]\n"), [*CONFIG, *CONFIG], ["--config given twice"]),
    ("unknown-logger", None, ["--log", "csv,wandb"], ["wandb"]),
    ("name-with-a-path", _config('name = "../../etc/x"\n'), CONFIG, ["bad name"]),
]


@pytest.mark.parametrize("change, extra, names", [b[1:] for b in BAD_INPUTS],
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_run_input_is_one_line_exit_2_and_touches_nothing(small_copy, change, extra, names):
    if change is not None:
        change(small_copy)
    here = small_copy.parent
    extra = [a.format(cfg=here / "exp.toml", missing=here / "missing.toml", here=small_copy)
             for a in extra]
    before = snapshot(small_copy)
    result = run_cli(override([*SMALL_ARGS, "--out", small_copy], extra))
    assert result.code == 2
    assert_one_error_line(result.err, *names)
    assert result.out == ""
    assert snapshot(small_copy) == before


def test_bad_input_creates_no_output_folder(tmp_path):
    out = tmp_path / "fresh"
    (tmp_path / "exp.toml").write_text("[stream_options.split-digits]\nn_experiences = 3\n")
    result = run_cli([*SMALL_ARGS, "--config", tmp_path / "exp.toml", "--out", out])
    assert result.code == 2
    assert_one_error_line(result.err, "impossible split")
    assert not out.exists()


def test_report_on_a_folder_without_runs(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    before = snapshot(tmp_path)
    result = run_cli(["report", tmp_path])
    assert result.code == 2
    assert_one_error_line(result.err, "no runs/")
    assert snapshot(tmp_path) == before


def test_report_rebuilds_tables_from_records(small_copy):
    records_before = snapshot(small_copy / "runs")
    (small_copy / "tables" / "runs.csv").unlink()
    result = run_cli(["report", small_copy])
    assert result.code == 0, result.err
    assert (small_copy / "tables" / "runs.csv").exists()
    assert snapshot(small_copy / "runs") == records_before


def test_unknown_command_and_option():
    for args in (["train"], ["run", "--epochz", "3"]):
        result = run_cli(args)
        assert result.code == 2
        assert_one_error_line(result.err)


def clonebench(*args):
    """``python -m benchmark ARGS`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "benchmark", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


class TestRealProcess:
    """The real exit status and stderr of the console command (no in-process capture)."""

    def test_bad_device(self, small_copy):
        before = snapshot(small_copy)
        proc = clonebench(*override([*SMALL_ARGS, "--out", small_copy], ["--device", "tpu"]))
        assert proc.returncode == 2
        assert_one_error_line(proc.stderr, "tpu")
        assert snapshot(small_copy) == before

    def test_report_without_runs(self, tmp_path):
        proc = clonebench("report", tmp_path)
        assert proc.returncode == 2
        assert_one_error_line(proc.stderr, "no runs/")
        assert list(tmp_path.iterdir()) == []

    def test_report_on_a_corrupt_record(self, small_copy):
        _truncated_record(small_copy)
        before = snapshot(small_copy)
        proc = clonebench("report", small_copy)
        assert proc.returncode == 2
        assert_one_error_line(proc.stderr, "corrupt")
        assert snapshot(small_copy) == before

    def test_report_on_a_folder_with_a_stray_file(self, small_copy):
        _stray_file(small_copy)
        before = snapshot(small_copy)
        proc = clonebench("report", small_copy)
        assert proc.returncode == 2
        assert_one_error_line(proc.stderr, "notes.txt")
        assert snapshot(small_copy) == before

    @pytest.mark.slow
    def test_unknown_stream(self, small_copy):
        """Goes through the imports of torch and Avalanche: no warning may reach stderr."""
        before = snapshot(small_copy)
        proc = clonebench(*override([*SMALL_ARGS, "--out", small_copy],
                                    ["--stream", "split-nope"]))
        assert proc.returncode == 2
        assert_one_error_line(proc.stderr, "split-nope")
        assert proc.stdout == ""
        assert snapshot(small_copy) == before
