"""Decide what a digest run announces, and record what was delivered.

The window of a digest is every work first seen after the last delivered digest
(the *watermark*) up to the snapshot being announced. So a failed or batched
digest is made up for by the next one, and nothing is announced twice: a rerun
finds the watermark already past its works. Per-channel delivery is made
idempotent by :mod:`include.living_review.delivery`.

Policy for past intervals: a snapshot older than ``digest.backfill_grace_days``
(a backfill, or a re-run of an old week) never sends; it only advances the watermark.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from include.living_review.config import ReviewConfig
from include.living_review.digest import Digest, build_digest
from include.living_review.storage import Layout, published_dates, read_json, read_parquet, write_json_atomic

log = logging.getLogger(__name__)
FREQUENCY_DAYS = {"every_run": 0, "daily": 1, "weekly": 7}


@dataclass
class DigestPlan:
    review: ReviewConfig
    layout: Layout
    digest: Digest | None  # None: nothing to send (see ``reason``)
    reason: str
    window_end: dt.datetime | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] | None = None  # days from publication to this digest, per source


def state_file(layout: Layout) -> Any:
    return layout.ledger_file.with_name("state.json")


def resolve_snapshot_date(data_dir: str, review_id: str, wanted: dt.date | None) -> dt.date | None:
    """The snapshot to announce: ``wanted`` when published, else the latest one up to it."""
    dates = published_dates(data_dir, review_id)
    if wanted is not None:
        dates = [d for d in dates if d <= wanted]
    return dates[-1] if dates else None


def _as_utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _warnings(manifest: dict[str, Any]) -> list[str]:
    notes = []
    for source, stats in manifest.get("sources", {}).items():
        if stats.get("status") == "failed":
            notes.append(f"{source} failed this run: {stats.get('reason')}. Its earlier works are kept.")
        elif stats.get("status") == "skipped":
            notes.append(f"{source} was skipped: {stats.get('reason')}")
    dq = manifest.get("data_quality", {})
    if dq.get("warning_rows"):
        notes.append(f"{dq['warning_rows']} work(s) have data-quality warnings (see the Data Docs).")
    quarantined = manifest.get("counts", {}).get("quarantined", 0)
    if quarantined:
        notes.append(f"{quarantined} record(s) were quarantined; run `make quarantine` to see why.")
    return notes


EVENT_KINDS = ("added", "retracted", "corrected", "preprint_published")


def added_since(data_dir: str, review_id: str, after: dt.datetime, until: dt.datetime | None) -> set[str]:
    """Work ids with an ``added`` change in runs after ``after`` up to ``until``."""
    return events_since(data_dir, review_id, after, until)["added"]


def events_since(data_dir: str, review_id: str, after: dt.datetime,
                 until: dt.datetime | None) -> dict[str, set[str]]:
    """Work ids per change-feed event kind, in runs after ``after`` up to ``until``."""
    events: dict[str, set[str]] = {kind: set() for kind in EVENT_KINDS}
    for day in published_dates(data_dir, review_id):
        layout = Layout.of(data_dir, review_id, day)
        manifest = read_json(layout.manifest_file, {})
        run_ts = _as_utc(manifest.get("run_timestamp"))
        if run_ts is None or run_ts <= after or (until is not None and run_ts > until):
            continue
        if layout.changes_file.exists():
            for change in read_parquet(layout.changes_file, columns=["work_id", "change"]).to_pylist():
                if change["change"] in events:
                    events[change["change"]].add(change["work_id"])
    return events


def latency_days(rows: list[dict[str, Any]], announced_on: dt.date) -> dict[str, Any]:
    """Days from each new work's publication to the digest announcing it, per source (median, p90)."""
    import statistics

    per_source: dict[str, list[int]] = {}
    for row in rows:
        published = row.get("publication_date")
        if published is None:
            continue
        days = max(0, (announced_on - published).days)
        for source in row.get("sources") or []:
            per_source.setdefault(source, []).append(days)

    def summary(values: list[int]) -> dict[str, Any]:
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
        return {"n": len(ordered), "median": statistics.median(ordered), "p90": p90}

    everything = [d for values in per_source.values() for d in values]
    return {"per_source": {s: summary(v) for s, v in sorted(per_source.items())},
            "overall": summary(everything) if everything else None}


def plan_digest(review: ReviewConfig, data_dir: str, wanted: dt.date | None, *,
                today: dt.date | None = None) -> DigestPlan:
    today = today or dt.datetime.now(dt.timezone.utc).date()
    snapshot_date = resolve_snapshot_date(data_dir, review.id, wanted)
    if snapshot_date is None:
        layout = Layout.of(data_dir, review.id, wanted or today)
        return DigestPlan(review, layout, None, "no published snapshot yet")
    layout = Layout.of(data_dir, review.id, snapshot_date)
    manifest = read_json(layout.manifest_file, {})
    run_ts = _as_utc(manifest.get("run_timestamp"))
    state = read_json(state_file(layout), {})
    watermark = _as_utc(state.get("watermark"))

    if watermark is not None and run_ts is not None and run_ts <= watermark:
        return DigestPlan(review, layout, None, f"already announced up to {watermark.date()}", run_ts, manifest)
    if (today - snapshot_date).days > review.digest.backfill_grace_days:
        return DigestPlan(review, layout, None,
                          f"backfill: snapshot {snapshot_date} is older than "
                          f"{review.digest.backfill_grace_days} days; backfilled runs never send digests",
                          run_ts, manifest)
    last_sent = _as_utc(state.get("last_sent_at"))
    every = FREQUENCY_DAYS[review.digest.frequency]
    if every and last_sent is not None and (snapshot_date - last_sent.date()).days < every:
        return DigestPlan(review, layout, None,
                          f"batched: frequency is {review.digest.frequency}; last digest {last_sent.date()}",
                          None, manifest)

    table = read_parquet(layout.snapshot_file)
    rows = table.to_pylist()
    baseline = watermark is None  # the review's first digest: a baseline, not hundreds of "new" items
    events: dict[str, set[str]] = {kind: set() for kind in EVENT_KINDS}
    if baseline:
        new_rows = rows
    else:
        # Built from the changes tables of every run since the last digest (not recomputed),
        # so a batched or previously failed digest announces each event exactly once.
        events = events_since(data_dir, review.id, watermark, run_ts)
        new_rows = [r for r in rows if r["work_id"] in events["added"]]
    by_id = {r["work_id"]: r for r in rows}
    sections = {kind: [by_id[w] for w in sorted(events[kind]) if w in by_id]
                for kind in ("retracted", "corrected", "preprint_published")}
    if not new_rows and not any(sections.values()) and not review.digest.send_when_empty:
        return DigestPlan(review, layout, None, "nothing new", run_ts, manifest)
    announced = state.get("announced", {})
    coverage = dict(manifest.get("coverage", {}))
    union = coverage.pop("union", len(rows))
    links = {"Snapshot": str(layout.snapshot_file)}
    if manifest.get("paths", {}).get("data_docs"):
        links["Data Docs"] = manifest["paths"]["data_docs"]
    digest = build_digest(review, snapshot_date, new_rows, total_works=len(rows), coverage=coverage,
                          union=union, warnings=_warnings(manifest), links=links, baseline=baseline,
                          published=sections["preprint_published"], retracted=sections["retracted"],
                          corrected=sections["corrected"],
                          previously_announced={w: announced[w] for w in events["retracted"] if w in announced})
    latency = None if baseline else latency_days(new_rows, snapshot_date)
    return DigestPlan(review, layout, digest, "ready", run_ts, manifest, latency)


def record_result(plan: DigestPlan, status: str, channels: dict[str, Any], *, advance: bool) -> dict[str, Any]:
    """Write the digest outcome into the run's manifest, and move the watermark when done."""
    section = {"status": status, "reason": plan.reason, "channels": channels,
               "key": plan.digest.idempotency_key if plan.digest else None,
               "items": plan.digest.item_count if plan.digest else 0,
               "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    manifest = read_json(plan.layout.manifest_file)
    if manifest is not None:
        manifest["digest"] = section
        if status == "sent" and plan.latency is not None:
            manifest["latency"] = plan.latency
        write_json_atomic(manifest, plan.layout.manifest_file)
    if advance and plan.window_end is not None:
        path = state_file(plan.layout)
        state = read_json(path, {})
        old = _as_utc(state.get("watermark"))
        state["watermark"] = max(filter(None, [old, plan.window_end])).isoformat()
        if status == "sent":
            state["last_sent_at"] = dt.datetime.combine(plan.layout.snapshot_date, dt.time(),
                                                        dt.timezone.utc).isoformat()
            # Which digest announced each work: a later retraction of one is flagged with this date.
            announced = state.setdefault("announced", {})
            for work_id in plan.digest.work_ids if plan.digest else ():
                announced.setdefault(work_id, plan.layout.snapshot_date.isoformat())
        write_json_atomic(state, path)
    log.info("digest %s for %s %s: %s", status, plan.review.id, plan.layout.snapshot_date, channels or plan.reason)
    return section
