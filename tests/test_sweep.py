"""``clonebench tune``: the grid it expands and the table it prints."""
import pytest

from benchmark.cli import main as cli_main
from benchmark.core.errors import UsageError
from benchmark.tune.sweep import parse_grid


def main(args):
    return cli_main(["tune", *args])


def test_parse_grid_expands_every_combination():
    assert parse_grid(["a=1,2", "b=x"]) == [{"a": "1", "b": "x"}, {"a": "2", "b": "x"}]
    assert parse_grid([]) == [{}]  # no grid: one run of the defaults
    with pytest.raises(UsageError, match="OPTION=V1"):
        parse_grid(["nonsense"])


def test_sweep_prints_one_row_per_combination(capsys):
    assert main(["--strategy", "lwf", "--grid", "alpha=0.5,2", "--seeds", "100",
                 "--epochs", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("options | final_accuracy")
    assert [line.split(" | ")[0] for line in lines[1:]] == ["{'alpha': '0.5'}", "{'alpha': '2'}"]
    for line in lines[1:]:
        values = [float(v) for v in line.split(" | ")[1:]]
        assert len(values) == 4 and all(0.0 <= v <= 1.0 for v in values)


def test_sweep_refuses_a_bad_option_value(capsys):
    assert main(["--strategy", "lwf", "--grid", "alpha=-1", "--seeds", "100"]) == 2
    assert capsys.readouterr().err.startswith("clonebench: error: bad value")
