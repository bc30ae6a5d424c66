"""The results store: atomic writes, stale temp files, record validation."""
import copy
import json
import os

import pytest

from benchmark.core.errors import RecordError, UsageError
from benchmark.run import folder as folder_mod
from benchmark.run.folder import FORMAT, read_marker
from benchmark.run.store import SCHEMA, ResultsStore, atomic_write, read_record, validate_record

METRICS = {"final_accuracy": 0.5, "final_accuracy_weighted": 0.5,
           "average_incremental_accuracy": 0.7, "forgetting": 0.4, "bwt": -0.4, "locality": 0.6,
           "original_locality": 0.3, "old_accuracy": 0.2, "new_accuracy": 0.9}


def make_record(key="0123456789abcdef", status="ok"):
    """A minimal valid record of a 2-step run (hand-written, no training)."""
    return {
        "schema": SCHEMA, "key": key, "status": status, "error": None,
        "config": {"stream": "split-digits", "strategy": "finetune", "seed": 0, "hparams": {},
                   "epochs": 1, "device": "cpu"},
        "classes_per_step": [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]],
        "accuracy_matrix": [[0.9, None], [0.1, 0.9]],
        "step_locality": [None, 0.6],
        "original_locality": 0.3,
        "metrics": dict(METRICS),
        "costs": {"seconds": [0.1, 0.1], "peak_memory_mb": [100.0, 100.0],
                  "parameters": [10, 10], "trainable_parameters": [10, 10]},
        "environment": {"torch": "x", "device": "cpu"},
    }


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


class TestAtomicWrite:
    def test_write_leaves_only_the_record(self, tmp_path):
        store = ResultsStore(tmp_path).check(create=True)
        record = make_record()
        path = store.write(record)
        assert path == tmp_path / "runs" / "0123456789abcdef.json"
        assert files_in(tmp_path / "runs") == ["0123456789abcdef.json"]  # no temp file left
        assert read_record(path) == record

    def test_overwrite_replaces_the_content(self, tmp_path):
        store = ResultsStore(tmp_path).check(create=True)
        failed = make_record(status="failed")
        failed["error"] = "diverged: loss became nan"
        store.write(failed)
        store.write(make_record())
        assert files_in(tmp_path / "runs") == ["0123456789abcdef.json"]
        assert store.load_all()["0123456789abcdef"]["status"] == "ok"

    def test_failed_rename_keeps_the_old_content_and_no_temp_file(self, tmp_path, monkeypatch):
        target = tmp_path / "a.json"
        atomic_write(target, "old\n")

        def broken_replace(src, dst):
            raise OSError("disk full")

        monkeypatch.setattr(folder_mod.os, "replace", broken_replace)
        with pytest.raises(OSError, match="disk full"):
            atomic_write(target, "new\n")
        assert target.read_text() == "old\n"
        assert files_in(tmp_path) == ["a.json"]

    def test_invalid_record_is_not_written(self, tmp_path):
        store = ResultsStore(tmp_path).check(create=True)
        record = make_record()
        del record["metrics"]["bwt"]
        with pytest.raises(RecordError, match="bwt"):
            store.write(record)
        assert not (tmp_path / "runs").exists() or files_in(tmp_path / "runs") == []


class TestOpen:
    def test_stale_temp_file_is_removed_on_open(self, tmp_path):
        store = ResultsStore(tmp_path).check(create=True)
        store.write(make_record())
        stale = tmp_path / "runs" / ".tmp-k2j3h4"
        stale.write_text('{"half a rec')
        ResultsStore(tmp_path).check()
        assert files_in(tmp_path / "runs") == ["0123456789abcdef.json"]

    def test_another_drivers_write_beside_the_marker_is_left_alone(self, tmp_path):
        """A temp file of a live writer at the folder's top level (the marker's or a report's
        write by another driver on the same folder) is neither refused nor removed; a stale
        one (its writer gone) is removed."""
        import socket

        ResultsStore(tmp_path).check(create=True).mark()
        live = tmp_path / f".tmp-{os.getpid()}@{socket.gethostname()}~abc"
        live.write_text("half a marker")
        stale = tmp_path / f".tmp-999999999@{socket.gethostname()}~def"
        stale.write_text("left by a killed driver")
        ResultsStore(tmp_path).check()
        assert live.exists() and not stale.exists()

    def test_missing_folder(self, tmp_path):
        with pytest.raises(UsageError, match="does not exist"):
            ResultsStore(tmp_path / "nothing").check()
        assert ResultsStore(tmp_path / "nothing").check(create=True).paths() == []

    def test_a_file_is_not_a_results_folder(self, tmp_path):
        (tmp_path / "file").write_text("x")
        with pytest.raises(UsageError, match="is a file"):
            ResultsStore(tmp_path / "file").check(create=True)

    def test_foreign_entry_is_refused(self, tmp_path):
        ResultsStore(tmp_path).check(create=True).write(make_record())
        (tmp_path / "thesis.tex").write_text("x")
        with pytest.raises(UsageError, match="thesis.tex"):
            ResultsStore(tmp_path).check()

    def test_non_json_file_in_runs_is_refused(self, tmp_path):
        ResultsStore(tmp_path).check(create=True).write(make_record())
        (tmp_path / "runs" / "notes.txt").write_text("x")
        with pytest.raises(RecordError, match="notes.txt"):
            ResultsStore(tmp_path).check()

    def test_known_entries_are_accepted(self, tmp_path):
        ResultsStore(tmp_path).check(create=True).write(make_record())
        (tmp_path / "tables").mkdir()
        (tmp_path / "experiment.json").write_text("{}")
        assert list(ResultsStore(tmp_path).check().load_all()) == ["0123456789abcdef"]


class TestReadRecord:
    def test_key_must_match_file_name(self, tmp_path):
        path = tmp_path / "fedcba9876543210.json"
        path.write_text(json.dumps(make_record()))
        with pytest.raises(RecordError, match="0123456789abcdef"):
            read_record(path)

    def test_truncated_record(self, tmp_path):
        path = tmp_path / "0123456789abcdef.json"
        text = json.dumps(make_record())
        path.write_text(text[: len(text) // 2])
        with pytest.raises(RecordError, match="corrupt"):
            read_record(path)

    def test_finished_keys(self, tmp_path):
        store = ResultsStore(tmp_path).check(create=True)
        store.write(make_record("aaaaaaaaaaaaaaaa"))
        failed = make_record("bbbbbbbbbbbbbbbb", status="failed")
        failed["error"] = "out of memory"
        store.write(failed)
        finished = store.finished_keys()
        assert "aaaaaaaaaaaaaaaa" in finished
        assert "bbbbbbbbbbbbbbbb" not in finished
        assert "cccccccccccccccc" not in finished


def _without(field):
    def change(r):
        del r[field]
    return change


def _set(field, value):
    def change(r):
        r[field] = value
    return change


def _drop_metric(r):
    del r["metrics"]["locality"]


@pytest.mark.parametrize("change, message", [
    (_without("schema"), "not a clonebench run record"),
    (_set("schema", "someone-else/1"), "not a clonebench run record"),
    (_without("accuracy_matrix"), "accuracy_matrix"),
    (_set("config", "finetune"), "config"),
    (_set("status", "done"), "status"),
    (_set("status", "failed"), "failed without an error"),
    (_drop_metric, "locality"),
], ids=["no-schema", "foreign-schema", "no-matrix", "config-not-dict", "bad-status",
        "failed-no-error", "missing-metric"])
def test_validate_record_refuses(change, message):
    record = copy.deepcopy(make_record())
    change(record)
    with pytest.raises(RecordError, match=message):
        validate_record(record, "runs/x.json")


def test_validate_record_accepts_a_valid_one():
    record = make_record()
    assert validate_record(record, "runs/x.json") is record


def test_records_are_refused_not_silently_skipped(tmp_path):
    store = ResultsStore(tmp_path).check(create=True)
    store.write(make_record())
    (tmp_path / "runs" / "1111111111111111.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(RecordError, match="1111111111111111"):
        store.load_all()
    assert os.path.exists(tmp_path / "runs" / "1111111111111111.json")


class TestFailureBesideAGoodRecord:
    def failed(self, key="0123456789abcdef"):
        record = make_record(key, status="failed")
        record["error"] = "RuntimeError: PytorchStreamReader failed reading zip archive"
        return record

    def test_a_failure_never_replaces_an_ok_record(self, tmp_path):
        store = ResultsStore(tmp_path).check(create=True)
        good = store.write(make_record())
        before = good.read_bytes()
        beside = store.write(self.failed())
        assert beside.name == "0123456789abcdef.failed.json"
        assert good.read_bytes() == before
        assert [r["status"] for r in store.records()] == ["ok"]
        assert [r["error"] for r in store.failures()] == [self.failed()["error"]]
        assert store.finished_keys() == {"0123456789abcdef"}
        ResultsStore(tmp_path).check()  # the store understands the file

    def test_a_success_replaces_both(self, tmp_path):
        store = ResultsStore(tmp_path).check(create=True)
        store.write(make_record())
        store.write(self.failed())
        store.write(make_record())
        assert files_in(tmp_path / "runs") == ["0123456789abcdef.json"]

    def test_a_failure_file_holding_an_ok_record_is_refused(self, tmp_path):
        store = ResultsStore(tmp_path).check(create=True)
        store.write(make_record())
        (tmp_path / "runs" / "0123456789abcdef.failed.json").write_text(
            json.dumps(make_record()))
        with pytest.raises(RecordError, match="only failures are kept beside a record"):
            list(store.failures())


class TestMarker:
    def test_the_first_write_marks_the_folder(self, tmp_path):
        store = ResultsStore(tmp_path / "new").check(create=True)
        assert not (tmp_path / "new").exists()  # checking writes nothing
        store.write(make_record())
        assert read_marker(tmp_path / "new") == {"format": FORMAT, "report_files": []}

    def test_an_empty_folder_is_accepted_and_a_foreign_one_refused(self, tmp_path):
        ResultsStore(tmp_path).check(create=True)
        (tmp_path / "tables").mkdir()
        with pytest.raises(UsageError, match="not a clonebench results folder"):
            ResultsStore(tmp_path).check(create=True)
