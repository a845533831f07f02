"""Which runs are committed: the dates readers in this project trust, and the commit a run builds on.

A date is committed when its ``manifest.json`` (the commit record, written last by
:func:`include.living_review.storage.commit.commit_run`) parses, its snapshot exists and
no commit of it is pending (a ``.commit.json`` journal that recovery has not settled).
"""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from include.living_review.storage.atomic import CorruptFile, read_json
from include.living_review.storage.layout import _DATE_DIR, Layout
from include.living_review.storage.paths import data_path

log = logging.getLogger(__name__)


def pending_dates(data_dir: str | Path | Any, review_id: str) -> list[dt.date]:
    """Dates with a commit in progress (a journal), which recovery must settle."""
    root = data_path(data_dir) / "runs" / f"review_id={review_id}"
    if not root.is_dir():
        return []
    return sorted(dt.date.fromisoformat(m.group(1)) for child in root.iterdir()
                  if (m := _DATE_DIR.match(child.name)) and (child / ".commit.json").exists())


def committed_manifest(layout: Layout) -> dict[str, Any] | None:
    """The date's manifest when its run is committed, else None (missing, damaged or mid-commit)."""
    if layout.journal_file.exists():
        return None
    try:
        manifest = read_json(layout.manifest_file)
    except CorruptFile as exc:
        log.warning("%s; snapshot_date=%s is treated as not committed", exc, layout.snapshot_date)
        return None
    if not isinstance(manifest, dict) or not layout.snapshot_file.exists():
        return None
    return manifest


def committed_dates(data_dir: str | Path | Any, review_id: str) -> list[dt.date]:
    """Dates whose run is committed: a manifest that parses, its snapshot, no commit pending."""
    base = data_path(data_dir)
    layout = Layout(base, review_id, dt.date.min)
    return [day for day in layout.all_dates_on_disk() if committed_manifest(layout.on(day)) is not None]


def uncommitted_dates(data_dir: str | Path | Any, review_id: str) -> list[dt.date]:
    """Dates with a snapshot folder but no committed run (a deleted or damaged manifest)."""
    base = data_path(data_dir)
    layout = Layout(base, review_id, dt.date.min)
    committed = set(committed_dates(base, review_id))
    return [day for day in layout.all_dates_on_disk() if day not in committed]


def previous_commit(layout: Layout) -> Layout | None:
    """The latest committed snapshot strictly before this date (the change feed's baseline)."""
    earlier = [d for d in committed_dates(layout.data_dir, layout.review_id) if d < layout.snapshot_date]
    return layout.on(earlier[-1]) if earlier else None


def base_commit(layout: Layout) -> Layout | None:
    """The latest committed snapshot up to and including this date: the state a run builds on.

    A second run on the same date carries first-seen dates and computes its events from
    the first run's commit, so it announces only what changed since then.
    """
    upto = [d for d in committed_dates(layout.data_dir, layout.review_id) if d <= layout.snapshot_date]
    return layout.on(upto[-1]) if upto else None
