"""The coverage ledger: per source, what it listed and which works only it found, this run."""
from __future__ import annotations

from typing import Any

from include.living_review.run import RunContext


def coverage_rows(ctx: RunContext, rows: list[dict[str, Any]], stats: dict[str, dict[str, Any]],
                  enrichment: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per source (``works``: those it reported this run) and one per enricher."""
    reported = [r for r in rows if r.get("last_reported") == ctx.run_ts]
    coverage = []
    for source, st in stats.items():
        mine = [r for r in reported if source in (r["sources"] or [])]
        coverage.append({
            "source": source, "status": st["status"], "reason": st.get("reason"),
            "requests": st.get("requests", 0), "metadata_requests": st.get("metadata_requests", 0),
            "listed": st.get("listed", 0), "works": len(mine),
            "unique_to_source": sum(1 for r in mine if list(r["sources"]) == [source]),
            "new_this_run": sum(1 for r in mine if r["first_seen"] == ctx.run_ts),
            "seconds": st.get("seconds"),
        })
    for enricher, st in enrichment.items():
        coverage.append({"source": enricher, "status": st["status"], "reason": st.get("reason"),
                         "requests": st.get("requests", 0), "metadata_requests": st.get("requests", 0),
                         "listed": 0, "works": st.get("enriched", 0), "unique_to_source": 0,
                         "new_this_run": 0, "seconds": st.get("seconds")})
    return coverage
