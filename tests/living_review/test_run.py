"""One run: its timestamp, its staging, begin_run's settling and end_run's tidying."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from include.living_review.config import ReviewConfig
from include.living_review.run import RunContext, begin_run, end_run, run_timestamp
from include.living_review.storage import commit_run, read_lease

REVIEW = ReviewConfig(id="r", title="R", pmid="1", sources=["pubmed"])
MIDNIGHT = dt.datetime(2026, 3, 9, tzinfo=dt.timezone.utc)


def test_a_trigger_without_a_logical_date_is_dated_by_run_after():
    run_after = MIDNIGHT + dt.timedelta(hours=12, minutes=3, seconds=4, microseconds=5)
    assert run_timestamp(None, run_after) == run_after
    assert run_timestamp(MIDNIGHT, run_after) == MIDNIGHT
    with pytest.raises(ValueError, match="neither a logical date nor run_after"):
        run_timestamp(None, None)
    ctx = RunContext.create(REVIEW, "/tmp/x", run_after, "manual__1")
    assert ctx.run_ts == run_after.replace(microsecond=0) and ctx.layout.snapshot_date == run_after.date()


def test_every_task_of_a_run_without_a_logical_date_gets_the_same_timestamp(monkeypatch, tmp_path):
    """dags/_lib/glue.run_context takes the run's run_after, never the task's clock."""
    from dags._lib import glue

    monkeypatch.setattr(glue, "review", lambda review_id: REVIEW)
    monkeypatch.setattr(glue, "data_dir", lambda: str(tmp_path))
    run_after = MIDNIGHT + dt.timedelta(hours=12)
    context = {"logical_date": None, "run_id": "manual__noon", "dag_run": SimpleNamespace(run_after=run_after)}
    first = glue.run_context("r", context)
    later = glue.run_context("r", dict(context))
    assert first.run_ts == later.run_ts == run_after and first.staging == later.staging


def test_begin_run_takes_the_lease_and_clears_other_runs_staging(tmp_path):
    old = RunContext.create(REVIEW, tmp_path, MIDNIGHT, "scheduled__old")
    (old.staging.dir).mkdir(parents=True)
    old.staging.merged.write_bytes(b"left by a failed run")
    ctx = RunContext.create(REVIEW, tmp_path, MIDNIGHT + dt.timedelta(hours=12), "manual__new")
    summary = begin_run(ctx)
    assert summary["stale_staging_removed"] == 1 and not old.staging.dir.exists()
    assert read_lease(ctx.layout)["run_id"] == "manual__new"


def test_end_run_keeps_a_failed_runs_staging_and_drops_a_committed_ones(tmp_path):
    ctx = RunContext.create(REVIEW, tmp_path, MIDNIGHT, "scheduled__1")
    begin_run(ctx)
    ctx.staging.dir.mkdir(parents=True, exist_ok=True)
    ctx.staging.merged.write_bytes(b"x")
    assert end_run(ctx) == {"committed": False, "released": True}
    assert ctx.staging.merged.exists() and read_lease(ctx.layout) is None  # kept for inspection
    begin_run(ctx)
    commit_run(ctx.layout, ctx.staging, [("snapshot", ctx.layout.snapshot_file, b"rows")], {"run_id": ctx.run_id},
               commit_id="c1")
    assert end_run(ctx) == {"committed": True, "released": True} and not ctx.staging.dir.exists()
