"""What every source client returns, and what it is told about the previous run."""
from __future__ import annotations

import datetime as dt
import gc
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec

from include.living_review.records import Work

# Re-exported: the one drift error every source raises (declared with the rules).
from data_quality.raw_contracts import RawContractError, check_raw_contract  # noqa: E402,F401


# enc_hook=str: Bio.Entrez's str/list/dict subclasses encode as their base types; anything
# else is written as its text, as json.dumps(default=str) did.
_RAW_ENCODER = msgspec.json.Encoder(enc_hook=str)


def raw_json(record: Any) -> str:
    """A record as compact JSON text, for :attr:`Work.raw`.

    msgspec encodes several times faster than ``json.dumps``. It refuses a lone
    surrogate (a ``"\\ud83d"`` escape in the page); those rare records go through
    ``json.dumps``, and the staging step scrubs the surrogate.
    """
    try:
        return _RAW_ENCODER.encode(record).decode("utf-8")
    except (UnicodeEncodeError, TypeError, ValueError, OverflowError):
        return json.dumps(record, ensure_ascii=False, default=str)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while pages are parsed and mapped, as the merge does.

    Decoded pages and Works are acyclic, so reference counting frees them; the
    collector would rescan them again and again as they pile up (at 100k records,
    a third of the mapping time). Call :func:`gc.collect` with generation 0 after a
    page that leaves a reference cycle (Bio.Entrez's parser does).
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


class SourceSkipped(RuntimeError):
    """The source cannot run with this configuration (e.g. a required key is missing)."""


@dataclass(frozen=True)
class KnownWorks:
    """Ids of works the previous snapshot already has metadata for, and when they were last checked.

    A source with a change filter (PubMed's modification date) probes the known works
    changed in ``since``..``until`` instead of fetching them all again; ``since`` is
    None on a first run (nothing to probe).
    """

    dois: frozenset[str] = frozenset()
    pmids: frozenset[str] = frozenset()
    pmcids: frozenset[str] = frozenset()
    since: dt.date | None = None
    until: dt.date | None = None

    def has(self, work: Work) -> bool:
        return bool((work.doi and work.doi in self.dois) or (work.pmid and work.pmid in self.pmids)
                    or (work.pmcid and work.pmcid in self.pmcids))

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]], *, since: dt.date | None = None,
                  until: dt.date | None = None) -> KnownWorks:
        dois, pmids, pmcids = set(), set(), set()
        for row in rows:
            if row.get("doi"):
                dois.add(row["doi"])
            if row.get("pmid"):
                pmids.add(row["pmid"])
            if row.get("pmcid"):
                pmcids.add(row["pmcid"])
        return cls(frozenset(dois), frozenset(pmids), frozenset(pmcids), since, until)


@dataclass
class SourceResult:
    """One source's answer for one review and one run."""

    source: str
    works: list[Work]
    listed: int  # citing ids the source listed (before any dedup)
    metadata_requests: int = 0  # requests spent on metadata beyond the listing
    markers: dict[str, Any] = field(default_factory=dict)  # release markers, resolved ids
    query: dict[str, Any] = field(default_factory=dict)  # what was asked, without secrets
    # The update probe of known works: known, since, until, requests, changed (None: not probed).
    probe: dict[str, Any] | None = None
