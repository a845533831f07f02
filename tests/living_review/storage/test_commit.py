"""The run commit: what is committed, what is not, and what verify and recover report."""
from __future__ import annotations

import datetime as dt
import json
import logging

import pytest

from include.living_review.storage import (
    CorruptFile,
    Layout,
    commit_run,
    committed_dates,
    read_json,
    recover,
    uncommitted_dates,
    verify,
    write_json_atomic,
)
from include.living_review.storage import pending_dates

DAY = dt.date(2026, 3, 2)


def committed(tmp_path, day=DAY, snapshot=b"rows", run_id="manual__1", commit_id="c1") -> Layout:
    layout = Layout.of(tmp_path, "r", day)
    commit_run(layout, layout.staging(run_id), [("changes", layout.changes_file, b"changes"),
                                                 ("snapshot", layout.snapshot_file, snapshot)],
               {"run_id": run_id}, commit_id=commit_id)
    return layout


def test_a_commit_publishes_every_file_then_a_manifest_that_lists_them(tmp_path):
    layout = committed(tmp_path)
    manifest = json.loads(layout.manifest_file.read_text())
    assert manifest["commit_id"] == "c1" and manifest["run_id"] == "manual__1"
    assert set(manifest["files"]) == {"changes", "snapshot"}
    assert manifest["files"]["snapshot"]["bytes"] == 4
    assert manifest["files"]["snapshot"]["path"] == "snapshots/review_id=r/snapshot_date=2026-03-02/citing_works.parquet"
    assert layout.snapshot_file.read_bytes() == b"rows"
    assert not layout.journal_file.exists() and not (layout.staging("manual__1").commit_dir).exists() or \
        list(layout.staging("manual__1").commit_dir.iterdir()) == []
    assert committed_dates(tmp_path, "r") == [DAY] and verify(layout) == []


def test_verify_names_a_file_that_changed_or_vanished_after_the_commit(tmp_path):
    layout = committed(tmp_path)
    layout.snapshot_file.write_bytes(b"ROWS")  # same size, other bytes
    assert verify(layout) == [f"snapshot: {layout.snapshot_file} differs from what the commit wrote"]
    layout.changes_file.unlink()
    assert f"changes: {layout.changes_file} is missing" in verify(layout)


@pytest.mark.parametrize("damage", ["deleted", "truncated", "not an object", "commit pending"])
def test_only_a_date_with_a_valid_manifest_and_no_pending_commit_is_committed(tmp_path, damage, caplog):
    layout = committed(tmp_path)
    committed(tmp_path, DAY + dt.timedelta(days=7), commit_id="c2")
    if damage == "deleted":
        layout.manifest_file.unlink()
    elif damage == "truncated":
        layout.manifest_file.write_text(layout.manifest_file.read_text()[:40])
    elif damage == "not an object":
        layout.manifest_file.write_text("[1, 2]")
    else:
        write_json_atomic({"commit_id": "c9", "files": []}, layout.journal_file)
    with caplog.at_level(logging.WARNING):
        assert committed_dates(tmp_path, "r") == [DAY + dt.timedelta(days=7)]
    assert uncommitted_dates(tmp_path, "r") == [DAY]
    if damage == "truncated":  # a damaged manifest is reported with its path, not silently skipped
        assert str(layout.manifest_file) in caplog.text and "not committed" in caplog.text
    assert pending_dates(tmp_path, "r") == ([DAY] if damage == "commit pending" else [])


def test_read_json_names_a_damaged_file_and_what_to_do(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"watermark": "2026-0')
    with pytest.raises(CorruptFile, match=rf"{path} is not valid JSON .*truncated or edited by hand.*then rerun"):
        read_json(path)
    assert read_json(tmp_path / "missing.json", {"d": 1}) == {"d": 1}


def test_recover_without_a_journal_removes_only_leftover_temp_files_of_published_folders(tmp_path):
    layout = committed(tmp_path)
    leftovers = [layout.snapshot_file.with_name(".citing_works.parquet.123.tmp"),
                 layout.changes_file.with_name(".changes.parquet.c0.bak")]
    for path in leftovers:
        path.write_bytes(b"x")
    staged = layout.staging("manual__2").dir / ".merged.parquet.456.tmp"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"x")  # a live run's temp file: not recovery's business
    assert recover(layout) is None
    assert not any(p.exists() for p in leftovers) and staged.exists()
    assert verify(layout) == []


def test_a_commit_over_a_date_keeps_the_previous_commit_until_its_own_is_whole(tmp_path):
    layout = committed(tmp_path, snapshot=b"old rows")
    committed(tmp_path, snapshot=b"new rows", run_id="manual__2", commit_id="c2")
    assert layout.snapshot_file.read_bytes() == b"new rows"
    assert json.loads(layout.manifest_file.read_text())["commit_id"] == "c2"
    assert not [p for p in layout.snapshot_file.parent.iterdir() if p.name.startswith(".")]  # no backup left
