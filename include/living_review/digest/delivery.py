"""Idempotent digest delivery: a ledger of what was sent, per digest and channel, event by event.

Guarantee: **each event at most once per channel; a crash between the server accepting
and the ledger recording yields 'uncertain', never a duplicate.** Each record names the
event-log ids (:mod:`include.living_review.snapshot.events`) its digest carried, so a
channel's next digest is exactly the events it has not yet delivered, whatever the
other channels did.

:func:`deliver` records the intent (``sending``) *before* calling the injected
``send`` and the confirmation (``sent``) after it returns. A ``send`` that raises
:class:`NotDelivered` has proved that nothing went out (connection refused, SMTP
refusal up to and including the reply to DATA, Slack 4xx/5xx), so the intent is
cleared to ``failed`` and the error re-raised: the Airflow task fails, retries and
sends once. Any other error is ambiguous (a timeout after the message was handed
over), so ``sending`` stays, and a retry that finds ``sending`` does not send again:
it returns ``uncertain`` for the run manifest and alerts. An operator who checked
the inbox/channel settles it with :meth:`DeliveryLedger.resolve`.

The ledger is a small JSON file, rewritten atomically under an ``flock`` so the email
and Slack tasks of one run may update it concurrently. It must live on storage that
every worker sees (the data directory).

On an object store (an ``s3://`` data dir) there is no ``flock``: the ledger is read
and rewritten as one object (each PUT is atomic), and the email and Slack tasks of a
run must not update it at the same moment, or one update can be lost. Today one
``send_digest`` task delivers every channel in turn and the digest DAG has
``max_active_runs=1``, so no two updates overlap.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import smtplib
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no concurrent tasks there
    fcntl = None  # type: ignore[assignment]

from include.living_review.storage import write_atomic
from include.living_review.storage.paths import storage_error

log = logging.getLogger(__name__)

State = Literal["sending", "sent", "failed", "suppressed"]
OutcomeStatus = Literal["sent", "already_sent", "uncertain"]
LEDGER_VERSION = 2
# A record in one of these states has its events off the channel's pending list: delivered,
# possibly delivered (``sending`` is never resent unless an operator resolves it), or
# deliberately not sent (``suppressed``: a backfilled run).
HOLDS_EVENTS: frozenset[str] = frozenset({"sent", "sending", "suppressed"})

# 502/504 come from a proxy that lost the upstream's answer: the webhook may have
# posted, so they are ambiguous rather than proof of non-delivery.
AMBIGUOUS_HTTP_STATUSES = frozenset({502, 504})

_SMTP_NOT_DELIVERED: tuple[type[BaseException], ...] = (
    ConnectionRefusedError,
    socket.gaierror,
    smtplib.SMTPConnectError,
    smtplib.SMTPHeloError,
    smtplib.SMTPAuthenticationError,
    smtplib.SMTPNotSupportedError,
    smtplib.SMTPSenderRefused,
    smtplib.SMTPRecipientsRefused,
    # Raised for a refusal of DATA or of the message itself (the reply after the
    # final "."), so the server has not taken responsibility for it.
    smtplib.SMTPDataError,
)


class NotDelivered(Exception):
    """Raised by a ``send`` callable when the failure proves nothing was delivered."""


class LedgerError(RuntimeError):
    """The ledger file is unreadable; never guessed at, since that could resend."""


@dataclass
class DeliveryRecord:
    state: State
    attempts: int = 0
    updated_at: str = ""
    sent_at: str | None = None
    detail: str | None = None
    error: str | None = None
    events: list[str] = field(default_factory=list)  # event-log ids this digest carries
    snapshot_date: str | None = None  # the snapshot the digest announced
    baseline: bool = False
    alerted_at: str | None = None  # when an operator was alerted that this ``sending`` is uncertain


@dataclass(frozen=True)
class DeliveryOutcome:
    """What :func:`deliver` did, for the run manifest and alerts."""

    key: str
    channel: str
    status: OutcomeStatus
    detail: str | None = None
    at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class DeliveryLedger:
    """Per (idempotency key, channel) delivery states, persisted as JSON at ``path``."""

    def __init__(self, path: str | Path | Any):
        from include.living_review.storage import data_path, is_remote

        self.path = data_path(path) if not isinstance(path, Path) else path
        self._remote = is_remote(self.path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    # -- storage ------------------------------------------------------------------
    def _read(self) -> dict[str, dict[str, DeliveryRecord]]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise storage_error("read the delivery ledger", self.path, exc) from exc
        except ValueError as exc:
            raise LedgerError(f"cannot read the delivery ledger {self.path}: {exc}. Repair or restore it; "
                              "deleting it makes already-sent digests eligible to be sent again") from exc
        try:
            return {key: {channel: DeliveryRecord(**record) for channel, record in channels.items()}
                    for key, channels in document.get("deliveries", {}).items()}
        except (AttributeError, TypeError) as exc:
            raise LedgerError(f"the delivery ledger {self.path} has an unexpected structure: {exc}") from exc

    def _write(self, deliveries: Mapping[str, Mapping[str, DeliveryRecord]]) -> None:
        document = {"version": LEDGER_VERSION,
                    "deliveries": {key: {ch: asdict(rec) for ch, rec in sorted(channels.items())}
                                   for key, channels in sorted(deliveries.items())}}
        write_atomic(self.path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, DeliveryRecord]]]:
        """Read-modify-write under an exclusive lock; the yielded dict is written back on success."""
        if self._remote:  # no flock on an object store (see the module docstring)
            deliveries = self._read()
            yield deliveries
            self._write(deliveries)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(self._lock_path, "a+")  # noqa: SIM115 - closed by the with below
        except OSError as exc:  # a read-only data dir: say so, with what to do
            raise storage_error("open the delivery ledger's lock file", self._lock_path, exc) from exc
        with lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            deliveries = self._read()
            yield deliveries
            self._write(deliveries)

    # -- queries ------------------------------------------------------------------
    def get(self, key: str, channel: str) -> DeliveryRecord | None:
        return self._read().get(key, {}).get(channel)

    def status(self, key: str | None = None) -> dict[str, Any]:
        """States for the run manifest: ``{channel: record}`` for ``key``, or everything."""
        deliveries = self._read()
        if key is not None:
            return {channel: asdict(record) for channel, record in deliveries.get(key, {}).items()}
        return {k: {ch: asdict(rec) for ch, rec in channels.items()} for k, channels in deliveries.items()}

    def uncertain(self) -> list[tuple[str, str]]:
        """(key, channel) pairs stuck in ``sending``: they need a human to check and resolve."""
        return [(key, ch) for key, channels in self._read().items()
                for ch, rec in channels.items() if rec.state == "sending"]

    # -- transitions --------------------------------------------------------------
    def claim(self, key: str, channel: str, *, events: Sequence[str] = (), snapshot_date: str | None = None,
              baseline: bool = False) -> DeliveryRecord | None:
        """Record ``sending`` unless already ``sent``/``sending``; return the blocking record, if any."""
        with self._locked() as deliveries:
            record = deliveries.get(key, {}).get(channel)
            if record is not None and record.state in ("sent", "sending"):
                return record
            attempts = record.attempts if record else 0
            deliveries.setdefault(key, {})[channel] = DeliveryRecord(
                state="sending", attempts=attempts + 1, updated_at=_now(), events=sorted(set(events)),
                snapshot_date=snapshot_date, baseline=baseline)
            return None

    def mark_sent(self, key: str, channel: str, detail: str | None = None) -> DeliveryRecord:
        with self._locked() as deliveries:
            previous = deliveries.get(key, {}).get(channel)
            now = _now()
            record = DeliveryRecord(state="sent", attempts=previous.attempts if previous else 1,
                                    updated_at=now, sent_at=now, detail=detail,
                                    events=previous.events if previous else [],
                                    snapshot_date=previous.snapshot_date if previous else None,
                                    baseline=previous.baseline if previous else False)
            deliveries.setdefault(key, {})[channel] = record
            return record

    def mark_failed(self, key: str, channel: str, error: str) -> DeliveryRecord:
        with self._locked() as deliveries:
            previous = deliveries.get(key, {}).get(channel)
            record = DeliveryRecord(state="failed", attempts=previous.attempts if previous else 0,
                                    updated_at=_now(), error=error[:1000],
                                    events=previous.events if previous else [],
                                    snapshot_date=previous.snapshot_date if previous else None,
                                    baseline=previous.baseline if previous else False)
            deliveries.setdefault(key, {})[channel] = record
            return record

    def mark_alerted(self, key: str, channel: str) -> None:
        """Remember that the operator was told this delivery is uncertain (one alert per delivery).

        A resolve or a new attempt writes a fresh record, so a later uncertain one is alerted again.
        """
        with self._locked() as deliveries:
            record = deliveries.get(key, {}).get(channel)
            if record is not None and record.state == "sending":
                record.alerted_at = _now()

    def suppress(self, channel: str, events: Sequence[str], *, snapshot_date: str, reason: str) -> str | None:
        """Record ``events`` as deliberately not sent on ``channel`` (a backfill); returns the record's key."""
        if not events:
            return None
        import hashlib

        key = "suppressed-" + hashlib.sha256("\x1f".join([channel, *sorted(events)]).encode()).hexdigest()[:24]
        with self._locked() as deliveries:
            deliveries.setdefault(key, {})[channel] = DeliveryRecord(
                state="suppressed", updated_at=_now(), detail=reason, events=sorted(set(events)),
                snapshot_date=snapshot_date)
        return key

    def records(self, channel: str) -> list[tuple[str, DeliveryRecord]]:
        """Every (key, record) of ``channel``, oldest first."""
        found = [(key, channels[channel]) for key, channels in self._read().items() if channel in channels]
        return sorted(found, key=lambda item: item[1].updated_at)

    def held_events(self, channel: str) -> set[str]:
        """Event ids ``channel`` must not send again: delivered, possibly delivered or suppressed."""
        return {event for _, record in self.records(channel) if record.state in HOLDS_EVENTS
                for event in record.events}

    def resolve(self, key: str, channel: str, *, delivered: bool, note: str = "resolved by an operator") -> None:
        """Settle an ``uncertain`` delivery after checking: ``sent``, or ``failed`` to allow a resend."""
        if delivered:
            self.mark_sent(key, channel, note)
        else:
            self.mark_failed(key, channel, note)
        log.warning("Delivery %s of digest %s resolved as %s: %s", channel, key[:12],
                    "sent" if delivered else "failed", note)


def deliver(ledger: DeliveryLedger, key: str, channel: str, send: Callable[[], str | None], *,
            events: Sequence[str] = (), snapshot_date: str | None = None, baseline: bool = False) -> DeliveryOutcome:
    """Call ``send`` at most once per (key, channel) across runs and retries; see the module docstring."""
    blocking = ledger.claim(key, channel, events=events, snapshot_date=snapshot_date, baseline=baseline)
    if blocking is not None and blocking.state == "sent":
        log.info("Digest %s already sent on %s at %s; not sending again", key[:12], channel, blocking.sent_at)
        return DeliveryOutcome(key, channel, "already_sent", blocking.detail, blocking.sent_at)
    if blocking is not None:
        log.error("UNCERTAIN delivery of digest %s on %s: an earlier attempt (%s) may have reached the "
                  "recipients. Not sending again to avoid a duplicate; check and call "
                  "DeliveryLedger.resolve(%r, %r, delivered=...)", key[:12], channel, blocking.updated_at,
                  key, channel)
        return DeliveryOutcome(key, channel, "uncertain", blocking.error or blocking.detail, blocking.updated_at)
    try:
        detail = send()
    except NotDelivered as exc:
        ledger.mark_failed(key, channel, f"{type(exc).__name__}: {exc}")
        log.warning("Digest %s was not delivered on %s (%s); a retry will send it", key[:12], channel, exc)
        raise
    except BaseException as exc:
        log.error("Digest %s on %s failed ambiguously (%s: %s); left as 'sending', a retry will not resend",
                  key[:12], channel, type(exc).__name__, exc)
        raise
    record = ledger.mark_sent(key, channel, detail)
    log.info("Digest %s sent on %s: %s", key[:12], channel, detail)
    return DeliveryOutcome(key, channel, "sent", detail, record.sent_at)


# -- classifying failures -------------------------------------------------------
def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def smtp_not_delivered(exc: BaseException) -> bool:
    """True when an SMTP error proves the message was not accepted (also through ``raise ... from``)."""
    return any(isinstance(e, _SMTP_NOT_DELIVERED) for e in _chain(exc))


def http_not_delivered(status: int) -> bool:
    """True when a webhook's HTTP status proves the post was refused (4xx, 429, 5xx except 502/504)."""
    return 400 <= status < 600 and status not in AMBIGUOUS_HTTP_STATUSES


def http_error_not_delivered(exc: BaseException) -> bool:
    """True for an HTTP client error raised before the request reached the server (connect phase).

    Understands ``requests``/urllib3 errors and ``urllib``'s ``URLError`` (what
    ``slack_sdk``'s ``WebhookClient``, used by ``SlackWebhookHook``, raises).
    """
    import urllib.error

    import requests
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    for error in _chain(exc):
        if isinstance(error, (requests.exceptions.ConnectTimeout, ConnectionRefusedError, socket.gaierror,
                              NewConnectionError)):
            return True
        if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
            if isinstance(error.reason, (ConnectionRefusedError, socket.gaierror)):
                return True
        if isinstance(error, requests.exceptions.ConnectionError) and error.args:
            reason = error.args[0]
            if isinstance(reason, MaxRetryError):
                reason = reason.reason
            if isinstance(reason, NewConnectionError):  # includes NameResolutionError
                return True
    return False


def guard(send: Callable[[], str | None], not_delivered: Callable[[BaseException], bool]) -> Callable[[], str | None]:
    """Wrap ``send`` so errors that ``not_delivered`` recognises are raised as :class:`NotDelivered`."""
    def guarded() -> str | None:
        try:
            return send()
        except NotDelivered:
            raise
        except Exception as exc:
            if not_delivered(exc):
                raise NotDelivered(f"{type(exc).__name__}: {exc}") from exc
            raise
    return guarded


# -- plain senders (no Airflow): smtplib and requests ----------------------------
def send_smtp(message: EmailMessage, *, host: str, port: int, sender: str | None = None,
              recipients: Sequence[str] | None = None, user: str | None = None, password: str | None = None,
              starttls: bool = False, use_ssl: bool = False, timeout: float = 30.0) -> str:
    """Send ``message`` once (no internal retries) and return a detail for the ledger.

    Anything failing before the message is handed over (connect, EHLO, STARTTLS,
    login) raises :class:`NotDelivered`; refusals during the transaction are
    classified by :func:`smtp_not_delivered`; the rest propagates as ambiguous.
    """
    sender = sender or message["From"]
    to = list(recipients) if recipients is not None else [a.strip() for a in str(message["To"] or "").split(",")
                                                          if a.strip()]
    if not to:
        raise NotDelivered("no recipients")
    client: smtplib.SMTP | None = None
    try:
        client = (smtplib.SMTP_SSL if use_ssl else smtplib.SMTP)(host, port, timeout=timeout)
        client.ehlo_or_helo_if_needed()  # raises SMTPHeloError, unlike a bare ehlo()
        if starttls:
            client.starttls()
            client.ehlo_or_helo_if_needed()
        if user:
            client.login(user, password or "")
    except Exception as exc:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        raise NotDelivered(f"SMTP {host}:{port} before sending: {type(exc).__name__}: {exc}") from exc
    try:
        refused = client.send_message(message, from_addr=sender, to_addrs=to)
    except Exception as exc:
        with contextlib.suppress(Exception):
            client.close()
        if smtp_not_delivered(exc):
            raise NotDelivered(f"SMTP refused the digest: {type(exc).__name__}: {exc}") from exc
        raise
    # The message is accepted; a failing QUIT must not turn that into an error.
    with contextlib.suppress(Exception):
        client.quit()
    delivered = [r for r in to if r not in refused]
    detail = f"message-id {message['Message-ID']} to {', '.join(delivered)}"
    if refused:
        log.warning("SMTP refused some recipients of %s: %s", message["Message-ID"], sorted(refused))
        detail += f"; refused {', '.join(sorted(refused))}"
    return detail


def post_slack_webhook(url: str, payload: Mapping[str, Any], *, session: Any = None,
                       timeout: tuple[float, float] = (10.0, 30.0)) -> str:
    """POST ``payload`` to an incoming webhook once; a refusal raises :class:`NotDelivered`."""
    import requests

    http = session or requests
    try:
        response = http.post(url, json=dict(payload), timeout=timeout)
    except requests.RequestException as exc:
        if http_error_not_delivered(exc):
            raise NotDelivered(f"Slack webhook unreachable: {type(exc).__name__}: {exc}") from exc
        raise
    body = response.text[:200]
    if http_not_delivered(response.status_code):
        raise NotDelivered(f"Slack webhook answered HTTP {response.status_code}: {body}")
    if response.status_code >= 300:
        raise RuntimeError(f"Slack webhook answered HTTP {response.status_code} ({body}); it may have posted")
    return f"slack HTTP {response.status_code} {body}"
