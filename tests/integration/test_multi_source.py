"""Issue 3 (and the source-health parts of issue 4) end to end: six sources, merged.

The real pipeline and digest DAGs run with ``dag.test()`` against local fakes of all
six APIs, a real SMTP server and a Slack sink. Four weekly runs:
1. baseline: every source, one row per paper with the right ``sources``, Crossref
   enriching an OpenCitations-only work, the coverage ledger and the digest's coverage line;
2. nothing new: zero metadata requests (no efetch, no Crossref), no digest;
3. Europe PMC suddenly returns zero: its task fails the health check, the rest publish,
   its works stay, the manifest says partial;
4. OpenAlex renames a field: its task fails naming the field, the rest publish.
"""
from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from include.living_review.records.ids import normalize_doi
from include.living_review.storage import Layout
from tests.fakes.corpus import REVIEW
from tests.fakes.demo import demo_corpus
from tests.fakes.stack import LocalStack
from tests.integration.conftest import apply_env, write_config

pytestmark = pytest.mark.integration
PIPELINE = "living_review__peer_support_mental_health"
DIGEST = "living_review_digest__peer_support_mental_health"
SOURCES = ["pubmed", "europepmc", "openalex", "opencitations", "semanticscholar", "crossref"]
TODAY = dt.datetime.now(dt.timezone.utc).date()
WEEKS = [TODAY - dt.timedelta(days=7 * n) for n in (3, 2, 1, 0)]
LISTING = ("pubmed", "europepmc", "openalex", "opencitations", "semanticscholar")


@pytest.fixture
def stack(tmp_path, monkeypatch):
    with LocalStack(demo_corpus()) as local:
        apply_env(monkeypatch, local.env())
        config = write_config(tmp_path / "reviews.yaml", [{
            "id": "peer-support-mental-health", "title": REVIEW["title"], "doi": REVIEW["doi"],
            "pmid": REVIEW["pmid"], "pmcid": REVIEW["pmcid"], "sources": SOURCES,
            "digest": {"email": ["maintainer@example.org"], "slack": True, "backfill_grace_days": 60}}])
        monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config))
        yield local


def digests(stack) -> list:
    return [m.message for m in stack.smtp.messages if m.message["X-Living-Review-Digest"]]


def alerts(stack) -> list:
    return [m.message for m in stack.smtp.messages if m.message["Subject"].startswith("[living-review]")]


def layout(runner, day) -> Layout:
    return Layout.of(runner.data_dir, "peer-support-mental-health", day)


def test_six_sources_merged_with_health_checks(stack, runner):
    papers = stack.papers
    expected_union = len(papers)

    # -- 1. baseline ------------------------------------------------------------------
    states = runner.task_states(runner.run(PIPELINE, WEEKS[0]))
    assert set(states.values()) == {"success"}, states
    week = layout(runner, WEEKS[0])
    rows = {r["doi"]: r for r in pq.read_table(week.snapshot_file).to_pylist()}
    assert len(rows) == expected_union
    for paper in papers:
        row = rows[normalize_doi(paper.doi)]
        expected_sources = sorted(s for s in paper.visible_in if s in LISTING
                                  and (s != "pubmed" or (paper.pmid and paper.pmcid)))
        assert sorted(row["sources"]) == expected_sources, paper.title
    only_oc = rows["10.1176/appi.ps.20250001"]
    assert only_oc["sources"] == ["opencitations"]
    assert only_oc["title"] == "Peer support specialists in emergency departments: a scoping review."
    assert only_oc["journal"] and only_oc["publication_year"] == 2025  # filled in by Crossref
    assert only_oc["work_id"] == "doi:10.1176/appi.ps.20250001"
    seed = rows["10.3389/fpsyg.2024.1470758"]
    assert seed["work_id"] == "doi:10.3389/fpsyg.2024.1470758"
    assert {"pubmed", "europepmc", "openalex", "semanticscholar"} <= set(seed["sources"])
    assert dict(seed["source_ids"])["pubmed"] == "39991198"

    coverage = {r["source"]: r for r in pq.read_table(week.coverage_file).to_pylist()}
    assert set(coverage) == set(SOURCES)
    assert all(coverage[s]["status"] == "ok" for s in SOURCES)
    assert coverage["opencitations"]["unique_to_source"] == 1
    assert coverage["crossref"]["requests"] == 1  # only the one work lacking metadata
    manifest = json.loads(week.manifest_file.read_text())
    assert manifest["sources"]["openalex"]["markers"]["openalex_review_id"] == REVIEW["openalex_id"]
    assert manifest["counts"]["published"] == expected_union

    runner.run(DIGEST, WEEKS[0])
    assert len(digests(stack)) == 1
    text = digests(stack)[0].get_body(("plain",)).get_content()
    pubmed_n = coverage["pubmed"]["works"]
    assert f"PubMed {pubmed_n}" in text and f"union {expected_union}" in text

    # -- 2. nothing new: no metadata requests, no digest; the update probes cost their minimum --
    for fake in stack.fakes.values():
        fake.requests.clear()
    runner.run(PIPELINE, WEEKS[1])
    assert [r for r in stack.fakes["pubmed"].requests if "efetch" in r.path] == []
    week1_rows = pq.read_table(layout(runner, WEEKS[0]).snapshot_file).to_pylist()
    known_pmids = {r["pmid"] for r in week1_rows if r["pmid"] and r["title"]}
    known_dois = {r["doi"] for r in week1_rows if r["doi"] and r["title"]}
    probes = stack.fakes["pubmed"].requests_to("esearch")
    assert len(probes) == -(-len(known_pmids) // 200) and all(r.param("datetype") == "mdat" for r in probes)
    crossref = stack.fakes["crossref"].requests
    assert len(crossref) == -(-len(known_dois) // 100)  # one list request per 100 known DOIs, nothing else
    assert all(r.path == "/works" and r.param("filter").startswith(f"from-update-date:{WEEKS[0]}")
               for r in crossref)
    assert stack.fakes["openalex"].requests_to("/works/doi:") == []  # the W-id came from last manifest
    manifest = json.loads(layout(runner, WEEKS[1]).manifest_file.read_text())
    assert all(manifest["sources"][s]["metadata_requests"] == 0 for s in LISTING)
    assert manifest["counts"]["new"] == 0
    runner.run(DIGEST, WEEKS[1])
    assert len(digests(stack)) == 1 and alerts(stack) == []

    # -- 3. Europe PMC returns zero after returning works -----------------------------
    europepmc_dois = {normalize_doi(p.doi) for p in papers if "europepmc" in p.visible_in}
    for paper in papers:
        paper.visible_in.discard("europepmc")
    states = runner.task_states(runner.run(PIPELINE, WEEKS[2]))
    assert states["fetch_europepmc"] == "failed"
    assert states["publish_snapshot"] == "success"
    week3 = layout(runner, WEEKS[2])
    manifest = json.loads(week3.manifest_file.read_text())
    assert manifest["partial"] is True
    assert "returned 0 citing works after" in manifest["sources"]["europepmc"]["reason"]
    kept = {r["doi"] for r in pq.read_table(week3.snapshot_file).to_pylist()}
    assert europepmc_dois <= kept  # its works are not dropped
    runner.run(DIGEST, WEEKS[2])  # nothing new: the failure is in the manifest and the alert, not a digest
    assert len(digests(stack)) == 1
    (alert,) = alerts(stack)
    assert "fetch_europepmc failed" in alert["Subject"]

    # -- 4. OpenAlex renames a field we map ------------------------------------------
    def rename_ids(page):
        for work in page.get("results", []):
            work["identifiers"] = work.pop("ids", {})
        return page

    stack.fakes["openalex"].page_hook = rename_ids
    states = runner.task_states(runner.run(PIPELINE, WEEKS[3]))
    assert states["fetch_openalex"] == "failed"
    assert states["fetch_pubmed"] == "success" and states["publish_snapshot"] == "success"
    manifest = json.loads(layout(runner, WEEKS[3]).manifest_file.read_text())
    assert "results[].ids" in manifest["sources"]["openalex"]["reason"]
    assert manifest["partial"] is True
    assert len(pq.read_table(layout(runner, WEEKS[3]).snapshot_file)) == expected_union
    # Europe PMC is still at zero: compared with its last *successful* run, it fails again
    assert sorted(a["Subject"].split(": ")[-1].split(" (")[0] for a in alerts(stack)) == [
        "fetch_europepmc failed", "fetch_europepmc failed", "fetch_openalex failed"]
