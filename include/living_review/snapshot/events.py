"""The event log: every change a run found, appended once, each with a stable identity.

Each commit adds one file, ``events/review_id=<id>/snapshot_date=<date>/events-<commit>.parquet``
(:data:`EVENTS_SCHEMA`), listed in that date's manifest (``event_files``). Files are never
rewritten: the log only grows. An event's ``event_id`` is a hash of its identity, the
work, the kind and what it is about (the notice id, the published version's DOI, the
new field values...), so the same change seen by two runs is one event; readers keep
its first occurrence. Digest channels record which ``event_id`` they delivered
(:mod:`include.living_review.digest.delivery`), never a timestamp shared by all channels.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from include.living_review.records import EVENTS_SCHEMA
from include.living_review.storage import (CorruptFile, Layout, committed_dates, committed_manifest, read_json,
                                           read_parquet)

log = logging.getLogger(__name__)
EVENT_KINDS = ("added", "updated", "retracted", "corrected", "preprint_published", "no_longer_reported",
               "reference_retracted", "reference_corrected", "reference_concern")


def event_id(work_id: str, kind: str, subject: str) -> str:
    return hashlib.sha256(f"{work_id}\x1f{kind}\x1f{subject}".encode()).hexdigest()[:32]


def _subjects(change: dict[str, Any]) -> list[str]:
    """What one change-feed row is about; a row about several notices is one event per notice."""
    kind = change["change"]
    detail = json.loads(change["detail"]) if change.get("detail") else {}
    if kind.startswith("reference_"):  # included studies: the notice (or "retraction", once per study)
        return [str(detail.get("subject") or kind)]
    if kind == "added":
        return [""]
    if kind == "corrected":
        return sorted(detail.get("notices") or ["correction"])
    if kind == "retracted":
        return ["|".join(sorted(detail.get("notices") or [])) or "retraction"]
    if kind == "preprint_published":
        published = sorted(str(v.get("id")) for v in detail.get("versions") or []
                           if isinstance(v, dict) and v.get("kind") == "published")
        return ["|".join(published) or "published"]
    if kind == "no_longer_reported":
        return [str(detail.get("last_reported"))]
    # updated: the new values of the fields that changed
    new_values = {name: pair[1] for name, pair in sorted(detail.items())}
    return [hashlib.sha256(json.dumps(new_values, sort_keys=True, default=str).encode()).hexdigest()[:16]]


def events_from_changes(changes: Iterable[dict[str, Any]], *, run_id: str, run_ts: dt.datetime) -> pa.Table:
    """The change-feed rows of one run as event-log rows (:data:`EVENTS_SCHEMA`)."""
    rows = []
    seen: set[str] = set()
    for change in changes:
        for subject in _subjects(change):
            ident = event_id(change["work_id"], change["change"], subject)
            if ident in seen:
                continue
            seen.add(ident)
            rows.append({"event_id": ident, "work_id": change["work_id"], "kind": change["change"],
                         "subject": subject, "title": change.get("title"), "doi": change.get("doi"),
                         "detail": change.get("detail"), "run_id": run_id, "run_timestamp": run_ts})
    return pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA)


def _legacy_events(layout: Layout, manifest: dict[str, Any]) -> pa.Table:
    """A run committed before the event log existed: its events rebuilt from its changes table."""
    if not layout.changes_file.exists():
        return EVENTS_SCHEMA.empty_table()
    changes = read_parquet(layout.changes_file).to_pylist()
    run_ts = dt.datetime.fromisoformat(manifest.get("run_timestamp") or
                                       dt.datetime.combine(layout.snapshot_date, dt.time()).isoformat())
    if run_ts.tzinfo is None:
        run_ts = run_ts.replace(tzinfo=dt.timezone.utc)
    return events_from_changes(changes, run_id=str(manifest.get("run_id") or "legacy"), run_ts=run_ts)


def read_log(data_dir: Any, review_id: str, *, upto: dt.date | None = None,
             kinds: Sequence[str] | None = None) -> pa.Table:
    """Every committed event of a review (up to ``upto``), first occurrence of each ``event_id``.

    Only files that a committed manifest lists are read: a file left by a commit that did
    not finish is ignored, and its events come again with the next committed run.
    """
    tables = []
    for day in committed_dates(data_dir, review_id):
        if upto is not None and day > upto:
            continue
        layout = Layout.of(data_dir, review_id, day)
        manifest = committed_manifest(layout) or {}
        if "event_files" not in manifest:
            table = _legacy_events(layout, manifest)
        else:
            parts = [read_parquet(layout.events_dir / name) for name in manifest["event_files"]]
            table = pa.concat_tables(parts) if parts else EVENTS_SCHEMA.empty_table()
        tables.append(table.append_column("snapshot_date", pa.array([day] * table.num_rows, pa.date32())))
    if not tables:
        return EVENTS_SCHEMA.append(pa.field("snapshot_date", pa.date32())).empty_table()
    log_table = pa.concat_tables(tables, promote_options="permissive")
    log_table = log_table.take(pc.sort_indices(log_table, [("run_timestamp", "ascending")]))
    if kinds is not None:
        log_table = log_table.filter(pc.is_in(log_table.column("kind"), value_set=pa.array(list(kinds))))
    # The first occurrence of each identity wins (a later run seeing the same change adds nothing).
    ids = log_table.column("event_id").to_pylist()
    first = {}
    for index, ident in enumerate(ids):
        first.setdefault(ident, index)
    return log_table.take(pa.array(sorted(first.values()), pa.int64()))


_STATE_FIX = ('restore it from a backup, or write {"watermark": "<the time of the last digest sent>"} into it; '
              "deleting it makes every event from before the event log count as not yet delivered, so the next "
              "digest announces them again")


def legacy_watermark(layout: Layout) -> dt.datetime | None:
    """The old all-channel watermark (``state.json``), for data dirs from before the event log.

    A damaged file raises :class:`CorruptFile` naming it: it is never guessed at, since
    treating it as absent would announce the whole history again.
    """
    path = layout.ledger_file.with_name("state.json")
    try:
        state = read_json(path)
    except CorruptFile as exc:
        raise CorruptFile(f"{path} is not valid JSON ({exc.__cause__}). Fix: {_STATE_FIX}") from exc
    if state is None:
        return None
    if not isinstance(state, dict):
        raise CorruptFile(f"{path} is not a JSON object (it holds a {type(state).__name__}). Fix: {_STATE_FIX}")
    mark = state.get("watermark")
    if not mark:
        return None
    try:
        when = dt.datetime.fromisoformat(str(mark))
    except ValueError as exc:
        raise CorruptFile(f"{path}: the watermark {str(mark)[:60]!r} is not an ISO time. Fix: {_STATE_FIX}") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
