"""Issue 13, point 3: the review's own included studies are watched for retractions.

The real pipeline and digest DAGs (``dag.test()``) against local fakes that serve the
seed review's reference list (PubMed ``ReferenceList``, Crossref ``reference``,
OpenAlex ``referenced_works``, Europe PMC ``/MED/<pmid>/references``), a real SMTP
server and a Slack sink. Week 1 publishes the included studies; in week 2 one is
retracted: a ``reference_retracted`` event, and both digests open with it, naming the
study, the notice with its link and the word "included". The lists are read once;
week 2 only probes the known studies.
"""
from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from include.living_review.cli import summary_lines
from include.living_review.storage import Layout
from tests.fakes.corpus import REVIEW, included_studies, seed_corpus
from tests.fakes.eutils import notice_pmid
from tests.fakes.stack import LocalStack
from tests.integration.conftest import apply_env, write_config

pytestmark = pytest.mark.integration
PIPELINE = "living_review__peer_support_mental_health"
DIGEST = "living_review_digest__peer_support_mental_health"
TODAY = dt.datetime.now(dt.timezone.utc).date()
WEEK0, WEEK1, WEEK2 = TODAY - dt.timedelta(days=14), TODAY - dt.timedelta(days=7), TODAY
EXTRA_DOI = "10.1001/jama.2015.0001"  # an included study whose reference is not deposited anywhere


def config(tmp_path, **extra) -> object:
    return write_config(tmp_path / "reviews.yaml", [{
        "id": "peer-support-mental-health", "title": REVIEW["title"], "doi": REVIEW["doi"], "pmid": REVIEW["pmid"],
        "pmcid": REVIEW["pmcid"], "sources": ["pubmed", "europepmc", "openalex"], "enrich": ["crossref"],
        "digest": {"email": ["maintainer@example.org"], "slack": True, "backfill_grace_days": 60}, **extra}])


@pytest.fixture
def stack(tmp_path, monkeypatch):
    papers = seed_corpus()[:5]
    studies = included_studies(6)
    for paper in [*papers, *studies]:
        paper.modified = WEEK0 - dt.timedelta(days=60)
    with LocalStack(papers, sources=("pubmed", "europepmc", "openalex", "crossref")) as local:
        local.set_included(studies)
        apply_env(monkeypatch, local.env())
        monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config(tmp_path, included_studies=[EXTRA_DOI])))
        yield local


def run_week(stack, runner, day) -> dict:
    for fake in stack.fakes.values():
        fake.requests.clear()
    stack.fakes["crossref"].single_requests = 0
    states = runner.task_states(runner.run(PIPELINE, day))
    assert set(states.values()) == {"success"}, states
    runner.run(DIGEST, day)
    return json.loads(Layout.of(runner.data_dir, REVIEW["id"], day).manifest_file.read_text())


def test_a_retracted_included_study_opens_the_digest(stack, runner):
    studies = stack.included
    manifest1 = run_week(stack, runner, WEEK1)
    layout1 = Layout.of(runner.data_dir, REVIEW["id"], WEEK1)
    week1 = pq.read_table(layout1.references_file).to_pylist()
    # one row per study, merged from four lists; the configured DOI is watched too
    assert sorted(r["pmid"] for r in week1 if r["pmid"]) == sorted(s.pmid for s in studies)
    assert {tuple(r["listed_by"]) for r in week1 if r["pmid"]} == {("crossref", "europepmc", "openalex", "pubmed")}
    assert [r["listed_by"] for r in week1 if r["doi"] == EXTRA_DOI] == [["config"]]
    assert manifest1["references"]["studies"] == 7 and manifest1["references"]["retracted"] == 0
    assert set(manifest1["references"]["lists"]) == {"pubmed", "crossref", "openalex", "europepmc"}
    assert not any(k.startswith("reference_") for k in manifest1["events"])

    retracted = studies[2]
    retracted.retracted, retracted.modified = True, WEEK2 - dt.timedelta(days=1)
    manifest2 = run_week(stack, runner, WEEK2)
    layout2 = Layout.of(runner.data_dir, REVIEW["id"], WEEK2)
    row = next(r for r in pq.read_table(layout2.references_file).to_pylist() if r["pmid"] == retracted.pmid)
    assert row["is_retracted"] and f"retraction:{notice_pmid(retracted)}" in row["update_notices"]
    assert manifest2["events"].get("reference_retracted") == 1
    # the lists were read once; week 2 only probed the known studies (ceil(6/200) and ceil(6/100))
    pubmed = stack.fakes["pubmed"].requests
    assert not [r for r in pubmed if "efetch" in r.path and REVIEW["pmid"] in (r.param("id") or "")]
    assert len([r for r in pubmed if "esearch" in r.path]) == 2  # the citing works' probe and the studies'
    assert not stack.fakes["europepmc"].requests_to("/references")
    assert stack.fakes["crossref"].single_requests == 0
    assert manifest2["references"]["probe"] == {"pubmed": {"known": 6, "changed": 1},
                                                "crossref": {"known": 6, "changed": 1}}  # the 7th has no record

    summary = summary_lines(REVIEW["id"], WEEK2, runner.data_dir)  # what `make run` prints
    assert "  included   7 studies watched, 1 retracted" in summary
    assert any(line.startswith("  probes     PubMed 0 of 5 known changed (1 req)") for line in summary), summary
    assert any("reference_retracted 1" in line for line in summary if line.startswith("  events")), summary

    emails = [m.message for m in stack.smtp.messages if m.message["X-Living-Review-Digest"]]
    assert len(emails) == 2
    text = emails[1].get_body(("plain",)).get_content()
    html = emails[1].get_body(("html",)).get_content()
    assert "1 included study retracted" in emails[1]["Subject"]
    assert text.index("INCLUDED IN THIS REVIEW") < text.index("Review: ")  # above everything else
    assert f"Retracted (an included study): {retracted.title}" in text
    assert f"https://pubmed.ncbi.nlm.nih.gov/{notice_pmid(retracted)}" in text
    assert html.index("included in this review") < html.index("<h1")
    posts = [p for p in stack.slack.payloads if p.get("blocks")]
    first = json.dumps(posts[-1]["blocks"][0])
    assert "included in this review" in first and retracted.title[:40] in first

    # and a rerun of the digest does not announce it again
    runner.run(DIGEST, WEEK2)
    assert len([m for m in stack.smtp.messages if m.message["X-Living-Review-Digest"]]) == 2


def test_only_the_configured_studies_when_asked(stack, runner, tmp_path, monkeypatch):
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config(tmp_path, included_studies=[stack.included[0].doi],
                                                          included_studies_only=True)))
    manifest = run_week(stack, runner, WEEK1)
    rows = pq.read_table(Layout.of(runner.data_dir, REVIEW["id"], WEEK1).references_file).to_pylist()
    assert [r["doi"] for r in rows] == [stack.included[0].doi] and rows[0]["title"]  # its metadata was fetched
    assert manifest["references"]["lists"] == {}  # no reference list was asked for


def test_a_change_made_while_the_watch_was_down_is_found_when_it_is_back(stack, runner):
    """A failed fetch_references keeps the probe window open from its last good run."""
    from tests.fakes.server import Response

    run_week(stack, runner, WEEK0)
    # week 1: Crossref answers 500 to everything, so the studies' probe fails (enrich, best
    # effort, publishes without it); meanwhile one study is retracted in PubMed only
    retracted = stack.included[4]
    retracted.retracted, retracted.notices_in = True, {"pubmed"}
    retracted.modified = WEEK1 - dt.timedelta(days=3)
    stack.fakes["crossref"].inject(Response(500, {"status": "error"}), path_contains="/works", times=10_000)
    states = runner.task_states(runner.run(PIPELINE, WEEK1))
    assert states["fetch_references"] == "failed" and states["publish_snapshot"] == "success", states
    manifest1 = json.loads(Layout.of(runner.data_dir, REVIEW["id"], WEEK1).manifest_file.read_text())
    assert manifest1["references"]["status"] == "failed"
    assert not manifest1["events"].get("reference_retracted")

    # week 2: Crossref is back; the retraction (dated before week 1's run) is still found
    stack.fakes["crossref"].clear()
    manifest2 = run_week(stack, runner, WEEK2)
    assert manifest2["events"].get("reference_retracted") == 1, manifest2["references"]
    assert manifest2["references"]["window"] == {"since": WEEK0.isoformat(), "until": WEEK2.isoformat()}
    # the lists week 0 read are not read again because week 1 failed
    assert not stack.fakes["europepmc"].requests_to("/references")
    assert set(manifest2["references"]["lists"]) == {"pubmed", "crossref", "openalex", "europepmc"}
