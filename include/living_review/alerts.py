"""Failure alerts: what a maintainer needs to act on a failed task, in one message.

Content only; the DAG's ``on_failure_callback`` delivers it through the provider
notifiers. Airflow calls that callback once, when the last retry has failed, so a
flaky source produces one alert, not one per try.
"""
from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass

from include.living_review.digest import slack_escape


@dataclass(frozen=True)
class Alert:
    subject: str
    text: str
    html: str
    slack_text: str


def failure_alert(*, review_id: str, review_title: str, dag_id: str, task_id: str, try_number: int | None,
                  log_url: str | None, error: str | None, last_good: dt.date | None,
                  logical_date: dt.date | None) -> Alert:
    """The alert for one failed task (after its retries)."""
    error = (error or "no error message recorded").strip()
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
