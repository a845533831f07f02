"""The validate step: Great Expectations over the merged rows; failures go to quarantine with a reason.

Nothing is dropped silently: a row failing a blocking expectation is staged for
``quarantine/.../rejected.parquet`` with the names of the failed expectations and the
raw payloads its sources sent, and a systemic failure (more than half the rows)
blocks the publish so the last good snapshot stays.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from include.living_review import settings
from include.living_review.merge.step import merge_inputs
from include.living_review.records import CITING_WORKS_SCHEMA, QUARANTINE_SCHEMA, Work
from include.living_review.run import PublishBlocked, RunContext
from include.living_review.sources.fetch import source_stats
from include.living_review.storage import local_mirror, read_parquet, write_json_atomic, write_parquet_atomic

log = logging.getLogger(__name__)
ID_COLUMNS = ("doi", "pmid", "pmcid", "openalex_id", "s2_paper_id")


def validate(ctx: RunContext) -> dict[str, Any]:
    """Run the GX record suite; stage passing rows and quarantine the rest with their reasons."""
    from data_quality.validate import systemic_failure, validate_works

    table = read_parquet(ctx.staging.merged)
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
        write_json_atomic(summary, ctx.staging.validation)
        raise PublishBlocked(f"review {ctx.review.id!r}: {problem}. The last good snapshot stays published")

    rejected = sorted(report.blocking_failures)
    keep = [i for i in range(table.num_rows) if i not in report.blocking_failures]
    passed = table.take(pa.array(keep, pa.int64())).drop_columns(["omid"]).cast(CITING_WORKS_SCHEMA)
    write_parquet_atomic(passed, ctx.staging.validated)
    rows = table.take(pa.array(rejected, pa.int64())).to_pylist() if rejected else []
    quarantine = pa.table({
        "work_id": [r["work_id"] for r in rows],
        "source": [",".join(r["sources"] or []) or "unknown" for r in rows],
        "title": [r["title"] for r in rows],
        "failed_expectations": [report.blocking_failures[i] for i in rejected],
        "reason": ["failed blocking expectations: " + ", ".join(report.blocking_failures[i]) for i in rejected],
        "raw_payload": raw_payloads(ctx, rows),
        "run_id": [ctx.run_id] * len(rows),
        "quarantined_at": [ctx.run_ts] * len(rows),  # the run's one timestamp: reruns write the same rows
    }, schema=QUARANTINE_SCHEMA)
    write_parquet_atomic(quarantine, ctx.staging.rejected)
    warned = {table.column("work_id")[i].as_py(): names for i, names in report.warnings.items()}
    summary.update(status="ok", quarantined=len(rejected), published=passed.num_rows,
                   warning_rows=len(warned), warning_examples=dict(list(warned.items())[:20]))
    write_json_atomic(summary, ctx.staging.validation)
    log.info("validate: %d rows, %d quarantined, %d with warnings (%.1fs in GX)",
             table.num_rows, len(rejected), len(warned), report.seconds)
    return {"rows": table.num_rows, "quarantined": len(rejected), "warning_rows": len(warned)}


def _id_keys(row: dict[str, Any] | Work) -> list[str]:
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k, None)
    return [f"{c}:{get(c)}" for c in (*ID_COLUMNS, "omid") if get(c)]


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
    ok = [s for s, st in source_stats(ctx).items() if st["status"] == "ok"]
    for path in merge_inputs(ctx, ok):
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

