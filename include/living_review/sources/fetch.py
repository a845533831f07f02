"""The fetch step: ask one source for the review's citing works and stage them.

One task per source, in parallel; a failed source fails only its own task (the merge
runs with the others and the manifest says ``partial``).
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from include.living_review import settings
from include.living_review.records import works_to_table
from include.living_review.run import RunContext, SourceFailed
from include.living_review.storage.history import committed_rows, portfolio_rows
from include.living_review.sources.base import KnownWorks, SourceResult, SourceSkipped, collector_paused
from include.living_review.sources.http import SourceError
from include.living_review.storage import (
    Layout,
    base_commit,
    committed_dates,
    committed_manifest,
    read_json,
    write_json_atomic,
    write_parquet_atomic,
)

log = logging.getLogger(__name__)
KNOWN_COLUMNS = ("doi", "pmid", "pmcid", "title")


def fetch_source(ctx: RunContext, source: str, client: Any) -> dict[str, Any]:
    """Ask one source for the review's citing works and stage them. Raises :class:`SourceFailed`."""
    # Works another configured review already has metadata for are not fetched again:
    # a paper citing several reviews is fetched once and shared (the portfolio).
    base = base_commit(ctx.layout)
    prev_source = last_ok_stats(ctx.layout, source)
    known = KnownWorks.from_rows((r for r in [*committed_rows(base, KNOWN_COLUMNS),
                                              *portfolio_rows(ctx.layout, KNOWN_COLUMNS)] if r.get("title")),
                                 since=probe_since(prev_source, base), until=ctx.run_ts.date())
    cached = prev_source.get("markers", {})
    stats: dict[str, Any] = {"source": source, "status": "ok", "reason": None, "listed": 0, "works": 0,
                             "metadata_requests": 0, "markers": {}, "query": {}}
    started = time.monotonic()
    staged = ctx.staging.source_records(source)
    staged.unlink(missing_ok=True)  # a failed retry must not merge the last attempt's records
    log.info("%s: asking for works citing %s (%d DOIs and %d PMIDs already known)", source, ctx.review.id,
             len(known.dois), len(known.pmids))
    try:
        result: SourceResult = client.fetch_citing(ctx.review, known, cached=cached)
    except SourceSkipped as exc:
        stats.update(status="skipped", reason=str(exc))
        log.warning("%s: skipped: %s", source, exc)
        return _finish_stats(ctx, client, stats, started)
    except Exception as exc:
        # Source errors already name the source and the cause; others keep their type.
        reason = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
        stats.update(status="failed", reason=reason)
        _finish_stats(ctx, client, stats, started)
        raise SourceFailed(f"{source} failed for review {ctx.review.id!r}: {exc}") from exc

    stats.update(listed=result.listed, works=len(result.works), metadata_requests=result.metadata_requests,
                 markers=result.markers, query=result.query)
    if result.probe is not None:
        stats["probe"] = result.probe
    with collector_paused():
        write_parquet_atomic(works_to_table(result.works), staged)
    problem = health_problem(source, result.listed, prev_source)
    if problem:
        stats.update(status="failed", reason=problem)
        _finish_stats(ctx, client, stats, started)
        staged.unlink(missing_ok=True)
        raise SourceFailed(f"{source} failed its health check for review {ctx.review.id!r}: {problem}. "
                           "Its previous works stay in the snapshot; check the source's status page "
                           "and rerun this task when it recovers")
    log.info("%s: listed %d citing works, staged %d records with %d metadata requests",
             source, result.listed, len(result.works), result.metadata_requests)
    return _finish_stats(ctx, client, stats, started)


def probe_since(prev_source: dict[str, Any], base: Layout | None) -> dt.date | None:
    """Where this source's update probe starts: the end of its last successful probe, else the last commit.

    A source that failed last week keeps the window open from its last good run, so a
    change made while it was down is still found. None on a first run: nothing is known.
    """
    if base is None:
        return None
    until = (prev_source.get("probe") or {}).get("until")
    return dt.date.fromisoformat(until) if until else base.snapshot_date


def last_ok_stats(layout: Layout, source: str) -> dict[str, Any]:
    """The source's stats from the latest earlier committed run where it succeeded.

    Comparing with the last *successful* run (not just the previous one) keeps a
    source that broke last week from passing as "0 works, ok" this week.
    """
    for day in reversed([d for d in committed_dates(layout.data_dir, layout.review_id) if d <= layout.snapshot_date]):
        stats = (committed_manifest(layout.on(day)) or {}).get("sources", {}).get(source)
        if stats and stats.get("status") == "ok":
            return stats
    return {}


def health_problem(source: str, listed: int, previous: dict[str, Any],
                   max_drop: float = settings.SOURCE_DROP_SHARE) -> str | None:
    """Why a source's answer looks broken compared with its last run, or None."""
    before = int(previous.get("listed") or 0) if previous.get("status") == "ok" else 0
    if before and listed == 0:
        return f"returned 0 citing works after {before} last run"
    if before and listed < before * (1 - max_drop):
        return f"returned {listed} citing works, down {1 - listed / before:.0%} from {before} last run " \
               f"(limit {max_drop:.0%})"
    return None


def _finish_stats(ctx: RunContext, client: Any, stats: dict[str, Any], started: float) -> dict[str, Any]:
    http = getattr(client, "http", None)
    stats["seconds"] = round(time.monotonic() - started, 3)
    stats["requests"] = http.log.count if http else 0
    stats["http"] = http.log.summary() if http else {}
    write_json_atomic(stats, ctx.staging.source_stats(stats["source"]))
    return stats


def source_stats(ctx: RunContext) -> dict[str, dict[str, Any]]:
    """What each configured source's fetch task staged (a task that never finished: failed)."""
    stats = {}
    for source in ctx.review.sources:
        found = read_json(ctx.staging.source_stats(source))
        stats[source] = found or {"source": source, "status": "failed",
                                  "reason": "the fetch task did not finish (see its log)"}
    return stats
