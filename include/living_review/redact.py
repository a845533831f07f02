"""Taking secrets out of text before it is stored (ledger, digest.json, outbox) or logged.

Shared by the HTTP layer (API keys in server error snippets and network errors) and
the digest and alert channels (Slack webhook URLs echoed in Slack's error answers).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit

# Slack's webhook and workflow URLs carry their secret in the path; Slack's own error
# answers and the provider's exceptions can echo it ("no_service (requested /services/...)").
_SLACK_SECRET_PATH = re.compile(r"(/(?:services|triggers|workflows)/)[^\s'\"<>()\\,;]+")


def scrub_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` without any of ``secrets``, raw or URL-encoded."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) < 4:  # too short to replace safely; never a real key
            continue
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, "***")
    return text


def webhook_secrets(*values: str | None) -> set[str]:
    """What of a webhook URL (or a bare token) must never be shown: itself, its path, its last segment."""
    secrets: set[str] = set()
    for value in values:
        value = (value or "").strip()
        if not value:
            continue
        path = urlsplit(value).path if "://" in value else value
        secrets |= {value, path, path.strip("/"), path.rstrip("/").rsplit("/", 1)[-1]}
    return {s for s in secrets if len(s) >= 4}


def scrub_webhook(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without Slack webhook paths (``/services/***``) and without ``secrets``."""
    # The path shape first, so the text keeps saying which endpoint it was ("/services/***").
    return scrub_secrets(_SLACK_SECRET_PATH.sub(r"\1***", text), secrets)
