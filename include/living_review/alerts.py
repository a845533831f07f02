"""Alerts: what a maintainer needs to act on, in one message, and the ways it can reach them.

Two kinds: a failed task (the DAG's ``on_failure_callback``; Airflow calls it once,
when the last retry has failed, so a flaky source produces one alert, not one per
try) and a digest delivery left ``uncertain`` (once per delivery, however often the
digest reruns). :func:`deliver_alert` tries every route (Slack, then email; the DAG
layer passes the provider notifiers) and a route that fails never stops the next;
when none delivered, the alert is written to the outbox (``Layout.alerts_dir``).
"""
from __future__ import annotations

import datetime as dt
import html
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from include.living_review.config import ReviewConfig
from include.living_review.digest import slack_escape
from include.living_review.digest.delivery import DeliveryLedger
from include.living_review.redact import scrub_webhook
from include.living_review.storage import Layout, data_path, write_json_atomic

log = logging.getLogger(__name__)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Alert:
    subject: str
    text: str
    html: str
    slack_text: str


def failure_alert(*, review_id: str, review_title: str, dag_id: str, task_id: str, try_number: int | None,
                  log_url: str | None, error: str | None, last_good: dt.date | None,
                  logical_date: dt.date | None, secrets: Iterable[str] = ()) -> Alert:
    """The alert for one failed task (after its retries); ``secrets`` are scrubbed from the error."""
    error = scrub_webhook((error or "no error message recorded").strip(), secrets)
    if len(error) > 1500:
        error = error[:1500] + "…"
    last = last_good.isoformat() if last_good else "none yet"
    when = logical_date.isoformat() if logical_date else "unknown date"
    subject = f"[living-review] {review_title}: {task_id} failed ({when})"
    lines = [
        f"Review:              {review_title} ({review_id})",
        f"DAG / task:          {dag_id} / {task_id}",
        f"Logical date:        {when}",
        f"Try number:          {try_number if try_number is not None else '?'} (retries exhausted)",
        f"Last good snapshot:  {last} (still the published one)",
        f"Log:                 {log_url or 'see the Airflow UI'}",
        "",
        f"Error: {error}",
        "",
        "What to do: read the log, fix the cause (an API outage usually clears by itself), then clear the",
        "failed task to rerun it; the rerun replaces this date's partition and never resends a digest.",
    ]
    text = "\n".join(lines)
    body = html.escape(text)
    safe_log = log_url if log_url and log_url.startswith(("http://", "https://")) else None
    if safe_log:
        body = body.replace(html.escape(safe_log), f'<a href="{html.escape(safe_log, quote=True)}">'
                            f"{html.escape(safe_log)}</a>")
    html_body = f'<pre style="font-family:Menlo,Consolas,monospace;font-size:13px">{body}</pre>'
    slack_lines = [
        f":rotating_light: *{task_id} failed* for _{slack_escape(review_title)}_ ({when})",
        f"try {try_number if try_number is not None else '?'} · last good snapshot {last}",
        f"```{slack_escape(error[:500])}```",
    ]
    if safe_log:
        slack_lines.append(f"<{safe_log}|Open the log>")
    return Alert(subject=subject, text=text, html=html_body, slack_text="\n".join(slack_lines))


def uncertain_alert(*, review_id: str, review_title: str, channel: str, key: str, snapshot_date: str | None,
                    since: str | None, events: int, ledger_path: Any) -> Alert:
    """The alert for a digest delivery left ``sending``: it may have arrived, so it is never resent by itself."""
    resolve = f"DeliveryLedger({str(ledger_path)!r}).resolve({key!r}, {channel!r}, delivered=True)"
    where = "the recipients' inboxes" if channel == "email" else f"the {channel} channel"
    subject = (f"[living-review] {review_title}: the {channel} digest may not have been delivered "
               f"({snapshot_date or 'unknown date'})")
    lines = [
        f"Review:              {review_title} ({review_id})",
        f"Channel:             {channel}",
        f"Digest key:          {key}",
        f"Snapshot:            {snapshot_date or 'unknown'} ({events} event(s))",
        f"Attempted:           {since or 'unknown'}",
        f"Ledger:              {ledger_path}",
        "",
        f"The {channel} delivery is uncertain: an attempt failed after the digest may have been handed over",
        "(the server took it, the answer was lost). It is not sent again by itself, so nobody gets it twice,",
        "and later digests on this channel hold its events until you settle it.",
        "",
        f"What to do: check {where} for this digest, then record what you found (from the project root):",
        f'  python -c "from include.living_review.digest.delivery import DeliveryLedger; {resolve}"',
        "delivered=True if it arrived (nothing is resent); delivered=False if it did not (the next digest run",
        "sends its events, once).",
    ]
    text = "\n".join(lines)
    slack_lines = [
        f":warning: *{slack_escape(channel)} digest uncertain* for _{slack_escape(review_title)}_ "
        f"({snapshot_date or 'unknown date'})",
        f"key `{key}` · attempted {since or '?'} · not resent by itself",
        f"Check {where}, then run (delivered=False to send it again):",
        f"```{slack_escape(resolve)}```",
    ]
    return Alert(subject=subject, text=text,
                 html=f'<pre style="font-family:Menlo,Consolas,monospace;font-size:13px">{html.escape(text)}</pre>',
                 slack_text="\n".join(slack_lines))


@dataclass(frozen=True)
class AlertRoute:
    """One way an alert can reach a maintainer: a name and a sender (a provider notifier in the DAGs)."""

    name: str
    send: Callable[[Alert], object]


def alert_routes(*, slack_wanted: bool, recipients: Sequence[str], slack: Callable[[Alert], object] | None,
                 email: Callable[[Alert, list[str]], object] | None) -> list[AlertRoute]:
    """The review's routes: Slack first (seen soonest), then email; one without its connection is left out."""
    routes = []
    if slack_wanted and slack is not None:
        routes.append(AlertRoute("slack", slack))
    if recipients and email is not None:
        to = list(recipients)
        routes.append(AlertRoute("email", lambda alert: email(alert, to)))
    return routes


def deliver_alert(alert: Alert, routes: Sequence[AlertRoute], outbox_dir: Any, *, name: str,
                  secrets: Iterable[str] = ()) -> list[str]:
    """Send ``alert`` on every route; returns the routes that took it, or the outbox file it went to.

    A route that fails is logged (scrubbed of ``secrets`` and Slack webhook paths) and
    the next is tried. When no route took it, it is written to
    ``outbox_dir/<name>.json`` with each route's error; if even that fails, the
    error is raised (the caller logs it: an alert must not hide the original failure).
    """
    secrets = set(secrets)
    delivered: list[str] = []
    undelivered: dict[str, str] = {}
    for route in routes:
        try:
            route.send(alert)
        except Exception as exc:  # noqa: BLE001 - the next route, then the outbox, must still get it
            undelivered[route.name] = scrub_webhook(f"{type(exc).__name__}: {exc}", secrets)[:1000]
            log.error("the alert %r could not go by %s (%s); trying the next way", alert.subject, route.name,
                      undelivered[route.name])
        else:
            delivered.append(route.name)
    if delivered:
        return delivered
    path = data_path(outbox_dir) / f"{_UNSAFE_NAME.sub('-', name).strip('-.') or 'alert'}.json"
    write_json_atomic({"subject": alert.subject, "text": alert.text, "undelivered": undelivered}, path)
    log.error("the alert %r was written to %s (%s)", alert.subject, path,
              "; ".join(f"{k}: {v}" for k, v in undelivered.items()) or "no Slack or SMTP connection")
    return [str(path)]


def alert_uncertain(review: ReviewConfig, data_dir: Any, routes: Sequence[AlertRoute], *,
                    secrets: Iterable[str] = ()) -> list[tuple[str, str]]:
    """One alert for each of the review's uncertain deliveries not alerted yet; returns their (key, channel).

    Never raises: called after the digest step, it must not replace the step's own outcome.
    """
    # The ledger and the alerts folder are per review: any date gives the same paths.
    layout = Layout.of(data_dir, review.id, dt.date.today())
    ledger = DeliveryLedger(layout.ledger_file)
    alerted: list[tuple[str, str]] = []
    try:
        for key, channel in ledger.uncertain():
            record = ledger.get(key, channel)
            if record is None or record.alerted_at:
                continue
            alert = uncertain_alert(review_id=review.id, review_title=review.title, channel=channel, key=key,
                                    snapshot_date=record.snapshot_date, since=record.updated_at,
                                    events=len(record.events), ledger_path=layout.ledger_file)
            went = deliver_alert(alert, routes, layout.alerts_dir, name=f"uncertain__{channel}__{key[:12]}",
                                 secrets=secrets)
            ledger.mark_alerted(key, channel)
            alerted.append((key, channel))
            log.warning("uncertain %s delivery of digest %s: alert sent (%s)", channel, key[:12], ", ".join(went))
    except Exception as exc:  # noqa: BLE001 - logged; the digest step's outcome stands
        log.error("could not alert about the uncertain deliveries of %s: %s", review.id,
                  scrub_webhook(f"{type(exc).__name__}: {exc}", secrets))
    return alerted
