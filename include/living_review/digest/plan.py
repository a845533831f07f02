"""What each channel's digest announces: exactly the events that channel has not yet delivered.

The ground truth is the event log (:mod:`include.living_review.snapshot.events`) and
the delivery ledger (:mod:`.delivery`), which records, per channel, the event ids each
digest carried. A channel's digest is every announced event of committed runs up to
the snapshot being announced, minus the events it has delivered, may have delivered
(``uncertain``) or deliberately skipped. So:

- a failed or batched digest is made up for by the channel's next one, and one
  failing channel never makes another repeat or miss anything;
- a rerun, a second run on the same day or a retried task finds its events already
  held and sends nothing twice;
- a run whose manifest is missing is not committed; its changes come again with the
  next committed run and are announced then.

A channel that has never delivered gets a *baseline*: the total and the latest
papers, not hundreds of "new" items. Policy for past intervals: a digest for a snapshot
older than ``digest.backfill_grace_days`` (a backfill) sends nothing and records its
events as ``suppressed``, so the next regular digest does not announce the backlog.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from include.living_review.config import ReviewConfig
from include.living_review.digest.content import Digest, build_digest
from include.living_review.digest.delivery import DeliveryLedger
from include.living_review.snapshot.events import legacy_watermark, read_log
from include.living_review.storage import Layout, committed_dates, committed_manifest, read_parquet

log = logging.getLogger(__name__)
FREQUENCY_DAYS = {"every_run": 0, "daily": 1, "weekly": 7}
# The event kinds a digest announces; `updated` and `no_longer_reported` stay in the log only.
REFERENCE_KINDS = ("reference_retracted", "reference_corrected", "reference_concern")
ANNOUNCED_KINDS = ("added", "retracted", "corrected", "preprint_published", *REFERENCE_KINDS)


@dataclass
class ChannelPlan:
    """One channel's digest (or why there is none) and the events it carries."""

    channel: str
    digest: Digest | None
    reason: str
    events: tuple[str, ...] = ()
    baseline: bool = False
    suppress: tuple[str, ...] = ()  # events to record as deliberately not sent (a backfill)
    latency: dict[str, Any] | None = None

    @property
    def key(self) -> str | None:
        return self.digest.idempotency_key if self.digest else None


@dataclass
class DigestPlan:
    review: ReviewConfig
    layout: Layout
    manifest: dict[str, Any]
    channels: dict[str, ChannelPlan] = field(default_factory=dict)
    reason: str = "ready"  # why no channel has a digest, when none has

    @property
    def snapshot_date(self) -> dt.date:
        return self.layout.snapshot_date


def resolve_snapshot_date(data_dir: Any, review_id: str, wanted: dt.date | None) -> dt.date | None:
    """The snapshot to announce: ``wanted`` when committed, else the latest committed one up to it."""
    dates = committed_dates(data_dir, review_id)
    if wanted is not None:
        dates = [d for d in dates if d <= wanted]
    return dates[-1] if dates else None


def delivery_key(review_id: str, channel: str, events: Sequence[str], *, baseline: bool,
                 empty_for: str | None = None) -> str:
    """The digest's identity on one channel: the review, the channel and the set of events it carries."""
    content = {"review": review_id, "channel": channel, "baseline": baseline, "events": sorted(set(events))}
    if empty_for:  # a "nothing new" digest is sent once per commit
        content["empty_for"] = empty_for
    return hashlib.sha256(json.dumps(content, separators=(",", ":")).encode("utf-8")).hexdigest()


def warnings_for(manifest: Mapping[str, Any], uncommitted: Sequence[dt.date] = ()) -> list[str]:
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
    for day in uncommitted:
        notes.append(f"The run of {day} has no valid manifest, so it is not published; its changes are "
                     "included here. Rerun that date to republish its snapshot.")
    return notes


def latency_days(rows: Sequence[Mapping[str, Any]], announced_on: dt.date) -> dict[str, Any]:
    """Days from each new work's publication to the digest announcing it, per source (median, p90)."""
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


def plan_digest(review: ReviewConfig, data_dir: Any, wanted: dt.date | None, channels: Sequence[str], *,
                ledger: DeliveryLedger | None = None, today: dt.date | None = None) -> DigestPlan:
    """Each channel's digest for the committed snapshot ``wanted`` (or the latest before it)."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    snapshot_date = resolve_snapshot_date(data_dir, review.id, wanted)
    if snapshot_date is None:
        layout = Layout.of(data_dir, review.id, wanted or today)
        return DigestPlan(review, layout, {}, {c: ChannelPlan(c, None, "no published snapshot yet") for c in channels},
                          reason="no published snapshot yet")
    layout = Layout.of(data_dir, review.id, snapshot_date)
    ledger = ledger or DeliveryLedger(layout.ledger_file)
    manifest = committed_manifest(layout) or {}
    events = read_log(data_dir, review.id, upto=snapshot_date, kinds=ANNOUNCED_KINDS).to_pylist()
    # A data dir from before the event log: what its all-channel watermark covered counts as delivered.
    watermark = legacy_watermark(layout)
    legacy_done = {e["event_id"] for e in events if watermark is not None and e["run_timestamp"] <= watermark}
    rows = read_parquet(layout.snapshot_file).to_pylist()
    by_id = {r["work_id"]: r for r in rows}
    uncommitted = [d for d in _uncommitted_before(data_dir, review.id, snapshot_date)]
    plan = DigestPlan(review, layout, manifest)
    backfill = (today - snapshot_date).days > review.digest.backfill_grace_days
    for channel in channels:
        held = ledger.held_events(channel) | legacy_done
        pending = [e for e in events if e["event_id"] not in held]
        if backfill:
            plan.channels[channel] = ChannelPlan(
                channel, None, f"backfill: snapshot {snapshot_date} is older than "
                f"{review.digest.backfill_grace_days} days; backfilled runs never send digests",
                suppress=tuple(e["event_id"] for e in pending))
            continue
        records = ledger.records(channel)
        sent = [r for _, r in records if r.state == "sent"]
        last_sent = max((dt.date.fromisoformat(r.snapshot_date) for r in sent if r.snapshot_date), default=None)
        every = FREQUENCY_DAYS[review.digest.frequency]
        if every and last_sent is not None and (snapshot_date - last_sent).days < every:
            plan.channels[channel] = ChannelPlan(
                channel, None, f"batched: frequency is {review.digest.frequency}; last digest {last_sent}")
            continue
        # The channel's first digest is a baseline; an uncertain one most likely arrived, so it counts.
        baseline = not any(r.state in ("sent", "sending") for _, r in records) and watermark is None
        if not pending and not review.digest.send_when_empty:
            plan.channels[channel] = ChannelPlan(channel, None, "nothing new")
            continue
        plan.channels[channel] = _channel_digest(review, layout, manifest, channel, pending, rows, by_id,
                                                 ledger=ledger, baseline=baseline, uncommitted=uncommitted)
    if not any(p.digest for p in plan.channels.values()):
        plan.reason = "; ".join(sorted({p.reason for p in plan.channels.values()})) or "no channel configured"
    return plan


def _uncommitted_before(data_dir: Any, review_id: str, upto: dt.date) -> list[dt.date]:
    from include.living_review.storage import uncommitted_dates

    return [d for d in uncommitted_dates(data_dir, review_id) if d <= upto]


def _channel_digest(review: ReviewConfig, layout: Layout, manifest: dict[str, Any], channel: str,
                    pending: list[dict[str, Any]], rows: list[dict[str, Any]], by_id: dict[str, dict[str, Any]], *,
                    ledger: DeliveryLedger, baseline: bool, uncommitted: list[dt.date]) -> ChannelPlan:
    kinds: dict[str, list[str]] = {kind: [] for kind in ANNOUNCED_KINDS}
    for event in pending:
        if event["kind"] in REFERENCE_KINDS:
            continue  # about the review's own included studies, not its citing works
        if event["work_id"] in by_id and event["work_id"] not in kinds[event["kind"]]:
            kinds[event["kind"]].append(event["work_id"])
    new_rows = rows if baseline else [by_id[w] for w in kinds["added"]]
    included = _included_rows(layout, [e for e in pending if e["kind"] in REFERENCE_KINDS])
    sections = {kind: [by_id[w] for w in sorted(kinds[kind])] for kind in ("retracted", "corrected",
                                                                            "preprint_published")}
    event_ids = tuple(e["event_id"] for e in pending)
    key = delivery_key(review.id, channel, event_ids, baseline=baseline,
                       empty_for=None if event_ids else str(manifest.get("commit_id") or layout.snapshot_date))
    coverage = dict(manifest.get("coverage", {}))
    union = coverage.pop("union", len(rows))
    links = {"Snapshot": str(layout.snapshot_file)}
    if manifest.get("paths", {}).get("data_docs"):
        links["Data Docs"] = manifest["paths"]["data_docs"]
    announced = announced_on(ledger, channel, pending_retracted=kinds["retracted"])
    digest = build_digest(review, layout.snapshot_date, new_rows, total_works=len(rows), coverage=coverage,
                          union=union, warnings=warnings_for(manifest, uncommitted), links=links, baseline=baseline,
                          published=sections["preprint_published"], retracted=sections["retracted"],
                          corrected=sections["corrected"], previously_announced=announced, key=key,
                          included=included)
    latency = None if baseline else latency_days(new_rows, layout.snapshot_date)
    return ChannelPlan(channel, digest, "ready", event_ids, baseline, latency=latency)


def _included_rows(layout: Layout, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The included studies the pending reference events are about, each with its event kinds."""
    if not events:
        return []
    from include.living_review.references import committed_included

    studies = {r["work_id"]: r for r in committed_included(layout)}
    out: dict[str, dict[str, Any]] = {}
    for event in events:
        row = out.get(event["work_id"])
        if row is None:
            base = studies.get(event["work_id"]) or {"work_id": event["work_id"], "title": event["title"],
                                                     "doi": event["doi"], "update_notices": []}
            row = out[event["work_id"]] = {**base, "reference_events": []}
        row["reference_events"].append(event["kind"])
    return list(out.values())


def announced_on(ledger: DeliveryLedger, channel: str, pending_retracted: Sequence[str]) -> dict[str, str]:
    """For works retracted now: the date of the digest that announced them on this channel, if any.

    A work is announced by the digest whose record carries its ``added`` event (or, for a
    baseline, the first digest the channel sent).
    """
    if not pending_retracted:
        return {}
    from include.living_review.snapshot.events import event_id

    wanted = {event_id(work, "added", ""): work for work in pending_retracted}
    found: dict[str, str] = {}
    for _, record in ledger.records(channel):
        if record.state != "sent" or not record.snapshot_date:
            continue
        for ident in record.events:
            if ident in wanted:
                found.setdefault(wanted[ident], record.snapshot_date)
    return found
