"""The static report in a real headless Chromium: it renders, is not blank, and shows the numbers.

Skipped when Chromium is not installed (``apt-get install -y chromium``).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from include.living_review.report import write_static
from scripts.screenshot import WIDTH, dump_dom, find_chromium, pixel_stats, read_png, screenshot
from tests.living_review.report.history import History
from tests.living_review.report.pagedata import page_numbers

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="chromium is not installed (apt-get install -y chromium)")


def test_report_renders_in_chromium(history: History, tmp_path: Path) -> None:
    page = write_static(tmp_path / "site", data_dir=history.data_dir, config_path=history.config)

    # The DOM after Chromium parsed and laid it out still carries the key numbers.
    metrics, per_source, _ = page_numbers(dump_dom(page))
    assert metrics["total-works"] == str(history.union)
    assert metrics["quarantined"] == str(history.quarantined)
    assert metrics["coverage-union"] == str(history.reported)
    assert per_source == {s: str(n) for s, n in history.coverage.items()}

    png = screenshot(page, tmp_path / "report.png")
    image = read_png(png, max_rows=700)  # header, cards and the first charts
    assert image.width == WIDTH
    assert 1200 <= image.height <= 6000, image.height  # the whole page, not one window
    variance, colours = pixel_stats(image)
    assert variance > 100 and colours > 20, (variance, colours)  # text and charts, not a blank page
