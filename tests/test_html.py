"""The self-contained HTML report and its headless-browser check."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_report import make_record, several_stream_records, write_records

from benchmark.cli import main as cli_main
from benchmark.report import build, formats, screenshot, tables

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium")


class Collector(HTMLParser):
    """Every start tag with its attributes, and the text."""

    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two streams with pnc, ewc, lwf, finetune and joint, a failed run, an experiment.json."""
    root = tmp_path_factory.mktemp("html")
    records = several_stream_records()
    records += [make_record(s, "finetune", seed, final=0.2, locality=0.05)
                for s in ("a", "b") for seed in (0, 1)]
    records += [make_record("a", "joint", seed, final=0.97) for seed in (0, 1)]
    records.append(make_record("a", "ewc", 7, status="failed",
                               error="RuntimeError: <script>alert(1)</script> & co"))
    write_records(root, records)
    (root / "experiment.json").write_text(json.dumps({"name": "html-test", "seeds": [0, 1]}))
    build.build_report(root, quiet=True)
    return root


def parse(path: Path) -> Collector:
    collector = Collector()
    collector.feed(path.read_text(encoding="utf-8"))
    collector.close()
    return collector


def test_report_parses_and_references_nothing_external(built):
    page = (built / "report.html").read_text(encoding="utf-8")
    doc = parse(built / "report.html")
    names = [t for t, _ in doc.tags]
    assert names[0] == "html" and "body" in names and "table" in names
    for banned in ("script", "link", "iframe", "object", "embed", "base"):
        assert banned not in names
    assert "http:" not in page and "https:" not in page and "url(" not in page
    images = [a for t, a in doc.tags if t == "img"]
    assert images
    for tag, attrs in doc.tags:
        if "src" in attrs:
            assert tag == "img" and attrs["src"].startswith("data:image/png;base64,")
        if "href" in attrs:
            assert attrs["href"].startswith("#")
    for attrs in images:
        png = base64.b64decode(attrs["src"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(images) == len(list((built / "figures").glob("*.png")))


def test_report_content(built):
    doc = parse(built / "report.html")
    text = " ".join(doc.text)
    ids = {a.get("id") for _, a in doc.tags}
    assert {"configuration", "summary", "claim", "tests", "figures", "failed",
            "environment"} <= ids
    assert "clonebench report: html-test" in text  # the name from experiment.json
    assert "reference: upper bound" in text
    assert "RuntimeError: <script>alert(1)</script> & co" in text  # shown, escaped
    assert "Friedman" in text and "Critical difference (final_accuracy)" in text
    # stream a: pnc 20 points above lwf (supported) but locality 0.75 against 0.65, a
    # +15% gain with no spread: below the claimed +50%, so the claim is not supported
    assert "supported: the gain exceeds the claimed +5 points" in text
    assert "partly supported: a significant gain, but below the claimed +50%" in text
    assert ("Against lwf (the best parameter-tuning method (the paper's comparison)), read "
            "relative: the measurement does not support the claim") in text
    assert "Against lwf (the best parameter-tuning method (the paper's comparison)), read " \
        "points:" in text  # both readings, each verdict naming its own
    assert "the best rival at no more memory than PNC" in text  # the second check, said why
    assert "ablations" in ids and "pre" not in [t for t, _ in doc.tags]  # no raw JSON
    details = [t for t, _ in doc.tags if t == "details"]
    assert len(details) == 2  # experiment.json and the per-strategy settings, collapsed
    best_cells = [a for t, a in doc.tags if t == "td" and "best" in a.get("class", "")]
    assert best_cells


def test_best_value_marked_per_column(built):
    summary = tables.summary_table(tables.runs_table(
        [json.loads(p.read_text()) for p in (built / "runs").glob("*.json")]))
    mask = formats.best_mask(summary)
    a = summary[summary["stream"] == "a"].set_index("label")
    best_rows = summary.loc[mask["final_accuracy"] & (summary["stream"] == "a"), "label"]
    assert list(best_rows) == ["pnc"]  # joint (0.97) is higher but is the reference
    forgetting_best = summary.loc[mask["forgetting"] & (summary["stream"] == "a"), "label"]
    rivals = a.drop(index="joint")
    lowest = rivals["forgetting_mean"].min()
    tied = set(rivals.index[rivals["forgetting_mean"] == lowest])
    # the lowest forgetting is marked, unless every rival ties (then nothing is)
    assert set(forgetting_best) == (set() if tied == set(rivals.index) else tied)


def test_screenshot_reports_missing_chromium(built, monkeypatch, capsys):
    monkeypatch.setattr(screenshot, "CHROMIUM", Path("/nonexistent/chromium"))
    assert cli_main(["screenshot", str(built)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "chromium" in err


@needs_chromium
@pytest.mark.slow
def test_screenshot_of_the_report_is_not_blank(built, tmp_path):
    out = tmp_path / "shot.png"
    done = subprocess.run([sys.executable, "-m", "benchmark", "screenshot", str(built),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.exists() and (tmp_path / "shot-figures.png").exists()
    assert "not blank" in done.stdout
    assert not any(p.name.endswith(".png") for p in built.iterdir())  # nothing left in DIR


@needs_chromium
@pytest.mark.slow
def test_screenshot_detects_blank_pages_and_blank_figures(built, tmp_path):
    blank = tmp_path / "blank"
    blank.mkdir()
    (blank / "report.html").write_text("<!DOCTYPE html><html><head></head><body></body></html>")
    assert cli_main(["screenshot", str(blank), "--out", str(tmp_path / "b.png")]) == 1

    import io

    from PIL import Image

    white = io.BytesIO()
    Image.new("RGB", (600, 400), "white").save(white, format="PNG")
    white_uri = "data:image/png;base64," + base64.b64encode(white.getvalue()).decode()
    page = (built / "report.html").read_text(encoding="utf-8")
    doc = parse(built / "report.html")
    for _, attrs in doc.tags:
        if attrs.get("src", "").startswith("data:image/png"):
            page = page.replace(attrs["src"], white_uri)
    whitened = tmp_path / "white"
    whitened.mkdir()
    (whitened / "report.html").write_text(page, encoding="utf-8")
    assert cli_main(["screenshot", str(whitened), "--out", str(tmp_path / "w.png")]) == 1
