"""The publish step: snapshot, quarantine, changes, coverage and events of one run, as one commit."""
from __future__ import annotations

import logging
import uuid
from typing import Any

import pyarrow as pa

from include.living_review import settings
from include.living_review.config import ALL_ENRICHERS
from include.living_review.merge.portfolio import write_portfolio
from include.living_review.records import CHANGES_SCHEMA, COVERAGE_SCHEMA, INCLUDED_STUDIES_SCHEMA
from include.living_review.references import committed_included, reference_changes
from include.living_review.run import PublishBlocked, RunContext
from include.living_review.snapshot.changes import CHANGE_COLUMNS, changes_between
from include.living_review.snapshot.coverage import coverage_rows
from include.living_review.snapshot.events import events_from_changes
from include.living_review.snapshot.manifest import build_manifest
from include.living_review.sources.fetch import source_stats
from include.living_review.storage import (
    base_commit,
    commit_run,
    committed_manifest,
    date_lock,
    parquet_writer,
    previous_commit,
    read_json,
    read_parquet,
    recover,
)
from include.living_review.storage.history import committed_table

log = logging.getLogger(__name__)


def publish(ctx: RunContext) -> dict[str, Any]:
    """Publish this run's files for its review and date; see :mod:`include.living_review.storage.commit`."""
    ctx.hold("publish_snapshot")
    layout = ctx.layout
    with date_lock(layout):
        recover(layout)  # an earlier attempt of this task may have been killed mid-commit
        passed = read_parquet(ctx.staging.validated)
        rejected = read_parquet(ctx.staging.rejected)
        base, previous = base_commit(layout), previous_commit(layout)
        base_table = committed_table(base, CHANGE_COLUMNS)
        if base_table.num_rows and passed.num_rows < base_table.num_rows * (1 - settings.ROW_DROP_SHARE):
            raise PublishBlocked(
                f"review {ctx.review.id!r}: the snapshot would shrink from {base_table.num_rows} to "
                f"{passed.num_rows} works (more than {settings.ROW_DROP_SHARE:.0%}); refusing to publish. "
                f"See the quarantine in {ctx.staging.rejected} and rerun once fixed")
        current = passed.select(CHANGE_COLUMNS)
        # changes.parquet compares with the previous *date* (the analyst's "this week");
        # the event log with the last *commit*, so a second run today adds only its news.
        previous_table = base_table if base == previous else committed_table(previous, CHANGE_COLUMNS)
        changes = changes_between(previous_table, current, ctx.run_ts)
        news = changes if base == previous else changes_between(base_table, current, ctx.run_ts)
        commit_id = f"{ctx.layout.snapshot_date.isoformat()}T{ctx.run_ts:%H%M%S}-{uuid.uuid4().hex[:12]}"
        # The included studies: this run's, else (the references task failed or is off) the base's again.
        previous_included = committed_included(base)
        if ctx.staging.references.exists():
            included = read_parquet(ctx.staging.references)
            references_stats = read_json(ctx.staging.references_stats, {}) or {}
        else:
            included = pa.Table.from_pylist(previous_included, schema=INCLUDED_STUDIES_SCHEMA)
            references_stats = {"status": "skipped" if not ctx.review.watch_included_studies else "failed",
                                "reason": "watching included studies is off for this review"
                                if not ctx.review.watch_included_studies else
                                "the fetch_references task did not finish; the previous list is kept"}
        news = [*news, *reference_changes(previous_included, included.to_pylist())]
        events = events_from_changes(news, run_id=ctx.run_id, run_ts=ctx.run_ts)
        base_manifest = committed_manifest(base) if base else None
        event_files = list((base_manifest or {}).get("event_files", [])) if base == layout else []
        files: list[tuple[str, Any, Any]] = [
            ("quarantine", layout.quarantine_file, parquet_writer(rejected)),
            ("changes", layout.changes_file, parquet_writer(pa.Table.from_pylist(changes, schema=CHANGES_SCHEMA))),
        ]
        if events.num_rows:
            files.append(("events", layout.events_file(commit_id), parquet_writer(events)))
            event_files.append(layout.events_file(commit_id).name)

        rows = passed.select(["work_id", "sources", "first_seen", "last_reported"]).to_pylist()
        stats = source_stats(ctx)
        # The enrich step always records what it did (also "not configured"); coverage lists
        # only the enrichers the review uses.
        enrichment = {e: read_json(ctx.staging.enrichment_stats(e)) or {"source": e, "status": "skipped",
                                                                          "reason": "the enrich task did not run"}
                      for e in ALL_ENRICHERS}
        merge = read_json(ctx.staging.merge_stats, {})
        validation = read_json(ctx.staging.validation, {})
        coverage = coverage_rows(ctx, rows, stats, {e: st for e, st in enrichment.items() if e in ctx.review.enrich})
        if included.num_rows or previous_included:
            files.append(("references", layout.references_file, parquet_writer(included)))
        files += [
            ("coverage", layout.coverage_file, parquet_writer(pa.Table.from_pylist(coverage, schema=COVERAGE_SCHEMA))),
            ("snapshot", layout.snapshot_file, parquet_writer(passed)),
        ]
        kinds = events.column("kind").to_pylist()
        manifest = build_manifest(
            ctx, base=base, previous=previous, base_manifest=base_manifest or {}, stats=stats,
            enrichment=enrichment, merge=merge, validation=validation, coverage=coverage, rows=rows,
            changes=changes, events={kind: kinds.count(kind) for kind in sorted(set(kinds))},
            event_files=event_files, quarantined=rejected.num_rows, published=passed.num_rows,
            previous_count=previous_table.num_rows)
        manifest["references"] = {**references_stats, "studies": included.num_rows,
                                  "retracted": sum(1 for r in included.column("is_retracted").to_pylist() if r)}
        manifest = commit_run(layout, ctx.staging, files, manifest, commit_id=commit_id)
    try:
        write_portfolio(layout.data_dir)
    except Exception:  # noqa: BLE001 - a cross-review convenience table must not fail a publish
        log.exception("could not refresh portfolio/citations_by_review.parquet")
    new = manifest["counts"]["new"]
    log.info("published %s %s as commit %s: %d works (%d new), %d quarantined, %d new events -> %s",
             ctx.review.id, layout.snapshot_date, commit_id, passed.num_rows, new, rejected.num_rows,
             events.num_rows, layout.snapshot_file)
    return {"snapshot_date": layout.snapshot_date.isoformat(), "snapshot": str(layout.snapshot_file),
            "manifest": str(layout.manifest_file), "works": passed.num_rows, "new": new,
            "quarantined": rejected.num_rows, "partial": manifest["partial"], "commit_id": commit_id,
            "events": events.num_rows}
