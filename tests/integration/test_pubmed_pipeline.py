"""Issue 2 end to end: PubMed cited-by -> validated Parquet snapshot -> email and Slack digest.

Real DAGs through ``dag.test()``, a fake E-utilities server, a real aiosmtpd SMTP server
and a local Slack webhook, all on 127.0.0.1.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from include.living_review.digest.send import digest_status
from include.living_review.storage import Layout
from tests.fakes.corpus import REVIEW, Paper, seed_corpus
from tests.fakes.stack import LocalStack
from tests.integration.conftest import apply_env, write_config

pytestmark = pytest.mark.integration
PIPELINE = "living_review__peer_support_mental_health"
DIGEST = "living_review_digest__peer_support_mental_health"
TODAY = dt.datetime.now(dt.timezone.utc).date()
WEEK1, WEEK2 = TODAY - dt.timedelta(days=7), TODAY


def broken_paper() -> Paper:
    """A PubMed record without a title: it must land in quarantine, not vanish."""
    return Paper(title="", authors=[("Nobody", "N")], journal_abbrev="J Broken", journal="J Broken", year=2025,
                 pmid="39000001", pmcid="PMC39000001", doi="10.9999/broken.1")


def new_paper() -> Paper:
    return Paper(title="Peer support workers in crisis lines: a mixed-methods evaluation.",
                 authors=[("Okafor", "C"), ("Lindqvist", "A"), ("Mehta", "R"), ("Brown", "T")],
                 journal_abbrev="BMC Psychiatry", journal="BMC psychiatry", year=TODAY.year, month=TODAY.month,
                 day=1, volume="26", issue="1", pages="101", pmid="41000001", pmcid="PMC12000001",
                 doi="10.1186/s12888-026-00001-1", pub_types=["Journal Article", "Randomized Controlled Trial"])


@pytest.fixture
def stack(tmp_path, monkeypatch):
    papers = seed_corpus() + [broken_paper()]
    with LocalStack(papers, sources=("pubmed",)) as local:
        apply_env(monkeypatch, local.env())
        config = write_config(tmp_path / "reviews.yaml", [{
            "id": "peer-support-mental-health", "title": REVIEW["title"], "doi": REVIEW["doi"],
            "pmid": REVIEW["pmid"], "pmcid": REVIEW["pmcid"], "sources": ["pubmed"],
            "digest": {"email": ["maintainer@example.org"], "slack": True}}])
        monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config))
        yield local


def snapshot(runner, day) -> pd.DataFrame:
    return pq.read_table(Layout.of(runner.data_dir, "peer-support-mental-health", day).snapshot_file).to_pandas()


def test_pubmed_end_to_end(stack, runner):
    eutils = stack.fakes["pubmed"]

    # -- week 1: the baseline --------------------------------------------------------
    run = runner.run(PIPELINE, WEEK1)
    assert runner.task_states(run) == {t: "success" for t in ("begin_run", "fetch_pubmed", "fetch_references", "merge",
                                                              "enrich", "validate", "publish_snapshot", "end_run")}
    layout = Layout.of(runner.data_dir, "peer-support-mental-health", WEEK1)
    works = snapshot(runner, WEEK1)
    seeds = seed_corpus()
    assert sorted(works["pmid"]) == sorted(p.pmid for p in seeds)
    assert works["work_id"].is_unique
    first = works.set_index("pmid").loc["39991198"]
    assert first["work_id"] == "doi:10.3389/fpsyg.2024.1470758"
    assert first["title"] == "Mental health literacy among older adults in Shanghai: a descriptive qualitative study."
    assert list(first["authors"]) == ["Xu R", "Jing M", "Zhang A", "Zha L", "Wang Y", "Wang A"]
    assert first["journal_abbrev"] == "Front Psychol" and first["publication_year"] == 2025
    assert first["pmcid"] == "PMC11842349" and list(first["sources"]) == ["pubmed"]
    translated = works.set_index("pmid").loc["39694049"]
    assert bool(translated["title_is_translated"]) and not translated["title"].startswith("[")
    # the reference lists carry the review's own ids: they must never become a work
    assert REVIEW["pmid"] not in set(works["pmid"]) and REVIEW["doi"] not in set(works["doi"].dropna())

    rejected = pq.read_table(layout.quarantine_file).to_pylist()
    assert [r["work_id"] for r in rejected] == ["doi:10.9999/broken.1"]
    assert "title_not_null" in rejected[0]["failed_expectations"]
    assert "39000001" in rejected[0]["raw_payload"]

    manifest = json.loads(layout.manifest_file.read_text())
    assert manifest["counts"]["published"] == 20 and manifest["counts"]["quarantined"] == 1
    assert manifest["sources"]["pubmed"]["requests"] == 2  # 1 elink + ceil(21/200) efetch
    assert manifest["baseline"] is True and manifest["partial"] is False

    runner.run(DIGEST, WEEK1)
    assert len(stack.smtp.messages) == 1 and len(stack.slack.payloads) == 1
    email = stack.smtp.messages[0].message
    assert email["Subject"] == (f"Peer Support in Mental Health: Literature Review: now tracking 20 citing papers "
                                f"(baseline, week of {(WEEK1 - dt.timedelta(days=WEEK1.weekday())).isoformat()})")
    assert stack.smtp.messages[0].rcpt_tos == ["maintainer@example.org"]
    html = email.get_body(("html",)).get_content()
    assert "Mental health literacy among older adults in Shanghai" in html
    assert email.get_body(("plain",)).get_content().count("https://doi.org/") >= 1
    assert digest_status(layout)["status"] == "sent"

    # -- the same week again: same snapshot, no second digest -----------------------
    before = pq.read_table(layout.snapshot_file)
    runner.run(PIPELINE, WEEK1)
    runner.run(DIGEST, WEEK1)
    assert pq.read_table(layout.snapshot_file).equals(before)
    assert len(stack.smtp.messages) == 1 and len(stack.slack.payloads) == 1

    # -- week 2: one new citing paper ------------------------------------------------
    eutils.requests.clear()
    stack.set_papers(stack.papers + [new_paper()])
    runner.run(PIPELINE, WEEK2)
    efetches = [r for r in eutils.requests if r.path.endswith("efetch.fcgi")]
    # only PMIDs missing from the last snapshot are fetched: the new one and the quarantined one
    assert sorted(efetches[0].param("id").split(",")) == ["39000001", "41000001"]
    assert len(efetches) == 1
    week2 = snapshot(runner, WEEK2)
    week2_new = week2[week2["first_seen"] == pd.Timestamp(dt.datetime.combine(WEEK2, dt.time()), tz="UTC")]
    assert list(week2_new["pmid"]) == ["41000001"]
    assert len(week2) == 21

    runner.run(DIGEST, WEEK2)
    assert len(stack.smtp.messages) == 2 and len(stack.slack.payloads) == 2
    second = stack.smtp.messages[1].message
    assert "1 new citing paper" in second["Subject"]
    assert "Peer support workers in crisis lines" in second.get_body(("html",)).get_content()
    assert "Mental health literacy" not in second.get_body(("html",)).get_content()
    slack_text = json.dumps(stack.slack.payloads[1])
    assert "Peer support workers in crisis lines" in slack_text

    # -- analysts read every partition with pandas and DuckDB ------------------------
    frame = pd.read_parquet(runner.data_dir / "snapshots")
    assert set(frame["review_id"].astype(str)) == {"peer-support-mental-health"}
    assert sorted(frame["snapshot_date"].astype(str).unique()) == [WEEK1.isoformat(), WEEK2.isoformat()]
    counts = duckdb.sql(
        f"select snapshot_date, count(*) from read_parquet('{runner.data_dir}/snapshots/**/*.parquet', "
        "hive_partitioning=true) group by 1 order by 1").fetchall()
    assert [c for _, c in counts] == [20, 21]
