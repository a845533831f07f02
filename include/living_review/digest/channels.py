"""Digest channels: small classes with a ``send()``, modelled on the smtp and slack providers' notifiers.

A channel turns a :class:`Digest` into one delivery and returns a detail for the ledger.
It raises :class:`NotDelivered` only when the failure proves nothing went out (what
the ledger then lets a retry send); any other error is ambiguous and leaves the
delivery ``sending`` (never resent). The transports are injected: the DAG layer
passes the providers' hooks (``SmtpHook``, ``SlackWebhookHook``), tests and the demo
pass plain ``smtplib``/``requests`` senders, so nothing here imports Airflow.
"""
from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from email.message import EmailMessage
from typing import Any

from include.living_review.config import ReviewConfig
from include.living_review.digest.content import DEFAULT_SENDER, Digest
from include.living_review.digest.delivery import (
    NotDelivered,
    guard,
    http_error_not_delivered,
    http_not_delivered,
    smtp_not_delivered,
)
from include.living_review.digest.mail import build_email
from include.living_review.digest.outbox import write_outbox
from include.living_review.redact import scrub_webhook, webhook_secrets

log = logging.getLogger(__name__)


class Channel(ABC):
    """Where a digest goes. ``name`` keys the channel's records in the delivery ledger."""

    name: str

    @abstractmethod
    def send(self, digest: Digest) -> str:
        """Deliver ``digest`` once; return what the ledger should remember of it."""


class EmailChannel(Channel):
    """The digest as a multipart email through an SMTP transport (``SmtpHook``'s client in the DAGs)."""

    name = "email"

    def __init__(self, transport: Callable[[EmailMessage], str], *, recipients: Sequence[str],
                 sender: str = DEFAULT_SENDER):
        self.transport, self.recipients, self.sender = transport, list(recipients), sender

    def send(self, digest: Digest) -> str:
        message = build_email(digest, sender=self.sender, recipients=self.recipients)
        return guard(lambda: self.transport(message), smtp_not_delivered)() or ""


def slack_not_delivered(exc: BaseException) -> bool:
    """True when a Slack webhook error proves the post was refused or never reached Slack."""
    # SlackWebhookHook raises AirflowException("... Status Code: 500 ...") for non-200 answers.
    match = re.search(r"Status Code: (\d{3})", str(exc))
    if match:
        return http_not_delivered(int(match.group(1)))
    return http_error_not_delivered(exc)


class SlackPostFailed(RuntimeError):
    """A Slack post failed ambiguously (it may have posted); the message is scrubbed of the webhook."""


class SlackChannel(Channel):
    """The digest as Block Kit, posted once to an incoming webhook (``SlackWebhookHook`` in the DAGs).

    The webhook URL is the secret, and Slack's errors can echo it (``404 no_service
    (requested /services/T…/B…/<token>)``), so every error leaves here scrubbed: the
    ledger's ``error``, ``digest.json``, the task log and the alerts are all built
    from it. ``secrets`` are the webhook URL or token (see :func:`webhook_secrets`);
    Slack-shaped paths are scrubbed even without them.
    """

    name = "slack"

    def __init__(self, post: Callable[[dict[str, Any]], str], *, secrets: Iterable[str] = ()):
        self.post = post
        self.secrets = webhook_secrets(*secrets)

    def scrub(self, text: str) -> str:
        return scrub_webhook(text, self.secrets)

    def send(self, digest: Digest) -> str:
        # Classified first (the hook's "Status Code: 404" survives scrubbing anyway), then
        # re-raised scrubbed and ``from None``: a chained original would print the token
        # in the task log's traceback.
        try:
            detail = guard(lambda: self.post(digest.slack_payload), slack_not_delivered)() or ""
        except NotDelivered as exc:
            raise NotDelivered(self.scrub(str(exc))) from None
        except Exception as exc:  # noqa: BLE001 - ambiguous: re-raised, scrubbed, as the same failure
            raise SlackPostFailed(self.scrub(f"{type(exc).__name__}: {exc}")) from None
        return self.scrub(detail)


class OutboxChannel(Channel):
    """Files under ``<data_dir>/outbox/<review>/`` when no SMTP or Slack connection is configured."""

    name = "outbox"

    def __init__(self, outbox_dir: Any, *, recipients: Sequence[str] = ()):
        self.outbox_dir, self.recipients = outbox_dir, list(recipients)

    def send(self, digest: Digest) -> str:
        try:
            paths = write_outbox(digest, self.outbox_dir, recipients=self.recipients or None)
        except OSError as exc:  # nothing was written: a retry writes it
            raise NotDelivered(f"cannot write the outbox {self.outbox_dir}: {exc}") from exc
        return ", ".join(str(p) for p in paths)


def channels_for(review: ReviewConfig, *, smtp: Callable[[EmailMessage], str] | None,
                 slack: Callable[[dict[str, Any]], str] | None, outbox_dir: Any,
                 sender: str = DEFAULT_SENDER, slack_secrets: Iterable[str] = ()) -> list[Channel]:
    """The review's channels: email and Slack when configured and connected; a configured
    channel without its connection writes to the outbox instead (one outbox for both).
    ``slack_secrets``: the webhook URL or token, scrubbed from Slack's errors."""
    channels: list[Channel] = []
    to_outbox = False
    if review.digest.email:
        if smtp is not None:
            channels.append(EmailChannel(smtp, recipients=review.digest.email, sender=sender))
        else:
            to_outbox = True
    if review.digest.slack:
        if slack is not None:
            channels.append(SlackChannel(slack, secrets=slack_secrets))
        else:
            to_outbox = True
    if to_outbox:
        log.info("no SMTP/Slack connection for some of %s's channels: their digest goes to %s", review.id, outbox_dir)
        channels.append(OutboxChannel(outbox_dir, recipients=review.digest.email))
    return channels
