"""Digest channels: the Slack channel never lets its webhook URL or token out (issue 14, item 8).

Slack's webhook can answer ``404 no_service (requested /services/T000/B000/<token>)``:
the error names the secret path. Whatever the transport (plain ``requests`` here, the
provider's ``SlackWebhookHook`` in the DAGs), the error the channel raises, and so the
ledger's ``error``, ``digest.json`` and every log line built from it, must not carry it.
"""
from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from include.living_review.config import DigestConfig, ReviewConfig
from include.living_review.digest import Digest, build_digest
from include.living_review.digest.channels import SlackChannel
from include.living_review.digest.delivery import DeliveryLedger, NotDelivered, deliver, post_slack_webhook
from tests.fakes.server import Response
from tests.fakes.slack import FakeSlackWebhook

TOKEN = "hooks-SECRET-5a9d2c77"
PATH = f"/services/T000/B000/{TOKEN}"


@pytest.fixture
def digest() -> Digest:
    review = ReviewConfig(id="peer-support-mental-health", title="Peer Support in Mental Health",
                          doi="10.2196/15572", pmid="32357127", digest=DigestConfig(slack=True))
    works = [{"work_id": "doi:10.1234/p.1", "doi": "10.1234/p.1", "title": "Citing paper 1", "authors": ["Xu R"],
              "journal_abbrev": "JMIR Ment Health", "publication_year": 2026,
              "publication_date": dt.date(2026, 11, 1), "publication_types": ["Journal Article"],
              "is_retracted": False, "sources": ["pubmed"]}]
    return build_digest(review, dt.date(2026, 11, 25), works, total_works=40, coverage={"pubmed": 40})


@pytest.fixture
def ledger(tmp_path: Path) -> DeliveryLedger:
    return DeliveryLedger(tmp_path / "ledger.json")


@pytest.fixture
def slack() -> Iterator[FakeSlackWebhook]:
    with FakeSlackWebhook() as fake:
        yield fake


def _everything_said(error: BaseException, ledger: DeliveryLedger, caplog: pytest.LogCaptureFixture) -> str:
    """The error with its traceback (as a task log prints it), the ledger file and the log."""
    return "\n".join(["".join(traceback.format_exception(error)), ledger.path.read_text(encoding="utf-8"),
                      caplog.text])


@pytest.mark.parametrize(("status", "raised"), [(404, NotDelivered), (500, NotDelivered), (504, RuntimeError)])
def test_a_webhook_error_echoing_the_token_is_scrubbed(digest, ledger, slack, caplog, status, raised):
    """404/500 prove nothing was posted (NotDelivered, retried); 504 is ambiguous (left 'sending')."""
    slack.inject(Response(status, f"no_service (requested {PATH})", content_type="text/plain"))
    url = slack.webhook_url(PATH)
    channel = SlackChannel(lambda payload: post_slack_webhook(url, payload), secrets=[url])
    caplog.set_level(logging.INFO)
    with pytest.raises(raised) as err:
        deliver(ledger, digest.idempotency_key, "slack", lambda: channel.send(digest))
    said = _everything_said(err.value, ledger, caplog)
    assert TOKEN not in said and url not in said
    assert f"HTTP {status}" in str(err.value) and "no_service (requested /services/***)" in str(err.value)
    expected = "failed" if raised is NotDelivered else "sending"
    assert ledger.get(digest.idempotency_key, "slack").state == expected


class HookError(Exception):
    """What ``SlackWebhookHook.send_dict`` raises for a non-200 answer (an ``AirflowException``)."""


def hook_like(status: int, body: str) -> Any:
    def post(payload: dict[str, Any]) -> str:
        raise HookError(f"Response body: {body!r}, Status Code: {status}. "
                        "See: https://api.slack.com/messaging/webhooks#handling_errors")
    return post


def test_the_hooks_error_is_scrubbed_and_still_classified(digest, ledger, caplog):
    """The hook's "Status Code: 404" still proves non-delivery after the token is gone from the text."""
    channel = SlackChannel(hook_like(404, f"no_service (requested {PATH})"))  # no secrets given: the path shape
    with pytest.raises(NotDelivered) as err:
        deliver(ledger, digest.idempotency_key, "slack", lambda: channel.send(digest))
    said = _everything_said(err.value, ledger, caplog)
    assert TOKEN not in said and "Status Code: 404" in str(err.value)
    assert ledger.get(digest.idempotency_key, "slack").error.count("/services/***") == 1


def test_a_webhook_that_is_not_slack_shaped_is_scrubbed_by_its_secrets(digest, ledger, caplog):
    """A proxy or workflow URL without /services/: the URL, its path and its last segment are secrets."""
    url = "https://relay.example.org/hook/relay-SECRET-0c1d2e3f"
    channel = SlackChannel(hook_like(403, f"denied for {url} (path /hook/relay-SECRET-0c1d2e3f)"), secrets=[url])
    with pytest.raises(NotDelivered) as err:
        deliver(ledger, digest.idempotency_key, "slack", lambda: channel.send(digest))
    said = _everything_said(err.value, ledger, caplog)
    assert "relay-SECRET" not in said and "Status Code: 403" in str(err.value)
