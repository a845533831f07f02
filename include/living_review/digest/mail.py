"""The digest as a multipart email (text and HTML), with a Message-ID derived from its key."""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from include.living_review.digest.content import DEFAULT_SENDER, DIGEST_HEADER, Digest


def message_id(digest: Digest, sender: str = DEFAULT_SENDER) -> str:
    """A Message-ID derived from the idempotency key, so a duplicate is recognisable."""
    domain = parseaddr(sender)[1].rpartition("@")[2]
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", domain or ""):
        domain = "living-review.invalid"
    return f"<digest-{digest.idempotency_key}@{domain}>"


def build_email(digest: Digest, *, sender: str, recipients: Sequence[str],
                date: dt.datetime | None = None) -> EmailMessage:
    """multipart/alternative (text, then HTML) with a key-derived Message-ID and ``X-Living-Review-Digest``."""
    message = EmailMessage()
    message["Subject"] = digest.subject
    message["From"] = sender
    if recipients:
        message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(date or dt.datetime.now(dt.UTC))
    message["Message-ID"] = message_id(digest, sender)
    message[DIGEST_HEADER] = digest.idempotency_key
    # RFC 3834: keeps vacation auto-responders from replying to the digest.
    message["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps UTF-8 bodies 7-bit clean for servers without 8BITMIME.
    message.set_content(digest.text, cte="quoted-printable")
    message.add_alternative(digest.html, subtype="html", cte="quoted-printable")
    # Bodies are encoded by now; from here the limit only affects header folding. At 78
    # the one-token key header is folded onto a continuation line, which parsers
    # (CPython's among them) read back with a leading space, breaking exact matching.
    message.policy = message.policy.clone(max_line_length=998)
    return message
