"""Issue 13, point 1: known works are probed for changes every week, at near-minimal cost.

The real pipeline and digest DAGs (``dag.test()``) against local fakes of PubMed,
Europe PMC, OpenAlex and Crossref (as the enricher), a real SMTP server and a Slack
sink. Each fake serves only what its source would show: a retraction that only
PubMed's record of a known work carries, or only Crossref's (Retraction Watch's
``updated-by``), must still be found the next week, and a week with nothing new
costs each probe its minimum: ceil(K/200) PubMed ``esearch`` and ceil(K/100) Crossref
list requests for K known works, and no metadata download at all.
"""
from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from include.living_review.storage import Layout
from tests.fakes.corpus import REVIEW, seed_corpus
from tests.fakes.eutils import notice_pmid
from tests.fakes.stack import LocalStack
from tests.integration.conftest import apply_env, write_config

pytestmark = pytest.mark.integration
PIPELINE = "living_review__peer_support_mental_health"
DIGEST = "living_review_digest__peer_support_mental_health"
TODAY = dt.datetime.now(dt.timezone.utc).date()
WEEK1, WEEK2, WEEK3 = TODAY - dt.timedelta(days=14), TODAY - dt.timedelta(days=7), TODAY
SOURCES = ("pubmed", "europepmc", "openalex", "crossref")


@pytest.fixture
def stack(tmp_path, monkeypatch):
    papers = seed_corpus()
    for paper in papers:
        paper.modified = WEEK1 - dt.timedelta(days=30)  # nothing changes unless a test says so
    with LocalStack(papers, sources=SOURCES) as local:
        apply_env(monkeypatch, local.env())
        config = write_config(tmp_path / "reviews.yaml", [{
            "id": "peer-support-mental-health", "title": REVIEW["title"], "doi": REVIEW["doi"],
            "pmid": REVIEW["pmid"], "pmcid": REVIEW["pmcid"], "sources": ["pubmed", "europepmc", "openalex"],
            "enrich": ["crossref"],
            "digest": {"email": ["maintainer@example.org"], "slack": True, "backfill_grace_days": 60}}])
        monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config))
        yield local


def layout(runner, day) -> Layout:
    return Layout.of(runner.data_dir, "peer-support-mental-health", day)


def run_week(stack, runner, day) -> dict:
    for fake in stack.fakes.values():
        fake.requests.clear()
    stack.fakes["crossref"].single_requests = 0  # week 1 read the review's own reference list (one GET)
    states = runner.task_states(runner.run(PIPELINE, day))
    assert set(states.values()) == {"success"}, states
    runner.run(DIGEST, day)
    return json.loads(layout(runner, day).manifest_file.read_text())


def digests(stack) -> list:
    return [m.message for m in stack.smtp.messages if m.message["X-Living-Review-Digest"]]


def known_ids(runner, day) -> tuple[set[str], set[str]]:
    rows = pq.read_table(layout(runner, day).snapshot_file).to_pylist()
    return ({r["pmid"] for r in rows if r["pmid"] and r["title"]}, {r["doi"] for r in rows if r["doi"] and r["title"]})


@pytest.mark.parametrize("only_in", ["pubmed", "crossref"])
def test_a_retraction_only_one_source_shows_is_found_the_next_week(stack, runner, only_in):
    run_week(stack, runner, WEEK1)
    pmids, dois = known_ids(runner, WEEK1)
    retracted = stack.papers[5]
    retracted.retracted, retracted.notices_in, retracted.modified = True, {only_in}, WEEK2 - dt.timedelta(days=2)
    manifest = run_week(stack, runner, WEEK2)

    rows = {r["pmid"]: r for r in pq.read_table(layout(runner, WEEK2).snapshot_file).to_pylist()}
    work = rows[retracted.pmid]
    assert work["is_retracted"] is True
    notice = f"retraction:{notice_pmid(retracted)}" if only_in == "pubmed" else \
        f"retraction:{retracted.doi.lower()}.retraction"
    assert notice in work["update_notices"]
    changes = {(c["work_id"], c["change"]) for c in pq.read_table(layout(runner, WEEK2).changes_file).to_pylist()}
    assert (work["work_id"], "retracted") in changes
    assert manifest["events"].get("retracted") == 1

    # what it cost: each probe its minimum, and metadata only for the one changed work
    pubmed = stack.fakes["pubmed"].requests
    assert len([r for r in pubmed if "esearch" in r.path]) == -(-len(pmids) // 200)
    efetched = [r.param("id") for r in pubmed if "efetch" in r.path]
    assert efetched == ([retracted.pmid] if only_in == "pubmed" else [])
    assert manifest["sources"]["pubmed"]["probe"]["changed"] == (1 if only_in == "pubmed" else 0)
    crossref = stack.fakes["crossref"].requests
    assert len(crossref) == -(-len(dois) // 100) and stack.fakes["crossref"].single_requests == 0
    assert manifest["enrichment"]["probe"] == {"known": len(dois), "since": WEEK1.isoformat(),
                                               "until": WEEK2.isoformat(), "requests": len(crossref),
                                               "changed": 1 if only_in == "crossref" else 0}

    # and the digest announces it, flagged: the baseline had announced the paper
    (baseline, week2) = digests(stack)
    text = week2.get_body(("plain",)).get_content()
    assert "Retracted or corrected" in text and retracted.title.split(":")[0] in text
    assert f"announced in the digest of {WEEK1.isoformat()}" in text
    assert "no new citing papers, 1 retracted" in week2["Subject"]


def test_a_week_with_nothing_new_costs_each_probe_its_minimum(stack, runner):
    run_week(stack, runner, WEEK1)
    pmids, dois = known_ids(runner, WEEK1)
    manifest = run_week(stack, runner, WEEK2)
    fakes = stack.fakes
    by_kind: dict[str, int] = {}
    for r in fakes["pubmed"].requests:
        by_kind[r.path.rsplit("/", 1)[-1]] = by_kind.get(r.path.rsplit("/", 1)[-1], 0) + 1
    assert by_kind == {"elink.fcgi": 1, "esearch.fcgi": -(-len(pmids) // 200)}  # no efetch
    assert len(fakes["crossref"].requests) == -(-len(dois) // 100)
    assert len(fakes["europepmc"].requests) == 1 and len(fakes["openalex"].requests) == 1
    assert manifest["sources"]["pubmed"]["probe"] == {"known": len(pmids), "since": WEEK1.isoformat(),
                                                      "until": WEEK2.isoformat(), "requests": 1, "changed": 0}
    assert all(manifest["sources"][s]["metadata_requests"] == 0 for s in ("pubmed", "europepmc", "openalex"))
    assert manifest["events"] == {} and len(digests(stack)) == 1  # nothing to announce: no digest

    # a source that failed keeps its window open from its last good run
    manifest3 = run_week(stack, runner, WEEK3)
    assert manifest3["sources"]["pubmed"]["probe"]["since"] == WEEK2.isoformat()
