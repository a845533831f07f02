"""Alerts reach a maintainer whichever channel is down (issue 14).

The routes are plain senders over the local fakes (a Slack webhook sink, a real SMTP
server); in the DAGs they are the provider notifiers (``dags/_lib/glue.py``).
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from include.living_review.alerts import Alert, AlertRoute, alert_routes, deliver_alert, failure_alert
from include.living_review.config import DigestConfig, ReviewConfig
from include.living_review.digest.delivery import post_slack_webhook, send_smtp
from tests.fakes.server import Response
from tests.fakes.slack import FakeSlackWebhook
from tests.fakes.smtp import FakeSmtpServer, free_port

TOKEN = "hooks-SECRET-5a9d2c77"
PATH = f"/services/T000/B000/{TOKEN}"
REVIEW = ReviewConfig(id="peer-support-mental-health", title="Peer Support in Mental Health",
                      doi="10.2196/15572", pmid="32357127",
                      digest=DigestConfig(email=["maintainer@example.org"], slack=True))


@pytest.fixture
def slack() -> Iterator[FakeSlackWebhook]:
    with FakeSlackWebhook() as fake:
        yield fake


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as server:
        yield server


def alert() -> Alert:
    return failure_alert(review_id=REVIEW.id, review_title=REVIEW.title, dag_id="living_review__x",
                         task_id="fetch_pubmed", try_number=3, log_url=None, error="pubmed: HTTP 503",
                         last_good=None, logical_date=dt.date(2026, 11, 23))


def slack_route(slack: FakeSlackWebhook) -> AlertRoute:
    url = slack.webhook_url(PATH)
    return AlertRoute("slack", lambda a: post_slack_webhook(url, {"text": a.slack_text}))


def email_route(host: str, port: int) -> AlertRoute:
    def send(a: Alert) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "lr@example.org", "maintainer@example.org", a.subject
        message.set_content(a.text)
        send_smtp(message, host=host, port=port, timeout=5)
    return AlertRoute("email", send)


def test_a_refused_slack_alert_falls_through_to_email(slack, smtp, tmp_path, caplog):
    slack.inject(Response(500, f"rollup_error (requested {PATH})", content_type="text/plain"))
    went = deliver_alert(alert(), [slack_route(slack), email_route(smtp.host, smtp.port)], tmp_path / "alerts",
                         name="run__fetch_pubmed", secrets=[slack.webhook_url(PATH)])
    assert went == ["email"] and len(slack.requests) == 1
    assert [m.message["Subject"] for m in smtp.messages] == [alert().subject]
    assert not (tmp_path / "alerts").exists()  # delivered: nothing in the outbox
    assert "could not go by slack" in caplog.text and TOKEN not in caplog.text


def test_when_every_route_fails_the_alert_is_written_to_the_outbox(slack, tmp_path, caplog):
    slack.inject(Response(404, f"no_service (requested {PATH})", content_type="text/plain"))
    outbox = tmp_path / "outbox" / "alerts" / REVIEW.id
    went = deliver_alert(alert(), [slack_route(slack), email_route("127.0.0.1", free_port())], outbox,
                         name="manual__2026-11-23T00:00:00+00:00__fetch_pubmed")
    (path,) = outbox.iterdir()
    assert went == [str(path)] and path.name == "manual__2026-11-23T00-00-00-00-00__fetch_pubmed.json"
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["subject"] == alert().subject and written["text"] == alert().text
    assert set(written["undelivered"]) == {"slack", "email"} and "no_service" in written["undelivered"]["slack"]
    assert "Connection refused" in written["undelivered"]["email"]
    assert TOKEN not in path.read_text(encoding="utf-8") and TOKEN not in caplog.text


def test_without_any_route_the_alert_goes_to_the_outbox(tmp_path):
    (path,) = deliver_alert(alert(), [], tmp_path, name="run__task")
    assert json.loads(Path(path).read_text(encoding="utf-8"))["undelivered"] == {}


def test_when_even_the_outbox_fails_the_error_is_raised(tmp_path):
    (tmp_path / "alerts").write_text("a file where the folder should be")
    with pytest.raises(Exception):
        deliver_alert(alert(), [], tmp_path / "alerts", name="run__task")


def test_routes_are_slack_then_email_and_only_those_connected():
    def post(a: Alert) -> None: ...
    def mail(a: Alert, to: list[str]) -> None: ...
    names = lambda **kw: [r.name for r in alert_routes(**kw)]  # noqa: E731
    assert names(slack_wanted=True, recipients=["m@x.org"], slack=post, email=mail) == ["slack", "email"]
    assert names(slack_wanted=False, recipients=["m@x.org"], slack=post, email=mail) == ["email"]
    assert names(slack_wanted=True, recipients=[], slack=None, email=mail) == []


def test_the_failure_alerts_error_is_scrubbed_of_the_webhook():
    text = failure_alert(review_id="r", review_title="R", dag_id="d", task_id="t", try_number=1, log_url=None,
                         error=f"Response body: 'no_service (requested {PATH})'", last_good=None,
                         logical_date=None).text
    assert TOKEN not in text and "/services/***" in text
