"""A realistic data directory with several weekly runs, built by the real pipeline steps.

Used by the report and plugin tests and by ``scripts/screenshot.py``. The steps are the
ones every DAG task calls (``fetch_source`` → ``merge_sources`` → ``enrich_metadata`` →
``validate`` → ``publish``), run in-process against the local fakes of every API, so
the data has exactly the shape a production run writes, without the cost of Airflow.

Four weekly runs of the seed review:

1. the 14 oldest seed citers;
2. the other 6 seed citers;
3. four papers only some databases know (one found only by OpenCitations, filled in
   by Crossref) and one OpenCitations record nobody can name: it has no title, so it
   goes to quarantine;
4. nothing new, and one paper is no longer reported by any source.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from include.living_review.config import ReviewConfig
from include.living_review.connections import client_settings
from include.living_review.pipeline import (
    RunContext,
    SourceFailed,
    enrich_metadata,
    fetch_source,
    merge_sources,
    publish,
    validate,
)
from include.living_review.sources import build_client
from include.living_review.storage import Layout
from tests.fakes.corpus import REVIEW, Paper
from tests.fakes.demo import demo_corpus
from tests.fakes.stack import DEMO_API_KEY, FAKES, LocalStack

log = logging.getLogger(__name__)

REVIEW_ID = REVIEW["id"]
SOURCES = ["pubmed", "europepmc", "openalex", "opencitations", "semanticscholar", "crossref"]
WEEKS = [dt.date(2026, 10, 5) + dt.timedelta(days=7 * n) for n in range(4)]
# An OpenCitations citer with ids only; Crossref does not know the DOI either.
NAMELESS = Paper(title="", authors=[], journal_abbrev="", journal="", year=2025, month=9, day=1,
                 doi="10.9999/unknown.2025.001", omid="br/0690009999", visible_in={"opencitations"})
DROPPED_DOI = "10.3389/fpsyg.2024.1470758"  # no source reports it in week 4


@dataclass
class History:
    """What was built, with the numbers the page must show."""

    data_dir: Path
    config: Path
    weeks: list[dt.date]
    union: int = 0  # works in the latest snapshot
    reported: int = 0  # works some source reported in the latest run (the manifest's coverage union)
    coverage: dict[str, int] = field(default_factory=dict)  # latest run, per listing source
    quarantined: int = 0  # in the latest run's quarantine
    new_per_week: list[int] = field(default_factory=list)

    @property
    def latest(self) -> Layout:
        return Layout.of(self.data_dir, REVIEW_ID, self.weeks[-1])


def review_config() -> ReviewConfig:
    return ReviewConfig(id=REVIEW_ID, title=REVIEW["title"], doi=REVIEW["doi"], pmid=REVIEW["pmid"],
                        pmcid=REVIEW["pmcid"], sources=SOURCES,
                        digest={"email": ["maintainer@example.org"], "slack": True})


def write_config(path: Path) -> Path:
    review = review_config()
    path.write_text(yaml.safe_dump({"reviews": [review.model_dump(exclude_none=True)]}, sort_keys=False),
                    encoding="utf-8")
    return path


def corpus_by_week() -> tuple[list[Paper], list[set[str]]]:
    """Every paper the fakes will ever serve, and the DOIs visible in each week.

    The fakes index some papers when they start (OpenCitations' and Semantic Scholar's
    cited-by lists), so the stack serves one fixed corpus and a week hides papers by
    emptying their ``visible_in``, as the integration tests do.
    """
    papers = demo_corpus() + [copy.deepcopy(NAMELESS)]
    seed = papers[:20]
    oldest = sorted(seed, key=lambda p: (p.year, p.month, p.day))
    everyone = {p.doi for p in papers}
    weeks = [{p.doi for p in oldest[:14]}, {p.doi for p in seed}, everyone, everyone - {DROPPED_DOI}]
    return papers, weeks


def _run_week(review: ReviewConfig, data_dir: Path, day: dt.date, stack: LocalStack) -> dict[str, object]:
    logical = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    ctx = RunContext.create(review, data_dir, logical, f"scheduled__{logical.isoformat()}")
    for source in review.sources:
        if source == "crossref":
            continue
        try:
            fetch_source(ctx, source, _client(source, stack))
        except SourceFailed as exc:  # recorded in the manifest, as in the DAG
            log.warning("%s", exc)
    merge_sources(ctx)
    enrich_metadata(ctx, _client("crossref", stack))
    validate(ctx)
    return publish(ctx)


def _client(source: str, stack: LocalStack) -> object:
    conn_id = FAKES[source][0]
    conf = client_settings(conn_id, host=stack.fakes[source].url, password=DEMO_API_KEY if source == "openalex"
                           else None, extra={"email": "demo@example.org"})
    return build_client(source, conf)


def build_history(root: Path) -> History:
    """Run the four weeks into ``root/data``; write ``root/reviews.yaml``."""
    review = review_config()
    root.mkdir(parents=True, exist_ok=True)
    history = History(data_dir=root / "data", config=write_config(root / "reviews.yaml"), weeks=list(WEEKS))
    papers, weeks = corpus_by_week()
    visible = {p.doi: set(p.visible_in) for p in papers}
    with LocalStack(papers, smtp=False, slack=False) as stack:
        for day, dois in zip(WEEKS, weeks, strict=True):
            for paper in papers:
                paper.visible_in = set(visible[paper.doi]) if paper.doi in dois else set()
            summary = _run_week(review, history.data_dir, day, stack)
            history.new_per_week.append(int(summary["new"]))
            history.quarantined = int(summary["quarantined"])
            history.union = int(summary["works"])
    import pyarrow.parquet as pq

    history.reported = int(json.loads(history.latest.manifest_file.read_text())["coverage"]["union"])
    for row in pq.read_table(history.latest.coverage_file).to_pylist():
        if row["source"] != "crossref":
            history.coverage[row["source"]] = row["works"]
    return history


_BUILT: dict[str, History] = {}


def shared_history() -> History:
    """One history per test process: the report and plugin tests share it (it takes ~20 s)."""
    if "history" not in _BUILT:
        _BUILT["history"] = build_history(Path(tempfile.mkdtemp(prefix="lr-report-history-")))
    return _BUILT["history"]
