"""Headless-browser check of a report: ``clonebench screenshot DIR [--out PNG]``.

Renders ``DIR/report.html`` with ``/usr/bin/chromium`` (headless, no network, a fresh profile)
into two screenshots, 1400 pixels wide:

- ``--out`` (default ``<temp dir>/clonebench-screenshot-<DIR name>.png``, never inside DIR:
  a results folder holds only what the suite writes), 1400 x 3000: the top of the page as a
  reader sees it; it must not be blank: at least ``MIN_COLOURS`` distinct colours and
  ``MIN_INK`` of its pixels not white;
- ``<out>-figures.png``: the same page with every section but the figures hidden, so the
  embedded images fill the window. A third, unsaved render paints every image black
  (``filter: brightness(0)``) to find the image area; when the report embeds figures, that area
  must cover at least ``MIN_FIGURE_AREA`` of the window and at least ``MIN_FIGURE_INK`` of its
  pixels must be non-white in the figures view (a figure that failed to decode leaves no area;
  an all-white figure leaves no ink).

Prints what it measured. Exit status 0: rendered and not blank; 1: blank; 2: chromium missing,
no report, or chromium failed (one line naming the problem).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from benchmark.core.errors import UsageError

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
WINDOW = (1400, 3000)
MIN_COLOURS = 64
MIN_INK = 0.01
MIN_FIGURE_AREA = 0.05
MIN_FIGURE_INK = 0.05
FIGURES_ONLY_CSS = "body > h1, nav, section:not(#figures) { display: none; }"
IMAGES_BLACK_CSS = "figure img { filter: brightness(0); }"


class ScreenshotError(Exception):
    """The check could not be done (exit status 2)."""


@dataclass(frozen=True)
class PixelStats:
    """What a screenshot holds: size, distinct RGB colours, fraction of non-white pixels."""

    width: int
    height: int
    colours: int
    ink: float


def pixel_stats(png: Path) -> PixelStats:
    """Distinct colours and the fraction of pixels that are not (near) white in ``png``."""
    rgb = load_rgb(png)
    flat = rgb.reshape(-1, 3).astype(np.uint32)
    colours = len(np.unique((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]))
    ink = float(np.mean(np.any(rgb < 245, axis=2)))
    return PixelStats(rgb.shape[1], rgb.shape[0], colours, ink)


def render(html: Path, out: Path, chromium: Optional[Path] = None, window=WINDOW,
           timeout: float = 120) -> None:
    """Screenshot of ``html`` into ``out`` by headless chromium (default ``CHROMIUM``) with a
    fresh profile."""
    chromium = chromium or CHROMIUM
    profile = tempfile.mkdtemp(prefix="clonebench-chromium-")
    try:
        cmd = [str(chromium), *FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
               f"--window-size={window[0]},{window[1]}", html.resolve().as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ScreenshotError(f"chromium did not finish within {timeout:.0f} s") from None
        if not out.exists():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ScreenshotError(f"chromium wrote no screenshot (exit {done.returncode}): "
                                  f"{tail}")
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def with_css(html_text: str, css: str) -> str:
    """The page with ``css`` appended to its head."""
    return html_text.replace("</head>", f"<style>{css}</style></head>", 1)


def load_rgb(png: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(png) as img:
        return np.asarray(img.convert("RGB"))


def figure_area_ink(figures_png: Path, black_png: Path) -> tuple:
    """(fraction of the window covered by images, fraction of that area not white): the image
    area is where the blackened render is pure black."""
    area = np.all(load_rgb(black_png) <= 2, axis=2)
    if not area.any():
        return 0.0, 0.0
    ink = np.any(load_rgb(figures_png)[area] < 245, axis=1)
    return float(area.mean()), float(ink.mean())


def default_output(folder: Path) -> Path:
    name = Path(folder).resolve().name or "report"
    return Path(tempfile.gettempdir()) / f"clonebench-screenshot-{name}.png"


def check(folder: Path, out: Optional[Path] = None, chromium: Optional[Path] = None
          ) -> list[str]:
    """Renders and inspects ``folder/report.html``; returns the problems found (empty: fine).

    Raises ScreenshotError when the check cannot be done.
    """
    chromium = chromium or CHROMIUM
    report = Path(folder) / "report.html"
    if not chromium.exists():
        raise ScreenshotError(f"{chromium} not found; install Debian's chromium "
                              "(apt-get install chromium) to check the report in a browser")
    if not report.is_file():
        raise ScreenshotError(f"no report.html in {folder}; run `clonebench report {folder}` "
                              "first")
    out = Path(out) if out else default_output(folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    figures_out = out.with_name(out.stem + "-figures.png")
    text = report.read_text(encoding="utf-8")
    n_figures = text.count("data:image/png;base64,")
    problems = []

    render(report, out, chromium)
    page = pixel_stats(out)
    print(f"{out}: {page.width}x{page.height} pixels, {page.colours} distinct colours, "
          f"{100 * page.ink:.1f}% non-white")
    if page.colours < MIN_COLOURS or page.ink < MIN_INK:
        problems.append(f"the page looks blank ({page.colours} colours, "
                        f"{100 * page.ink:.2f}% non-white)")

    with tempfile.TemporaryDirectory(prefix="clonebench-figures-") as tmp:
        page_path, black_path = Path(tmp) / "figures.html", Path(tmp) / "black.html"
        page_path.write_text(with_css(text, FIGURES_ONLY_CSS), encoding="utf-8")
        black_path.write_text(with_css(text, FIGURES_ONLY_CSS + IMAGES_BLACK_CSS),
                              encoding="utf-8")
        render(page_path, figures_out, chromium)
        render(black_path, Path(tmp) / "black.png", chromium)
        area, ink = figure_area_ink(figures_out, Path(tmp) / "black.png")
    print(f"{figures_out}: {n_figures} embedded figure(s) covering {100 * area:.1f}% of the "
          f"window, {100 * ink:.1f}% of that area non-white")
    if n_figures and (area < MIN_FIGURE_AREA or ink < MIN_FIGURE_INK):
        problems.append(f"the embedded figures render blank (image area {100 * area:.2f}% of "
                        f"the window, {100 * ink:.2f}% of it non-white)")
    return problems


def add_arguments(parser) -> None:
    """``clonebench screenshot``'s arguments."""
    parser.add_argument("dir", type=Path, help="results folder holding report.html")
    parser.add_argument("--out", type=Path, help="screenshot path (default: "
                        "clonebench-screenshot-<DIR name>.png in the temp folder; the figures "
                        "view goes next to it as <name>-figures.png)")


def run(args) -> int:
    """Exit status 0 when the report renders, 1 when it renders blank."""
    try:
        problems = check(args.dir, args.out)
    except ScreenshotError as err:
        raise UsageError(f"screenshot: {err}") from None
    for p in problems:
        print(f"screenshot: BLANK: {p}")
    if not problems:
        print("screenshot: the report renders (not blank)")
    return 1 if problems else 0
