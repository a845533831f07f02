"""``make demo``: the real DAGs, offline, against bundled local stand-ins.

Starts fake E-utilities, Europe PMC, OpenAlex, OpenCitations, Semantic Scholar and
Crossref servers (serving the seed review's real citing articles plus a few that
only some databases know), a local SMTP server and a Slack webhook sink, all on
127.0.0.1. Then runs the pipeline and digest DAGs with ``airflow dags test`` and
prints where the Parquet snapshot and the received digest are.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.fakes.corpus import REVIEW, Paper, included_studies, seed_corpus
from tests.fakes.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "demo-output"


def demo_corpus() -> list[Paper]:
    """The 20 seed citers (all in PMC, so PubMed sees them) plus papers only other databases know."""
    papers = seed_corpus()
    for i, paper in enumerate(papers):
        # Coverage differs by source, as in real life: OpenCitations sees about a third.
        paper.visible_in = {"pubmed", "europepmc", "openalex", "semanticscholar", "crossref"}
        if i % 3 == 0:
            paper.visible_in.add("opencitations")
        if i % 7 == 3:
            paper.visible_in.discard("semanticscholar")
    extra = [
        Paper(title="Digital peer support for young adults with psychosis: a pilot feasibility study.",
              authors=[("Andersen", "K"), ("Moreau", "L")], journal_abbrev="JMIR Form Res",
              journal="JMIR formative research", year=2025, month=3, day=14, volume="9", pages="e61234",
              doi="10.2196/61234", openalex_id="W4400000001", s2_paper_id="a" * 40, omid="br/0690000001",
              visible_in={"openalex", "semanticscholar", "opencitations", "crossref"}),
        Paper(title="Lived experience workforce in community mental health: a qualitative study.",
              authors=[("Silva", "M"), ("Okoro", "J"), ("Hughes", "P")], journal_abbrev="Community Ment Health J",
              journal="Community mental health journal", year=2025, month=5, day=2, volume="61", pages="801-812",
              doi="10.1007/s10597-025-01400-1", pmid="40100001", openalex_id="W4400000002",
              s2_paper_id="b" * 40, visible_in={"europepmc", "openalex", "crossref"}),
        Paper(title="Peer mentoring and recovery capital among people who use drugs: a preprint.",
              authors=[("Nguyen", "T"), ("Ramos", "D")], journal_abbrev="medRxiv", journal="medRxiv",
              year=2025, month=8, day=20, doi="10.1101/2025.08.20.25333333", openalex_id="W4400000003",
              pub_types=["Preprint"], visible_in={"openalex", "semanticscholar", "crossref"}),
        # Only OpenCitations lists this one (ids, no metadata): Crossref fills in the rest.
        Paper(title="Peer support specialists in emergency departments: a scoping review.",
              authors=[("Fischer", "A"), ("Kim", "S")], journal_abbrev="Psychiatr Serv", journal="Psychiatric services",
              year=2025, month=10, day=7, volume="76", issue="10", pages="1001-1010",
              doi="10.1176/appi.ps.20250001", omid="br/0690000004", pub_types=["Review"],
              visible_in={"opencitations", "crossref"}),
    ]
    return papers + extra


# The preprint's journal version arrives with full metadata from PubMed, Europe PMC and
# OpenAlex; no source holds a relation, so the version rule (title, first author, year)
# links it and the digest says "Now published" instead of announcing a new paper.
PUBLISHED_VERSION = Paper(
    title="Peer mentoring and recovery capital among people who use drugs: a preprint.",
    authors=[("Nguyen", "T"), ("Ramos", "D"), ("Okafor", "C")], journal_abbrev="Addiction", journal="Addiction",
    year=2026, month=10, day=2, volume="121", pages="55-66", doi="10.1111/add.70001", pmid="41200099",
    pmcid="PMC12200099", openalex_id="W4400000099", omid="br/0690000099",
    abstract="Peer mentors with lived experience of drug use built recovery capital with their mentees.",
    visible_in={"pubmed", "europepmc", "openalex", "opencitations"})
NEW_THIS_WEEK = [
    Paper(title="Peer support specialists and readmission after psychiatric discharge: a cohort study.",
          authors=[("Ibrahim", "S"), ("Kowalski", "M")], journal_abbrev="Psychiatr Serv",
          journal="Psychiatric services", year=2026, month=11, day=1, pmid="41200001", pmcid="PMC12200001",
          doi="10.1176/appi.ps.20260002", openalex_id="W4400000111",
          abstract="Peer support specialists with lived experience of mental illness reduced readmissions."),
    Paper(title="Cost of hemodialysis access procedures in a national registry.",
          authors=[("Lee", "J")], journal_abbrev="Kidney Int", journal="Kidney international", year=2026,
          month=10, day=20, doi="10.1016/j.kint.2026.01.001", openalex_id="W4400000112",
          visible_in={"openalex", "semanticscholar", "crossref"}),
]


def this_week(stack: LocalStack) -> None:
    """A week later: a paper announced last week is retracted, another corrected, the
    preprint is published, two new papers cite the review, and an included study is retracted."""
    seed = stack.papers
    seed[2].retracted = True
    seed[4].corrected = True
    stack.set_papers(seed + [PUBLISHED_VERSION] + NEW_THIS_WEEK)
    # One of the review's own included studies is retracted: the digests open with it.
    # Only PubMed and Crossref show it, so only their update probes can find it.
    study = stack.included[1]
    study.retracted, study.notices_in = True, {"pubmed", "crossref"}
    study.modified = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)


def airflow(*args: str, env: dict[str, str]) -> int:
    return subprocess.call([sys.executable, "-m", "airflow", *args], env=env, stdout=subprocess.DEVNULL
                           if env.get("DEMO_QUIET") else None)


def main() -> int:
    started = time.perf_counter()
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "received").mkdir(parents=True)
    config = OUT / "reviews.yaml"
    config.write_text(yaml.safe_dump({"reviews": [{
        "id": "peer-support-mental-health", "title": REVIEW["title"], "doi": REVIEW["doi"],
        "pmid": REVIEW["pmid"], "pmcid": REVIEW["pmcid"],
        "sources": ["pubmed", "europepmc", "openalex", "opencitations", "semanticscholar"], "enrich": ["crossref"],
        "digest": {"email": ["maintainer@example.org"], "slack": True}}]}, sort_keys=False))
    day = dt.datetime.now(dt.timezone.utc).date()
    last_week = day - dt.timedelta(days=7)
    with LocalStack(demo_corpus()) as stack:
        studies = included_studies(8)
        for study in studies:  # unchanged for a long time, as most references are
            study.modified = last_week - dt.timedelta(days=90)
        stack.set_included(studies)
        env = {**os.environ, **stack.env(), "LIVING_REVIEW_CONFIG": str(config),
               "LIVING_REVIEW_DATA_DIR": str(OUT / "data"), "LIVING_REVIEW_TASK_RETRIES": "0",
               "NO_PROXY": "127.0.0.1,localhost", "DEMO_QUIET": os.environ.get("DEMO_QUIET", "1")}
        rc = 0
        for week, label in ((last_week, "last week: the baseline"), (day, "this week: what changed")):
            if week == day:
                this_week(stack)
            print(f"demo: running the pipeline and digest DAGs for {week} ({label}) ...")
            rc |= airflow("dags", "test", "living_review__peer_support_mental_health", week.isoformat(), env=env)
            rc |= airflow("dags", "test", "living_review_digest__peer_support_mental_health", week.isoformat(),
                          env=env)
        for i, received in enumerate(stack.smtp.messages, start=1):
            (OUT / "received" / f"digest-{i}.eml").write_bytes(received.data)
        for i, payload in enumerate(stack.slack.payloads, start=1):
            (OUT / "received" / f"slack-{i}.json").write_text(json.dumps(payload, indent=2))
        requests = stack.requests_by_source()
    from include.living_review.cli import summary_lines

    print("\n== living-review demo ==")
    print("\n".join(summary_lines("peer-support-mental-health", day, OUT / "data")))
    changes = OUT / "data" / "changes" / "review_id=peer-support-mental-health" / f"snapshot_date={day}"
    print(f"  changes          {changes / 'changes.parquet'}")
    print("  requests on the fake servers: " + ", ".join(f"{s} {n}" for s, n in requests.items()))
    print(f"  received email   {len(stack.smtp.messages)} -> {OUT / 'received'}")
    print(f"  received Slack   {len(stack.slack.payloads)} -> {OUT / 'received'}")
    if stack.smtp.messages:
        print(f"  subject          {stack.smtp.messages[-1].message['Subject']}")
    print(f"  wall time        {time.perf_counter() - started:.1f}s")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
