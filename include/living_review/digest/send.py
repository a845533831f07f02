"""The digest step: plan every channel's digest, deliver each once, record what happened.

Channels are independent: each is tried, and a channel that fails does not stop the
others. If any failed, :class:`DigestNotDelivered` is raised after all were tried, so
the task fails and its retry sends only what is still pending (the ledger knows what
the others delivered). What happened goes to ``runs/.../digest.json``, with each
channel's status read back from the ledger, so an ``uncertain`` delivery stays
``uncertain`` there until an operator resolves it, whatever later runs do.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from include.living_review.config import ReviewConfig
from include.living_review.digest.channels import Channel
from include.living_review.digest.delivery import DeliveryLedger, deliver
from include.living_review.digest.plan import DigestPlan, plan_digest
from include.living_review.storage import Layout, read_json, write_json_atomic

log = logging.getLogger(__name__)


class DigestNotDelivered(RuntimeError):
    """At least one channel could not deliver; the others did, and a retry sends only the rest."""


def send_digest(review: ReviewConfig, data_dir: Any, wanted: dt.date | None, channels: Sequence[Channel], *,
                today: dt.date | None = None) -> dict[str, Any]:
    """Deliver the review's pending events on every channel; returns the ``digest.json`` section."""
    names = [c.name for c in channels]
    plan = plan_digest(review, data_dir, wanted, names, today=today)
    ledger = DeliveryLedger(plan.layout.ledger_file)
    snapshot = plan.snapshot_date.isoformat()
    done_now: dict[str, str] = {}
    failures: dict[str, str] = {}
    for channel in channels:
        cp = plan.channels[channel.name]
        if cp.suppress:
            ledger.suppress(channel.name, cp.suppress, snapshot_date=snapshot, reason=cp.reason)
            log.info("digest %s on %s: %d event(s) recorded as not sent (%s)", review.id, channel.name,
                     len(cp.suppress), cp.reason)
        if cp.digest is None:
            log.info("digest %s on %s: nothing to send (%s)", review.id, channel.name, cp.reason)
            continue
        digest = cp.digest
        log.info("digest %s on %s: sending %d event(s)%s, key %s", review.id, channel.name, len(cp.events),
                 " as a baseline" if cp.baseline else "", digest.key12)
        try:
            outcome = deliver(ledger, digest.idempotency_key, channel.name, lambda c=channel, d=digest: c.send(d),
                              events=cp.events, snapshot_date=snapshot, baseline=cp.baseline)
        except Exception as exc:  # noqa: BLE001 - one channel's failure must not stop the others
            failures[channel.name] = f"{type(exc).__name__}: {exc}"
            log.error("digest %s on %s failed: %s", review.id, channel.name, failures[channel.name])
            continue
        done_now[channel.name] = outcome.status
    section = record(plan, ledger, done_now, failures)
    if failures:
        raise DigestNotDelivered(
            f"the digest of {review.id} for {snapshot} was not delivered on "
            + "; ".join(f"{name} ({error})" for name, error in failures.items())
            + (f". Delivered on {', '.join(done_now)}, which will not be sent again." if done_now else ".")
            + " Check the connection; the task's retry sends only what is still pending")
    return section


def channel_status(ledger: DeliveryLedger, channel: str, snapshot_date: str, *, now: str | None,
                   reason: str) -> dict[str, Any]:
    """A channel's status for one snapshot, read from the ledger (the ground truth).

    A delivery left ``sending`` reads ``uncertain`` until an operator resolves it, so no
    later run can overwrite it with "skipped".
    """
    mine = [(key, r) for key, r in ledger.records(channel) if r.snapshot_date == snapshot_date]
    sending = [(key, r) for key, r in mine if r.state == "sending"]
    if sending:
        key, record = sending[-1]
        return {"status": "uncertain", "key": key, "events": len(record.events), "since": record.updated_at,
                "reason": "an attempt may have reached the recipients, so it is not resent. Check, then run "
                          f"DeliveryLedger(...).resolve({key!r}, {channel!r}, delivered=True/False)"}
    sent = [(key, r) for key, r in mine if r.state == "sent"]
    if sent:
        key, record = sent[-1]
        return {"status": "sent", "key": key, "events": len(record.events), "baseline": record.baseline,
                "sent_at": record.sent_at, "by_this_attempt": now == "sent"}
    return {"status": "skipped", "reason": reason}


def record(plan: DigestPlan, ledger: DeliveryLedger, done_now: dict[str, str], failures: dict[str, str]
           ) -> dict[str, Any]:
    """Write ``runs/.../digest.json`` for the announced snapshot and return it."""
    snapshot = plan.snapshot_date.isoformat()
    channels = {}
    for name, cp in plan.channels.items():
        reason = "failed" if name in failures else cp.reason
        status = channel_status(ledger, name, snapshot, now=done_now.get(name), reason=reason)
        if name in failures:
            status = {"status": "failed", "error": failures[name][:1000], "key": cp.key}
        channels[name] = status
    statuses = {c["status"] for c in channels.values()}
    overall = ("failed" if "failed" in statuses else "uncertain" if "uncertain" in statuses
               else "sent" if statuses & {"sent", "already_sent"} else "skipped")
    latency = next((cp.latency for name, cp in plan.channels.items()
                    if cp.latency is not None and channels[name]["status"] == "sent"), None)
    section = {"status": overall, "snapshot_date": snapshot, "reason": plan.reason, "channels": channels,
               "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    if latency is not None:
        section["latency"] = latency
    if plan.manifest:  # a committed snapshot exists: keep its digest record beside its manifest
        write_json_atomic(section, plan.layout.digest_status_file)
    log.info("digest %s for %s: %s (%s)", plan.review.id, snapshot, overall,
             ", ".join(f"{k}: {v['status']}" for k, v in channels.items()) or plan.reason)
    return section


def digest_status(layout: Layout) -> dict[str, Any]:
    """What the digest did for a snapshot (``{"status": "pending"}`` before it ran)."""
    return read_json(layout.digest_status_file, None) or {"status": "pending"}


def status_line(section: dict[str, Any]) -> str:
    """``sent; email: sent; slack: uncertain`` for summaries and the report page."""
    channels = section.get("channels") or {}
    parts = [f"{name}: {value.get('status') if isinstance(value, dict) else value}"
             for name, value in sorted(channels.items())]
    return "; ".join([str(section.get("status") or "pending"), *parts])
