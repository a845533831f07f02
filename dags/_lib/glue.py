"""The only place that maps Airflow objects (connections, context) onto plain arguments.

Imported lazily inside tasks, so DAG parsing never pays for it.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from include.living_review import settings
from include.living_review.config import ReviewConfig, load_config
from include.living_review.connections import ClientSettings, client_settings

log = logging.getLogger(__name__)


def get_connection(conn_id: str) -> Any | None:
    """The Airflow connection, or None when it is not defined anywhere."""
    from airflow.sdk import Connection

    try:
        return Connection.get(conn_id)
    except Exception as exc:  # the SDK raises different types for "not found" across versions
        if "not found" in str(exc).lower() or "isn't defined" in str(exc).lower() or \
                type(exc).__name__ in ("AirflowNotFoundException", "AirflowRuntimeError"):
            return None
        raise


def settings_for(conn_id: str) -> ClientSettings:
    conn = get_connection(conn_id)
    if conn is None:
        log.info("connection %r is not defined; using the public default %s", conn_id,
                 settings.DEFAULT_BASE_URLS.get(conn_id))
        return client_settings(conn_id)
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    return client_settings(conn_id, host=conn.host, login=conn.login, password=conn.password, extra=extra,
                           schema=conn.schema, port=conn.port)


def data_dir() -> Any:
    """The data dir; an ``s3://`` one opened with the ``aws_default`` connection when it exists.

    ``$LIVING_REVIEW_STORAGE_OPTIONS`` wins over the connection; without either, s3fs
    uses the standard AWS credential chain.
    """
    from include.living_review.connections import storage_options
    from include.living_review.storage import data_path

    url = settings.data_dir()
    if "://" not in url or url.startswith("file://") or settings.storage_options():
        return url
    conn = get_connection(settings.STORAGE_CONN_ID)
    if conn is None:
        return url
    from upath import UPath

    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    log.info("data dir %s: credentials from connection %r", url, settings.STORAGE_CONN_ID)
    return data_path(UPath(url.rstrip("/"), **storage_options(login=conn.login, password=conn.password,
                                                               extra=extra)))


def review(review_id: str) -> ReviewConfig:
    return load_config().review(review_id)


def run_context(review_id: str, context: dict[str, Any]) -> Any:
    """A :class:`RunContext` from the task context: the review, the run id, the run's one timestamp.

    The timestamp is the logical date, or for a trigger without one the run's
    ``run_after``: the same for every task of the run, never the task's own clock.
    """
    from include.living_review.run import RunContext, run_timestamp

    dag_run = context.get("dag_run")
    when = run_timestamp(context.get("logical_date"), getattr(dag_run, "run_after", None))
    return RunContext.create(review(review_id), data_dir(), when, context["run_id"])


def client_for(source: str) -> Any:
    from include.living_review.sources import build_client

    conf = settings_for(settings.SOURCE_CONNECTIONS[source])
    log.info("%s: using %r", source, conf)
    return build_client(source, conf)


def _wanted_snapshot_date(context: dict[str, Any]) -> dt.date | None:
    """The snapshot the triggering Asset event announced, else the run's logical date."""
    events = context.get("triggering_asset_events") or {}
    dates = []
    for asset_events in events.values():
        for event in asset_events:
            extra = getattr(event, "extra", None) or {}
            if extra.get("snapshot_date"):
                dates.append(dt.date.fromisoformat(extra["snapshot_date"]))
    if dates:
        return max(dates)
    logical = context.get("logical_date")
    return logical.date() if logical else None


def _smtp_transport(message: Any) -> str:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    from include.living_review.digest.delivery import NotDelivered

    # The hook owns connection, TLS and login from `smtp_default`; its own send_email_smtp()
    # can only send an HTML body, and the digest is multipart/alternative (text + HTML), so
    # the prepared message goes through the hook's authenticated client.
    with SmtpHook(smtp_conn_id=settings.SMTP_CONN_ID) as hook:
        try:
            hook.get_conn()
        except Exception as exc:  # connect/TLS/login failed: nothing was handed over yet
            raise NotDelivered(f"cannot reach the SMTP server of {settings.SMTP_CONN_ID!r}: "
                               f"{type(exc).__name__}: {exc}") from exc
        hook._smtp_client.send_message(message)
    return f"to {message['To']}, Message-ID {message['Message-ID']}"


def _slack_transport(payload: dict[str, Any]) -> str:
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    # No client-side retry: a retried POST after a dropped connection could post twice
    # behind the ledger's back. Airflow's task retry (through the ledger) retries instead.
    SlackWebhookHook(slack_webhook_conn_id=settings.SLACK_CONN_ID, retry_handlers=[]).send_dict(payload)
    return "posted to the slack_digest webhook"


def slack_secrets() -> set[str]:
    """The ``slack_digest`` webhook URL (or token) and its parts, to scrub from Slack's errors."""
    from include.living_review.redact import webhook_secrets

    conn = get_connection(settings.SLACK_CONN_ID)
    return webhook_secrets(conn.password) if conn is not None else set()


def digest_channels(conf: ReviewConfig) -> list[Any]:
    """The review's channels on the provider hooks (the choice itself is in include/)."""
    from include.living_review.digest.channels import channels_for
    from include.living_review.digest.content import DEFAULT_SENDER
    from include.living_review.storage import data_path

    smtp = get_connection(settings.SMTP_CONN_ID)
    sender = ((smtp.extra_dejson or {}).get("from_email") if smtp is not None else None) or DEFAULT_SENDER
    return channels_for(conf, smtp=_smtp_transport if smtp is not None else None,
                        slack=_slack_transport if get_connection(settings.SLACK_CONN_ID) is not None else None,
                        outbox_dir=data_path(data_dir()) / "outbox", sender=sender, slack_secrets=slack_secrets())


def send_digest(review_id: str, context: dict[str, Any]) -> dict[str, Any]:
    from include.living_review.alerts import alert_uncertain
    from include.living_review.digest.send import send_digest as send

    conf = review(review_id)
    directory = data_dir()
    try:
        return send(conf, directory, _wanted_snapshot_date(context), digest_channels(conf))
    finally:
        # Also when this try failed: a delivery left uncertain by it will not be resent by the retry.
        alert_uncertain(conf, directory, alert_routes(conf.digest.slack, list(conf.digest.email), context),
                        secrets=slack_secrets())


def alert_routes(slack: bool, recipients: list[str], context: dict[str, Any]) -> list[Any]:
    """The alert routes on the provider notifiers (the choice and the fall-through are in include/)."""
    from include.living_review.alerts import alert_routes as routes

    def post(alert: Any) -> None:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        SlackWebhookNotifier(slack_webhook_conn_id=settings.SLACK_CONN_ID, text=alert.slack_text,
                             retry_handlers=[]).notify(context)

    def mail(alert: Any, to: list[str]) -> None:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        SmtpNotifier(to=to, subject=alert.subject, html_content=alert.html,
                     smtp_conn_id=settings.SMTP_CONN_ID).notify(context)

    return routes(slack_wanted=slack, recipients=recipients,
                  slack=post if get_connection(settings.SLACK_CONN_ID) is not None else None,
                  email=mail if get_connection(settings.SMTP_CONN_ID) is not None else None)


def alert_on_failure(context: dict[str, Any]) -> None:
    """``on_failure_callback``: one alert per failed task, through the provider notifiers.

    Never raises: a broken alert channel must not hide the original failure.
    """
    try:
        _send_alert(context)
    except Exception:  # noqa: BLE001 - logged, and the task's own failure stands
        log.exception("could not send the failure alert")


def _send_alert(context: dict[str, Any]) -> None:
    from include.living_review.alerts import deliver_alert, failure_alert
    from include.living_review.storage import Layout, published_dates

    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or context["dag"].dag_id
    task_id = getattr(ti, "task_id", "?")
    review_id = dag_id.split("__", 1)[1].replace("_", "-")
    try:
        conf = review(review_id)
        title, recipients, slack = conf.title, list(conf.digest.email), conf.digest.slack
    except Exception:  # noqa: BLE001 - the review may have been removed from the config since
        title, recipients, slack = review_id, [], True
    directory = data_dir()
    dates = published_dates(directory, review_id)
    logical = context.get("logical_date")
    secrets = slack_secrets()
    alert = failure_alert(
        review_id=review_id, review_title=title, dag_id=dag_id, task_id=task_id,
        try_number=getattr(ti, "try_number", None), log_url=getattr(ti, "log_url", None),
        error=str(context.get("exception") or ""), last_good=dates[-1] if dates else None,
        logical_date=logical.date() if logical else None, secrets=secrets)
    alerts_dir = Layout.of(directory, review_id, logical.date() if logical else dt.date.today()).alerts_dir
    deliver_alert(alert, alert_routes(slack, recipients, context), alerts_dir,
                  name=f"{context.get('run_id', 'run')}__{task_id}", secrets=secrets)
    log.error("%s", alert.text)
