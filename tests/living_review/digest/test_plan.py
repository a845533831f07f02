"""Snapshot diffs, works that stop being reported, quarantine release, and digest batching per channel.

Runs the pipeline's own step functions (the same ones the DAG tasks call) against a
fake E-utilities server, without Airflow, so several weekly runs stay fast.
"""
from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import pytest

from include.living_review import pipeline
from include.living_review.config import ReviewConfig
from include.living_review.digest.send import send_digest
from include.living_review.storage import Layout, write_parquet_atomic
from include.living_review.sources.pubmed import PubMedClient
from tests.fakes.channels import RecordingChannel
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
    layout1 = Layout.of(tmp_path, conf.id, week1)
    assert [r["work_id"] for r in pq.read_table(layout1.quarantine_file).to_pylist()] == ["doi:10.9999/untitled.2"]
    changes1 = pq.read_table(layout1.changes_file).to_pylist()
    assert {c["change"] for c in changes1} == {"added"} and len(changes1) == 20

    gone = eutils.papers[0]
    fixed = untitled()
    fixed.title = "A now-titled record about peer support in mental health."
    eutils.papers = eutils.papers[1:-1] + [fixed]
    summary = run(conf, tmp_path, week2, eutils.url)
    layout2 = Layout.of(tmp_path, conf.id, week2)
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
    staged = pq.read_table(ctx.staging.validated)
    write_parquet_atomic(staged.slice(0, 10), ctx.staging.validated)  # 20 -> 10 rows
    with pytest.raises(pipeline.PublishBlocked, match="shrink from 20 to 10"):
        pipeline.publish(ctx)
    assert not Layout.of(tmp_path, conf.id, week2).snapshot_file.exists()
    assert pq.read_table(Layout.of(tmp_path, conf.id, week1).snapshot_file).num_rows == 20


def test_weekly_digest_batches_daily_runs_without_missing_or_repeating(eutils, tmp_path):
    conf = review(frequency="weekly")
    days = [TODAY - dt.timedelta(days=n) for n in (7, 6, 3, 0)]
    extra = [Paper(title=f"Peer support study number {i} in community mental health services.",
                   authors=[("Author", "A")], journal_abbrev="J Peer", journal="J Peer", year=2026,
                   pmid=str(41000010 + i), pmcid=f"PMC{41000010 + i}", doi=f"10.5555/peer.{i}") for i in range(3)]

    email = RecordingChannel("email")
    run(conf, tmp_path, days[0], eutils.url)
    send_digest(conf, tmp_path, days[0], [email], today=TODAY)
    assert len(email.sent) == 1 and email.sent[0].baseline

    statuses = []
    for day, paper in zip(days[1:], extra):
        eutils.papers = eutils.papers + [paper]
        run(conf, tmp_path, day, eutils.url)
        section = send_digest(conf, tmp_path, day, [email], today=TODAY)
        statuses.append(section["channels"]["email"].get("reason") or section["channels"]["email"]["status"])
    # days -6 and -3 are batched; day 0 (a week after the baseline) announces all three, once
    assert [s.split(":")[0] for s in statuses] == ["batched", "batched", "sent"]
    assert len(email.sent) == 2
    assert sorted(email.sent[1].work_ids) == sorted(f"doi:10.5555/peer.{i}" for i in range(3))
    again = send_digest(conf, tmp_path, days[-1], [email], today=TODAY)
    assert len(email.sent) == 2 and again["channels"]["email"]["status"] == "sent"
    assert again["channels"]["email"]["by_this_attempt"] is False


def test_backfilled_weeks_never_send(eutils, tmp_path):
    conf = review()
    old = TODAY - dt.timedelta(days=30)
    run(conf, tmp_path, old, eutils.url)
    email = RecordingChannel("email")
    section = send_digest(conf, tmp_path, old, [email], today=TODAY)
    assert email.sent == [] and section["channels"]["email"]["reason"].startswith("backfill")
    # ... and its events are recorded as not sent: the next regular run with nothing new sends nothing
    run(conf, tmp_path, TODAY - dt.timedelta(days=1), eutils.url)
    assert send_digest(conf, tmp_path, TODAY - dt.timedelta(days=1), [email], today=TODAY)["status"] == "skipped"
    assert email.sent == []
    # ... and a new paper makes the channel's first digest: a baseline (it never delivered before)
    eutils.papers = eutils.papers + [Paper(title="Peer support after a backfill: a new citing study.",
                                           authors=[("New", "A")], journal_abbrev="J Peer", journal="J Peer",
                                           year=2026, pmid="41000099", pmcid="PMC41000099",
                                           doi="10.5555/peer.99")]
    run(conf, tmp_path, TODAY, eutils.url)
    send_digest(conf, tmp_path, TODAY, [email], today=TODAY)
    assert len(email.sent) == 1 and email.sent[0].baseline


# -- channels are independent ------------------------------------------------------------
def new(n: int) -> Paper:
    return Paper(title=f"Peer support channels study {n}: outcomes in community services.",
                 authors=[("Author", "A")], journal_abbrev="J Peer", journal="J Peer", year=2026,
                 pmid=str(41000200 + n), pmcid=f"PMC{41000200 + n}", doi=f"10.5555/channel.{n}")


def test_a_refusing_channel_fails_the_step_after_the_others_delivered(eutils, tmp_path):
    from include.living_review.digest.send import DigestNotDelivered

    conf = review()
    email, slack = RecordingChannel("email"), RecordingChannel("slack")
    run(conf, tmp_path, TODAY, eutils.url)
    slack.refuse()
    with pytest.raises(DigestNotDelivered, match=r"not delivered on slack .*Delivered on email, which will not "
                                                 r"be sent again"):
        send_digest(conf, tmp_path, TODAY, [slack, email], today=TODAY)  # slack first: email still goes
    assert len(email.sent) == 1 and slack.sent == []
    section = send_digest(conf, tmp_path, TODAY, [slack, email], today=TODAY)  # the retry
    assert len(email.sent) == 1 and len(slack.sent) == 1
    assert slack.sent[0].work_ids == email.sent[0].work_ids
    assert {k: v["status"] for k, v in section["channels"].items()} == {"email": "sent", "slack": "sent"}


def test_an_uncertain_channel_is_never_resent_until_resolved(eutils, tmp_path):
    from include.living_review.digest.delivery import DeliveryLedger
    from include.living_review.storage import Layout

    conf = review()
    email = RecordingChannel("email")
    day1, day2 = TODAY - dt.timedelta(days=7), TODAY
    run(conf, tmp_path, day1, eutils.url)
    send_digest(conf, tmp_path, day1, [email], today=TODAY)  # the baseline
    eutils.papers = eutils.papers + [new(1)]
    run(conf, tmp_path, day2, eutils.url)
    email.lose_answer()
    with pytest.raises(Exception, match="answer was lost"):
        send_digest(conf, tmp_path, day2, [email], today=TODAY)
    again = send_digest(conf, tmp_path, day2, [email], today=TODAY)  # the retry
    assert len(email.sent) == 2 and again["channels"]["email"]["status"] == "uncertain"
    key = again["channels"]["email"]["key"]
    DeliveryLedger(Layout.of(tmp_path, conf.id, day2).ledger_file).resolve(key, "email", delivered=False,
                                                                          note="checked: never arrived")
    resent = send_digest(conf, tmp_path, day2, [email], today=TODAY)
    assert len(email.sent) == 3 and email.sent[2].work_ids == email.sent[1].work_ids
    assert resent["channels"]["email"]["status"] == "sent"


def test_a_data_dir_from_before_the_event_log_does_not_reannounce_its_history(eutils, tmp_path):
    """Manifests without event files and an all-channel watermark (state.json): only later news is sent."""
    import json

    from include.living_review.storage import Layout

    conf = review()
    day1, day2 = TODAY - dt.timedelta(days=7), TODAY
    run(conf, tmp_path, day1, eutils.url)
    layout1 = Layout.of(tmp_path, conf.id, day1)
    manifest = json.loads(layout1.manifest_file.read_text())
    for name in manifest.pop("event_files"):  # as a 1.0 data dir has it: no event log
        (layout1.events_dir / name).unlink()
    layout1.manifest_file.write_text(json.dumps(manifest))
    state = layout1.ledger_file.with_name("state.json")
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"watermark": manifest["run_timestamp"]}))
    eutils.papers = eutils.papers + [new(2)]
    run(conf, tmp_path, day2, eutils.url)
    email = RecordingChannel("email")
    send_digest(conf, tmp_path, day2, [email], today=TODAY)
    assert [d.work_ids for d in email.sent] == [("doi:10.5555/channel.2",)] and not email.sent[0].baseline


@pytest.mark.parametrize(("email", "slack", "smtp_conn", "slack_conn", "expected"), [
    (True, True, True, True, ["email", "slack"]),
    (True, True, False, True, ["slack", "outbox"]),
    (True, True, True, False, ["email", "outbox"]),
    (True, True, False, False, ["outbox"]),  # one outbox for both
    (False, True, True, True, ["slack"]),
    (False, False, True, True, []),
])
def test_the_channels_of_a_review(tmp_path, email, slack, smtp_conn, slack_conn, expected):
    from include.living_review.digest.channels import channels_for

    conf = review() if email else ReviewConfig(id="r", title="R", pmid="1", digest={"email": [], "slack": slack})
    if email and not slack:
        conf = review(slack=False)
    elif email:
        conf = review(slack=slack)
    channels = channels_for(conf, smtp=(lambda m: "ok") if smtp_conn else None,
                            slack=(lambda p: "ok") if slack_conn else None, outbox_dir=tmp_path)
    assert [c.name for c in channels] == expected
