"""The enrich step: Crossref for new works and an update probe of known ones, then merge again.

An enricher lists no citations of its own; its records add to works the sources found
(``Work.probe``: they never make a work "reported"). Crossref is asked, in batched
``filter=doi:…`` list requests:

- for every **new** work with a DOI: the full record when the work lacks metadata
  (title, journal or year), else only its notices and relations (``is-preprint-of``,
  ``has-preprint``…), so a journal article's link to its preprint is seen even when the
  other sources already sent complete metadata;
- for the **known** works with a DOI: only those whose record changed since the last
  check (``from-update-date``), for their notices: a retraction or correction that only
  Crossref shows (Retraction Watch's ``updated-by``) is found the next week.

Best effort: a failed enrichment publishes without it, works still lacking a title are
quarantined with their reason, and the next run asks again.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from typing import Any

from include.living_review.merge.step import jsonable, merge_sources
from include.living_review.records import Work, works_to_table
from include.living_review.run import RunContext
from include.living_review.storage import (
    Layout,
    base_commit,
    committed_dates,
    committed_manifest,
    read_parquet,
    write_json_atomic,
    write_parquet_atomic,
)
from include.living_review.storage.history import committed_rows

log = logging.getLogger(__name__)
CROSSREF = "crossref"
# What a record of a work that already has metadata contributes: its update notices and
# version relations, not fields that would merely restate (or reformat) what is known.
LIGHT_FIELDS = ("doi", "is_retracted", "update_notices", "related_dois", "is_preprint", "sources", "source_ids",
                "raw")


def light(work: Work) -> Work:
    """``work`` reduced to its notices and relations (see :data:`LIGHT_FIELDS`)."""
    kept = {name: getattr(work, name) for name in LIGHT_FIELDS}
    return Work(title=None, probe=True, **kept)


def probe_since(layout: Layout) -> dt.date | None:
    """The end of the last successful Crossref probe, else the last commit's date; None on a first run."""
    base = base_commit(layout)
    if base is None:
        return None
    for day in reversed([d for d in committed_dates(layout.data_dir, layout.review_id) if d <= layout.snapshot_date]):
        enrichment = (committed_manifest(layout.on(day)) or {}).get("enrichment") or {}
        until = (enrichment.get("probe") or {}).get("until")
        if enrichment.get("status") == "ok" and until:
            return dt.date.fromisoformat(until)
    return base.snapshot_date


def enrich_metadata(ctx: RunContext, client: Any | None) -> dict[str, Any]:
    """Ask Crossref about new works and probe the known ones; see the module docstring."""
    # Only the columns the choice needs: at 100k works the full rows (abstracts included)
    # cost seconds and a GB of memory for nothing.
    rows = read_parquet(ctx.staging.merged,
                        columns=["doi", "first_seen", "title", "journal", "publication_year"]).to_pylist()
    base_rows = committed_rows(base_commit(ctx.layout), ["doi", "title", "versions"])
    seen = {r["doi"] for r in base_rows if r["doi"]} | {v["id"] for r in base_rows for v in r["versions"] or []}
    # New: a new work, or a known work whose DOI is new this run (a preprint's journal version
    # the merge already tied to it): its Crossref relations and notices are asked for too.
    new = [r for r in rows if r["doi"] and (r["first_seen"] == ctx.run_ts or r["doi"] not in seen)]
    lacking = {r["doi"] for r in new if not r["title"] or not r["journal"] or r["publication_year"] is None}
    new_dois = {r["doi"] for r in new}
    since = probe_since(ctx.layout)
    known = sorted({r["doi"] for r in base_rows if r["doi"] and r["title"]} - new_dois) if since is not None else []
    stats: dict[str, Any] = {"source": CROSSREF, "status": "ok", "reason": None, "candidates": len(lacking),
                             "asked_new": len(new_dois), "enriched": 0, "requests": 0}
    stats_file = ctx.staging.enrichment_stats(CROSSREF)
    if client is None or not (new_dois or known):
        stats["status"] = "skipped" if client is None else "ok"
        stats["reason"] = "crossref is not configured for this review" if client is None else None
        write_json_atomic(stats, stats_file)
        log.info("crossref: %s", stats["reason"] or "no new work and nothing known: nothing to ask")
        return stats
    started = time.monotonic()
    log.info("crossref: asking about %d new works (%d lacking metadata) and probing %d known ones since %s",
             len(new_dois), len(lacking), len(known), since)
    try:
        works, info = client.enrich(sorted(new_dois), lookup_missing=lacking)
        changed, probe = client.changed_since(known, since, ctx.run_ts.date()) if known else ([], None)
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
    for asked, primary in (info.get("aliased") or {}).items():
        if primary in by_doi and asked not in by_doi:
            record = by_doi[primary] if primary in new_dois else by_doi.pop(primary)
            by_doi[asked] = dataclasses.replace(record, doi=asked, source_ids={CROSSREF: asked})
    staged = [dataclasses.replace(w, probe=True) if doi in lacking else light(w) for doi, w in by_doi.items()]
    staged += [light(w) for w in changed]
    stats["enriched"] = sum(1 for doi in lacking if doi in by_doi)
    stats["relations"] = sum(1 for w in by_doi.values() if w.related_dois)
    if probe is not None:
        stats["probe"] = probe
    write_parquet_atomic(works_to_table(staged), ctx.staging.enrichment_records(CROSSREF))
    merge_sources(ctx, with_enrichment=True)
    http = getattr(client, "http", None)
    stats.update(requests=http.log.count if http else 0, seconds=round(time.monotonic() - started, 3),
                 http=http.log.summary() if http else {}, detail=jsonable(info))
    write_json_atomic(stats, stats_file)
    log.info("crossref: enriched %d of %d new works lacking metadata, %d with version relations; %d known works "
             "changed (%d requests)", stats["enriched"], len(lacking), stats["relations"], len(changed),
             stats["requests"])
    return stats
