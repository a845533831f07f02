"""The pipeline's steps as plain functions; each Airflow task is a thin call into one of them.

Steps hand each other files in the run's staging folder (``Layout.staging_dir``),
never record lists: XCom only carries the small stats dicts these functions return.

    fetch_source (one per source) ─┐
                                   ├─> merge_sources ─> enrich_metadata ─> validate ─> publish
    (a failed source is recorded) ─┘
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from include.living_review import settings
from include.living_review.config import ReviewConfig
from include.living_review.http import SourceError
from include.living_review.models import (
    CITING_WORKS_SCHEMA,
    QUARANTINE_SCHEMA,
    STAGED_SCHEMA,
    Work,
    table_to_works,
    works_to_table,
)
from include.living_review.sources.base import KnownWorks, SourceResult, SourceSkipped, collector_paused
from include.living_review.storage import (
    Layout,
    StoragePath,
    json_file,
    local_mirror,
    parquet_columns,
    parquet_file,
    partition_lock,
    publish_files,
    read_json,
    read_parquet,
    write_json_atomic,
    write_parquet_atomic,
)

log = logging.getLogger(__name__)
MANIFEST_VERSION = "1.0"
ID_COLUMNS = ("doi", "pmid", "pmcid", "openalex_id", "s2_paper_id")
TRACKED_FIELDS = ("doi", "pmid", "pmcid", "title", "journal", "publication_year", "publication_date",
                  "publication_types", "is_retracted", "authors", "update_notices", "versions")

# What publish reads back as Python rows to compute the change feed and coverage.
CHANGE_COLUMNS = list(dict.fromkeys(("work_id", "first_seen", "last_reported", "sources", *TRACKED_FIELDS)))
BASELINE_COLUMNS = ["work_id", "first_seen", "last_reported", "sources", "title", "doi"]
CHANGE_KINDS = ("added", "updated", "no_longer_reported", "retracted", "corrected", "preprint_published")

COVERAGE_SCHEMA = pa.schema([
    pa.field("source", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
    pa.field("reason", pa.string()),
    pa.field("requests", pa.int64()),
    pa.field("metadata_requests", pa.int64()),
    pa.field("listed", pa.int64()),
    pa.field("works", pa.int64()),
    pa.field("unique_to_source", pa.int64()),
    pa.field("new_this_run", pa.int64()),
    pa.field("seconds", pa.float64()),
])
CHANGES_SCHEMA = pa.schema([
    pa.field("work_id", pa.string(), nullable=False),
    pa.field("change", pa.string(), nullable=False),
    pa.field("changed_fields", pa.list_(pa.string())),
    pa.field("title", pa.string()),
    pa.field("doi", pa.string()),
    pa.field("detail", pa.string()),
])


class SourceFailed(RuntimeError):
    """A source could not be read (or failed its health check); other sources still publish."""


class PublishBlocked(RuntimeError):
    """Data quality is too poor to publish; the last good snapshot stays published."""


@dataclass(frozen=True)
class RunContext:
    """Who and when: one review, one logical date."""

    review: ReviewConfig
    layout: Layout
    run_id: str
    run_ts: dt.datetime  # the logical date: deterministic, so reruns write identical rows

    @classmethod
    def create(cls, review: ReviewConfig, data_dir: str | Path, logical_date: dt.datetime, run_id: str) -> RunContext:
        run_ts = logical_date.astimezone(dt.timezone.utc).replace(microsecond=0)
        return cls(review, Layout.of(data_dir, review.id, run_ts.date()), run_id, run_ts)

    def staged(self, name: str) -> StoragePath:
        return self.layout.staging_dir / name


# -- reading the previous snapshot -------------------------------------------------

def previous_rows(layout: Layout, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The previous snapshot's rows (only ``columns`` when given: an abstract per row adds up)."""
    previous = layout.previous()
    if previous is None:
        return []
    return read_parquet(previous.snapshot_file, columns=columns).to_pylist()


def previous_table(layout: Layout, columns: Sequence[str]) -> pa.Table:
    """``columns`` of the previous snapshot (empty without one).

    A column an older snapshot lacks (written under an earlier contract) is all nulls,
    so comparing with it reports the field as changed instead of failing the publish.
    """
    previous = layout.previous()
    if previous is None:
        return CITING_WORKS_SCHEMA.empty_table().select(list(columns))
    present = set(parquet_columns(previous.snapshot_file))
    table = read_parquet(previous.snapshot_file, columns=[name for name in columns if name in present])
    missing = [name for name in columns if name not in present]
    for name in missing:
        table = table.append_column(CITING_WORKS_SCHEMA.field(name), pa.nulls(table.num_rows,
                                                                          CITING_WORKS_SCHEMA.field(name).type))
    return table.select(list(columns))


def previous_manifest(layout: Layout) -> dict[str, Any]:
    previous = layout.previous()
    return read_json(previous.manifest_file, {}) if previous else {}


def last_ok_stats(layout: Layout, source: str) -> dict[str, Any]:
    """The source's stats from the latest earlier run where it succeeded.

    Comparing with the last *successful* run (not just the previous one) keeps a
    source that broke last week from passing as "0 works, ok" this week.
    """
    for day in reversed([d for d in layout.snapshot_dates() if d < layout.snapshot_date]):
        stats = read_json(Layout(layout.data_dir, layout.review_id, day).manifest_file, {}) \
            .get("sources", {}).get(source)
        if stats and stats.get("status") == "ok":
            return stats
    return {}


# -- fetch -------------------------------------------------------------------------

def _stats_path(ctx: RunContext, source: str) -> StoragePath:
    return ctx.staged(f"source={source}.json")


def fetch_source(ctx: RunContext, source: str, client: Any) -> dict[str, Any]:
    """Ask one source for the review's citing works and stage them. Raises :class:`SourceFailed`."""
    known_columns = ("doi", "pmid", "pmcid", "title")
    # Works another configured review already has metadata for are not fetched again:
    # a paper citing several reviews is fetched once and shared (the portfolio).
    known = KnownWorks.from_rows(r for r in [*previous_rows(ctx.layout, known_columns),
                                             *portfolio_rows(ctx, known_columns)] if r.get("title"))
    prev_source = last_ok_stats(ctx.layout, source)
    cached = prev_source.get("markers", {})
    stats: dict[str, Any] = {"source": source, "status": "ok", "reason": None, "listed": 0, "works": 0,
                             "metadata_requests": 0, "markers": {}, "query": {}}
    started = time.monotonic()
    staged = ctx.staged(f"source={source}.parquet")
    staged.unlink(missing_ok=True)  # a failed rerun must not merge last attempt's records
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
    write_json_atomic(stats, _stats_path(ctx, stats["source"]))
    return stats


# -- merge -------------------------------------------------------------------------

def _source_stats(ctx: RunContext) -> dict[str, dict[str, Any]]:
    stats = {}
    for source in ctx.review.sources:
        if source == "crossref":
            continue
        found = read_json(_stats_path(ctx, source))
        stats[source] = found or {"source": source, "status": "failed",
                                  "reason": "the fetch task did not finish (see its log)"}
    return stats


def merge_sources(ctx: RunContext, *, with_enrichment: bool = False) -> dict[str, Any]:
    """Merge every staged source with the previous snapshot into one row per paper.

    The enrich step calls this again ``with_enrichment``: Crossref's records then go
    through the same merge (field precedence, update notices, preprint relations)
    instead of being patched on afterwards.
    """
    from include.living_review.merge import merge_works

    enrichment = ctx.staged("source=crossref.parquet")
    if not with_enrichment:
        enrichment.unlink(missing_ok=True)  # a rerun must not merge the last attempt's lookups
    stats = _source_stats(ctx)
    ok = [s for s, st in stats.items() if st["status"] == "ok"]
    if not ok and any(st["status"] == "failed" for st in stats.values()):
        raise PublishBlocked(f"every source failed for review {ctx.review.id!r}: "
                             + "; ".join(f"{s}: {st['reason']}" for s, st in stats.items())
                             + ". Nothing was published; the last good snapshot stays")
    # Hundreds of thousands of acyclic objects: without the pause the cyclic collector
    # rescans them again and again (see collector_paused).
    with collector_paused():
        records: list[Work] = []
        for path in _merge_inputs(ctx, ok):
            # Without the raw payloads: validate looks up only the quarantined rows' ones.
            records.extend(table_to_works(read_parquet(path, columns=MERGE_INPUT_COLUMNS)))
        prev = previous_rows(ctx.layout)
        result = merge_works(records, prev)
        rows = _as_rows(result.works)
        for row in rows:  # Crossref has no cited-by list: it enriches, it never reports a citation
            row["sources"] = [s for s in row.get("sources") or [] if s != "crossref"]
        shared = fill_from_portfolio(rows, portfolio_rows(ctx))
        prev_by_id = {r["work_id"]: r for r in prev}
        for row in rows:
            old = prev_by_id.get(row["work_id"])
            row["first_seen"] = old["first_seen"] if old and old.get("first_seen") else ctx.run_ts
            if row.get("reported_this_run", True):
                row["last_reported"] = ctx.run_ts
            else:
                row["last_reported"] = old.get("last_reported") if old else None
        scoring = score_relevance(ctx.review, rows)
        table = _merged_table(rows)
        write_parquet_atomic(table, ctx.staged("merged.parquet"))
    new = sum(1 for r in rows if r["first_seen"] == ctx.run_ts)
    summary = {"records_in": len(records), "works_out": len(rows), "new": new, "shared_from_portfolio": shared,
               "merge_stats": _jsonable(getattr(result, "stats", {})), "relevance": scoring}
    write_json_atomic(summary, ctx.staged("merge.json"))
    log.info("merge: %d records from %s -> %d works (%d new, %d carried from the previous snapshot)",
             len(records), ", ".join(ok) or "no source", len(rows), new, len(prev))
    return summary


PORTFOLIO_FIELDS = ("title", "title_is_translated", "authors", "journal", "journal_abbrev", "publication_year",
                    "publication_date", "volume", "issue", "pages", "publication_types", "language", "abstract",
                    "doi", "pmid", "pmcid")


def portfolio_rows(ctx: RunContext, columns: Sequence[str] = (*PORTFOLIO_FIELDS, "is_retracted")
                   ) -> list[dict[str, Any]]:
    """Rows of every *other* configured review's latest snapshot (their metadata is shared)."""
    from include.living_review.storage import published_dates

    rows: list[dict[str, Any]] = []
    root = ctx.layout.data_dir / "snapshots"
    if not root.is_dir():
        return rows
    for review_dir in root.glob("review_id=*"):
        review_id = review_dir.name.split("=", 1)[1]
        if review_id == ctx.review.id:
            continue
        dates = [d for d in published_dates(ctx.layout.data_dir, review_id) if d <= ctx.layout.snapshot_date]
        if dates:
            rows.extend(read_parquet(Layout(ctx.layout.data_dir, review_id, dates[-1]).snapshot_file,
                                     columns=list(columns)).to_pylist())
    return rows


def fill_from_portfolio(rows: list[dict[str, Any]], donors: list[dict[str, Any]]) -> int:
    """Give id-only works the metadata another review already fetched; returns how many."""
    if not donors:
        return 0
    by_key = {f"{c}:{d[c]}": d for d in donors if d.get("title") for c in ("doi", "pmid", "pmcid") if d.get(c)}
    filled = 0
    for row in rows:
        if row.get("title"):
            continue
        donor = next((by_key[f"{c}:{row[c]}"] for c in ("doi", "pmid", "pmcid")
                      if row.get(c) and f"{c}:{row[c]}" in by_key), None)
        if donor is None:
            continue
        for name in PORTFOLIO_FIELDS:
            if not row.get(name) and donor.get(name) is not None:
                row[name] = donor[name]
        row["is_retracted"] = bool(row.get("is_retracted") or donor.get("is_retracted"))
        filled += 1
    if filled:
        log.info("portfolio: %d works took metadata another review had already fetched", filled)
    return filled


def write_portfolio(data_dir: StoragePath) -> StoragePath | None:
    """``portfolio/citations_by_review.parquet``: which citing work cites which configured reviews."""
    from include.living_review.storage import published_dates

    root = data_dir / "snapshots"
    tables = []
    for review_dir in sorted(root.glob("review_id=*")):
        review_id = review_dir.name.split("=", 1)[1]
        dates = published_dates(data_dir, review_id)
        if not dates:
            continue
        table = read_parquet(Layout(data_dir, review_id, dates[-1]).snapshot_file,
                             columns=["work_id", "doi", "pmid", "pmcid", "title", "first_seen"])
        tables.append(table.append_column("review_id", pa.array([review_id] * table.num_rows, pa.string()))
                      .append_column("snapshot_date", pa.array([dates[-1]] * table.num_rows, pa.date32())))
    if not tables:
        return None
    combined = pa.concat_tables(tables)
    keys = [f"doi:{d}" if d else (f"pmid:{p}" if p else (f"pmcid:{c}" if c else f"work:{w}"))
            for d, p, c, w in zip(*(combined.column(n).to_pylist() for n in ("doi", "pmid", "pmcid", "work_id")))]
    counts: dict[str, set[str]] = {}
    for key, review_id in zip(keys, combined.column("review_id").to_pylist()):
        counts.setdefault(key, set()).add(review_id)
    combined = combined.append_column("paper_key", pa.array(keys, pa.string()))
    combined = combined.append_column("n_reviews", pa.array([len(counts[k]) for k in keys], pa.int32()))
    return write_parquet_atomic(combined, data_dir / "portfolio" / "citations_by_review.parquet")


def score_relevance(review: ReviewConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Score every work against the review's scope, in one call (TF-IDF scores are batch-relative)."""
    from include.living_review import relevance

    scorer = settings.RELEVANCE_SCORER
    text = relevance.build_review_text(review.title, review.abstract, review.scope_keywords)
    started = time.monotonic()
    titles, abstracts = [r.get("title") for r in rows], [r.get("abstract") for r in rows]
    try:
        scores = relevance.score_columns(text, list(review.scope_keywords), titles, abstracts, scorer=scorer)
    except relevance.EmbeddingScorerUnavailable as exc:
        log.warning("relevance: %s; falling back to the tfidf scorer", exc)
        scorer = "tfidf"
        scores = relevance.score_columns(text, list(review.scope_keywords), titles, abstracts, scorer=scorer)
    for row, (score, reason) in zip(rows, scores):
        row["relevance"], row["relevance_reason"] = score, reason
    likely = sum(1 for score, _ in scores if relevance.is_likely_relevant(score))
    log.info("relevance: scored %d works with %s (%d likely relevant)", len(rows), scorer, likely)
    return {"scorer": scorer, "likely_relevant": likely, "seconds": round(time.monotonic() - started, 3)}


def _as_rows(works: Iterable[Any]) -> list[dict[str, Any]]:
    rows = []
    for work in works:
        row = dict(work) if isinstance(work, dict) else dict(vars(work))
        if isinstance(row.get("source_ids"), list):
            row["source_ids"] = dict(row["source_ids"])
        rows.append(row)
    return rows


def _id_keys(row: dict[str, Any] | Work) -> list[str]:
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k, None)
    return [f"{c}:{get(c)}" for c in (*ID_COLUMNS, "omid") if get(c)]


MERGE_INPUT_COLUMNS = [name for name in STAGED_SCHEMA.names if name != "raw"]


def _merge_inputs(ctx: RunContext, ok: Iterable[str]) -> list[StoragePath]:
    """The staged files the merge reads: each successful source's, then Crossref's enrichment."""
    paths = [ctx.staged(f"source={source}.parquet") for source in ok]
    # merge_sources without enrichment deletes Crossref's file, so when it exists it was merged.
    paths.append(ctx.staged("source=crossref.parquet"))
    return [path for path in paths if path.exists()]


def raw_payloads(ctx: RunContext, rows: list[dict[str, Any]]) -> list[str | None]:
    """Per merged row, its records' raw source payloads as JSON ``{source: payload}`` (None if none).

    Looked up in the staged source files, and only for the rows asked about (the
    quarantined ones): carrying every record's payload through the merge doubled its
    memory at 100k records. A record belongs to the first row that shares an id with it.
    """
    if not rows:
        return []
    row_of: dict[str, int] = {}
    for index, row in enumerate(rows):
        for key in _id_keys(row):
            row_of.setdefault(key, index)
    wanted: dict[str, list[str]] = {}
    for key in row_of:
        column, value = key.split(":", 1)
        wanted.setdefault(column, []).append(value)
    found: list[dict[str, str]] = [{} for _ in rows]
    ok = [s for s, st in _source_stats(ctx).items() if st["status"] == "ok"]
    for path in _merge_inputs(ctx, ok):
        ids = read_parquet(path, columns=[*ID_COLUMNS, "omid", "sources"])
        mask = None
        for column, values in wanted.items():
            hit = pc.fill_null(pc.is_in(ids.column(column), value_set=pa.array(values, pa.string())), False)
            mask = hit if mask is None else pc.or_(mask, hit)
        if mask is None or not pc.any(mask).as_py():
            continue
        matched = pc.indices_nonzero(mask)
        payloads = read_parquet(path, columns=["raw"]).column("raw").take(matched).to_pylist()
        for record, payload in zip(ids.take(matched).to_pylist(), payloads):
            index = next((row_of[k] for k in _id_keys(record) if k in row_of), None)
            if index is not None and payload:
                found[index][(record["sources"] or ["unknown"])[0]] = payload
    return [json.dumps(raw, ensure_ascii=False) if raw else None for raw in found]


# Staged between merge and validate: the snapshot's columns plus the OpenCitations id
# (for the quarantine's raw payload look-up); a title may still be missing (quarantined later).
MERGED_SCHEMA = CITING_WORKS_SCHEMA.append(pa.field("omid", pa.string()))
MERGED_SCHEMA = MERGED_SCHEMA.set(MERGED_SCHEMA.get_field_index("title"), pa.field("title", pa.string()))


_LIST_COLUMNS = ("authors", "publication_types", "sources", "update_notices", "versions")


def _merged_table(rows: list[dict[str, Any]]) -> pa.Table:
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


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# -- enrich ------------------------------------------------------------------------

def enrich_metadata(ctx: RunContext, client: Any | None) -> dict[str, Any]:
    """Fill missing metadata of *new* works that have a DOI, from Crossref."""
    # Only the five columns the choice needs: at 100k works the full rows (raw payloads
    # included) cost seconds and a GB of memory for nothing when no work needs enriching.
    rows = read_parquet(ctx.staged("merged.parquet"),
                        columns=["doi", "first_seen", "title", "journal", "publication_year"]).to_pylist()
    wanted = [r for r in rows if r["doi"] and r["first_seen"] == ctx.run_ts
              and (not r["title"] or not r["journal"] or r["publication_year"] is None)]
    stats: dict[str, Any] = {"source": "crossref", "status": "ok", "reason": None, "candidates": len(wanted),
                             "enriched": 0, "requests": 0}
    if client is None or not wanted:
        stats["status"] = "skipped" if client is None else "ok"
        stats["reason"] = "crossref is not configured for this review" if client is None else None
        write_json_atomic(stats, ctx.staged("enrich.json"))
        return stats
    started = time.monotonic()
    try:
        works, info = client.enrich([r["doi"] for r in wanted])
    except Exception as exc:
        # Enrichment is best effort: works still lacking a title are quarantined with
        # their reason, and the next run tries again (they are still "new" then).
        stats.update(status="failed", reason=f"{type(exc).__name__}: {exc}",
                     seconds=round(time.monotonic() - started, 3))
        write_json_atomic(stats, ctx.staged("enrich.json"))
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
            by_doi[asked] = dataclasses.replace(record, doi=asked, source_ids={"crossref": asked})
    works = list(by_doi.values())
    stats["enriched"] = sum(1 for r in wanted if r["doi"] in by_doi
                            or r["doi"] in (info.get("aliased") or {}))
    write_parquet_atomic(works_to_table(works), ctx.staged("source=crossref.parquet"))
    merge_sources(ctx, with_enrichment=True)
    http = getattr(client, "http", None)
    stats.update(requests=http.log.count if http else 0, seconds=round(time.monotonic() - started, 3),
                 http=http.log.summary() if http else {}, detail=_jsonable(info))
    write_json_atomic(stats, ctx.staged("enrich.json"))
    log.info("crossref: enriched %d of %d new works lacking metadata (%d requests)",
             stats["enriched"], len(wanted), stats["requests"])
    return stats


# -- validate ----------------------------------------------------------------------

def validate(ctx: RunContext) -> dict[str, Any]:
    """Run the GX record suite; stage passing rows and quarantine the rest with their reasons."""
    from data_quality.validate import systemic_failure, validate_works

    table = read_parquet(ctx.staged("merged.parquet"))
    frame = table.drop_columns(["omid"]).to_pandas()
    # GX renders Data Docs to a local disk only; on an object store they are uploaded after.
    with local_mirror(ctx.layout.docs_dir) as docs_dir:
        report = validate_works(frame, run_date=ctx.layout.snapshot_date, data_docs_dir=docs_dir)
    index = report.data_docs_index
    if index is not None and docs_dir != ctx.layout.docs_dir:
        index = ctx.layout.docs_dir.joinpath(*index.relative_to(docs_dir).parts)
    summary = report.summary()
    summary["data_docs"] = str(index) if index else None
    problem = systemic_failure(report, max_share=settings.SYSTEMIC_FAILURE_SHARE)
    if problem:
        summary["status"] = "blocked"
        summary["reason"] = problem
        write_json_atomic(summary, ctx.staged("validation.json"))
        raise PublishBlocked(f"review {ctx.review.id!r}: {problem}. The last good snapshot stays published")

    rejected = sorted(report.blocking_failures)
    keep = [i for i in range(table.num_rows) if i not in report.blocking_failures]
    passed = table.take(pa.array(keep, pa.int64())).drop_columns(["omid"]).cast(CITING_WORKS_SCHEMA)
    write_parquet_atomic(passed, ctx.staged("validated.parquet"))
    rows = table.take(pa.array(rejected, pa.int64())).to_pylist() if rejected else []
    now = dt.datetime.now(dt.timezone.utc)
    quarantine = pa.table({
        "work_id": [r["work_id"] for r in rows],
        "source": [",".join(r["sources"] or []) or "unknown" for r in rows],
        "title": [r["title"] for r in rows],
        "failed_expectations": [report.blocking_failures[i] for i in rejected],
        "reason": ["failed blocking expectations: " + ", ".join(report.blocking_failures[i]) for i in rejected],
        "raw_payload": raw_payloads(ctx, rows),
        "run_id": [ctx.run_id] * len(rows),
        "quarantined_at": [now] * len(rows),
    }, schema=QUARANTINE_SCHEMA)
    write_parquet_atomic(quarantine, ctx.staged("rejected.parquet"))
    warned = {table.column("work_id")[i].as_py(): names for i, names in report.warnings.items()}
    summary.update(status="ok", quarantined=len(rejected), published=passed.num_rows,
                   warning_rows=len(warned), warning_examples=dict(list(warned.items())[:20]))
    write_json_atomic(summary, ctx.staged("validation.json"))
    log.info("validate: %d rows, %d quarantined, %d with warnings (%.1fs in GX)",
             table.num_rows, len(rejected), len(warned), report.seconds)
    return {"rows": table.num_rows, "quarantined": len(rejected), "warning_rows": len(warned)}


# -- publish -----------------------------------------------------------------------

_UNSET: Any = object()


def compute_changes(previous: list[dict[str, Any]], current: list[dict[str, Any]],
                    run_ts: dt.datetime, prev_run: dt.datetime | None = _UNSET) -> list[dict[str, Any]]:
    """One row per added, updated or no-longer-reported work, compared with the previous snapshot.

    ``prev_run`` is the previous run's timestamp (the latest ``last_reported``), taken
    from ``previous`` unless given: :func:`changes_between` passes only some rows.
    """
    before = {r["work_id"]: r for r in previous}
    if prev_run is _UNSET:
        prev_run = max((r["last_reported"] for r in previous if r.get("last_reported")), default=None)
    changes = []
    for row in current:
        old = before.get(row["work_id"])
        if old is None:
            changes.append({"work_id": row["work_id"], "change": "added", "changed_fields": [],
                            "title": row["title"], "doi": row["doi"], "detail": None})
            continue
        # Equal values need no normalizing: most rows are unchanged week to week.
        changed = [f for f in TRACKED_FIELDS
                   if old.get(f) != row.get(f) and _norm(old.get(f), f) != _norm(row.get(f), f)]
        if changed:
            detail = {f: [_show(old.get(f)), _show(row.get(f))] for f in changed}
            changes.append({"work_id": row["work_id"], "change": "updated", "changed_fields": changed,
                            "title": row["title"], "doi": row["doi"], "detail": json.dumps(detail, default=str)})
        changes.extend(_events(old, row))
        was_reported = prev_run is not None and old.get("last_reported") == prev_run
        if was_reported and row.get("last_reported") != run_ts:
            changes.append({"work_id": row["work_id"], "change": "no_longer_reported", "changed_fields": [],
                            "title": row["title"], "doi": row["doi"],
                            "detail": json.dumps({"last_reported": str(row.get("last_reported"))})})
    return changes


def changes_between(previous: pa.Table, current: pa.Table, run_ts: dt.datetime) -> list[dict[str, Any]]:
    """:func:`compute_changes` of two snapshot tables, with Python rows only where something may change.

    Week to week most works are unchanged: Arrow compares the tracked columns of each
    current row with its previous row (matched on ``work_id``), and only added rows,
    rows whose raw values differ and rows that may have stopped being reported are
    turned into Python rows. Equal raw values give equal normalized values, so the rows
    skipped can produce no change. Both tables need :data:`CHANGE_COLUMNS`.
    """
    if previous.num_rows == 0:
        return compute_changes([], current.select(BASELINE_COLUMNS).to_pylist(), run_ts, None)
    positions = pc.index_in(current.column("work_id"), value_set=previous.column("work_id"))
    matched = pc.is_valid(positions)
    old = previous.take(pc.fill_null(positions, 0))  # aligned with current; unmatched rows are masked
    maybe = pc.invert(matched)
    for name in TRACKED_FIELDS:
        maybe = pc.or_(maybe, _differs(old.column(name), current.column(name)))
    last = previous.column("last_reported")
    prev_run = pc.max(last).as_py()
    if prev_run is not None:
        was_reported = pc.fill_null(pc.equal(old.column("last_reported"), pa.scalar(prev_run, last.type)), False)
        still = pc.fill_null(pc.equal(current.column("last_reported"), pa.scalar(run_ts, last.type)), False)
        maybe = pc.or_(maybe, pc.and_(was_reported, pc.invert(still)))
    picked = pc.indices_nonzero(pc.fill_null(maybe, True))
    rows = current.take(picked).to_pylist()
    keep = pc.filter(positions.take(picked), matched.take(picked))
    olds = previous.take(keep).to_pylist()
    return compute_changes(olds, rows, run_ts, prev_run)


def _differs(before: pa.ChunkedArray, after: pa.ChunkedArray) -> pa.ChunkedArray:
    """Per row: True unless both values are equal (two nulls are equal). Errs towards True."""
    kind = after.type
    if pa.types.is_list(kind) and pa.types.is_string(kind.value_type):
        # A list of strings compares as its joined text; a null inside a list makes the join
        # null, so such rows count as different and get the exact comparison in Python.
        joined_before, joined_after = pc.binary_join(before, "\x1f"), pc.binary_join(after, "\x1f")
        both_null = pc.and_(pc.is_null(before), pc.is_null(after))
        equal = pc.or_(pc.fill_null(pc.equal(joined_before, joined_after), False), both_null)
        return pc.invert(equal)
    if pa.types.is_nested(kind):  # lists of structs (versions): few and small, compared in Python
        flags = [a != b for a, b in zip(before.to_pylist(), after.to_pylist(), strict=True)]
        return pa.chunked_array([pa.array(flags, pa.bool_())])
    both_null = pc.and_(pc.is_null(before), pc.is_null(after))
    return pc.invert(pc.or_(pc.fill_null(pc.equal(before, after), False), both_null))


# Lists whose order carries no meaning: compared as sets, so a new reporting source
# reordering them is not an "update".
UNORDERED_FIELDS = frozenset({"publication_types", "sources", "update_notices"})


def _notices(row: dict[str, Any], kind: str) -> set[str]:
    return {n for n in (row.get("update_notices") or []) if n.split(":", 1)[0] == kind}


def _version_kinds(row: dict[str, Any]) -> set[str]:
    from include.living_review.merge import preprint_server_doi

    kinds = {v.get("kind") for v in (row.get("versions") or []) if isinstance(v, dict)}
    if not kinds and row.get("doi"):  # a snapshot written before `versions` existed
        kinds = {"preprint" if preprint_server_doi(row["doi"]) else "published"}
    return kinds


def _events(old: dict[str, Any], row: dict[str, Any]) -> list[dict[str, Any]]:
    """The change-feed events a reviewer must hear about: retractions, corrections, publication."""
    def event(kind: str, detail: dict[str, Any]) -> dict[str, Any]:
        return {"work_id": row["work_id"], "change": kind, "changed_fields": [], "title": row["title"],
                "doi": row["doi"], "detail": json.dumps(detail, default=str)}

    events = []
    if row.get("is_retracted") and not old.get("is_retracted"):
        events.append(event("retracted", {"notices": sorted(_notices(row, "retraction"))}))
    new_corrections = _notices(row, "correction") - _notices(old, "correction")
    if new_corrections:
        events.append(event("corrected", {"notices": sorted(new_corrections)}))
    if _version_kinds(old) == {"preprint"} and "published" in _version_kinds(row):
        events.append(event("preprint_published", {"versions": row.get("versions")}))
    return events


def _norm(value: Any, field: str = "") -> Any:
    if field == "versions":  # a version's date firms up as sources report it; its identity is (id, kind)
        return sorted((v.get("id"), v.get("kind")) for v in value or [] if isinstance(v, dict))
    if isinstance(value, (list, tuple)):
        return sorted(value) if field in UNORDERED_FIELDS else list(value)
    return value


def _show(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _coverage_rows(ctx: RunContext, rows: list[dict[str, Any]], stats: dict[str, dict[str, Any]],
                   enrich: dict[str, Any] | None) -> list[dict[str, Any]]:
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
    if enrich is not None and "crossref" in ctx.review.sources:
        coverage.append({"source": "crossref", "status": enrich["status"], "reason": enrich.get("reason"),
                         "requests": enrich.get("requests", 0), "metadata_requests": enrich.get("requests", 0),
                         "listed": 0, "works": enrich.get("enriched", 0), "unique_to_source": 0,
                         "new_this_run": 0, "seconds": enrich.get("seconds")})
    return coverage


def publish(ctx: RunContext) -> dict[str, Any]:
    """Publish snapshot, quarantine, changes, coverage and manifest for this review and date."""
    with partition_lock(ctx.layout):
        passed = read_parquet(ctx.staged("validated.parquet"))
        rejected = read_parquet(ctx.staged("rejected.parquet"))
        prev = previous_table(ctx.layout, CHANGE_COLUMNS)
        if prev.num_rows and passed.num_rows < prev.num_rows * (1 - settings.ROW_DROP_SHARE):
            raise PublishBlocked(
                f"review {ctx.review.id!r}: the snapshot would shrink from {prev.num_rows} to {passed.num_rows} works "
                f"(more than {settings.ROW_DROP_SHARE:.0%}); refusing to publish. See the quarantine in "
                f"{ctx.staged('rejected.parquet')} and rerun once fixed")
        # Coverage and counts need these; the change feed compares the tables in Arrow.
        rows = passed.select(["work_id", "sources", "first_seen", "last_reported"]).to_pylist()
        stats = _source_stats(ctx)
        enrich = read_json(ctx.staged("enrich.json"))
        validation = read_json(ctx.staged("validation.json"), {})
        merge = read_json(ctx.staged("merge.json"), {})
        changes = changes_between(prev, passed.select(CHANGE_COLUMNS), ctx.run_ts)
        coverage = _coverage_rows(ctx, rows, stats, enrich)

        layout = ctx.layout

        new = sum(1 for r in rows if r["first_seen"] == ctx.run_ts)
        existing = read_json(layout.manifest_file, {})
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "review_id": ctx.review.id,
            "review": {"title": ctx.review.title, "doi": ctx.review.doi, "pmid": ctx.review.pmid,
                       "pmcid": ctx.review.pmcid},
            "run_id": ctx.run_id,
            "snapshot_date": layout.snapshot_date.isoformat(),
            "run_timestamp": ctx.run_ts.isoformat(),
            "published_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "baseline": layout.previous() is None,
            "previous_snapshot_date": layout.previous().snapshot_date.isoformat() if layout.previous() else None,
            "partial": any(st["status"] == "failed" for st in stats.values()),
            "sources": {s: {k: v for k, v in st.items() if k != "source"} for s, st in stats.items()},
            "enrichment": enrich,
            "counts": {
                "identified": {s: st.get("listed", 0) for s, st in stats.items()},
                "records_in": merge.get("records_in", 0),
                "after_merge": merge.get("works_out", 0),
                "quarantined": rejected.num_rows,
                "published": passed.num_rows,
                "new": new,
                "previous": prev.num_rows,
            },
            "coverage": {c["source"]: c["works"] for c in coverage if c["source"] != "crossref"}
            | {"union": sum(1 for r in rows if r.get("last_reported") == ctx.run_ts)},
            "merge": merge.get("merge_stats", {}),
            "data_quality": validation,
            "changes": {kind: sum(1 for c in changes if c["change"] == kind)
                        for kind in CHANGE_KINDS},
            "paths": {"snapshot": str(layout.snapshot_file), "quarantine": str(layout.quarantine_file),
                      "changes": str(layout.changes_file), "coverage": str(layout.coverage_file),
                      "data_docs": validation.get("data_docs")},
            "digest": existing.get("digest", {"status": "pending"}),
        }
        # One change: every table of this date and its manifest appear together or not at all.
        publish_files([
            (layout.quarantine_file, parquet_file(rejected)),
            (layout.changes_file, parquet_file(pa.Table.from_pylist(changes, schema=CHANGES_SCHEMA))),
            (layout.coverage_file, parquet_file(pa.Table.from_pylist(coverage, schema=COVERAGE_SCHEMA))),
            (layout.snapshot_file, parquet_file(passed)),
            (layout.manifest_file, json_file(manifest)),
        ])
    try:
        write_portfolio(layout.data_dir)
    except Exception:  # noqa: BLE001 - a cross-review convenience table must not fail a publish
        log.exception("could not refresh portfolio/citations_by_review.parquet")
    log.info("published %s: %d works (%d new), %d quarantined -> %s", ctx.review.id, passed.num_rows, new,
             rejected.num_rows, layout.snapshot_file)
    return {"snapshot_date": layout.snapshot_date.isoformat(), "snapshot": str(layout.snapshot_file),
            "manifest": str(layout.manifest_file), "works": passed.num_rows, "new": new,
            "quarantined": rejected.num_rows, "partial": manifest["partial"]}
