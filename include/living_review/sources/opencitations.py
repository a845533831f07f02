"""OpenCitations Index v2: every open citation to a DOI or PMID, as multi-PID id strings.

API docs: https://api.opencitations.net/index/v2
One ``citations`` call lists every citing entity at once (no paging). A citing
entity is ids only (``"omid:br/061… doi:10.… pmid:…"``): no title, authors or venue,
so these works are enriched later by Crossref.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import requests

from include.living_review import settings
from include.living_review.config import ReviewConfig
from include.living_review.sources.http import HttpClient, parse_json
from include.living_review.records.ids import normalize_doi, normalize_openalex_id, normalize_pmcid, normalize_pmid
from include.living_review.records import Work
from include.living_review.records.normalize import parse_iso_date, year_of
from include.living_review.sources.base import (KnownWorks, SourceResult, check_raw_contract, collector_paused,
                                                raw_json)

log = logging.getLogger(__name__)
SOURCE = "opencitations"
# An OMID-based OCI half is the OMID number itself: supplier prefix "06", digits.
# Legacy COCI OCIs start "020" (DOI-encoded) and hold no OMID.
_OMID_OCI = re.compile(r"^06\d+$")
_ID_KEYS = ("omid", "doi", "pmid", "pmcid", "openalex_id")


def parse_pids(value: str | None) -> dict[str, list[str]]:
    """``"omid:br/061 doi:10.1/a pmid:1"`` → ``{"omid": ["br/061"], "doi": ["10.1/a"], "pmid": ["1"]}``.

    A bare ``10.…`` token is a DOI (the legacy COCI v1 format); unknown schemes are
    ignored. An entity can carry several DOIs (e.g. a preprint's and the article's);
    the order the index gives is kept.
    """
    pids: dict[str, list[str]] = {}
    for token in (value or "").split():
        scheme, sep, rest = token.partition(":")
        if not sep:
            scheme, rest = ("doi", token) if token.startswith("10.") else ("", "")
        if scheme and rest:
            pids.setdefault(scheme.lower(), []).append(rest)
    return pids


def _first(values: list[str] | None, normalize: Any) -> str | None:
    for value in values or []:
        normalized = normalize(value)
        if normalized:
            return normalized
    return None


def from_opencitations(raw: dict[str, Any]) -> Work:
    """Map one citation row onto a :class:`Work` for its *citing* entity (ids and date only)."""
    pids = parse_pids(raw.get("citing"))
    omid = next((o for o in pids.get("omid", []) if o.startswith("br/")), None)
    if omid is None:
        # The index leaves ``citing`` empty when OpenCitations Meta lacks the entity;
        # the OCI still names its OMID.
        citing_half = str(raw.get("oci") or "").removeprefix("oci:").partition("-")[0]
        if _OMID_OCI.fullmatch(citing_half):
            omid = f"br/{citing_half}"
    doi = _first(pids.get("doi"), normalize_doi)
    pmid = _first(pids.get("pmid"), normalize_pmid)
    creation = str(raw.get("creation") or "").strip()
    own_id = omid or doi or pmid
    return Work(
        title=None,
        doi=doi,
        pmid=pmid,
        pmcid=_first(pids.get("pmcid"), normalize_pmcid),
        openalex_id=_first(pids.get("openalex"), normalize_openalex_id),
        omid=omid,
        publication_year=year_of(creation) if creation else None,
        publication_date=parse_iso_date(creation) if creation else None,
        sources=[SOURCE],
        source_ids={SOURCE: own_id} if own_id else {},
        raw=raw_json(raw),
    )


def _keys(work: Work) -> list[tuple[str, str]]:
    return [(name, value) for name in _ID_KEYS if (value := getattr(work, name))]


def dedupe(works: list[Work]) -> list[Work]:
    """One work per citing entity: rows sharing any id are merged, first row wins."""
    kept: list[Work] = []
    by_key: dict[tuple[str, str], Work] = {}
    for work in works:
        keys = _keys(work)
        existing = next((by_key[k] for k in keys if k in by_key), None)
        if existing is None:
            kept.append(work)
            existing = work
        else:
            for name in _ID_KEYS:
                if getattr(existing, name) is None and getattr(work, name):
                    setattr(existing, name, getattr(work, name))
        for key in _keys(existing):
            by_key[key] = existing
    return kept


class OpenCitationsClient:
    """OpenCitations Index v2 client: one ``citations`` call per review."""

    def __init__(self, base_url: str = settings.DEFAULT_BASE_URLS["opencitations"], *,
                 email: str | None = None, api_key: str | None = None,
                 session: requests.Session | None = None, **http_kwargs: Any):
        low, high = settings.RATE_LIMITS[SOURCE]
        # The access token goes in a plain "authorization" header (no "Bearer"), per the docs.
        headers = {"authorization": api_key} if api_key else None
        self.http = HttpClient(SOURCE, base_url, rate=high if api_key else low, session=session,
                               headers=headers, **http_kwargs)
        self.email = email  # the API has no contact parameter; the User-Agent names the tool

    @staticmethod
    def review_pid(review: ReviewConfig) -> str:
        """The index's id for the review: ``doi:…`` when known, else ``pmid:…``."""
        return f"doi:{review.doi}" if review.doi else f"pmid:{review.pmid}"

    def citations(self, pid: str) -> list[dict[str, Any]]:
        """Every citation row to ``pid`` (one request: the index does not page)."""
        rows = self.http.get(f"index/v2/citations/{quote(pid, safe='/:')}", parse_json(SOURCE))
        check_raw_contract(SOURCE, rows)
        return rows

    def pages(self, pid: str, *, max_records: int = settings.MAX_RECORDS_PER_SOURCE
              ) -> Iterator[list[dict[str, Any]]]:
        """Citation rows to ``pid`` as pages, like every client; here always one page."""
        yield self.citations(pid)[:max_records]

    def fetch_citing(self, review: ReviewConfig, known: KnownWorks, *,
                     max_records: int = settings.MAX_RECORDS_PER_SOURCE,
                     cached: dict[str, Any] | None = None) -> SourceResult:
        """Citing works of ``review`` as ids and dates; ``known`` is unused (no metadata calls)."""
        pid = self.review_pid(review)
        with collector_paused():
            rows = self.citations(pid)
            mapped = [from_opencitations(row) for row in rows]
        identified = [w for w in mapped if _keys(w)]
        works = dedupe(identified)
        distinct = len(works)
        truncated = distinct > max_records
        if truncated:
            log.warning("opencitations: %d citing works of %s; keeping the first %d", len(works), pid, max_records)
            works = works[:max_records]
        log.info("opencitations: %d citation rows to %s, %d distinct citing works", len(rows), pid, len(works))
        return SourceResult(
            source=SOURCE, works=works, listed=len(rows),
            markers={"duplicates": len(identified) - distinct, "unidentified": len(mapped) - len(identified),
                     "truncated": truncated},
            query={"citations": pid},
        )
