"""``runs/.../manifest.json``: the commit record of a run, and what it says about the run.

Written last by the commit (:mod:`include.living_review.storage.commit`): a date is
published exactly when its manifest is. Its JSON Schema is ``docs/manifest.schema.json``.
The digest never rewrites it; what the digest did is in ``runs/.../digest.json``.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from include.living_review.run import RunContext
from include.living_review.snapshot.changes import CHANGE_KINDS
from include.living_review.storage import Layout

MANIFEST_VERSION = "2.0"


def build_manifest(ctx: RunContext, *, base: Layout | None, previous: Layout | None, base_manifest: dict[str, Any],
                   stats: dict[str, dict[str, Any]], enrichment: dict[str, dict[str, Any]],
                   merge: dict[str, Any], validation: dict[str, Any], coverage: list[dict[str, Any]],
                   rows: list[dict[str, Any]], changes: list[dict[str, Any]], events: dict[str, int],
                   event_files: list[str], quarantined: int, published: int, previous_count: int) -> dict[str, Any]:
    layout = ctx.layout
    new = sum(1 for r in rows if r["first_seen"] == ctx.run_ts)
    enrich = next(iter(enrichment.values()), None)
    return {
        "manifest_version": MANIFEST_VERSION,
        "review_id": ctx.review.id,
        "review": {"title": ctx.review.title, "doi": ctx.review.doi, "pmid": ctx.review.pmid,
                   "pmcid": ctx.review.pmcid},
        "run_id": ctx.run_id,
        "run_key": ctx.run_key,
        "snapshot_date": layout.snapshot_date.isoformat(),
        "run_timestamp": ctx.run_ts.isoformat(),
        "published_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "baseline": previous is None,
        "previous_snapshot_date": previous.snapshot_date.isoformat() if previous else None,
        # The commit this run built on: the same date's earlier run, or the previous date's.
        "base": {"snapshot_date": base.snapshot_date.isoformat(), "commit_id": base_manifest.get("commit_id"),
                 "run_id": base_manifest.get("run_id")} if base else None,
        "partial": any(st["status"] == "failed" for st in stats.values()),
        "sources": {s: {k: v for k, v in st.items() if k != "source"} for s, st in stats.items()},
        "enrichment": enrich,
        "counts": {
            "identified": {s: st.get("listed", 0) for s, st in stats.items()},
            "records_in": merge.get("records_in", 0),
            "after_merge": merge.get("works_out", 0),
            "quarantined": quarantined,
            "published": published,
            "new": new,
            "previous": previous_count,
        },
        "coverage": {c["source"]: c["works"] for c in coverage if c["source"] not in enrichment}
        | {"union": sum(1 for r in rows if r.get("last_reported") == ctx.run_ts)},
        "merge": merge.get("merge_stats", {}),
        "data_quality": validation,
        "changes": {kind: sum(1 for c in changes if c["change"] == kind) for kind in CHANGE_KINDS},
        "events": events,
        "event_files": event_files,
        "paths": {"snapshot": str(layout.snapshot_file), "quarantine": str(layout.quarantine_file),
                  "changes": str(layout.changes_file), "coverage": str(layout.coverage_file),
                  "events": str(layout.events_dir), "references": str(layout.references_file),
                  "data_docs": validation.get("data_docs")},
    }
