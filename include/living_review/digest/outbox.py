"""The outbox: digests written to files when no SMTP or Slack connection is configured."""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from include.living_review.digest.content import DEFAULT_SENDER, Digest
from include.living_review.digest.mail import build_email
from include.living_review.storage import write_atomic as atomic_write

log = logging.getLogger(__name__)


def outbox_paths(digest: Digest, outbox_dir: str | Path | Any) -> tuple[Any, Any]:
    """The two outbox files: local ``Path`` objects, or ``UPath`` ones on an object store."""
    from include.living_review.storage import data_path

    stem = f"{digest.snapshot_date.isoformat()}-{digest.key12}"
    folder = data_path(outbox_dir) / digest.review_id
    return folder / f"{stem}.eml", folder / f"{stem}.json"


def write_outbox(digest: Digest, outbox_dir: str | Path | Any, *, sender: str = DEFAULT_SENDER,
                 recipients: Sequence[str] | None = None) -> list[Any]:
    """Write ``<outbox>/<review>/<date>-<key12>.eml`` and ``.json`` (the Slack payload) once.

    A file that already exists is left alone: the name carries the key, so it holds
    this very digest, and a rerun then neither rewrites nor duplicates it.
    """
    eml, payload = outbox_paths(digest, outbox_dir)
    if not eml.exists():
        to = digest.recipients if recipients is None else recipients
        atomic_write(eml, build_email(digest, sender=sender, recipients=to).as_bytes())
        log.info("Wrote digest email to the outbox: %s", eml)
    if not payload.exists():
        atomic_write(payload, (json.dumps(digest.slack_payload, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
        log.info("Wrote digest Slack payload to the outbox: %s", payload)
    return [eml, payload]
