"""Issue 8's change feed: a retraction of an announced paper, a correction, and a preprint
published a run later become events, one merged work, and their own digest sections.

The pipeline's step functions (the same calls the DAG tasks make) run against the local
fakes of five sources and Crossref, then the digest is planned and rendered as the
digest DAG does.
"""
from __future__ import annotations

import copy
import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from include.living_review.storage import Layout
from include.living_review import pipeline
from include.living_review.config import ReviewConfig
from include.living_review.connections import client_settings
from include.living_review.digest.send import send_digest
from include.living_review.sources import build_client
from include.living_review.sources.base import SourceSkipped  # noqa: F401 - documents the skip path
from tests.fakes.channels import RecordingChannel
from tests.fakes.corpus import REVIEW, Paper, seed_corpus
from tests.fakes.stack import DEMO_API_KEY, FAKES, LocalStack

pytestmark = pytest.mark.integration
SOURCES = ["pubmed", "europepmc", "openalex", "opencitations", "crossref"]
TODAY = dt.datetime.now(dt.timezone.utc).date()
WEEK1, WEEK2 = TODAY - dt.timedelta(days=7), TODAY
PREPRINT = Paper(title="Peer mentoring and recovery capital among people who use drugs.",
                 authors=[("Nguyen", "T"), ("Ramos", "D")], journal_abbrev="medRxiv", journal="medRxiv",
                 year=2025, month=8, day=20, doi="10.1101/2025.08.20.25333333", openalex_id="W4400000003",
                 pub_types=["Preprint"], visible_in={"openalex", "crossref"})
PUBLISHED = Paper(title="Peer mentoring and recovery capital among people who use drugs.",
                  authors=[("Nguyen", "T"), ("Ramos", "D"), ("Okafor", "C")], journal_abbrev="Addiction",
                  journal="Addiction", year=2026, month=10, day=2, volume="121", pages="55-66",
                  doi="10.1111/add.70001", omid="br/0690000099", preprint_doi=PREPRINT.doi,
                  visible_in={"opencitations", "crossref"})
NEW = Paper(title="Peer support specialists and readmission after psychiatric discharge: a cohort study.",
            authors=[("Ibrahim", "S")], journal_abbrev="Psychiatr Serv", journal="Psychiatric services",
            year=2026, month=11, day=1, pmid="41200001", pmcid="PMC12200001", doi="10.1176/appi.ps.20260002",
            openalex_id="W4400000111")


def review() -> ReviewConfig:
    return ReviewConfig(id="peer-support-mental-health", title=REVIEW["title"], doi=REVIEW["doi"],
                        pmid=REVIEW["pmid"], sources=SOURCES, digest={"email": ["m@example.org"]})


def run_week(conf: ReviewConfig, data_dir, day: dt.date, stack: LocalStack) -> None:
    ctx = pipeline.RunContext.create(conf, data_dir, dt.datetime.combine(day, dt.time(), dt.timezone.utc),
                                     f"scheduled__{day}")
    for source in SOURCES[:-1]:
        conn = FAKES[source][0]
        settings = client_settings(conn, host=stack.fakes[source].url, extra={"email": "t@example.org"},
                                   password=DEMO_API_KEY if source == "openalex" else None)
        pipeline.fetch_source(ctx, source, build_client(source, settings))
    pipeline.merge_sources(ctx)
    pipeline.enrich_metadata(ctx, build_client("crossref", client_settings(
        "crossref", host=stack.fakes["crossref"].url, extra={"email": "t@example.org"})))
    pipeline.validate(ctx)
    pipeline.publish(ctx)


def test_retraction_correction_and_published_preprint(tmp_path):
    papers = seed_corpus()[:8]
    for paper in papers:
        paper.visible_in = {"pubmed", "europepmc", "openalex", "crossref"}
    retracted, corrected = papers[2], papers[3]
    conf = review()
    with LocalStack(papers + [copy.deepcopy(PREPRINT)], sources=tuple(SOURCES), smtp=False, slack=False) as stack:
        # -- week 1: the baseline, announced ------------------------------------------
        email = RecordingChannel("email")
        run_week(conf, tmp_path, WEEK1, stack)
        send_digest(conf, tmp_path, WEEK1, [email], today=TODAY)
        assert len(email.sent) == 1 and email.sent[0].baseline
        week1 = {r["doi"]: r for r in pq.read_table(
            Layout.of(tmp_path, conf.id, WEEK1).snapshot_file).to_pylist()}
        preprint_id = week1[PREPRINT.doi]["work_id"]
        assert preprint_id == f"doi:{PREPRINT.doi}"
        assert [v["kind"] for v in week1[PREPRINT.doi]["versions"]] == ["preprint"]

        # -- week 2: retraction, correction, the preprint published, one new paper ----
        retracted.retracted = True
        corrected.corrected = True
        stack.set_papers(stack.papers + [copy.deepcopy(PUBLISHED), copy.deepcopy(NEW)])
        run_week(conf, tmp_path, WEEK2, stack)

    layout = Layout.of(tmp_path, conf.id, WEEK2)
    rows = {r["work_id"]: r for r in pq.read_table(layout.snapshot_file).to_pylist()}
    # the preprint and its journal version are one work, and its id did not change
    merged = rows[preprint_id]
    assert merged["doi"] == PUBLISHED.doi
    assert sorted((v["id"], v["kind"]) for v in merged["versions"]) == sorted([
        (PUBLISHED.doi, "published"), (PREPRINT.doi, "preprint")])
    assert not any(r["doi"] == PUBLISHED.doi and w != preprint_id for w, r in rows.items())
    retracted_row = next(r for r in rows.values() if r["pmid"] == retracted.pmid)
    assert retracted_row["is_retracted"] is True
    assert any(n.startswith("correction") for n in next(
        r for r in rows.values() if r["pmid"] == corrected.pmid)["update_notices"])

    events = {(c["change"], c["work_id"]) for c in pq.read_table(layout.changes_file).to_pylist()}
    assert ("retracted", retracted_row["work_id"]) in events
    assert ("corrected", f"doi:{corrected.doi.lower()}") in events
    assert ("preprint_published", preprint_id) in events
    assert ("added", f"doi:{NEW.doi}") in events
    manifest = json.loads(layout.manifest_file.read_text())
    assert manifest["changes"]["retracted"] == 1 and manifest["changes"]["preprint_published"] == 1

    send_digest(conf, tmp_path, WEEK2, [email], today=TODAY)
    assert len(email.sent) == 2
    digest = email.sent[1]
    assert not digest.baseline
    assert "1 new citing paper" in digest.subject and "1 retracted" in digest.subject
    html = digest.html
    assert html.index("announced in the digest of") < html.index("New citing papers")
    assert WEEK1.isoformat() in html
    for section in ("Now published", "Retracted or corrected"):
        assert section in html and section in digest.text
    assert PUBLISHED.doi in html and NEW.title in html
    assert json.dumps(digest.slack_payload["blocks"][0]).count("Retracted") >= 1
