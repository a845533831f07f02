"""The digest stage: what each channel announces, rendered for email and Slack, delivered once per channel.

- :mod:`.plan`: each channel's pending events (the event log minus its deliveries);
- :mod:`.content`: the digest's sections and text; :mod:`.mail`, :mod:`.slack`, :mod:`.outbox` render it;
- :mod:`.channels`: the channels, each with a ``send()``;
- :mod:`.delivery`: the ledger that makes each delivery at most once;
- :func:`send_digest` (``.send``): the step the digest DAG runs.
"""
from __future__ import annotations

from include.living_review.digest.content import (
    DEFAULT_LIKELY_RELEVANT_THRESHOLD,
    DEFAULT_SENDER,
    DIGEST_HEADER,
    Digest,
    DigestItem,
    Link,
    badges_for,
    build_digest,
    clean,
    format_authors,
    idempotency_key,
    likely_relevant_threshold,
    review_url,
    safe_url,
    slack_escape,
    to_item,
    week_of,
    work_url,
)
from include.living_review.digest.mail import build_email, message_id
from include.living_review.digest.outbox import outbox_paths, write_outbox
from include.living_review.digest.send import DigestNotDelivered, digest_status, send_digest

__all__ = ["DEFAULT_LIKELY_RELEVANT_THRESHOLD", "DEFAULT_SENDER", "DIGEST_HEADER", "Digest", "DigestItem",
           "DigestNotDelivered", "Link", "badges_for", "build_digest", "build_email", "clean", "digest_status",
           "format_authors", "idempotency_key", "likely_relevant_threshold", "message_id", "outbox_paths",
           "review_url", "safe_url", "send_digest", "slack_escape", "to_item", "week_of", "work_url",
           "write_outbox"]
