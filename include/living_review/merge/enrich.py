"""The enrich step: ask the enrichers (Crossref) for the metadata new works lack, then merge again.

An enricher lists no citations of its own; it only fills fields of works the sources
found. Best effort: a failed enrichment publishes without it, the works still lacking a
title are quarantined with their reason, and the next run asks again.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from include.living_review.merge.step import jsonable, merge_sources
from include.living_review.records import works_to_table
from include.living_review.run import RunContext
from include.living_review.storage import read_parquet, write_json_atomic, write_parquet_atomic

log = logging.getLogger(__name__)
CROSSREF = "crossref"


def enrich_metadata(ctx: RunContext, client: Any | None) -> dict[str, Any]:
    """Fill missing metadata of *new* works that have a DOI, from Crossref."""
    # Only the five columns the choice needs: at 100k works the full rows (raw payloads
    # included) cost seconds and a GB of memory for nothing when no work needs enriching.
    rows = read_parquet(ctx.staging.merged,
                        columns=["doi", "first_seen", "title", "journal", "publication_year"]).to_pylist()
    wanted = [r for r in rows if r["doi"] and r["first_seen"] == ctx.run_ts
              and (not r["title"] or not r["journal"] or r["publication_year"] is None)]
    stats: dict[str, Any] = {"source": CROSSREF, "status": "ok", "reason": None, "candidates": len(wanted),
                             "enriched": 0, "requests": 0}
    stats_file = ctx.staging.enrichment_stats(CROSSREF)
    if client is None or not wanted:
        stats["status"] = "skipped" if client is None else "ok"
        stats["reason"] = "crossref is not configured for this review" if client is None else None
        write_json_atomic(stats, stats_file)
        log.info("crossref: %s", stats["reason"] or "no new work lacks metadata; nothing to ask")
        return stats
    started = time.monotonic()
    log.info("crossref: asking for %d new works lacking metadata", len(wanted))
    try:
        works, info = client.enrich([r["doi"] for r in wanted])
    except Exception as exc:
        stats.update(status="failed", reason=f"{type(exc).__name__}: {exc}",
                     seconds=round(time.monotonic() - started, 3))
        write_json_atomic(stats, stats_file)
        log.error("crossref: enrichment failed, publishing without it: %s", exc)
        return stats
    # Crossref answers an alias DOI with the primary record: make the alias findable too.
    # The record is filed under the DOI we asked for (the one the citing sources use), so it
    # merges with them instead of looking like a second version.
    by_doi = {w.doi: w for w in works if w.doi}
    asked_for = {r["doi"] for r in wanted}
    for asked, primary in (info.get("aliased") or {}).items():
        if primary in by_doi and asked not in by_doi:
            record = by_doi[primary] if primary in asked_for else by_doi.pop(primary)
            by_doi[asked] = dataclasses.replace(record, doi=asked, source_ids={CROSSREF: asked})
    works = list(by_doi.values())
    stats["enriched"] = sum(1 for r in wanted if r["doi"] in by_doi
                            or r["doi"] in (info.get("aliased") or {}))
    write_parquet_atomic(works_to_table(works), ctx.staging.enrichment_records(CROSSREF))
    merge_sources(ctx, with_enrichment=True)
    http = getattr(client, "http", None)
    stats.update(requests=http.log.count if http else 0, seconds=round(time.monotonic() - started, 3),
                 http=http.log.summary() if http else {}, detail=jsonable(info))
    write_json_atomic(stats, stats_file)
    log.info("crossref: enriched %d of %d new works lacking metadata (%d requests)",
             stats["enriched"], len(wanted), stats["requests"])
    return stats
