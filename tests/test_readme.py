"""The README's result sections and the figures of its evidence come from the committed tables
(``clonebench readme``): the committed README is what they give, and changing one committed
value changes it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from benchmark.report import readme

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_is_what_the_committed_tables_give():
    text = (ROOT / "README.md").read_text()
    names = readme.sections(text)
    assert "verdict" in names and "evidence" in names and "summary default" in names
    assert readme.rewrite(text, ROOT / "results") == text, (
        "README differs from the committed tables in section "
        f"{readme.first_difference(text, readme.rewrite(text, ROOT / 'results'))!r}; "
        "run `make readme`")


def test_changing_one_committed_value_changes_the_readme(tmp_path):
    results = tmp_path / "results"
    for folder in readme.committed_folders(ROOT / "results"):
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
