"""What a digest is made of: its items, the rendered digest, and the text rules every channel shares.

Every string that comes from the data is untrusted; :func:`clean` and :func:`slack_escape`
are the rules (see :mod:`.content`'s docstring).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

RETRACTED = "Retracted"
CORRECTED = "Corrected"
DEFAULT_LIKELY_RELEVANT_THRESHOLD = 0.35  # used only when settings has no LIKELY_RELEVANT_THRESHOLD
REASON_LIMIT = 300
NOTICE_LABELS = {"retraction": "Retraction notice", "correction": "Correction notice",
                 "expression_of_concern": "Expression of concern"}

TITLE_LIMIT = 500
SLACK_TITLE_LIMIT = 300
SLACK_HEADER_LIMIT = 150  # Block Kit header text maximum
SLACK_SECTION_LIMIT = 3000  # Block Kit section text maximum
SLACK_MAX_WARNINGS = 10

# C0/C1 controls except tab/newline/CR (whitespace is collapsed separately), lone
# surrogates (they cannot be encoded), and bidi overrides/isolates, which can make a
# title display as different text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
_SPACE = re.compile(r"\s+")
_ZWSP = "\u200b"
_MRKDWN_EMPHASIS = re.compile(r"[*_~`]")
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f\"'<>\\^`{|}]")


@dataclass(frozen=True)
class Link:
    label: str
    target: str
    url: str | None  # the target when it is a safe http(s) URL, else None (shown as text)


@dataclass(frozen=True)
class DigestItem:
    """One paper as the templates show it; every string is already cleaned (not escaped)."""

    work_id: str
    title: str
    url: str | None
    authors: str
    venue: str
    year: int | None
    publication_date: dt.date | None
    badges: tuple[str, ...]
    found_by: tuple[str, ...]
    relevance: float | None = None
    reason: str = ""  # the scorer's relevance_reason, cleaned
    preprints: tuple[Link, ...] = ()  # "Now published": the preprint version(s)
    notices: tuple[Link, ...] = ()  # "Retracted or corrected": the notices, linked when their id is a DOI/PMID
    flagged: bool = False  # retracted after an earlier digest announced it
    announced: dt.date | None = None  # the date of that digest, when known

    @property
    def announced_note(self) -> str:
        when = f"the digest of {self.announced.isoformat()}" if self.announced else "an earlier digest"
        return f"announced in {when}"

    @property
    def retracted(self) -> bool:
        return RETRACTED in self.badges

    @property
    def citation(self) -> str:
        """``Journal Abbrev 2025`` (or whichever parts exist)."""
        return " ".join(part for part in (self.venue, str(self.year) if self.year else "") if part)


@dataclass(frozen=True)
class Digest:
    """A rendered digest, ready for :func:`build_email`, Slack or :func:`write_outbox`."""

    review_id: str
    review_title: str
    snapshot_date: dt.date
    baseline: bool
    subject: str
    text: str
    html: str
    slack_payload: dict[str, Any]
    item_count: int  # new works in this digest (all of them, not only those shown)
    shown_count: int
    idempotency_key: str
    is_empty: bool
    work_ids: tuple[str, ...] = ()  # the new works
    recipients: tuple[str, ...] = ()
    # Change-feed events in the key: "published:<id>", "retracted:<id>", "corrected:<id>".
    events: tuple[str, ...] = ()
    flagged_retractions: tuple[str, ...] = ()  # work ids retracted after an earlier digest announced them

    @property
    def key12(self) -> str:
        return self.idempotency_key[:12]


# -- text helpers ---------------------------------------------------------------
def clean(value: object, limit: int | None = None) -> str:
    """Display text: controls stripped, whitespace collapsed, optionally cut with an ellipsis."""
    if value is None:
        return ""
    text = _SPACE.sub(" ", _CONTROL.sub("", str(value))).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def slack_escape(text: str) -> str:
    """Escape Slack's control characters; see the module docstring for the emphasis fence."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MRKDWN_EMPHASIS.sub(lambda m: f"{_ZWSP}{m.group(0)}{_ZWSP}", text)


def _slack_url(url: str) -> str:
    # safe_url already percent-encoded | < >; & is the one entity Slack wants in URLs.
    return url.replace("&", "&amp;")


def safe_url(value: object) -> str | None:
    """``value`` as an absolute http(s) URL with unsafe characters percent-encoded, else None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    if _CONTROL.search(text) or re.search(r"\s", text):
        return None
    return _URL_UNSAFE.sub(lambda m: quote(m.group(0), safe=""), text)
