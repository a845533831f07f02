"""Snapshot diffs, works that stop being reported, quarantine release, and digest batching.

Runs the pipeline's own step functions (the same ones the DAG tasks call) against a
fake E-utilities server, without Airflow, so several weekly runs stay fast.
"""
from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import pytest

from include.living_review import pipeline
from include.living_review.config import ReviewConfig
from include.living_review.digest_job import plan_digest, record_result
from include.living_review.sources.pubmed import PubMedClient
from tests.fakes.corpus import REVIEW, Paper, seed_corpus
from tests.fakes.eutils import FakeEutils

TODAY = dt.datetime.now(dt.timezone.utc).date()


def review(**digest) -> ReviewConfig:
    return ReviewConfig(id="peer-support-mental-health", title=REVIEW["title"], doi=REVIEW["doi"],
                        pmid=REVIEW["pmid"], sources=["pubmed"], digest={"email": ["m@example.org"], **digest})


def run(conf: ReviewConfig, data_dir, day: dt.date, url: str) -> dict:
    ctx = pipeline.RunContext.create(conf, data_dir, dt.datetime.combine(day, dt.time(), dt.timezone.utc),
                                     f"test__{day}")
    pipeline.fetch_source(ctx, "pubmed", PubMedClient(url))
    pipeline.merge_sources(ctx)
    pipeline.enrich_metadata(ctx, None)
    pipeline.validate(ctx)
    return pipeline.publish(ctx)


def untitled() -> Paper:
    return Paper(title="", authors=[("Doe", "J")], journal_abbrev="J Test", journal="J Test", year=2025,
                 pmid="39000002", pmcid="PMC39000002", doi="10.9999/untitled.2")


@pytest.fixture
def eutils():
    with FakeEutils(seed_corpus() + [untitled()]) as fake:
        yield fake


def test_changes_no_longer_reported_and_quarantine_release(eutils, tmp_path):
    conf = review()
    week1, week2 = TODAY - dt.timedelta(days=7), TODAY
    run(conf, tmp_path, week1, eutils.url)
    layout1 = pipeline.Layout.of(tmp_path, conf.id, week1)
    assert [r["work_id"] for r in pq.read_table(layout1.quarantine_file).to_pylist()] == ["doi:10.9999/untitled.2"]
    changes1 = pq.read_table(layout1.changes_file).to_pylist()
    assert {c["change"] for c in changes1} == {"added"} and len(changes1) == 20

    gone = eutils.papers[0]
    fixed = untitled()
    fixed.title = "A now-titled record about peer support in mental health."
    eutils.papers = eutils.papers[1:-1] + [fixed]
    summary = run(conf, tmp_path, week2, eutils.url)
    layout2 = pipeline.Layout.of(tmp_path, conf.id, week2)
    rows = {r["pmid"]: r for r in pq.read_table(layout2.snapshot_file).to_pylist()}
    # the vanished work stays, with last_reported from week 1
    assert gone.pmid in rows
    assert rows[gone.pmid]["last_reported"].date() == week1
    assert rows[eutils.papers[0].pmid]["last_reported"].date() == week2
    # the fixed record left quarantine and was published
    assert pq.read_table(layout2.quarantine_file).num_rows == 0
    assert rows["39000002"]["title"] == "A now-titled record about peer support in mental health."
    changes = {(c["work_id"], c["change"]) for c in pq.read_table(layout2.changes_file).to_pylist()}
    assert changes == {(rows[gone.pmid]["work_id"], "no_longer_reported"), ("doi:10.9999/untitled.2", "added")}
    assert summary["works"] == 21


def test_publish_blocks_when_the_snapshot_would_shrink(eutils, tmp_path, monkeypatch):
    conf = review()
    week1, week2 = TODAY - dt.timedelta(days=7), TODAY
    run(conf, tmp_path, week1, eutils.url)
    ctx = pipeline.RunContext.create(conf, tmp_path, dt.datetime.combine(week2, dt.time(), dt.timezone.utc), "t2")
    pipeline.fetch_source(ctx, "pubmed", PubMedClient(eutils.url))
    pipeline.merge_sources(ctx)
    pipeline.enrich_metadata(ctx, None)
    pipeline.validate(ctx)
    staged = pq.read_table(ctx.staged("validated.parquet"))
    pipeline.write_parquet_atomic(staged.slice(0, 10), ctx.staged("validated.parquet"))  # 20 -> 10 rows
    with pytest.raises(pipeline.PublishBlocked, match="shrink from 20 to 10"):
        pipeline.publish(ctx)
    assert not pipeline.Layout.of(tmp_path, conf.id, week2).snapshot_file.exists()
    assert pq.read_table(pipeline.Layout.of(tmp_path, conf.id, week1).snapshot_file).num_rows == 20


def test_weekly_digest_batches_daily_runs_without_missing_or_repeating(eutils, tmp_path):
    conf = review(frequency="weekly")
    days = [TODAY - dt.timedelta(days=n) for n in (7, 6, 3, 0)]
    extra = [Paper(title=f"Peer support study number {i} in community mental health services.",
                   authors=[("Author", "A")], journal_abbrev="J Peer", journal="J Peer", year=2026,
                   pmid=str(41000010 + i), pmcid=f"PMC{41000010 + i}", doi=f"10.5555/peer.{i}") for i in range(3)]

    run(conf, tmp_path, days[0], eutils.url)
    plan = plan_digest(conf, str(tmp_path), days[0], today=TODAY)
    assert plan.digest is not None and plan.digest.baseline
    record_result(plan, "sent", {"email": "sent"}, advance=True)

    sent = []
    for day, paper in zip(days[1:], extra):
        eutils.papers = eutils.papers + [paper]
        run(conf, tmp_path, day, eutils.url)
        plan = plan_digest(conf, str(tmp_path), day, today=TODAY)
        if plan.digest is None:
            assert plan.reason.startswith("batched")
            record_result(plan, "skipped", {}, advance=False)
        else:
            sent.append(plan.digest)
            record_result(plan, "sent", {"email": "sent"}, advance=True)
    # days -6 and -3 are batched; day 0 (a week after the baseline) announces all three, once
    assert len(sent) == 1
    assert sorted(sent[0].work_ids) == sorted(f"doi:10.5555/peer.{i}" for i in range(3))
    again = plan_digest(conf, str(tmp_path), days[-1], today=TODAY)
    assert again.digest is None and again.reason.startswith("already announced")


def test_backfilled_weeks_never_send(eutils, tmp_path):
    conf = review()
    old = TODAY - dt.timedelta(days=30)
    run(conf, tmp_path, old, eutils.url)
    plan = plan_digest(conf, str(tmp_path), old, today=TODAY)
    assert plan.digest is None and plan.reason.startswith("backfill")
