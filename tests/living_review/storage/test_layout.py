"""Every path comes from the layout; each run stages in its own folder."""
from __future__ import annotations

import datetime as dt
import re

from hypothesis import given
from hypothesis import strategies as st

from include.living_review.storage import Layout, run_key

DAY = dt.date(2026, 3, 9)


@given(st.text(min_size=1, max_size=200), st.text(min_size=1, max_size=200))
def test_run_keys_are_file_name_safe_and_tell_runs_apart(a, b):
    assert re.fullmatch(r"[A-Za-z0-9_.-]+-[0-9a-f]{8}", run_key(a))
    assert len(run_key(a)) <= 69 and run_key(a) == run_key(a)
    if a != b:
        assert run_key(a) != run_key(b)


def test_two_runs_of_one_date_never_share_a_staging_file(tmp_path):
    layout = Layout.of(tmp_path, "r", DAY)
    first = layout.staging("scheduled__2026-03-09T00:00:00+00:00")
    second = layout.staging("manual__2026-03-09T12:00:00+00:00")
    assert first.dir != second.dir and first.dir.parent == second.dir.parent == layout.staging_root
    assert first.dir.name == "run=scheduled__2026-03-09T00-00-00-00-00-" + run_key(
        "scheduled__2026-03-09T00:00:00+00:00")[-8:]
    for name in ("merged", "validated", "rejected", "merge_stats", "validation", "commit_dir"):
        assert getattr(first, name) != getattr(second, name)
    assert first.source_records("pubmed").name == "source=pubmed.parquet"
    assert first.enrichment_records("crossref").name == "enrich=crossref.parquet"


def test_the_published_layout_is_the_documented_one(tmp_path):
    layout = Layout.of(tmp_path, "r", DAY)
    rel = {name: str(getattr(layout, name).relative_to(tmp_path.resolve())) for name in
           ("snapshot_file", "quarantine_file", "changes_file", "manifest_file", "coverage_file",
            "digest_status_file", "events_dir", "journal_file", "ledger_file", "lease_file")}
    assert rel == {
        "snapshot_file": "snapshots/review_id=r/snapshot_date=2026-03-09/citing_works.parquet",
        "quarantine_file": "quarantine/review_id=r/snapshot_date=2026-03-09/rejected.parquet",
        "changes_file": "changes/review_id=r/snapshot_date=2026-03-09/changes.parquet",
        "manifest_file": "runs/review_id=r/snapshot_date=2026-03-09/manifest.json",
        "coverage_file": "runs/review_id=r/snapshot_date=2026-03-09/coverage.parquet",
        "digest_status_file": "runs/review_id=r/snapshot_date=2026-03-09/digest.json",
        "events_dir": "events/review_id=r/snapshot_date=2026-03-09",
        "journal_file": "runs/review_id=r/snapshot_date=2026-03-09/.commit.json",
        "ledger_file": "digests/review_id=r/ledger.json",
        "lease_file": "locks/r__2026-03-09.json",
    }
    assert layout.events_file("c1").name == "events-c1.parquet"
