"""Reading the committed data into the page's numbers.

The ``history`` fixture is four weekly runs of the real pipeline steps against the
local fakes (see ``tests/living_review/report/history.py``); its numbers come from the published
files, so the page is checked against what the pipeline wrote, not against itself.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from include.living_review import report as rp
from include.living_review.digest.send import status_line
from tests.living_review.report.handmade import damaged_data_dir, publish, write_config
from tests.living_review.report.history import DROPPED_DOI, REVIEW_ID, History


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


def test_gather_survives_missing_damaged_and_blocked_data(tmp_path: Path) -> None:
    data, config = damaged_data_dir(tmp_path)

    report = rp.gather(data, config)
    assert len(report.config_issues) == 1 and "Not A Slug" in report.config_issues[0]
    never, broken, blocked, odd_one, uncommitted = report.reviews
    assert odd_one.problems and "cannot read this review's data" in odd_one.problems[0]
    assert not never.has_snapshot
    assert broken.problems and "snapshot" in broken.problems[0]
    assert blocked.total_works == 2
    assert not uncommitted.has_snapshot and uncommitted.manifest is None
    assert blocked.unpublished == [(dt.date(2026, 1, 12), "publishing was blocked: 60% of rows failed")]


def test_the_newest_staged_run_of_an_unpublished_date_decides_its_reason(tmp_path: Path) -> None:
    """A blocked run followed by a rerun still in progress is not reported as blocked."""
    data = tmp_path / "data"
    config = write_config(tmp_path / "reviews.yaml", ["rerun-1"])
    published = publish(data, "rerun-1", dt.date(2026, 1, 5), ["A"])
    later = published.on(dt.date(2026, 1, 12))
    blocked, rerun = later.staging("scheduled__2026-01-12"), later.staging("manual__2026-01-13")
    blocked.dir.mkdir(parents=True)
    blocked.validation.write_text(json.dumps({"status": "blocked", "reason": "too many rows failed"}))
    rerun.dir.mkdir(parents=True)
    os.utime(blocked.dir, (1_700_000_000, 1_700_000_000))
    os.utime(rerun.dir, (1_700_000_100, 1_700_000_100))

    [review] = rp.gather(data, config).reviews
    assert review.snapshot_date == dt.date(2026, 1, 5)
    assert review.unpublished == [
        (dt.date(2026, 1, 12), "not published (still running, or a task failed: see the DAG run)")]

    os.utime(blocked.dir, (1_700_000_200, 1_700_000_200))  # now the blocked run is the newest
    [review] = rp.gather(data, config).reviews
    assert review.unpublished == [(dt.date(2026, 1, 12), "publishing was blocked: too many rows failed")]


def test_digest_status_comes_from_the_runs_digest_json(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path / "reviews.yaml", ["digest-1"])
    layout = publish(data, "digest-1", dt.date(2026, 1, 5), ["A", "B"])
    assert rp.gather(data, config).reviews[0].digest == "pending"  # before the digest DAG ran

    status = {"status": "sent", "channels": {"email": {"status": "sent"}, "slack": {"status": "uncertain"}}}
    layout.digest_status_file.write_text(json.dumps(status))
    digest = rp.gather(data, config).reviews[0].digest
    assert digest == status_line(status) == "sent; email: sent; slack: uncertain"


def test_coverage_falls_back_to_the_manifest_without_a_ledger(tmp_path: Path) -> None:
    """Runs written before the coverage ledger existed still show their sources."""
    data = tmp_path / "data"
    config = write_config(tmp_path / "reviews.yaml", ["old-1"])
    layout = publish(data, "old-1", dt.date(2026, 1, 5), ["A", "B", "C"])
    layout.coverage_file.unlink()
    layout.manifest_file.write_text(json.dumps({
        "counts": {"new": 3}, "coverage": {"union": 3, "openalex": 3, "crossref": 0},
        "sources": {"crossref": {"status": "ok", "listed": 0}, "openalex": {"status": "ok", "listed": 3}}}))

    [review] = rp.gather(data, config).reviews
    assert not review.problems
    assert [(c.source, c.label, c.status, c.listed, c.works) for c in review.coverage] == [
        ("openalex", "OpenAlex", "ok", 3, 3), ("crossref", "Crossref", "ok", 0, 0)]
    assert review.sources_ok == review.sources_listing == 1  # Crossref only fills in, it lists nothing
    assert review.set_sizes == {"openalex": 3}
    assert review.intersections == [(("openalex",), 3)]
