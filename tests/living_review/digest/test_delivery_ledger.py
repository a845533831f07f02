"""The delivery ledger record by record, and the plain senders against a recording SMTP client and Slack session.

``test_delivery.py`` proves the at-most-once guarantee end to end over a real SMTP server
and a fake webhook; here each state transition, each field a record carries and each
argument the senders hand to smtplib and requests is checked exactly, without sockets.
"""
from __future__ import annotations

import contextlib
import errno
import io
import itertools
import json
import smtplib
import socket
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import requests
from upath import UPath
from urllib3.exceptions import MaxRetryError, NewConnectionError

from include.living_review.digest import delivery as delivery_module
from include.living_review.digest.delivery import (
    DeliveryLedger,
    DeliveryOutcome,
    DeliveryRecord,
    LedgerError,
    NotDelivered,
    _chain,
    deliver,
    guard,
    http_error_not_delivered,
    http_not_delivered,
    post_slack_webhook,
    send_smtp,
    smtp_not_delivered,
)
from include.living_review.storage import StorageError
from include.living_review.storage import atomic as atomic_module

T1, T2, T3 = "2026-11-25T08:00:00+00:00", "2026-11-25T08:05:00+00:00", "2026-11-25T08:10:00+00:00"
KEY = "k" * 64


@pytest.fixture
def ledger(tmp_path) -> DeliveryLedger:
    return DeliveryLedger(tmp_path / "digests" / "review_id=r" / "ledger.json")


@pytest.fixture
def clock(monkeypatch):
    """Set the ledger's clock: ``clock(T1)``."""
    def set_to(when: str) -> None:
        monkeypatch.setattr(delivery_module, "_now", lambda: when)
    return set_to


def test_the_clock_is_utc_to_the_second():
    stamp = delivery_module._now()
    assert stamp.endswith("+00:00") and len(stamp) == len("2026-11-25T08:00:00+00:00")


def test_each_transition_records_what_it_must(ledger, clock):
    clock(T1)
    assert ledger.claim(KEY, "email", events=["e2", "e1", "e2"], snapshot_date="2026-11-23", baseline=True) is None
    sending = DeliveryRecord(state="sending", attempts=1, updated_at=T1, events=["e1", "e2"],
                             snapshot_date="2026-11-23", baseline=True)
    assert ledger.get(KEY, "email") == sending
    assert ledger.claim(KEY, "email", events=["other"]) == sending  # sending blocks a second claim
    clock(T2)
    failed = ledger.mark_failed(KEY, "email", "x" * 1500)
    assert failed == DeliveryRecord(state="failed", attempts=1, updated_at=T2, error="x" * 1000, events=["e1", "e2"],
                                    snapshot_date="2026-11-23", baseline=True)
    assert ledger.get(KEY, "email") == failed
    assert ledger.claim(KEY, "email", events=["e3"]) is None  # a failed delivery may be tried again
    assert ledger.get(KEY, "email") == DeliveryRecord(state="sending", attempts=2, updated_at=T2, events=["e3"])
    clock(T3)
    sent = ledger.mark_sent(KEY, "email", "message-id <x@y>")
    assert sent == DeliveryRecord(state="sent", attempts=2, updated_at=T3, sent_at=T3, detail="message-id <x@y>",
                                  events=["e3"])
    assert ledger.get(KEY, "email") == sent and ledger.claim(KEY, "email") == sent


def test_a_transition_without_an_earlier_record_starts_from_nothing(ledger, clock):
    clock(T1)
    assert ledger.mark_failed(KEY, "slack", "refused") == DeliveryRecord(state="failed", attempts=0, updated_at=T1,
                                                                         error="refused")
    assert ledger.mark_sent("s" * 64, "slack", "ok") == DeliveryRecord(state="sent", attempts=1, updated_at=T1,
                                                                       sent_at=T1, detail="ok")
    assert ledger.get(KEY, "email") is None and ledger.get("unknown", "email") is None


def test_deliver_returns_what_happened_with_the_records_times(ledger, clock):
    clock(T1)
    sent = deliver(ledger, KEY, "email", lambda: "message-id <a@b>", events=["e1"], snapshot_date="2026-11-23")
    assert sent == DeliveryOutcome(KEY, "email", "sent", "message-id <a@b>", T1)
    assert ledger.get(KEY, "email") == DeliveryRecord(state="sent", attempts=1, updated_at=T1, sent_at=T1,
                                                      detail="message-id <a@b>", events=["e1"],
                                                      snapshot_date="2026-11-23", baseline=False)
    clock(T2)
    assert deliver(ledger, KEY, "email", lambda: "again") == DeliveryOutcome(KEY, "email", "already_sent",
                                                                             "message-id <a@b>", T1)
    deliver(ledger, KEY, "slack", lambda: "ok", baseline=True)
    assert ledger.get(KEY, "slack").baseline is True


def test_an_ambiguous_failure_is_uncertain_at_the_claims_time_and_a_proved_one_is_recorded(ledger, clock):
    clock(T1)

    def timeout() -> str:
        raise TimeoutError("no answer after DATA")
    with pytest.raises(TimeoutError):
        deliver(ledger, KEY, "email", timeout)
    clock(T2)
    assert deliver(ledger, KEY, "email", lambda: "x") == DeliveryOutcome(KEY, "email", "uncertain", None, T1)
    assert ledger.uncertain() == [(KEY, "email")]

    def refused() -> str:
        raise NotDelivered("550 mailbox unavailable")
    with pytest.raises(NotDelivered):
        deliver(ledger, "r" * 64, "email", refused)
    assert ledger.get("r" * 64, "email").error == "NotDelivered: 550 mailbox unavailable"


def test_resolve_settles_an_uncertain_delivery_either_way(ledger, clock):
    clock(T1)
    ledger.claim(KEY, "email", events=["e1"])
    ledger.resolve(KEY, "email", delivered=True, note="seen in the inbox")
    assert ledger.get(KEY, "email") == DeliveryRecord(state="sent", attempts=1, updated_at=T1, sent_at=T1,
                                                      detail="seen in the inbox", events=["e1"])
    ledger.claim("a" * 64, "slack", events=["e2"])
    ledger.resolve("a" * 64, "slack", delivered=False)
    assert ledger.get("a" * 64, "slack") == DeliveryRecord(state="failed", attempts=1, updated_at=T1,
                                                           error="resolved by an operator", events=["e2"])
    assert ledger.uncertain() == []


def test_suppressed_events_are_held_under_a_stable_key_and_failed_ones_are_not(ledger, clock):
    clock(T1)
    assert ledger.suppress("email", [], snapshot_date="2026-11-23", reason="backfill") is None
    assert not ledger.path.exists()  # nothing to record, nothing written
    key = ledger.suppress("email", ["e2", "e1"], snapshot_date="2026-11-23", reason="backfill")
    assert key == "suppressed-70e2ab93ae333668b414a55c"
    assert ledger.get(key, "email") == DeliveryRecord(state="suppressed", updated_at=T1, detail="backfill",
                                                      events=["e1", "e2"], snapshot_date="2026-11-23")
    clock(T2)
    ledger.claim("b" * 64, "email", events=["e3"])  # sending: possibly delivered
    clock(T3)
    ledger.claim("c" * 64, "email", events=["e4"])
    ledger.mark_failed("c" * 64, "email", "refused")  # failed: to be sent again
    ledger.claim("d" * 64, "slack", events=["e5"])
    assert ledger.held_events("email") == {"e1", "e2", "e3"}
    assert ledger.held_events("slack") == {"e5"} and ledger.held_events("teams") == set()
    assert [k for k, _ in ledger.records("email")] == [key, "b" * 64, "c" * 64]  # oldest first


def test_status_gives_one_digests_channels_or_everything(ledger, clock):
    clock(T1)
    ledger.claim(KEY, "email")
    ledger.mark_sent(KEY, "slack", "ok")
    assert ledger.status(KEY) == {"email": {**DeliveryRecord("sending", 1, T1).__dict__},
                                  "slack": {**DeliveryRecord("sent", 1, T1, T1, "ok").__dict__}}
    assert ledger.status() == {KEY: ledger.status(KEY)} and ledger.status("unknown") == {}


def test_the_ledger_file_is_sorted_indented_utf8_json_beside_its_lock_file_only(ledger, clock):
    clock(T1)
    ledger.mark_sent("b" * 64, "slack", "posté ✓")
    ledger.mark_sent("a" * 64, "slack", "ok")
    ledger.mark_sent("a" * 64, "email", "ok")
    text = ledger.path.read_text(encoding="utf-8")
    document = json.loads(text)
    assert list(document) == ["version", "deliveries"] and document["version"] == 2
    assert list(document["deliveries"]) == ["a" * 64, "b" * 64]
    assert list(document["deliveries"]["a" * 64]) == ["email", "slack"]
    assert '"detail": "posté ✓"' in text and text.endswith("}\n")
    assert text.startswith('{\n  "version": 2,\n  "deliveries": {\n    "' + "a" * 64 + '": {\n      "email": {\n')
    assert sorted(p.name for p in ledger.path.parent.iterdir()) == ["ledger.json", "ledger.json.lock"]


def test_the_ledger_is_replaced_whole_never_rewritten_in_place(ledger, clock, monkeypatch):
    clock(T1)
    ledger.mark_sent(KEY, "email", "first")
    before = ledger.path.stat().st_ino
    ledger.mark_sent(KEY, "slack", "second")
    assert ledger.path.stat().st_ino != before  # a new file renamed over the old one
    good = ledger.path.read_bytes()

    def refuse(source, target):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic_module.os, "replace", refuse)
    with pytest.raises(StorageError):
        ledger.mark_failed(KEY, "teams", "x")
    assert ledger.path.read_bytes() == good  # still whole and readable: nothing is resent
    assert sorted(p.name for p in ledger.path.parent.iterdir()) == ["ledger.json", "ledger.json.lock"]


def test_a_ledger_without_deliveries_reads_as_empty_and_a_damaged_one_is_refused(ledger):
    ledger.path.parent.mkdir(parents=True)
    ledger.path.write_text('{"version": 2}')
    assert ledger.status() == {}
    ledger.path.write_text('{"version": 2, "deliv')
    with pytest.raises(LedgerError) as err:
        ledger.get(KEY, "email")
    assert str(err.value) == (f"cannot read the delivery ledger {ledger.path}: Unterminated string starting at: "
                              "line 1 column 16 (char 15). Repair or restore it; deleting it makes already-sent "
                              "digests eligible to be sent again")
    for document in ('{"deliveries": []}', '{"deliveries": {"k": {"email": {"nope": 1}}}}'):
        ledger.path.write_text(document)
        with pytest.raises(LedgerError, match=rf"^the delivery ledger {ledger.path} has an unexpected structure: "):
            ledger.status()


def test_the_ledger_is_read_as_utf8_whatever_the_machines_locale(ledger, clock, monkeypatch):
    clock(T1)
    ledger.mark_sent(KEY, "slack", "posté ✓")
    monkeypatch.setattr(io, "text_encoding", lambda encoding, stacklevel=2: encoding or "latin-1")
    assert ledger.get(KEY, "slack").detail == "posté ✓"


def test_a_ledger_path_given_as_text_is_resolved_and_a_path_is_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert DeliveryLedger("rel/ledger.json").path == tmp_path / "rel" / "ledger.json"
    assert DeliveryLedger(Path("rel/ledger.json")).path == Path("rel/ledger.json")


def test_a_ledger_on_an_object_store_needs_no_lock_file(clock):
    clock(T1)
    root = UPath(f"memory://lr-test-{uuid.uuid4().hex}/digests")
    try:
        ledger = DeliveryLedger(root / "ledger.json")
        assert deliver(ledger, KEY, "email", lambda: "ok").status == "sent"
        assert DeliveryLedger(root / "ledger.json").get(KEY, "email").state == "sent"
        assert sorted(p.name for p in root.iterdir()) == ["ledger.json"]
    finally:
        with contextlib.suppress(FileNotFoundError):
            root.fs.rm(root.path, recursive=True)


# -- classifying failures -----------------------------------------------------------------
def test_the_cause_chain_ends_on_a_cycle():
    first, second = RuntimeError("hook failed"), OSError("reset")
    first.__cause__, second.__cause__ = second, first
    assert list(itertools.islice(_chain(first), 10)) == [first, second]
    assert not smtp_not_delivered(first)


def test_http_statuses_at_the_edges():
    assert [status for status in (399, 400, 501, 502, 503, 504, 599, 600) if http_not_delivered(status)] == \
        [400, 501, 503, 599]


@pytest.mark.parametrize("error", [
    ConnectionRefusedError(), socket.gaierror(-2, "Name or service not known"),
    requests.exceptions.ConnectTimeout("connect timed out"),
    NewConnectionError(None, "Failed to establish a new connection"),  # type: ignore[arg-type]
])
def test_a_connect_phase_error_is_not_delivered(error):
    assert http_error_not_delivered(error)


def test_guard_names_the_refusal_and_keeps_its_cause():
    refusal = smtplib.SMTPDataError(554, b"no")

    def send() -> str:
        raise refusal
    with pytest.raises(NotDelivered) as err:
        guard(send, smtp_not_delivered)()
    assert str(err.value) == "SMTPDataError: (554, b'no')" and err.value.__cause__ is refusal


# -- Slack ------------------------------------------------------------------------------------
@dataclass
class Answer:
    status_code: int
    text: str


@dataclass
class Session:
    """A requests session stand-in: records the post, answers as told."""

    answer: Answer | None = None
    error: Exception | None = None
    posts: list[dict[str, Any]] = field(default_factory=list)

    def post(self, url: str, **kwargs: Any) -> Answer:
        self.posts.append({"url": url, **kwargs})
        if self.error is not None:
            raise self.error
        assert self.answer is not None
        return self.answer


def test_slack_posts_the_payload_once_and_reports_the_answer():
    session = Session(Answer(200, "ok"))
    assert post_slack_webhook("https://hooks/x", {"text": "hi"}, session=session) == "slack HTTP 200 ok"
    assert session.posts == [{"url": "https://hooks/x", "json": {"text": "hi"}, "timeout": (10.0, 30.0)}]


def test_slack_refusals_quote_at_most_200_characters_and_a_redirect_may_have_posted():
    with pytest.raises(NotDelivered) as err:
        post_slack_webhook("https://hooks/x", {}, session=Session(Answer(400, "e" * 300)))
    assert str(err.value) == "Slack webhook answered HTTP 400: " + "e" * 200
    with pytest.raises(RuntimeError) as maybe:
        post_slack_webhook("https://hooks/x", {}, session=Session(Answer(300, "moved")))
    assert str(maybe.value) == "Slack webhook answered HTTP 300 (moved); it may have posted"


def test_an_unreachable_slack_is_not_delivered_and_says_why():
    refused = requests.exceptions.ConnectionError(MaxRetryError(None, "/services/x", reason=NewConnectionError(  # type: ignore[arg-type]
        None, "Failed to establish a new connection: [Errno 111] Connection refused")))  # type: ignore[arg-type]
    with pytest.raises(NotDelivered) as err:
        post_slack_webhook("https://hooks/x", {}, session=Session(error=refused))
    assert str(err.value) == f"Slack webhook unreachable: ConnectionError: {refused}" and err.value.__cause__ is refused
    with pytest.raises(requests.exceptions.ReadTimeout):  # ambiguous: may have posted
        post_slack_webhook("https://hooks/x", {}, session=Session(error=requests.exceptions.ReadTimeout("late")))


# -- SMTP -------------------------------------------------------------------------------------
class Client:
    """Records what send_smtp asks of smtplib; ``fail`` names a call that raises."""

    made: list[Client] = []

    def __init__(self, host: str, port: int, timeout: float):
        self.calls: list[tuple[Any, ...]] = [("connect", type(self).__name__, host, port, timeout)]
        self.closed = False
        Client.made.append(self)
        self.refused: dict[str, Any] = {}
        if FAIL.get("connect"):
            raise FAIL["connect"]

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))
        if FAIL.get(name):
            raise FAIL[name]

    def ehlo_or_helo_if_needed(self) -> None:
        self._call("ehlo")

    def starttls(self) -> None:
        self._call("starttls")

    def login(self, user: str, password: str) -> None:
        self._call("login", user, password)

    def send_message(self, message: EmailMessage, *, from_addr: str, to_addrs: list[str]) -> dict[str, Any]:
        self._call("send", from_addr, to_addrs)
        return self.refused if not REFUSED else dict(REFUSED)

    def quit(self) -> None:
        self._call("quit")

    def close(self) -> None:
        self.closed = True
        if FAIL.get("close"):
            raise FAIL["close"]


class SSLClient(Client):
    pass


FAIL: dict[str, Exception] = {}
REFUSED: dict[str, Any] = {}


@pytest.fixture
def smtp(monkeypatch):
    Client.made.clear()
    FAIL.clear()
    REFUSED.clear()
    monkeypatch.setattr(delivery_module.smtplib, "SMTP", Client)
    monkeypatch.setattr(delivery_module.smtplib, "SMTP_SSL", SSLClient)
    return Client.made


def message(to: str | None = "alice@example.org, , bob@example.org") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "digest@example.org"
    if to is not None:
        msg["To"] = to
    msg["Message-ID"] = "<digest-1@example.org>"
    msg.set_content("hello")
    return msg


def test_smtp_takes_the_sender_and_recipients_from_the_message(smtp):
    detail = send_smtp(message(), host="mail", port=25)
    (client,) = smtp
    assert client.calls == [("connect", "Client", "mail", 25, 30.0), ("ehlo",),
                            ("send", "digest@example.org", ["alice@example.org", "bob@example.org"]), ("quit",)]
    assert detail == "message-id <digest-1@example.org> to alice@example.org, bob@example.org"


def test_smtp_with_tls_login_and_explicit_envelope(smtp):
    send_smtp(message(), host="mail", port=465, sender="bounce@example.org", recipients=("carol@example.org",),
              user="digest", use_ssl=True, timeout=5)
    send_smtp(message(), host="mail", port=587, user="digest", password="s3cret", starttls=True)
    ssl, tls = smtp
    assert ssl.calls == [("connect", "SSLClient", "mail", 465, 5), ("ehlo",), ("login", "digest", ""),
                         ("send", "bounce@example.org", ["carol@example.org"]), ("quit",)]
    assert tls.calls[1:4] == [("ehlo",), ("starttls",), ("ehlo",)] and tls.calls[4] == ("login", "digest", "s3cret")


def test_smtp_without_recipients_sends_nothing(smtp):
    with pytest.raises(NotDelivered) as err:
        send_smtp(message(to=None), host="mail", port=25)
    assert str(err.value) == "no recipients" and smtp == []
    with pytest.raises(NotDelivered):
        send_smtp(message(), host="mail", port=25, recipients=[])


@pytest.mark.parametrize("stage", ["ehlo", "login"])
def test_a_failure_before_the_message_is_handed_over_closes_and_is_not_delivered(smtp, stage):
    FAIL[stage] = smtplib.SMTPHeloError(421, b"bye")
    FAIL["close"] = OSError("already closed")  # a failing close changes nothing
    with pytest.raises(NotDelivered) as err:
        send_smtp(message(), host="mail", port=25, user="digest")
    assert str(err.value) == "SMTP mail:25 before sending: SMTPHeloError: (421, b'bye')"
    assert smtp[0].closed and all(call[0] != "send" for call in smtp[0].calls)


def test_a_refused_connection_is_not_delivered(smtp):
    FAIL["connect"] = ConnectionRefusedError(111, "Connection refused")
    with pytest.raises(NotDelivered, match=r"^SMTP mail:25 before sending: ConnectionRefusedError: "):
        send_smtp(message(), host="mail", port=25)


def test_a_refused_transaction_is_not_delivered_and_an_ambiguous_one_propagates(smtp):
    FAIL["send"] = smtplib.SMTPDataError(554, b"rejected")
    FAIL["close"] = OSError("already closed")
    with pytest.raises(NotDelivered) as err:
        send_smtp(message(), host="mail", port=25)
    assert str(err.value) == "SMTP refused the digest: SMTPDataError: (554, b'rejected')" and smtp[0].closed
    FAIL["send"] = smtplib.SMTPServerDisconnected("gone after DATA")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send_smtp(message(), host="mail", port=25)
    assert smtp[1].closed


def test_a_failing_quit_after_acceptance_is_still_a_delivery_and_refused_recipients_are_named(smtp):
    FAIL["quit"] = smtplib.SMTPServerDisconnected("gone")
    REFUSED.update({"bob@example.org": (550, b"no"), "alice@example.org": (550, b"no")})
    detail = send_smtp(message("alice@example.org, bob@example.org, carol@example.org"), host="mail", port=25)
    assert detail == ("message-id <digest-1@example.org> to carol@example.org; "
                      "refused alice@example.org, bob@example.org")
