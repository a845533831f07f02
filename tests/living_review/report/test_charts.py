"""The SVG charts: well-formed for any size of input, one mark per data point, text escaped."""
from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from include.living_review import report as rp
from include.living_review.report.charts import MAX_INTERSECTIONS

SVG = "{http://www.w3.org/2000/svg}"


def _classed(svg: ET.Element, css: str) -> list[ET.Element]:
    return [e for e in svg.iter() if e.get("class") == css]


@pytest.mark.parametrize("points", [
    [rp.SnapshotPoint(dt.date(2026, 1, 5), 0, 0)],
    [rp.SnapshotPoint(dt.date(2026, 1, 5), 3, 3)],
    [rp.SnapshotPoint(dt.date(2025, 1, 6) + dt.timedelta(days=7 * i), 100 + 7 * i, 7) for i in range(60)],
])
def test_timeline_svg_is_well_formed(points: list[rp.SnapshotPoint]) -> None:
    svg = ET.fromstring(rp.timeline_svg(points))
    assert svg.tag.endswith("svg")
    assert len([e for e in svg.iter() if e.tag.endswith("rect") and "bar-" in (e.get("class") or "")]) >= 2


def test_timeline_svg_with_one_snapshot_draws_one_new_bar() -> None:
    """A review's first run: every work is new, so one bar and no 'already tracked' part."""
    svg = ET.fromstring(rp.timeline_svg([rp.SnapshotPoint(dt.date(2026, 1, 5), 3, 3)]))
    bars = svg.findall(f"{SVG}g[@class='bar']")
    assert len(bars) == 1
    assert [r.get("class") for r in bars[0].findall(f"{SVG}rect")] == ["bar-new"]
    assert bars[0].findtext(f"{SVG}title") == "2026-01-05: 3 works, 3 new"
    assert float(bars[0].find(f"{SVG}rect").get("height")) > 0
    texts = [e.text for e in svg.iter(f"{SVG}text")]
    assert "3" in texts and "5 Jan" in texts and "snapshot date (2026)" in texts


def test_timeline_svg_splits_each_bar_into_tracked_and_new() -> None:
    points = [rp.SnapshotPoint(dt.date(2025, 12, 29), 10, 10), rp.SnapshotPoint(dt.date(2026, 1, 5), 14, 4)]
    svg = ET.fromstring(rp.timeline_svg(points))
    first, second = svg.findall(f"{SVG}g[@class='bar']")
    assert [r.get("class") for r in first.findall(f"{SVG}rect")] == ["bar-new"]
    old, new = second.findall(f"{SVG}rect")
    assert (old.get("class"), new.get("class")) == ("bar-old", "bar-new")
    assert float(old.get("height")) == pytest.approx(10 / 4 * float(new.get("height")), abs=0.2)
    assert "snapshot date (2025–2026)" in [e.text for e in svg.iter(f"{SVG}text")]


@pytest.mark.parametrize("series", [
    [(dt.date(2024, 3, 1), 1)],
    [(dt.date(2019, 1, 1), 0), (dt.date(2019, 2, 1), 2)],
    [(dt.date(2000 + i // 12, i % 12 + 1, 1), i) for i in range(12 * 25)],
])
def test_publication_svg_is_well_formed(series: list[tuple[dt.date, int]]) -> None:
    svg = ET.fromstring(rp.publication_svg(series))
    assert any(e.get("class") == "line" for e in svg.iter())


def test_publication_svg_names_the_year_of_a_first_july_tick() -> None:
    series = [(dt.date(2024, 6, 1), 1), (dt.date(2024, 9, 1), 3), (dt.date(2025, 2, 1), 4)]
    svg = ET.fromstring(rp.publication_svg(series))
    ticks = [e.text for e in _classed(svg, "tick") if e.get("text-anchor") == "middle"]
    assert ticks == ["Jul 2024", "2025"]
    # one dot where the total changes (and the first month), none for flat months in between
    assert len(_classed(svg, "dot")) == 3
    assert _classed(svg, "value")[-1].text == "4"


def test_upset_svg_marks_each_combination() -> None:
    sizes = {"pubmed": 3, "openalex": 2, "opencitations": 1}
    combos = [(("pubmed",), 2), (("pubmed", "openalex", "opencitations"), 1), (("openalex",), 1)]
    svg = ET.fromstring(rp.upset_svg(sizes, combos))
    on = [e for e in svg.iter() if e.get("class") == "dot-on"]
    assert len(on) == 1 + 3 + 1
    assert len([e for e in svg.iter() if e.get("class") == "dot-off"]) == 3 * 3 - 5


def test_upset_svg_without_combinations_is_an_empty_matrix() -> None:
    svg = ET.fromstring(rp.upset_svg({"pubmed": 0, "openalex": 0}, []))
    assert not _classed(svg, "bar-combo") and not _classed(svg, "dot-on") and not _classed(svg, "dot-off")
    assert [float(r.get("width")) for r in _classed(svg, "bar-set")] == [0.0, 0.0]
    assert [e.text for e in _classed(svg, "source")] == ["PubMed", "OpenAlex"]
    assert int(svg.get("width")) > 0 and int(svg.get("height")) > 0


def test_upset_svg_shows_at_most_the_largest_combinations_and_escapes_names() -> None:
    sources = [f"s{i}" for i in range(5)] + ["<b>odd</b>"]
    sizes = {s: 1 for s in sources}
    combos = [((s,), 20 - i) for i, s in enumerate(sources)] * 3
    svg = ET.fromstring(rp.upset_svg(sizes, combos))  # parses: the odd name is escaped
    assert len(_classed(svg, "bar-combo")) == MAX_INTERSECTIONS
    assert "<b>odd</b>" in [e.text for e in _classed(svg, "source")]
