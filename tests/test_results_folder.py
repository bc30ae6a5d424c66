"""A results folder a researcher can rely on: a good record is never replaced by a failure,
the folder is recognised by its marker and foreign files are refused (never deleted), names are
plain names, and ``experiment.json`` describes every record of the folder with typed values."""
from __future__ import annotations

import json

import pytest
from helpers import SMALL_ARGS, load_records, run_cli, snapshot

from benchmark.core.errors import UsageError
from benchmark.run import runner
from benchmark.run.folder import MARKER, ReportWriter, is_legacy_report_file, read_marker
from benchmark.run.store import ResultsStore, read_record
from benchmark.run.words import check_name

ZIP_ERROR = "PytorchStreamReader failed reading zip archive: failed finding central directory"


def fail_every_run(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError(ZIP_ERROR)

    monkeypatch.setattr(runner, "_train_and_evaluate", broken)


def one_line_error(result, *words):
    assert result.code == 2, result
    assert result.err.startswith("clonebench: error:") and result.err.count("\n") == 1, result.err
    for word in words:
        assert word in result.err, (word, result.err)


# ---------------------------------------------------------------- never lose a good result


class TestForcedRerunThatFails:
    def test_keeps_the_good_record_and_writes_the_failure_beside_it(self, small_copy,
                                                                    monkeypatch):
        (key,) = load_records(small_copy)
        good = small_copy / "runs" / f"{key}.json"
        before = good.read_bytes()
        fail_every_run(monkeypatch)
        result = run_cli([*SMALL_ARGS, "--out", small_copy, "--force"])
        assert result.code == 1
        assert good.read_bytes() == before
        beside = small_copy / "runs" / f"{key}.failed.json"
        failure = read_record(beside)
        assert failure["status"] == "failed" and ZIP_ERROR in failure["error"]
        assert result.err.splitlines()[-1] == (
            f'1 run failed: finetune seed 0 ({beside}); see their "error"')
        assert "1 runs: 0 done, 1 failed, 0 already finished" in result.out
        described = json.loads((small_copy / "experiment.json").read_text())
        assert [f["file"] for f in described["failed_reruns"]] == [f"runs/{key}.failed.json"]
        assert described["ok"] == 1 and described["failed"] == 0
        assert ResultsStore(small_copy).finished_keys() == {key}

        monkeypatch.undo()
        again = run_cli([*SMALL_ARGS, "--out", small_copy])  # finished: nothing to do
        assert again.code == 0 and "1 already finished" in again.out
        assert beside.exists()
        forced = run_cli([*SMALL_ARGS, "--out", small_copy, "--force"])
        assert forced.code == 0, forced.err
        assert not beside.exists()  # a success replaces both
        assert read_record(good)["status"] == "ok"
        assert json.loads((small_copy / "experiment.json").read_text())["failed_reruns"] == []

    def test_a_failure_without_a_good_record_is_the_record(self, tmp_path, monkeypatch):
        fail_every_run(monkeypatch)
        out = tmp_path / "out"
        result = run_cli([*SMALL_ARGS, "--out", out])
        assert result.code == 1
        (record,) = load_records(out).values()
        assert record["status"] == "failed"
        assert not list((out / "runs").glob("*.failed.json"))


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["../../etc/x", "a/b", "..", ".", ".hidden", "x..y", "a\\b",
                                  "", "my exp"])
def test_a_config_name_must_be_a_plain_name(tmp_path, name):
    config = tmp_path / "exp.toml"
    config.write_text(f'name = {json.dumps(name)}\nstrategies = ["finetune"]\n')
    before = snapshot(tmp_path)
    result = run_cli(["run", "--config", config])
    one_line_error(result, "bad name")
    assert snapshot(tmp_path) == before


def test_plain_names_are_accepted():
    for name in ("default", "my-experiment_2", "cifar.v2"):
        assert check_name(name) == name
    with pytest.raises(UsageError):
        check_name("../x")


# ---------------------------------------------------------------- the marker, foreign files


def test_a_folder_of_figures_and_tables_only_is_refused_and_kept(tmp_path):
    out = tmp_path / "mine"
    (out / "figures").mkdir(parents=True)
    (out / "tables").mkdir()
    (out / "figures" / "my_plot.png").write_bytes(b"\x89PNG my own plot")
    before = snapshot(out)
    for args in ([*SMALL_ARGS, "--out", out], ["report", out]):
        result = run_cli(args)
        assert result.code == 2 and result.err.startswith("clonebench: error:"), result
        assert snapshot(out) == before


def test_a_results_folder_with_a_foreign_figure_is_refused_not_cleaned(small_copy):
    mine = small_copy / "figures" / "my_plot.png"
    mine.write_bytes(b"\x89PNG my own plot")
    before = snapshot(small_copy)
    for args in ([*SMALL_ARGS, "--out", small_copy], ["report", small_copy]):
        one_line_error(run_cli(args), "figures/my_plot.png")
        assert snapshot(small_copy) == before


def test_a_non_empty_folder_without_marker_or_records_is_refused(tmp_path):
    (tmp_path / "experiment.json").write_text("{}")
    before = snapshot(tmp_path)
    one_line_error(run_cli([*SMALL_ARGS, "--out", tmp_path]), "no .clonebench marker")
    assert snapshot(tmp_path) == before


def test_a_corrupt_marker_is_refused(small_copy):
    (small_copy / MARKER).write_text("not json")
    before = snapshot(small_copy)
    one_line_error(run_cli([*SMALL_ARGS, "--out", small_copy]), MARKER)
    assert snapshot(small_copy) == before


def as_older_version_folder(root):
    """``root`` as a version without markers left it: no marker, and only the report files
    that version wrote (its tables, and figures named ``<kind>__<subject>.png``)."""
    (root / MARKER).unlink()
    for path in [*(root / "figures").iterdir(), *(root / "tables").iterdir()]:
        if not is_legacy_report_file(f"{path.parent.name}/{path.name}"):
            path.unlink()


def test_a_folder_of_an_older_version_is_recognised_by_its_records(small_copy):
    as_older_version_folder(small_copy)
    old_figures = sorted(p.name for p in (small_copy / "figures").iterdir())
    assert old_figures and all("__" in name for name in old_figures)
    result = run_cli([*SMALL_ARGS, "--out", small_copy])
    assert result.code == 0, result.err
    marker = read_marker(small_copy)
    assert "tables/runs.csv" in marker["report_files"]
    assert {f"figures/{name}" for name in old_figures} <= set(marker["report_files"])


def test_a_folder_of_an_older_version_with_a_foreign_figure_is_refused(small_copy):
    as_older_version_folder(small_copy)
    (small_copy / "figures" / "my_plot.png").write_bytes(b"\x89PNG my own plot")
    before = snapshot(small_copy)
    one_line_error(run_cli(["report", small_copy]), "figures/my_plot.png")
    assert snapshot(small_copy) == before


def test_the_report_removes_only_its_own_stale_files(small_copy):
    marker = read_marker(small_copy)
    stale = small_copy / "figures" / "dropped_chart.png"
    stale.write_bytes(b"\x89PNG an old chart of ours")
    (small_copy / MARKER).write_text(json.dumps(
        {**marker, "report_files": marker["report_files"] + ["figures/dropped_chart.png"]}))
    result = run_cli(["report", small_copy])
    assert result.code == 0, result.err
    assert not stale.exists()
    assert "figures/dropped_chart.png" not in read_marker(small_copy)["report_files"]
    assert (small_copy / "tables" / "runs.csv").exists()


def test_report_writer_refuses_paths_outside_its_folders(small_copy):
    writer = ReportWriter(small_copy)
    for rel in ("runs/x.json", "figures/../runs/x.json", "report.html"):
        with pytest.raises(ValueError):
            writer.write(rel, "x")


# ---------------------------------------------------------------- experiment.json


def test_the_description_covers_every_record_with_typed_values(small_copy):
    result = run_cli(["run", "--stream", "split-digits", "--strategies", "lwf", "--seeds", "1",
                      "--epochs", "1", "--device", "cpu", "--quiet", "--set", "lwf.alpha=2",
                      "--out", small_copy])
    assert result.code == 0, result.err
    described = json.loads((small_copy / "experiment.json").read_text())
    assert described["runs"] == 2 and described["ok"] == 2
    assert sorted(described["strategies"]) == ["finetune", "lwf"]
    (lwf,) = described["strategies"]["lwf"]
    assert lwf == {"hparams": {"alpha": 2.0, "temperature": 2.0}, "seeds": [1]}
    assert isinstance(lwf["hparams"]["alpha"], float)
    assert described["strategies"]["finetune"] == [{"hparams": {"lr_scale": 1.0}, "seeds": [0]}]
    assert described["seeds"] == [0, 1]
    assert described["streams"]["split-digits"]["options"] == [{"n_experiences": 5}]
    assert described["streams"]["split-digits"]["train"][0]["epochs"] == 1
    assert described["devices"] == ["cpu"]
    assert described["name"] == small_copy.name


def test_report_rebuilds_the_description_from_the_records(small_copy):
    (small_copy / "experiment.json").write_text('{"strategies": ["lwf"], "seeds": [9]}')
    assert run_cli(["report", small_copy]).code == 0
    described = json.loads((small_copy / "experiment.json").read_text())
    assert list(described["strategies"]) == ["finetune"] and described["seeds"] == [0]
