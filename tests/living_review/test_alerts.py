"""Alerts reach a maintainer whichever channel is down, and an uncertain delivery is alerted once (issue 14).

The routes are plain senders over the local fakes (a Slack webhook sink, a real SMTP
server); in the DAGs they are the provider notifiers (``dags/_lib/glue.py``).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from include.living_review.alerts import (
    Alert,
    AlertRoute,
    alert_routes,
    alert_uncertain,
    deliver_alert,
    failure_alert,
)
from include.living_review.config import DigestConfig, ReviewConfig
from include.living_review.digest.delivery import DeliveryLedger, deliver, post_slack_webhook, send_smtp
from include.living_review.storage import Layout, StorageError
from tests.fakes.server import Response
from tests.fakes.slack import FakeSlackWebhook
from tests.fakes.smtp import FakeSmtpServer, free_port

ROOT = Path(__file__).resolve().parents[2]
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
    with pytest.raises(StorageError, match="could not write .*run__task.json"):
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


# -- uncertain deliveries -----------------------------------------------------------------
class Recording:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def route(self) -> AlertRoute:
        return AlertRoute("slack", self.alerts.append)


def _ambiguous(ledger: DeliveryLedger, key: str) -> None:
    def lost() -> str:
        raise TimeoutError("the server took the digest, the answer was lost")
    with pytest.raises(TimeoutError):
        deliver(ledger, key, "email", lost, events=["e1", "e2"], snapshot_date="2026-11-23")


def test_an_uncertain_delivery_is_alerted_once_per_delivery(tmp_path):
    ledger = DeliveryLedger(Layout.of(tmp_path, REVIEW.id, dt.date(2026, 11, 23)).ledger_file)
    key = "k" * 64
    _ambiguous(ledger, key)
    seen = Recording()
    assert alert_uncertain(REVIEW, tmp_path, [seen.route()]) == [(key, "email")]
    assert alert_uncertain(REVIEW, tmp_path, [seen.route()]) == []  # a rerun: no second alert
    (sent,) = seen.alerts
    assert "email digest may not have been delivered (2026-11-23)" in sent.subject
    for text in (sent.text, sent.slack_text):
        assert key in text and f".resolve('{key}', 'email', delivered=True)" in text
    assert "2 event(s)" in sent.text and str(ledger.path) in sent.text

    ledger.resolve(key, "email", delivered=False)  # not in the inbox: the next attempt is a new delivery
    _ambiguous(ledger, key)
    assert alert_uncertain(REVIEW, tmp_path, [seen.route()]) == [(key, "email")] and len(seen.alerts) == 2
    ledger.resolve(key, "email", delivered=True)
    assert alert_uncertain(REVIEW, tmp_path, [seen.route()]) == [] and ledger.uncertain() == []


def test_the_command_in_the_uncertain_alert_resolves_the_delivery(tmp_path):
    """The alert's instruction, run as written from the project root, settles the ledger."""
    ledger = DeliveryLedger(Layout.of(tmp_path, REVIEW.id, dt.date(2026, 11, 23)).ledger_file)
    _ambiguous(ledger, "u" * 64)
    seen = Recording()
    alert_uncertain(REVIEW, tmp_path, [seen.route()])
    (command,) = [line.strip() for line in seen.alerts[0].text.splitlines() if line.strip().startswith("python -c")]
    code = command.removeprefix("python -c ").strip('"')
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert ledger.uncertain() == [] and ledger.get("u" * 64, "email").state == "sent"


def test_with_every_route_down_an_uncertain_delivery_is_alerted_through_the_outbox(tmp_path):
    ledger = DeliveryLedger(Layout.of(tmp_path, REVIEW.id, dt.date(2026, 11, 23)).ledger_file)
    _ambiguous(ledger, "o" * 64)

    def down(a: Alert) -> None:
        raise ConnectionRefusedError("no Slack today")
    assert alert_uncertain(REVIEW, tmp_path, [AlertRoute("slack", down)]) == [("o" * 64, "email")]
    (path,) = Layout.of(tmp_path, REVIEW.id, dt.date(2026, 11, 23)).alerts_dir.iterdir()
    assert path.name == "uncertain__email__oooooooooooo.json"
    assert "no Slack today" in json.loads(path.read_text(encoding="utf-8"))["undelivered"]["slack"]


def test_alerting_about_uncertain_deliveries_never_raises(tmp_path, caplog):
    ledger_file = Layout.of(tmp_path, REVIEW.id, dt.date(2026, 11, 23)).ledger_file
    ledger_file.parent.mkdir(parents=True)
    ledger_file.write_text("{not json")
    caplog.set_level(logging.ERROR)
    assert alert_uncertain(REVIEW, tmp_path, [Recording().route()]) == []
    assert "could not alert about the uncertain deliveries" in caplog.text
