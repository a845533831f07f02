"""The snapshot stage: quarantine, the change feed, the event log, coverage and the publish commit.

- :func:`validate` (``.quarantine``): GX over the merged rows; failures quarantined with reasons;
- :mod:`.changes`: what differs between two snapshots;
- :mod:`.events`: the append-only event log the digests announce from;
- :mod:`.coverage`, :mod:`.manifest`: what the run reports about itself;
- :func:`publish` (``.publish``): everything above as one atomic commit.
"""
from __future__ import annotations

from include.living_review.snapshot.publish import publish
from include.living_review.snapshot.quarantine import raw_payloads, validate

__all__ = ["publish", "raw_payloads", "validate"]
