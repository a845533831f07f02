"""``kill -9`` at every step of the run commit, on a new date and on a rerun with changed content.

``pipeline.publish`` runs in a child process with staged inputs written here; the
commit's test seam (``storage.commit.after_step``) sends the child SIGKILL right after
a chosen step: after each file is rendered into staging, after the journal, after each
backup and each move into place, after the manifest (the commit point). Then, as an
analyst and the next run would:

- every file pandas and DuckDB read with the documented globs is whole, and the
  snapshot they read is either the previous commit's or the new one's, never a mix
  of rows;
- ``published_dates`` trusts only committed dates;
- the next run settles the commit before anything else: afterwards every file matches
  its manifest entry (``storage.verify``) and the published snapshot is the new one,
  or, when the staged copies are gone, the previous one, rolled back. The published
  snapshot is never lost.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from include.living_review import pipeline
from include.living_review.storage import Layout, published_dates, verify
from include.living_review.storage import pending_dates
from tests.reliability.test_storage_faults import DAY1, DAY2, REVIEW_CONF, context, publish_day, rows, stage

ROOT = Path(__file__).resolve().parents[2]
# The steps of a commit of five files (quarantine, changes, events, coverage, snapshot).
NEW_DATE_STEPS = ["render:rejected.parquet", "render:citing_works.parquet", "journal", "move:rejected.parquet",
                  "move:changes.parquet", "move:coverage.parquet", "move:citing_works.parquet", "manifest"]
RERUN_STEPS = ["journal", "backup:rejected.parquet", "move:rejected.parquet", "backup:citing_works.parquet",
               "move:citing_works.parquet", "manifest", "finish"]

CHILD = textwrap.dedent("""
    import datetime as dt, os, signal, sys
    from include.living_review import pipeline
    from include.living_review.config import ReviewConfig
    from include.living_review.storage import commit

    data_dir, day, kill_at = sys.argv[1], dt.date.fromisoformat(sys.argv[2]), sys.argv[3]

    def after_step(step):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    commit.after_step = after_step
    review = ReviewConfig(id="peer-support-mental-health", title="T", doi="10.2196/15572", pmid="32357127",
                          sources=["pubmed"])
    ctx = pipeline.RunContext.create(review, data_dir, dt.datetime.combine(day, dt.time(), dt.timezone.utc),
                                     "manual__reliability")
    pipeline.publish(ctx)
""")


def publish_killed_at(data_dir: Path, day: dt.date, step: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHILD, str(data_dir), day.isoformat(), step], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, (step, done.returncode, done.stderr.decode()[-2000:])
    return done.returncode


def read_as_analysts_do(data_dir: Path) -> dict[str, Any]:
    """The documented reads: pandas over a table folder, DuckDB over its glob. Any torn file raises here."""
    out: dict[str, Any] = {}
    for table in ("snapshots", "quarantine", "changes", "events"):
        if not (data_dir / table).exists():
            continue
        out[table] = pd.read_parquet(data_dir / table)
        glob = str(data_dir / table / "**" / "*.parquet")
        out[f"{table}_duckdb"] = duckdb.sql(
            f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)").fetchall()[0][0]
        assert out[f"{table}_duckdb"] == len(out[table])
    return out


def snapshot_rows(data_dir: Path, day: dt.date) -> list[str]:
    frame = read_as_analysts_do(data_dir)["snapshots"]
    return sorted(frame[frame["snapshot_date"].astype(str) == day.isoformat()]["title"].unique())


OLD_TITLE, NEW_TITLE = "Peer support outcomes", "Peer support outcomes, revised"


def setup_dates(data_dir: Path, target: str) -> tuple[dt.date, list[dict], list[dict]]:
    old = rows(30, DAY1, title=OLD_TITLE)
    publish_day(data_dir, DAY1, old)
    day = DAY2 if target == "new date" else DAY1
    new = rows(45, day, title=NEW_TITLE)
    stage(context(data_dir, day), new)
    return day, old, new


CASES = [("new date", step) for step in NEW_DATE_STEPS] + [("rerun", step) for step in RERUN_STEPS]


@pytest.mark.parametrize(("target", "step"), CASES, ids=[f"{t}-after-{s}" for t, s in CASES])
def test_kill_9_after_each_step_then_readers_and_the_next_run(tmp_path, target, step):
    data_dir = tmp_path / "data"
    day, old, new = setup_dates(data_dir, target)
    old_titles = sorted({r["title"] for r in old})
    new_titles = sorted({r["title"] for r in new})

    publish_killed_at(data_dir, day, step)

    # -- what a reader sees right after the kill -------------------------------------
    read_as_analysts_do(data_dir)  # every file whole: a torn one would raise here
    if target == "new date":
        assert snapshot_rows(data_dir, DAY1) == old_titles  # the previous date is untouched
        if step != "manifest":
            assert published_dates(data_dir, REVIEW_CONF.id) == [DAY1]  # the new date is not committed
    else:
        assert snapshot_rows(data_dir, DAY1) in (old_titles, new_titles)  # one commit's rows, never a mix
    rendering = step.startswith("render:")
    assert pending_dates(data_dir, REVIEW_CONF.id) == ([] if rendering or step == "finish" else [day])

    # -- the next attempt settles it before anything else ----------------------------
    begin = pipeline.begin_run(context(data_dir, day))
    expected = {"manifest": "finished"}.get(step, None if rendering or step == "finish" else "rolled forward")
    assert begin["recovered"] == ({day.isoformat(): expected} if expected else {})
    assert pending_dates(data_dir, REVIEW_CONF.id) == []
    layout = Layout.of(data_dir, REVIEW_CONF.id, day)
    committed_new = not rendering
    assert verify(layout) == ([] if committed_new or target == "rerun" else [
        f"snapshot_date={day} is not committed (no valid manifest, or a commit pending)"])
    assert published_dates(data_dir, REVIEW_CONF.id) == sorted({DAY1, day} if committed_new else {DAY1})
    if committed_new:
        assert snapshot_rows(data_dir, day) == new_titles
    elif target == "rerun":
        assert snapshot_rows(data_dir, day) == old_titles
    summary = pipeline.publish(context(data_dir, day))  # the task's retry publishes the same rows again
    assert summary["works"] == len(new)
    assert verify(layout) == []
    assert snapshot_rows(data_dir, day) == new_titles
    assert pq.read_table(layout.snapshot_file).num_rows == len(new)
    assert not [p for p in data_dir.rglob(".*") if p.suffix in (".tmp", ".bak") and "staging" not in p.parts]
    # the event log holds each change once, however many attempts committed
    manifest = json.loads(layout.manifest_file.read_text())
    events = pd.concat([pd.read_parquet(layout.events_dir / name) for name in manifest["event_files"]])
    assert not events["event_id"].duplicated().any()


@pytest.mark.parametrize("step", ["move:rejected.parquet", "move:coverage.parquet"])
def test_a_killed_rerun_whose_staging_is_gone_rolls_back_to_the_previous_commit(tmp_path, step):
    """Without its staged copies a commit cannot go forward: the backups put the previous commit back.

    (Killed after the last move, a commit rolls forward from what is in place, staging or not.)
    """
    import shutil

    data_dir = tmp_path / "data"
    day, old, _ = setup_dates(data_dir, "rerun")
    layout = Layout.of(data_dir, REVIEW_CONF.id, day)
    manifest_before = layout.manifest_file.read_bytes()
    publish_killed_at(data_dir, day, step)
    shutil.rmtree(layout.staging_root)  # an operator cleaned staging up, or it was on a lost disk

    begin = pipeline.begin_run(context(data_dir, day))  # the task's retry
    assert begin["recovered"] == {day.isoformat(): "rolled back"}
    assert layout.manifest_file.read_bytes() == manifest_before
    assert verify(layout) == []  # every file is the previous commit's again, byte for byte
    assert snapshot_rows(data_dir, day) == sorted({r["title"] for r in old})
    assert published_dates(data_dir, REVIEW_CONF.id) == [DAY1]
