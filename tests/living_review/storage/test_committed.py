"""Which dates are committed, and the commit a run builds on or compares with."""
from __future__ import annotations

import datetime as dt

from include.living_review.storage import (
    Layout,
    base_commit,
    commit_run,
    committed_dates,
    committed_manifest,
    pending_dates,
    previous_commit,
    uncommitted_dates,
    write_json_atomic,
)

D1, D2, D3, D4 = (dt.date(2026, 3, 2) + dt.timedelta(weeks=n) for n in range(4))


def commit_on(tmp_path, day: dt.date) -> Layout:
    layout = Layout.of(tmp_path, "r", day)
    commit_run(layout, layout.staging(f"run-{day}"), [("snapshot", layout.snapshot_file, b"rows")],
               {"run_id": f"run-{day}"}, commit_id=f"c-{day}")
    return layout


def test_the_baseline_is_the_latest_commit_before_the_date_and_the_base_the_latest_up_to_it(tmp_path):
    for day in (D1, D2, D3):
        commit_on(tmp_path, day)
    commit_on(tmp_path, D4).manifest_file.unlink()  # D4 is on disk but not committed
    on = Layout.of(tmp_path, "r", D1).on
    assert committed_dates(tmp_path, "r") == [D1, D2, D3] and uncommitted_dates(tmp_path, "r") == [D4]
    assert previous_commit(on(D1)) is None
    assert previous_commit(on(D2)) == on(D1)
    assert previous_commit(on(D3)) == on(D2)
    assert previous_commit(on(D4)) == on(D3)
    assert base_commit(on(D1 - dt.timedelta(days=1))) is None
    assert base_commit(on(D1)) == on(D1)
    assert base_commit(on(D2)) == on(D2)  # a second run on a date builds on the first
    assert base_commit(on(D3 + dt.timedelta(days=3))) == on(D3)
    assert base_commit(on(D4)) == on(D3)
    assert committed_dates(tmp_path, "other-review") == [] and previous_commit(Layout.of(tmp_path, "x", D2)) is None


def test_a_manifest_counts_only_with_its_snapshot_and_no_pending_journal(tmp_path):
    layout = commit_on(tmp_path, D1)
    assert committed_manifest(layout)["commit_id"] == f"c-{D1}"
    write_json_atomic({"commit_id": "c9"}, layout.journal_file)
    assert committed_manifest(layout) is None and pending_dates(tmp_path, "r") == [D1]
    layout.journal_file.unlink()
    layout.snapshot_file.unlink()
    assert committed_manifest(layout) is None and committed_dates(tmp_path, "r") == []


def test_pending_dates_ignore_folders_that_are_not_dates(tmp_path):
    layout = commit_on(tmp_path, D2)
    write_json_atomic({"commit_id": "c9"}, layout.journal_file)
    stray = tmp_path / "runs" / "review_id=r" / "notes"
    stray.mkdir()
    (stray / ".commit.json").write_text("{}")
    assert pending_dates(tmp_path, "r") == [D2] and pending_dates(tmp_path, "nobody") == []
