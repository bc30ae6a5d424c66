"""``clonebench perf``: runs end to end, prints the table and ratios (speed itself is
not asserted: the command prints figures, tests check that they are well formed)."""
from __future__ import annotations

import contextlib
import io
import re

import pytest
import torch

from benchmark.cli import main as cli_main
from benchmark.perf import speed as perf
from benchmark.perf import workloads


def run_perf(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["perf", *[str(a) for a in args]])
    return code, out.getvalue(), err.getvalue()


def parse_table(text: str):
    """The rows of the printed table as dicts keyed by column name."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("stream "))
    header = re.split(r"\s{2,}", lines[start].strip())
    assert header == list(perf.COLUMNS)
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(dict(zip(header, re.split(r"\s{2,}", line.strip()))))
    return rows


def check_row(row):
    seconds = {m: float(row[f"{m} s"]) for m in perf.METHODS}
    assert all(s > 0 for s in seconds.values())
    for other in ("suite", "avalanche"):
        ratio = float(row[f"{other}/plain"])
        assert ratio > 0
        assert ratio == pytest.approx(seconds[other] / seconds["plain"], rel=0.02, abs=0.01)
        assert float(row[f"{other} img/s"]) == pytest.approx(
            int(row["images"]) / seconds[other], rel=0.02, abs=1)


def test_perf_split_digits_end_to_end():
    threads = torch.get_num_threads()
    code, out, _ = run_perf(["--workloads", "split-digits", "--epochs", "1", "--repeats", "1",
                             "--device", "cpu", "--threads", "1"])
    assert torch.get_num_threads() == threads  # restored for the caller
    assert code == 0
    assert "strategy finetune (suite)" in out and "median of 1 timed runs" in out
    assert "CPU threads: 1" in out
    (row,) = parse_table(out)
    assert row["stream"] == "split-digits" and row["backbone"] == "mlp"
    assert row["steps"] == "5x2" and row["epochs"] == "1" and row["batch"] == "32"
    assert int(row["images"]) > 1000
    check_row(row)
    # finetune through the suite and the plain loop draw the same batches: same weights
    diff = float(re.search(r"split-digits: max \|suite weights - plain weights\| = (\S+)",
                           out).group(1))
    assert diff < 1e-5


def test_perf_pnc_reference_does_the_suites_work():
    """PNC's plain reference (its own phases without the template) ends with the suite's
    weights, so the ratio measures the template's overhead only."""
    code, out, _ = run_perf(["--strategy", "pnc", "--workloads", "split-digits", "--epochs", "1",
                             "--repeats", "1", "--device", "cpu", "--threads", "1"])
    assert code == 0, out
    (row,) = parse_table(out)
    check_row(row)
    diff = float(re.search(r"split-digits: max \|suite weights - plain weights\| = (\S+)",
                           out).group(1))
    assert diff == 0


@pytest.mark.slow
def test_perf_every_workload_with_another_strategy():
    code, out, _ = run_perf(["--strategy", "lwf", "--epochs", "1", "--repeats", "2",
                             "--images-per-experience", "4", "--device", "cpu", "--threads", "1"])
    assert code == 0
    rows = parse_table(out)
    assert [r["stream"] for r in rows] == ["split-digits", "synthetic-fashion",
                                           "synthetic-cifar100"]
    assert rows[1]["backbone"] == "cnn:channels=16-32-64" and rows[1]["steps"] == "5x2"
    assert rows[1]["images"] == "20"  # 4 a step, 5 steps, 1 epoch
    assert rows[2]["backbone"] == "reduced-resnet18" and rows[2]["steps"] == "10x10"
    assert rows[2]["images"] == "40"
    for row in rows:
        check_row(row)


def test_synthetic_fashion_is_stored_as_uint8_and_decoded_like_the_real_stream():
    data = workloads.synthetic_fashion(images_per_experience=6)
    assert data.input_shape == (1, 28, 28) and data.n_steps == 5
    x, y = data.train[0]
    assert x.dtype == torch.uint8 and len(y) == 6 and set(y.tolist()) <= set(
        data.classes_per_step[0])
    decoded = data.inputs(x)
    assert decoded.dtype == torch.float32
    assert torch.allclose(decoded, (x.float() / 255 - 0.2860) / 0.3530)


def test_synthetic_cifar100_shapes():
    data = workloads.synthetic_cifar100(images_per_experience=7)
    assert data.num_classes == 100 and data.n_steps == 10 and data.input_shape == (3, 32, 32)
    for (x, y), classes in zip(data.train, data.classes_per_step):
        assert x.shape == (7, 3, 32, 32) and set(y.tolist()) <= set(classes)


def test_ratios_and_images():
    assert perf.ratios({"plain": 2.0, "suite": 2.5, "avalanche": 10.0}) == {
        "suite/plain": 1.25, "avalanche/plain": 5.0}
    data = workloads.synthetic_cifar100(images_per_experience=33)
    work = workloads.Workload("w", data, "mlp", epochs=2, batch_size=32, lr=0.1)
    assert work.images() == 10 * 32 * 2  # a final batch of one sample is skipped


@pytest.mark.parametrize("args,message", [
    (["--strategy", "nope"], "unknown strategy 'nope'"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--workloads", "imagenet"], "unknown workload 'imagenet'"),
    (["--epochs", "two"], "invalid int value"),
])
def test_perf_bad_input_is_one_line(args, message):
    threads = torch.get_num_threads()
    code, out, err = run_perf([*args, "--device", "cpu"])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    assert torch.get_num_threads() == threads
