"""One run of one review: who, when, where its files go, and who may write its date.

Every task of a run builds the same :class:`RunContext` from the DAG run: the review,
the run id and **one** run timestamp (the logical date, or the run's ``run_after`` for a
trigger without one), never the task's own clock. :func:`begin_run` opens the run:
it takes the date's lease (a second run of the same review and date fails at once,
naming the holder) and settles what an earlier, killed run left. :func:`end_run`
releases the lease and removes the run's staging once it is committed.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include.living_review import settings
from include.living_review.config import ReviewConfig
from include.living_review.storage import (
    Layout,
    PartitionLocked,
    Staging,
    committed_manifest,
    date_lock,
    hold_lease,
    is_remote,
    pending_dates,
    recover,
    release_lease,
    run_key,
    uncommitted_dates,
)

log = logging.getLogger(__name__)


class SourceFailed(RuntimeError):
    """A source could not be read (or failed its health check); other sources still publish."""


class PublishBlocked(RuntimeError):
    """Data quality is too poor to publish; the last good snapshot stays published."""


@dataclass(frozen=True)
class RunContext:
    """Who and when: one review, one run, one timestamp, the run's own staging folder."""

    review: ReviewConfig
    layout: Layout
    run_id: str
    run_ts: dt.datetime
    staging: Staging

    @classmethod
    def create(cls, review: ReviewConfig, data_dir: str | Path | Any, run_ts: dt.datetime, run_id: str) -> RunContext:
        run_ts = run_ts.astimezone(dt.timezone.utc).replace(microsecond=0)
        layout = Layout.of(data_dir, review.id, run_ts.date())
        return cls(review, layout, run_id, run_ts, layout.staging(run_id))

    @property
    def run_key(self) -> str:
        return run_key(self.run_id)

    def hold(self, task: str = "") -> None:
        """Take or renew the date's lease for this run (every task calls this first)."""
        hold_lease(self.layout, self.run_id, ttl_seconds=settings.RUN_LEASE_TTL_SECONDS, task=task)


def run_timestamp(logical_date: dt.datetime | None, run_after: dt.datetime | None) -> dt.datetime:
    """The run's one timestamp: its logical date, else when it was set to run (a manual trigger)."""
    when = logical_date or run_after
    if when is None:
        raise ValueError("the DAG run has neither a logical date nor run_after; cannot date the snapshot")
    return when


def begin_run(ctx: RunContext) -> dict[str, Any]:
    """Take the lease, settle interrupted commits of this review, clear other runs' staging."""
    ctx.hold("begin_run")
    settled = {}
    for day in sorted(set(pending_dates(ctx.layout.data_dir, ctx.review.id)) | {ctx.layout.snapshot_date}):
        layout = ctx.layout.on(day)
        try:
            with date_lock(layout):
                action = recover(layout)
        except PartitionLocked:
            log.info("snapshot_date=%s is being written by another process; left for it to settle", day)
            continue
        if action:
            settled[day.isoformat()] = action
    for day in uncommitted_dates(ctx.layout.data_dir, ctx.review.id):
        log.warning("snapshot_date=%s of %s has a snapshot but no valid manifest, so it is not committed: "
                    "the pipeline and the digest ignore it, and the changes it held are announced by the next "
                    "committed run. Rerun that date to republish it, or delete its folders under %s",
                    day, ctx.review.id, ctx.layout.data_dir)
    removed = _clear_stale_staging(ctx)
    log.info("run %s of %s for %s begins (run timestamp %s); settled %s; removed %d stale staging folder(s)",
             ctx.run_id, ctx.review.id, ctx.layout.snapshot_date, ctx.run_ts.isoformat(), settled or "nothing",
             removed)
    return {"run_id": ctx.run_id, "run_timestamp": ctx.run_ts.isoformat(), "recovered": settled,
            "stale_staging_removed": removed}


def _clear_stale_staging(ctx: RunContext) -> int:
    """Staging of earlier runs of this date: their run is over (this one holds the lease)."""
    root = ctx.layout.staging_root
    if not root.is_dir():
        return 0
    removed = 0
    for child in root.iterdir():
        if child.name.startswith("run=") and child.name != ctx.staging.dir.name:
            _remove_tree(child)
            removed += 1
        elif child.is_file():  # staging of the layout before runs had their own folder
            with contextlib.suppress(OSError):
                child.unlink()
    return removed


def _remove_tree(path: Any) -> None:
    with contextlib.suppress(OSError):
        if is_remote(path):
            path.fs.rm(path.path, recursive=True)
        else:
            shutil.rmtree(path)


def end_run(ctx: RunContext) -> dict[str, Any]:
    """Release the lease; drop the run's staging when its commit is the published one."""
    manifest = committed_manifest(ctx.layout)
    committed = bool(manifest and manifest.get("run_id") == ctx.run_id)
    if committed and not settings.KEEP_STAGING:
        _remove_tree(ctx.staging.dir)
    released = release_lease(ctx.layout, ctx.run_id)
    log.info("run %s of %s for %s ends: %s; lease %s", ctx.run_id, ctx.review.id, ctx.layout.snapshot_date,
             "committed, staging removed" if committed else "not committed, staging kept for inspection",
             "released" if released else "was not held")
    return {"committed": committed, "released": released}
