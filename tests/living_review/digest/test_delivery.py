"""Delivery: the ledger's at-most-once guarantee over a real SMTP server (aiosmtpd) and a fake Slack webhook."""
from __future__ import annotations

import datetime as dt
import json
import logging
import smtplib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from include.living_review.config import DigestConfig, ReviewConfig
from include.living_review.digest.delivery import (
    DeliveryLedger,
    LedgerError,
    NotDelivered,
    deliver,
    guard,
    http_error_not_delivered,
    http_not_delivered,
    post_slack_webhook,
    send_smtp,
    smtp_not_delivered,
)
from include.living_review.digest import DIGEST_HEADER, Digest, build_digest, build_email
from tests.fakes.server import Response
from tests.fakes.slack import FakeSlackWebhook
from tests.fakes.smtp import FakeSmtpServer, free_port

SENDER = "digest@example.org"
RECIPIENTS = ["alice@example.org", "bob@example.org"]


@pytest.fixture
def digest() -> Digest:
    review = ReviewConfig(id="peer-support-mental-health", title="Peer Support in Mental Health",
                          doi="10.2196/15572", pmid="32357127", digest=DigestConfig(email=RECIPIENTS))
    works = [{"work_id": f"doi:10.1234/p.{n}", "doi": f"10.1234/p.{n}", "title": f"Citing paper {n} \u00e9\u00e8",
              "authors": ["Xu R", "Li J"], "journal_abbrev": "JMIR Ment Health", "publication_year": 2026,
              "publication_date": dt.date(2026, 11, n), "publication_types": ["Journal Article"],
              "is_retracted": False, "sources": ["pubmed"]} for n in (1, 2, 3)]
    return build_digest(review, dt.date(2026, 11, 25), works, total_works=40, coverage={"pubmed": 40})


@pytest.fixture
def ledger(tmp_path: Path) -> DeliveryLedger:
    return DeliveryLedger(tmp_path / "digests" / "review_id=peer-support-mental-health" / "ledger.json")


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as server:
        yield server


@pytest.fixture
def slack() -> Iterator[FakeSlackWebhook]:
    with FakeSlackWebhook() as fake:
        yield fake


def email_sender(digest: Digest, host: str, port: int, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    def send() -> str:
        message = build_email(digest, sender=SENDER, recipients=RECIPIENTS)
        return send_smtp(message, host=host, port=port, timeout=timeout)
    return send


def slack_sender(digest: Digest, url: str, timeout: tuple[float, float] = (2.0, 5.0)):  # type: ignore[no-untyped-def]
    return lambda: post_slack_webhook(url, digest.slack_payload, timeout=timeout)


class Counter:
    """A ``send`` callable that counts its calls and behaves as told."""

    def __init__(self, result: str | None = "ok", error: BaseException | None = None):
        self.calls = 0
        self.result = result
        self.error = error

    def __call__(self) -> str | None:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.result


# -- email over real SMTP ------------------------------------------------------------
def test_email_is_received_over_smtp_with_both_parts(digest: Digest, ledger: DeliveryLedger,
                                                     smtp: FakeSmtpServer) -> None:
    outcome = deliver(ledger, digest.idempotency_key, "email", email_sender(digest, smtp.host, smtp.port))
    assert outcome.status == "sent" and digest.idempotency_key[:12] in outcome.detail
    assert len(smtp.messages) == 1
    received = smtp.messages[0]
    assert received.mail_from == SENDER and received.rcpt_tos == RECIPIENTS
    message = received.message
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == "Peer Support in Mental Health: 3 new citing papers (week of 2026-11-23)"
    assert message[DIGEST_HEADER] == digest.idempotency_key
    assert message["Message-ID"] == f"<digest-{digest.idempotency_key}@example.org>"
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for n in (1, 2, 3):
        assert f"Citing paper {n} \u00e9\u00e8" in plain
        assert f'<a href="https://doi.org/10.1234/p.{n}"' in html and f"Citing paper {n} \u00e9\u00e8</a>" in html
    record = ledger.get(digest.idempotency_key, "email")
    assert record is not None and record.state == "sent" and record.sent_at
    assert "alice@example.org, bob@example.org" in (record.detail or "")


def test_second_delivery_with_the_same_key_sends_nothing(digest: Digest, ledger: DeliveryLedger,
                                                         smtp: FakeSmtpServer) -> None:
    send = email_sender(digest, smtp.host, smtp.port)
    assert deliver(ledger, digest.idempotency_key, "email", send).status == "sent"
    again = deliver(DeliveryLedger(ledger.path), digest.idempotency_key, "email", send)  # a fresh process
    assert again.status == "already_sent" and again.detail == ledger.get(digest.idempotency_key, "email").detail
    assert len(smtp.messages) == 1 and smtp.transactions == 1


def test_refused_data_fails_the_task_then_a_retry_sends_exactly_once(digest: Digest, ledger: DeliveryLedger,
                                                                      smtp: FakeSmtpServer) -> None:
    send = email_sender(digest, smtp.host, smtp.port)
    smtp.refuse("data", "554 5.6.0 Message rejected by policy", times=1)
    with pytest.raises(NotDelivered) as raised:
        deliver(ledger, digest.idempotency_key, "email", send)
    assert isinstance(raised.value.__cause__, smtplib.SMTPDataError)
    record = ledger.get(digest.idempotency_key, "email")
    assert record is not None and record.state == "failed" and "554" in (record.error or "")
    assert smtp.messages == [] and smtp.transactions == 1

    assert deliver(ledger, digest.idempotency_key, "email", send).status == "sent"  # Airflow's retry
    assert deliver(ledger, digest.idempotency_key, "email", send).status == "already_sent"
    assert len(smtp.messages) == 1
    record = ledger.get(digest.idempotency_key, "email")
    assert record is not None and record.state == "sent" and record.attempts == 2


@pytest.mark.parametrize(("stage", "reply", "cause"), [
    ("helo", "421 4.3.2 Service not available, closing channel", smtplib.SMTPHeloError),
    ("mail", "451 4.3.0 Temporary failure", smtplib.SMTPSenderRefused),
    ("rcpt", "550 5.1.1 No such user", smtplib.SMTPRecipientsRefused),
    ("data", "421 4.3.2 Try again later", smtplib.SMTPDataError),
])
def test_smtp_refusals_are_not_delivered(digest: Digest, ledger: DeliveryLedger, smtp: FakeSmtpServer,
                                         stage: str, reply: str, cause: type[Exception]) -> None:
    smtp.refuse(stage, reply, times=None)  # type: ignore[arg-type]
    with pytest.raises(NotDelivered) as raised:
        deliver(ledger, digest.idempotency_key, "email", email_sender(digest, smtp.host, smtp.port))
    chain = [raised.value.__cause__, getattr(raised.value.__cause__, "__cause__", None)]
    assert any(isinstance(e, cause) for e in chain), chain
    assert ledger.get(digest.idempotency_key, "email").state == "failed"
    assert smtp.messages == []


def test_connection_refused_is_not_delivered(digest: Digest, ledger: DeliveryLedger) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(NotDelivered) as raised:
        deliver(ledger, digest.idempotency_key, "email", email_sender(digest, "127.0.0.1", port))
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)
    assert ledger.get(digest.idempotency_key, "email").state == "failed"


def test_ambiguous_smtp_timeout_leaves_sending_and_the_retry_is_uncertain(
        digest: Digest, ledger: DeliveryLedger, smtp: FakeSmtpServer, caplog: pytest.LogCaptureFixture) -> None:
    # The server keeps the message, then answers after the client gave up: delivered, but unconfirmed.
    smtp.delay_reply(1.5)
    send = email_sender(digest, smtp.host, smtp.port, timeout=0.4)
    with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected, socket.timeout)):
        deliver(ledger, digest.idempotency_key, "email", send)
    assert ledger.get(digest.idempotency_key, "email").state == "sending"
    assert len(smtp.messages) == 1

    smtp.delay_reply(0)
    with caplog.at_level(logging.ERROR, logger="include.living_review.digest.delivery"):
        outcome = deliver(ledger, digest.idempotency_key, "email", send)
    assert outcome.status == "uncertain"
    assert any("UNCERTAIN" in r.getMessage() for r in caplog.records)
    time.sleep(0.2)
    assert len(smtp.messages) == 1 and smtp.transactions == 1
    assert ledger.uncertain() == [(digest.idempotency_key, "email")]


def test_uncertain_can_be_resolved_by_an_operator(ledger: DeliveryLedger) -> None:
    crash = Counter(error=TimeoutError("read timed out after DATA"))
    with pytest.raises(TimeoutError):
        deliver(ledger, "k" * 64, "email", crash)
    retry = Counter()
    assert deliver(ledger, "k" * 64, "email", retry).status == "uncertain" and retry.calls == 0

    ledger.resolve("k" * 64, "email", delivered=False, note="not in the inbox")
    assert deliver(ledger, "k" * 64, "email", retry).status == "sent" and retry.calls == 1
    ledger.resolve("x" * 64, "slack", delivered=True)
    assert deliver(ledger, "x" * 64, "slack", retry).status == "already_sent" and retry.calls == 1


def test_simulated_ambiguous_failure_never_sends_twice(ledger: DeliveryLedger) -> None:
    first = Counter(error=ConnectionResetError("reset after the message was handed over"))
    with pytest.raises(ConnectionResetError):
        deliver(ledger, "a" * 64, "email", first)
    record = ledger.get("a" * 64, "email")
    assert record is not None and record.state == "sending" and record.attempts == 1
    second = Counter()
    outcome = deliver(ledger, "a" * 64, "email", second)
    assert outcome.status == "uncertain" and second.calls == 0


def test_other_channels_and_keys_are_independent(ledger: DeliveryLedger) -> None:
    send = Counter()
    assert deliver(ledger, "a" * 64, "email", send).status == "sent"
    assert deliver(ledger, "a" * 64, "slack", send).status == "sent"
    assert deliver(ledger, "b" * 64, "email", send).status == "sent"
    assert send.calls == 3
    status = ledger.status("a" * 64)
    assert set(status) == {"email", "slack"} and all(s["state"] == "sent" for s in status.values())
    assert set(ledger.status()) == {"a" * 64, "b" * 64}


def test_concurrent_delivers_send_once(ledger: DeliveryLedger) -> None:
    calls: list[int] = []

    def slow() -> str:
        calls.append(1)
        time.sleep(0.3)
        return "ok"

    outcomes: list[str] = []
    threads = [threading.Thread(target=lambda: outcomes.append(deliver(ledger, "c" * 64, "email", slow).status))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert sorted(outcomes).count("sent") == 1 and len(outcomes) == 4


def test_ledger_file_is_valid_json_and_a_corrupt_one_blocks_sending(ledger: DeliveryLedger) -> None:
    deliver(ledger, "d" * 64, "email", Counter("message-id <x@y>"))
    document = json.loads(ledger.path.read_text(encoding="utf-8"))
    assert document["version"] == 2
    assert document["deliveries"]["d" * 64]["email"]["state"] == "sent"
    assert document["deliveries"]["d" * 64]["email"]["detail"] == "message-id <x@y>"
    assert [p.name for p in ledger.path.parent.iterdir() if p.name.endswith(".tmp")] == []

    ledger.path.write_text("{not json", encoding="utf-8")
    send = Counter()
    with pytest.raises(LedgerError):
        deliver(ledger, "e" * 64, "email", send)
    assert send.calls == 0


# -- Slack ------------------------------------------------------------------------
def test_slack_receives_exactly_one_payload(digest: Digest, ledger: DeliveryLedger,
                                            slack: FakeSlackWebhook) -> None:
    send = slack_sender(digest, slack.webhook_url())
    outcome = deliver(ledger, digest.idempotency_key, "slack", send)
    assert outcome.status == "sent" and "ok" in (outcome.detail or "")
    assert deliver(ledger, digest.idempotency_key, "slack", send).status == "already_sent"
    assert slack.payloads == [digest.slack_payload]
    assert len(slack.requests) == 1 and slack.requests[0].path == "/services/T000/B000/XXXX"


@pytest.mark.parametrize(("status", "body"), [(429, "rate_limited"), (500, "rollup_error"),
                                              (404, "no_service"), (400, "invalid_payload")])
def test_slack_refusal_fails_then_retry_sends_once(digest: Digest, ledger: DeliveryLedger, slack: FakeSlackWebhook,
                                                   status: int, body: str) -> None:
    slack.inject(Response(status, body, headers={"Retry-After": "1"}, content_type="text/plain"))
    send = slack_sender(digest, slack.webhook_url())
    with pytest.raises(NotDelivered, match=str(status)):
        deliver(ledger, digest.idempotency_key, "slack", send)
    assert ledger.get(digest.idempotency_key, "slack").state == "failed"
    assert deliver(ledger, digest.idempotency_key, "slack", send).status == "sent"
    assert deliver(ledger, digest.idempotency_key, "slack", send).status == "already_sent"
    assert len(slack.payloads) == 1 and len(slack.requests) == 2


def test_slack_gateway_timeout_is_ambiguous(digest: Digest, ledger: DeliveryLedger, slack: FakeSlackWebhook) -> None:
    slack.inject(Response(504, "gateway timeout", content_type="text/plain"))
    send = slack_sender(digest, slack.webhook_url())
    with pytest.raises(RuntimeError, match="504"):
        deliver(ledger, digest.idempotency_key, "slack", send)
    assert ledger.get(digest.idempotency_key, "slack").state == "sending"
    assert deliver(ledger, digest.idempotency_key, "slack", send).status == "uncertain"
    assert len(slack.requests) == 1


def test_slack_read_timeout_is_ambiguous(digest: Digest, ledger: DeliveryLedger, slack: FakeSlackWebhook) -> None:
    slack.inject(Response(200, "ok", delay=1.0, content_type="text/plain"))
    send = slack_sender(digest, slack.webhook_url(), timeout=(2.0, 0.3))
    with pytest.raises(requests.exceptions.ReadTimeout):
        deliver(ledger, digest.idempotency_key, "slack", send)
    assert ledger.get(digest.idempotency_key, "slack").state == "sending"


def test_slack_unreachable_is_not_delivered(digest: Digest, ledger: DeliveryLedger) -> None:
    send = slack_sender(digest, f"http://127.0.0.1:{free_port()}/services/x")
    with pytest.raises(NotDelivered, match="unreachable"):
        deliver(ledger, digest.idempotency_key, "slack", send)
    assert ledger.get(digest.idempotency_key, "slack").state == "failed"


# -- classification -----------------------------------------------------------------
@pytest.mark.parametrize("exc", [
    ConnectionRefusedError(),
    smtplib.SMTPConnectError(421, b"busy"),
    smtplib.SMTPRecipientsRefused({"a@b.c": (550, b"no")}),
    smtplib.SMTPSenderRefused(553, b"no", "a@b.c"),
    smtplib.SMTPDataError(554, b"rejected"),
    smtplib.SMTPHeloError(421, b"bye"),
    smtplib.SMTPAuthenticationError(535, b"bad credentials"),
])
def test_smtp_not_delivered_recognises_refusals(exc: BaseException) -> None:
    assert smtp_not_delivered(exc)
    wrapped = RuntimeError("hook failed")
    wrapped.__cause__ = exc
    assert smtp_not_delivered(wrapped)


@pytest.mark.parametrize("exc", [TimeoutError(), smtplib.SMTPServerDisconnected("gone"), OSError("reset"),
                                 smtplib.SMTPResponseException(250, b"odd"), RuntimeError()])
def test_smtp_ambiguous_errors_are_not_classified_as_not_delivered(exc: BaseException) -> None:
    assert not smtp_not_delivered(exc)


def test_http_not_delivered_statuses() -> None:
    for status in (400, 403, 404, 408, 410, 413, 429, 500, 503):
        assert http_not_delivered(status), status
    for status in (200, 201, 204, 302, 502, 504):
        assert not http_not_delivered(status), status


def test_http_error_classification() -> None:
    try:
        requests.post(f"http://127.0.0.1:{free_port()}/", timeout=1)
    except requests.RequestException as exc:
        assert http_error_not_delivered(exc)
    assert not http_error_not_delivered(requests.exceptions.ReadTimeout("read timed out"))
    # what slack_sdk's WebhookClient (inside SlackWebhookHook) raises
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{free_port()}/", data=b"{}", timeout=1)
    except urllib.error.URLError as exc:
        assert http_error_not_delivered(exc)
    assert not http_error_not_delivered(urllib.error.URLError(TimeoutError("timed out")))
    assert not http_error_not_delivered(requests.exceptions.ChunkedEncodingError("cut"))


def test_guard_converts_only_recognised_errors() -> None:
    refused = guard(Counter(error=smtplib.SMTPDataError(554, b"no")), smtp_not_delivered)
    with pytest.raises(NotDelivered):
        refused()
    ambiguous = guard(Counter(error=TimeoutError()), smtp_not_delivered)
    with pytest.raises(TimeoutError):
        ambiguous()
    assert guard(Counter("detail"), smtp_not_delivered)() == "detail"


def test_send_smtp_reports_partially_refused_recipients(digest: Digest, smtp: FakeSmtpServer) -> None:
    smtp.refuse("rcpt", "550 5.1.1 No such user", times=1)
    message = build_email(digest, sender=SENDER, recipients=RECIPIENTS)
    detail = send_smtp(message, host=smtp.host, port=smtp.port, timeout=5)
    assert "refused alice@example.org" in detail and "to bob@example.org" in detail
    assert smtp.messages[0].rcpt_tos == ["bob@example.org"]


def test_outcome_as_dict_is_json_ready(ledger: DeliveryLedger) -> None:
    outcome = deliver(ledger, "f" * 64, "slack", Counter("slack HTTP 200 ok"))
    data: dict[str, Any] = outcome.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["status"] == "sent" and data["channel"] == "slack" and data["at"]


def test_a_truncated_ledger_names_the_file_and_the_fix(ledger: DeliveryLedger) -> None:
    deliver(ledger, "d" * 64, "email", Counter("message-id <x@y>"))
    ledger.path.write_bytes(ledger.path.read_bytes()[:100])
    with pytest.raises(LedgerError) as err:
        ledger.records("email")
    text = str(err.value)
    assert str(ledger.path) in text and "Repair or restore it" in text and "sent again" in text


def test_a_read_only_data_dir_is_a_storage_error_saying_what_to_do(ledger: DeliveryLedger, monkeypatch) -> None:
    """The ledger's lock file was opened with a bare ``open``: ``OSError: [Errno 30]`` and nothing more."""
    import builtins
    import errno

    from include.living_review.storage import StorageError

    real_open = builtins.open

    def read_only(path, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wa+x"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    send = Counter()
    with pytest.raises(StorageError) as err:
        deliver(ledger, "e" * 64, "email", send)
    assert send.calls == 0
    text = str(err.value)
    assert str(ledger.path.parent) in text
    assert "read-only; point LIVING_REVIEW_DATA_DIR at a writable place" in text
