"""Issue 13, point 2: a known preprint's journal version is one work, with or without a relation.

The real pipeline and digest DAGs (``dag.test()``) against local fakes. Week 1 announces
a medRxiv preprint (seen by OpenAlex and Crossref). In week 2 its journal version
arrives with complete metadata from PubMed, Europe PMC and OpenAlex: the preprint's work
keeps its ``work_id``, gains the article's DOI as ``doi`` and both versions, records a
``preprint_published`` event, and the digest shows it under "Now published", never as a
new citing paper. Once with Crossref holding the relation (``has-preprint``), once with
no relation anywhere (the title, first-author and year rule), and a near-identical title
by other authors stays a separate, new paper.
"""
from __future__ import annotations

import copy
import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from include.living_review.storage import Layout
from tests.fakes.corpus import REVIEW, Paper, seed_corpus
from tests.fakes.stack import LocalStack
from tests.integration.conftest import apply_env, write_config

pytestmark = pytest.mark.integration
PIPELINE = "living_review__peer_support_mental_health"
DIGEST = "living_review_digest__peer_support_mental_health"
TODAY = dt.datetime.now(dt.timezone.utc).date()
WEEK1, WEEK2 = TODAY - dt.timedelta(days=7), TODAY
TITLE = "Peer mentoring and recovery capital among people who use drugs: a mixed-methods study."
PREPRINT = Paper(title=TITLE, authors=[("Nguyen", "T"), ("Ramos", "D")], journal_abbrev="medRxiv", journal="medRxiv",
                 year=TODAY.year, month=1, day=20, doi="10.1101/2026.01.20.26300001", openalex_id="W4400000003",
                 pub_types=["Preprint"], visible_in={"openalex", "crossref"})
ARTICLE = Paper(title=TITLE, authors=[("Nguyen", "T"), ("Ramos", "D"), ("Okafor", "C")], journal_abbrev="Addiction",
                journal="Addiction", year=TODAY.year, month=TODAY.month, day=1, volume="121", pages="55-66",
                pmid="41300001", pmcid="PMC13000001", doi="10.1111/add.70001", openalex_id="W4400000777",
                visible_in={"pubmed", "europepmc", "openalex", "crossref"})
LOOKALIKE = Paper(title=TITLE.replace("mixed-methods", "mixed methods"), authors=[("Ivanova", "M"), ("Berg", "S")],
                  journal_abbrev="Drug Alcohol Rev", journal="Drug and alcohol review", year=TODAY.year,
                  month=TODAY.month, day=2, pmid="41300002", pmcid="PMC13000002", doi="10.1111/dar.70002",
                  openalex_id="W4400000888", visible_in={"pubmed", "europepmc", "openalex", "crossref"})


@pytest.fixture
def stack(tmp_path, monkeypatch):
    papers = seed_corpus()[:6] + [copy.deepcopy(PREPRINT)]
    with LocalStack(papers, sources=("pubmed", "europepmc", "openalex", "crossref")) as local:
        apply_env(monkeypatch, local.env())
        config = write_config(tmp_path / "reviews.yaml", [{
            "id": "peer-support-mental-health", "title": REVIEW["title"], "doi": REVIEW["doi"],
            "pmid": REVIEW["pmid"], "pmcid": REVIEW["pmcid"], "sources": ["pubmed", "europepmc", "openalex"],
            "enrich": ["crossref"],
            "digest": {"email": ["maintainer@example.org"], "slack": True, "backfill_grace_days": 60}}])
        monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config))
        yield local


def run_week(stack, runner, day) -> None:
    states = runner.task_states(runner.run(PIPELINE, day))
    assert set(states.values()) == {"success"}, states
    runner.run(DIGEST, day)


@pytest.mark.parametrize("relation", ["crossref relation", "no relation"])
def test_the_journal_version_of_an_announced_preprint_is_published_not_new(stack, runner, relation):
    run_week(stack, runner, WEEK1)
    week1 = {r["doi"]: r for r in pq.read_table(
        Layout.of(runner.data_dir, REVIEW["id"], WEEK1).snapshot_file).to_pylist()}
    preprint_id = week1[PREPRINT.doi]["work_id"]

    article = copy.deepcopy(ARTICLE)
    if relation == "crossref relation":
        article.preprint_doi = PREPRINT.doi
    else:
        article.visible_in = {"pubmed", "europepmc", "openalex"}  # Crossref knows nothing of it
    stack.set_papers(stack.papers + [article, copy.deepcopy(LOOKALIKE)])
    run_week(stack, runner, WEEK2)

    layout = Layout.of(runner.data_dir, REVIEW["id"], WEEK2)
    rows = {r["work_id"]: r for r in pq.read_table(layout.snapshot_file).to_pylist()}
    work = rows[preprint_id]
    assert work["doi"] == ARTICLE.doi and work["journal"] == "Addiction" and work["pmid"] == ARTICLE.pmid
    assert {(v["id"], v["kind"]) for v in work["versions"]} == {(PREPRINT.doi, "preprint"), (ARTICLE.doi, "published")}
    # With Crossref asked about the article's new DOI, its relation ties them before any title rule.
    assert work["version_evidence"] == (["relation:crossref"] if relation == "crossref relation"
                                        else ["title-author-year"])
    assert not [w for w, r in rows.items() if r["doi"] == ARTICLE.doi and w != preprint_id]
    lookalike = next(r for r in rows.values() if r["doi"] == LOOKALIKE.doi)
    assert lookalike["work_id"] != preprint_id and lookalike["version_evidence"] == []

    changes = {(c["change"], c["work_id"]) for c in pq.read_table(layout.changes_file).to_pylist()}
    assert ("preprint_published", preprint_id) in changes and ("added", preprint_id) not in changes
    assert ("added", lookalike["work_id"]) in changes
    manifest = json.loads(layout.manifest_file.read_text())
    assert manifest["events"] == {"added": 1, "preprint_published": 1, "updated": 1}

    emails = [m.message for m in stack.smtp.messages if m.message["X-Living-Review-Digest"]]
    text = emails[-1].get_body(("plain",)).get_content()
    new_section, _, rest = text.partition("Now published")
    assert "1 new citing paper" in emails[-1]["Subject"] and "1 now published" in emails[-1]["Subject"]
    assert LOOKALIKE.doi in new_section and ARTICLE.doi not in new_section  # the article is not "new"
    assert ARTICLE.doi in rest and PREPRINT.doi in rest
    posts = [p for p in stack.slack.payloads if p.get("blocks")]
    assert "Now published" in json.dumps(posts[-1])
