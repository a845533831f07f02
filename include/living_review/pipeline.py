"""The pipeline's steps, in the order a run takes them; each Airflow task calls one.

    begin_run ─> fetch_source (one per source) ─> merge_sources ─> enrich_metadata ─> validate ─> publish ─> end_run
    (lease, recovery)                                                                                   (lease released)

Steps hand each other files in the run's own staging folder (``ctx.staging``), never
record lists: XCom carries only the small stats dicts these functions return. Each
stage lives in its package (``sources``, ``merge``, ``relevance``, ``snapshot``); this
module only names them.
"""
from __future__ import annotations

from include.living_review.merge.enrich import enrich_metadata
from include.living_review.merge.step import merge_sources
from include.living_review.run import PublishBlocked, RunContext, SourceFailed, begin_run, end_run
from include.living_review.snapshot.publish import publish
from include.living_review.snapshot.quarantine import raw_payloads, validate
from include.living_review.sources.fetch import fetch_source, health_problem

__all__ = ["PublishBlocked", "RunContext", "SourceFailed", "begin_run", "end_run", "enrich_metadata",
           "fetch_source", "health_problem", "merge_sources", "publish", "raw_payloads", "validate"]
