"""The README's result sections and the figures of its evidence come from the committed tables
(``clonebench readme``): the committed README is what they give, and changing one committed
value changes it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmark.report import readme
from benchmark.report.tuning_text import settings_markdown

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, expected", [
    ("README.md", {"verdict", "evidence", "summary default", "summary fashion-mnist-cnn",
                   "summary cloning", "summary domain", "summary mixed"}),
    ("docs/tuning.md", {"trials tuning/split-digits", "trials tuning/cloning-split-digits",
                        "settings tuning/split-fashion-mnist/cnn-*"}),
    ("docs/design.md", {"positions fashion-mnist", "positions fashion-mnist-cnn"}),
])
def test_the_docs_are_what_the_committed_tables_give(name, expected):
    text = (ROOT / name).read_text()
    assert expected <= set(readme.sections(text))
    new = readme.rewrite(text, ROOT / "results")
    assert new == text, (f"{name} differs from the committed tables in section "
                         f"{readme.first_difference(text, new)!r}; run `make readme`")


def test_a_settings_table_reads_the_chosen_scores_and_a_runs_cost(tmp_path):
    folder = tmp_path / "cnn-a" / "tables"
    folder.mkdir(parents=True)
    pd.DataFrame({"strategy": ["joint", "finetune"], "final_accuracy_mean": [0.8812, 0.2],
                  "chosen": ["{}", "{}"]}).to_csv(folder / "choices.csv", index=False)
    pd.DataFrame({"strategy": ["joint", "finetune", "finetune"],
                  "seconds": [9.0, 2.0, 4.0]}).to_csv(folder / "runs.csv", index=False)
    text = settings_markdown([tmp_path / "cnn-a"], ["cnn-a"])
    assert text.splitlines()[-1] == "| cnn-a | 0.881 | 0.200 | 3.0 |"


def test_changing_one_committed_value_changes_the_readme(tmp_path):
    results = tmp_path / "results"
    for folder in (ROOT / "results").iterdir():  # every folder the README's sections read
        if (folder / "tables").is_dir():
            shutil.copytree(folder / "tables", results / folder.name / "tables")
    text = (ROOT / "README.md").read_text()
    assert readme.rewrite(text, results) == text
    summary_path = results / "default" / "tables" / "summary.csv"
    summary = pd.read_csv(summary_path)
    row = summary.index[summary["label"] == "pnc"][0]
    summary.loc[row, "final_accuracy_mean"] -= 0.01  # one point less for PNC
    summary.to_csv(summary_path, index=False)
    changed = readme.rewrite(text, results)
    assert changed != text
    assert readme.first_difference(text, changed) in ("verdict", "evidence", "summary default")


def test_check_exits_1_when_the_readme_is_stale(tmp_path, capsys):
    stale = tmp_path / "README.md"
    stale.write_text("intro\n<!-- generated: summary default -->\nold numbers\n"
                     "<!-- end generated -->\n")
    assert readme.run(stale, ROOT / "results", check=True) == 1
    assert "summary default" in capsys.readouterr().out
    assert readme.run(stale, ROOT / "results", check=False) == 0
    assert readme.run(stale, ROOT / "results", check=True) == 0
