"""The living-review page: gathered numbers, the static export, charts and robustness.

The ``history`` fixture is four weekly runs of the real pipeline steps against the
local fakes (see ``tests/report/history.py``); its numbers come from the published
files, so the page is checked against what the pipeline wrote, not against itself.
"""
from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from include.living_review import report as rp
from include.living_review.models import CITING_WORKS_SCHEMA
from include.living_review.pipeline import CHANGES_SCHEMA, COVERAGE_SCHEMA
from include.living_review.storage import Layout
from tests.report.history import DROPPED_DOI, REVIEW_ID, History
from tests.report.pagedata import page_numbers


def _review(history: History) -> rp.ReviewReport:
    report = rp.gather(history.data_dir, history.config)
    assert not report.config_issues
    assert [r.review_id for r in report.reviews] == [REVIEW_ID]
    return report.reviews[0]


def test_gathered_numbers_match_the_published_files(history: History) -> None:
    review = _review(history)
    latest = history.latest
    snapshot = pq.read_table(latest.snapshot_file).to_pylist()
    manifest = json.loads(latest.manifest_file.read_text())

    assert review.snapshot_date == history.weeks[-1]
    assert review.snapshot_dates == history.weeks
    assert review.total_works == len(snapshot) == history.union == 24
    assert review.reported_this_run == manifest["coverage"]["union"] == history.reported == 23  # one dropped
    assert {c.source: c.works for c in review.coverage if c.source != "crossref"} == history.coverage
    assert review.quarantined == history.quarantined == 1
    assert review.quarantine_reasons[0] == ("title_not_null", 1)
    assert review.dq_status == "quarantined"

    # over time: one bar per snapshot; the new part is what each run added
    assert [(p.day, p.total, p.new) for p in review.timeline] == [
        (history.weeks[0], 14, 14), (history.weeks[1], 20, 6), (history.weeks[2], 24, 4), (history.weeks[3], 24, 0)]
    assert review.by_publication_month[-1][1] + review.undated == len(snapshot)
    totals = [total for _, total in review.by_publication_month]
    assert totals == sorted(totals)  # cumulative

    # coverage: every work in exactly one combination; set sizes are per-source counts
    assert sum(n for _, n in review.intersections) == len(snapshot)
    for source, size in review.set_sizes.items():
        assert size == sum(1 for r in snapshot if source in r["sources"])
    assert (("opencitations",), 1) in review.intersections

    # changes: the latest run's kinds, most important first, then earlier runs
    published_changes = pq.read_table(latest.changes_file).column("change").to_pylist()
    assert review.change_counts == dict(Counter(published_changes))
    assert review.change_counts["no_longer_reported"] == 1
    assert review.changes[0].kind == "no_longer_reported"
    assert review.changes[0].url == f"https://doi.org/{DROPPED_DOI}"
    assert {c.snapshot_date for c in review.changes} >= {history.weeks[3], history.weeks[2]}

    assert review.manifest == latest.manifest_file
    assert review.data_docs == latest.docs_dir / "index.html"


def test_static_report_shows_the_key_numbers_and_working_links(history: History, tmp_path: Path) -> None:
    out = tmp_path / "site"
    assert rp.main(["--out", str(out), "--data-dir", str(history.data_dir), "--config", str(history.config)]) == 0
    html = (out / "index.html").read_text(encoding="utf-8")
    metrics, per_source, links = page_numbers(html)

    assert metrics["total-works"] == str(history.union)
    assert metrics["union"] == metrics["coverage-union"] == str(history.reported)
    assert metrics["quarantined"] == str(history.quarantined)
    assert metrics["new"] == "0"
    assert metrics["snapshot-date"] == history.weeks[-1].isoformat()
    assert metrics["data-quality"] == "1 row quarantined"
    assert per_source == {s: str(n) for s, n in history.coverage.items()}
    for name in ("data-docs", "manifest"):  # relative links that resolve beside the data
        assert (out / unquote(links[name])).resolve().is_file(), links[name]
    assert json.loads((out / unquote(links["manifest"])).read_text())["snapshot_date"] == history.weeks[-1].isoformat()
    for chart in ("Citing works per snapshot", "Cumulative citing works by publication month",
                  "Which sources found which works"):
        assert chart in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_default_output_is_the_data_dirs_report_folder(history: History, tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("LIVING_REVIEW_DATA_DIR", str(data))
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(history.config))
    target = rp.write_static()
    assert target == data.resolve() / "report" / "index.html"
    assert "No snapshot published yet" in target.read_text(encoding="utf-8")
    assert target.stat().st_mode & 0o044  # readable by the web server / colleagues


# -- small hand-made data dirs for the edge cases --------------------------------------
def _config(path: Path, ids: list[str], extra: list[dict] | None = None) -> Path:
    reviews = [{"id": i, "title": f"Review {i}", "doi": "10.1000/x" + i[-1], "sources": ["openalex", "crossref"]}
               for i in ids]
    path.write_text(yaml.safe_dump({"reviews": reviews + (extra or [])}), encoding="utf-8")
    return path


def _publish(data_dir: Path, review_id: str, day: dt.date, titles: list[str], *, manifest: bool = True) -> Layout:
    layout = Layout.of(data_dir, review_id, day)
    ts = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    rows = [{"work_id": f"doi:10.1000/w{i}", "doi": f"10.1000/w{i}", "title": t, "sources": ["openalex"],
             "source_ids": [], "authors": [], "publication_types": [], "is_retracted": False,
             "publication_year": 2020 + i % 5, "first_seen": ts, "last_reported": ts} for i, t in enumerate(titles)]
    layout.snapshot_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=CITING_WORKS_SCHEMA), layout.snapshot_file)
    changes = [{"work_id": r["work_id"], "change": "added", "changed_fields": [], "title": r["title"],
                "doi": r["doi"], "detail": None} for r in rows]
    layout.changes_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(changes, schema=CHANGES_SCHEMA), layout.changes_file)
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{"source": "openalex", "status": "ok", "listed": len(rows),
                                          "works": len(rows)}], schema=COVERAGE_SCHEMA), layout.coverage_file)
    if manifest:
        layout.manifest_file.write_text(json.dumps({"counts": {"new": len(rows)}, "coverage": {"union": len(rows)},
                                                    "data_quality": {"status": "ok", "success": True,
                                                                     "rows": len(rows)}}))
    return layout


def test_page_survives_missing_damaged_and_blocked_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bad_entry = {"id": "Not A Slug", "title": "x", "doi": "10.1000/y"}
    config = _config(tmp_path / "reviews.yaml", ["never-run", "damaged", "blocked", "odd-manifest"], [bad_entry])
    odd = _publish(data, "odd-manifest", dt.date(2026, 1, 5), ["A"])
    odd.manifest_file.write_text(json.dumps({"counts": {"new": "many"}}))
    damaged = _publish(data, "damaged", dt.date(2026, 1, 5), ["A"])
    damaged.snapshot_file.write_bytes(b"not parquet")
    _publish(data, "blocked", dt.date(2026, 1, 5), ["A", "B"], manifest=False)
    staging = data / "staging" / "review_id=blocked" / "snapshot_date=2026-01-12"
    staging.mkdir(parents=True)
    (staging / "validation.json").write_text(json.dumps({"status": "blocked", "reason": "60% of rows failed"}))

    report = rp.gather(data, config)
    assert len(report.config_issues) == 1 and "Not A Slug" in report.config_issues[0]
    never, broken, blocked, odd_one = report.reviews
    assert odd_one.problems and "cannot read this review's data" in odd_one.problems[0]
    assert not never.has_snapshot
    assert broken.problems and "snapshot" in broken.problems[0]
    assert blocked.total_works == 2 and blocked.manifest is None and blocked.dq_status == "unknown"
    assert blocked.unpublished == [(dt.date(2026, 1, 12), "publishing was blocked: 60% of rows failed")]

    html = rp.render_html(report, rp.StaticLinks(tmp_path / "out"))
    assert "No snapshot published yet" in html
    assert "cannot read the snapshot" in html
    assert "publishing was blocked: 60% of rows failed" in html
    assert "problem in the reviews config" in html
    assert html.count('class="review"') == 4


def test_an_object_store_data_dir_is_explained(tmp_path: Path) -> None:
    report = rp.gather("s3://bucket/living-review", _config(tmp_path / "reviews.yaml", ["one-1"]))
    assert report.notices and "is a URL" in report.notices[0]
    assert "is a URL" in rp.render_html(report, rp.AppLinks())


def test_untrusted_titles_are_escaped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = _config(tmp_path / "reviews.yaml", ["xss-1"])
    _publish(data, "xss-1", dt.date(2026, 2, 2), ['<script>alert(1)</script> & "quotes"', "<img src=x onerror=y>"])
    html = rp.render_html(rp.gather(data, config), rp.AppLinks(), mode="airflow")
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; " in html


@pytest.mark.parametrize("points", [
    [rp.SnapshotPoint(dt.date(2026, 1, 5), 0, 0)],
    [rp.SnapshotPoint(dt.date(2026, 1, 5), 3, 3)],
    [rp.SnapshotPoint(dt.date(2025, 1, 6) + dt.timedelta(days=7 * i), 100 + 7 * i, 7) for i in range(60)],
])
def test_timeline_svg_is_well_formed(points: list[rp.SnapshotPoint]) -> None:
    svg = ET.fromstring(rp.timeline_svg(points))
    assert svg.tag.endswith("svg")
    assert len([e for e in svg.iter() if e.tag.endswith("rect") and "bar-" in (e.get("class") or "")]) >= 2


@pytest.mark.parametrize("series", [
    [(dt.date(2024, 3, 1), 1)],
    [(dt.date(2019, 1, 1), 0), (dt.date(2019, 2, 1), 2)],
    [(dt.date(2000 + i // 12, i % 12 + 1, 1), i) for i in range(12 * 25)],
])
def test_publication_svg_is_well_formed(series: list[tuple[dt.date, int]]) -> None:
    svg = ET.fromstring(rp.publication_svg(series))
    assert any(e.get("class") == "line" for e in svg.iter())


def test_upset_svg_marks_each_combination() -> None:
    sizes = {"pubmed": 3, "openalex": 2, "opencitations": 1}
    combos = [(("pubmed",), 2), (("pubmed", "openalex", "opencitations"), 1), (("openalex",), 1)]
    svg = ET.fromstring(rp.upset_svg(sizes, combos))
    on = [e for e in svg.iter() if e.get("class") == "dot-on"]
    assert len(on) == 1 + 3 + 1
    assert len([e for e in svg.iter() if e.get("class") == "dot-off"]) == 3 * 3 - 5
