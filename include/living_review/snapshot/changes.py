"""The change feed: what differs between two snapshots, row by row.

``changes/.../changes.parquet`` compares a snapshot with the previous date's (what an
analyst reads as "this week's changes"); the event log (:mod:`.events`) is built from
the same comparison against the last *commit*, so a second run on one date adds only
what changed since the first.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

TRACKED_FIELDS = ("doi", "pmid", "pmcid", "title", "journal", "publication_year", "publication_date",
                  "publication_types", "is_retracted", "authors", "update_notices", "versions")
# What publish reads back as Python rows to compute the change feed and coverage.
CHANGE_COLUMNS = list(dict.fromkeys(("work_id", "first_seen", "last_reported", "sources", *TRACKED_FIELDS)))
BASELINE_COLUMNS = ["work_id", "first_seen", "last_reported", "sources", "title", "doi"]
CHANGE_KINDS = ("added", "updated", "no_longer_reported", "retracted", "corrected", "preprint_published")


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

