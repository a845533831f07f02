"""The merge step: every staged source, the enrichment and the base snapshot into ``merged.parquet``."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from include.living_review.merge.portfolio import fill_from_portfolio
from include.living_review.records import MERGED_SCHEMA, STAGED_SCHEMA, Work, table_to_works
from include.living_review.run import PublishBlocked, RunContext
from include.living_review.sources.base import collector_paused
from include.living_review.sources.fetch import source_stats
from include.living_review.storage import StoragePath, base_commit, read_parquet, write_json_atomic, write_parquet_atomic
from include.living_review.storage.history import committed_rows, portfolio_rows

log = logging.getLogger(__name__)
# Without the raw payloads: validate looks up only the quarantined rows' ones.
MERGE_INPUT_COLUMNS = [name for name in STAGED_SCHEMA.names if name != "raw"]
_LIST_COLUMNS = ("authors", "publication_types", "sources", "update_notices", "versions", "version_evidence")


def merge_sources(ctx: RunContext, *, with_enrichment: bool = False) -> dict[str, Any]:
    """Merge every staged source with the base snapshot into one row per paper.

    The base is the latest committed snapshot up to this date (the same date's, for a
    second run that day), so first-seen dates carry over. The enrich step calls this
    again ``with_enrichment``: the enrichers' records then go through the same merge
    (field precedence, update notices, preprint relations) instead of being patched on.
    """
    from include.living_review.merge.works import merge_works
    from include.living_review.relevance import score_relevance

    if not with_enrichment:
        for enricher in ctx.review.enrich:  # a rerun must not merge the last attempt's lookups
            ctx.staging.enrichment_records(enricher).unlink(missing_ok=True)
    stats = source_stats(ctx)
    ok = [s for s, st in stats.items() if st["status"] == "ok"]
    if not ok and any(st["status"] == "failed" for st in stats.values()):
        raise PublishBlocked(f"every source failed for review {ctx.review.id!r}: "
                             + "; ".join(f"{s}: {st['reason']}" for s, st in stats.items())
                             + ". Nothing was published; the last good snapshot stays")
    base = base_commit(ctx.layout)
    # Hundreds of thousands of acyclic objects: without the pause the cyclic collector
    # rescans them again and again (see collector_paused).
    with collector_paused():
        records: list[Work] = []
        for path in merge_inputs(ctx, ok):
            records.extend(table_to_works(read_parquet(path, columns=MERGE_INPUT_COLUMNS)))
        prev = committed_rows(base)
        result = merge_works(records, prev)
        rows = _as_rows(result.works)
        for row in rows:  # an enricher lists no citations: it never makes a work "reported"
            row["sources"] = [s for s in row.get("sources") or [] if s not in ctx.review.enrich]
        shared = fill_from_portfolio(rows, portfolio_rows(ctx.layout))
        prev_by_id = {r["work_id"]: r for r in prev}
        for row in rows:
            old = prev_by_id.get(row["work_id"])
            row["first_seen"] = old["first_seen"] if old and old.get("first_seen") else ctx.run_ts
            if row.get("reported_this_run", True):
                row["last_reported"] = ctx.run_ts
            else:
                row["last_reported"] = old.get("last_reported") if old else None
        scoring = score_relevance(ctx.review, rows)
        table = merged_table(rows)
        write_parquet_atomic(table, ctx.staging.merged)
    new = sum(1 for r in rows if r["first_seen"] == ctx.run_ts)
    summary = {"records_in": len(records), "works_out": len(rows), "new": new, "shared_from_portfolio": shared,
               "base_snapshot_date": base.snapshot_date.isoformat() if base else None,
               "merge_stats": jsonable(getattr(result, "stats", {})), "relevance": scoring}
    write_json_atomic(summary, ctx.staging.merge_stats)
    log.info("merge: %d records from %s -> %d works (%d new, %d carried from the snapshot of %s)",
             len(records), ", ".join(ok) or "no source", len(rows), new, len(prev),
             base.snapshot_date if base else "nothing (first run)")
    return summary


def merge_inputs(ctx: RunContext, ok: Iterable[str]) -> list[StoragePath]:
    """The staged files the merge reads: each successful source's, then the enrichers'."""
    paths = [ctx.staging.source_records(source) for source in ok]
    # merge_sources without enrichment deletes the enrichers' files, so when one exists it was merged.
    paths.extend(ctx.staging.enrichment_records(enricher) for enricher in ctx.review.enrich)
    return [path for path in paths if path.exists()]


def _as_rows(works: Iterable[Any]) -> list[dict[str, Any]]:
    rows = []
    for work in works:
        row = dict(work) if isinstance(work, dict) else dict(vars(work))
        if isinstance(row.get("source_ids"), list):
            row["source_ids"] = dict(row["source_ids"])
        rows.append(row)
    return rows


def merged_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Merged rows as a :data:`MERGED_SCHEMA` table: lists never null, maps as key/value pairs."""
    for row in rows:  # in place: the rows are not used after this
        ids = row.get("source_ids")
        row["source_ids"] = list(ids.items()) if isinstance(ids, dict) else (ids or [])
        for name in _LIST_COLUMNS:
            if row.get(name) is None:
                row[name] = []
        row["is_retracted"] = bool(row.get("is_retracted"))
        row["title_is_translated"] = bool(row.get("title_is_translated"))
    # Arrow's row converter: about half the time of building Python lists per column first.
    return pa.Table.from_pylist(rows, schema=MERGED_SCHEMA)


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
