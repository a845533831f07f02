"""Europe PMC: the ``search`` endpoint with ``CITES:<pmid>_MED`` and cursor paging.

API docs: https://europepmc.org/RestfulWebService
One query returns full ``core`` records, so no separate metadata requests are needed.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import requests

from include.living_review import settings
from include.living_review.config import ReviewConfig
from include.living_review.sources.http import BodyError, HttpClient, parse_json
from include.living_review.records.ids import normalize_doi, normalize_pmcid, normalize_pmid
from include.living_review.records import Work
from include.living_review.records.normalize import (author_name, clean_abstract, clean_text, clean_title, is_preprint_type,
                                             make_date, normalize_language, notice, notice_kind,
                                             parse_iso_date, year_of)
from include.living_review.sources.base import (KnownWorks, SourceResult, SourceSkipped, check_raw_contract,
                                                collector_paused, raw_json)

log = logging.getLogger(__name__)
SOURCE = "europepmc"
SEARCH = "search"
FIRST_CURSOR = "*"
RETRACTION_IN = "Retraction in"
RETRACTED_TYPE = "Retracted Publication"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _authors(raw: dict[str, Any]) -> list[str]:
    authors: list[str] = []
    for author in _as_list((raw.get("authorList") or {}).get("author")):
        if not isinstance(author, dict):
            continue
        name = (clean_text(author.get("collectiveName"))
                or author_name(author.get("lastName"), author.get("initials"), author.get("firstName"))
                or clean_text(author.get("fullName")))
        if name:
            authors.append(name)
    if not authors and raw.get("authorString"):
        # authorString is already "Family Initials, ..." with a closing period.
        text = clean_text(raw["authorString"]) or ""
        authors = [a.strip() for a in text.rstrip(".").split(",") if a.strip()]
    return authors


def _publication_date(raw: dict[str, Any], journal_info: dict[str, Any]) -> dt.date | None:
    """``firstPublicationDate`` is the earliest and most precise; the rest are fallbacks."""
    for key in ("firstPublicationDate", "electronicPublicationDate"):
        date = parse_iso_date(raw.get(key))
        if date:
            return date
    date = parse_iso_date(journal_info.get("printPublicationDate"))
    if date:
        return date
    year = raw.get("pubYear") or journal_info.get("yearOfPublication")
    return make_date(year, journal_info.get("monthOfPublication")) if year else None


def from_europepmc(raw: dict[str, Any]) -> Work:
    """Map one Europe PMC ``core`` search record onto a :class:`Work`."""
    journal_info = raw.get("journalInfo") or {}
    journal = journal_info.get("journal") or {}
    pub_types = [str(t) for t in _as_list((raw.get("pubTypeList") or {}).get("pubType")) if t]
    corrections = _as_list((raw.get("commentCorrectionList") or {}).get("commentCorrection"))
    retracted = RETRACTED_TYPE in pub_types or any(
        isinstance(c, dict) and c.get("type") == RETRACTION_IN for c in corrections)
    title, translated = clean_title(raw.get("title"))
    date = _publication_date(raw, journal_info)
    year = year_of(raw.get("pubYear")) or year_of(journal_info.get("yearOfPublication")) or (
        date.year if date else None)
    # Preprints (source PPR) have no journalInfo; the server is their venue.
    venue = journal.get("title") or (raw.get("bookOrReportDetails") or {}).get("publisher")
    record_id = f"{raw.get('source')}/{raw.get('id')}" if raw.get("id") else None
    return Work(
        title=title,
        title_is_translated=translated,
        doi=normalize_doi(raw.get("doi")),
        pmid=normalize_pmid(raw.get("pmid")),
        pmcid=normalize_pmcid(raw.get("pmcid")),
        authors=_authors(raw),
        journal=clean_text(venue),
        journal_abbrev=clean_text(journal.get("isoabbreviation") or journal.get("medlineAbbreviation")),
        publication_year=year,
        publication_date=date,
        volume=clean_text(journal_info.get("volume")),
        issue=clean_text(journal_info.get("issue")),
        pages=clean_text(raw.get("pageInfo")),
        publication_types=pub_types,
        language=normalize_language(raw.get("language")),
        is_retracted=retracted,
        sources=[SOURCE],
        source_ids={SOURCE: record_id} if record_id else {},
        abstract=clean_abstract(raw.get("abstractText")),
        update_notices=sorted({n for n in (notice(notice_kind(c.get("type")), c.get("id") or c.get("reference"))
                                           for c in corrections if isinstance(c, dict)) if n}),
        is_preprint=raw.get("source") == "PPR" or is_preprint_type(pub_types),
        raw=raw_json(raw),
    )


def from_europepmc_reference(raw: dict[str, Any]) -> Work:
    """One entry of ``/{source}/{id}/references``: ids, title and year."""
    source, rid = str(raw.get("source") or ""), str(raw.get("id") or "")
    return Work(title=None, doi=normalize_doi(raw.get("doi")), pmid=normalize_pmid(rid) if source == "MED" else None,
                pmcid=normalize_pmcid(rid) if source == "PMC" else None, publication_year=year_of(raw.get("pubYear")),
                sources=[SOURCE], source_ids={SOURCE: f"{source}:{rid}"} if source and rid else {})


class EuropePmcClient:
    """Europe PMC REST client: citing works of a PubMed id, as full records."""

    def __init__(self, base_url: str = settings.DEFAULT_BASE_URLS["europe_pmc"], *,
                 email: str | None = None, api_key: str | None = None,
                 session: requests.Session | None = None, page_size: int = settings.EUROPEPMC_PAGE_SIZE,
                 **http_kwargs: Any):
        low, high = settings.RATE_LIMITS[SOURCE]
        # Europe PMC has no API keys; the argument exists for the shared client contract.
        self.http = HttpClient(SOURCE, base_url, rate=high if api_key else low, session=session, **http_kwargs)
        self.page_size = page_size
        self.identity = {"email": email} if email else {}
        self.version: str | None = None
        self.hit_count: int | None = None

    def reference_list(self, pmid: str, *, page_size: int = 1000) -> list[Work]:
        """The works a PubMed article cites, as Europe PMC lists them (``/MED/{pmid}/references``)."""
        path = f"MED/{pmid}/references"
        refs: list[Work] = []
        page = 1
        while True:
            params = {"format": "json", "page": page, "pageSize": page_size, **self.identity}
            body = self.http.get(path, lambda r, b: parse_json(SOURCE)(r, b), params=params)
            if not isinstance(body, dict) or "errCode" in body:
                raise BodyError(SOURCE, self.http.url(path), f"Europe PMC error in HTTP 200 body: {body!r}"[:300])
            listed = ((body.get("referenceList") or {}).get("reference")) or []
            refs.extend(w for w in (from_europepmc_reference(r) for r in listed if isinstance(r, dict))
                        if w.doi or w.pmid or w.pmcid)
            if len(listed) < page_size or page * page_size >= int(body.get("hitCount") or 0):
                return refs
            page += 1

    def _parse(self, response: requests.Response, body: bytes) -> dict[str, Any]:
        page = parse_json(SOURCE)(response, body)
        if not isinstance(page, dict):
            raise BodyError(SOURCE, self.http.url(SEARCH), f"expected a JSON object, got {type(page).__name__}")
        # Europe PMC reports bad queries and cursors as HTTP 200 with errCode/errMsg.
        if "errCode" in page or "errMsg" in page:
            raise BodyError(SOURCE, self.http.url(SEARCH), f"Europe PMC error in HTTP 200 body: "
                            f"errCode={page.get('errCode')!r} errMsg={page.get('errMsg')!r}")
        check_raw_contract(SOURCE, page)
        return page

    def search_pages(self, query: str, *, max_records: int = settings.MAX_RECORDS_PER_SOURCE
                     ) -> Iterator[list[dict[str, Any]]]:
        """Raw ``core`` records matching ``query``, one list per cursor page."""
        size = max(1, min(self.page_size, max_records))
        cursor = FIRST_CURSOR
        seen = 0
        self.version = self.hit_count = None
        while seen < max_records:
            params = {"query": query, "resultType": "core", "format": "json", "pageSize": size,
                      "cursorMark": cursor, **self.identity}
            page = self.http.get(SEARCH, self._parse, params=params)
            self.version = page.get("version") or self.version
            self.hit_count = page["hitCount"]
            results = page["resultList"]["result"][:max_records - seen]
            seen += len(results)
            log.info("europepmc: page at cursor %s: %d records (%d of %d)", cursor, len(results), seen,
                     self.hit_count)
            if results:
                yield results
            next_cursor = page.get("nextCursorMark")
            # Stopping once hitCount records are in saves the empty last request; an
            # overstated hitCount (it has happened) still ends on the empty page.
            if not results or not next_cursor or next_cursor == cursor or seen >= self.hit_count:
                return
            cursor = next_cursor

    def fetch_citing(self, review: ReviewConfig, known: KnownWorks, *,
                     max_records: int = settings.MAX_RECORDS_PER_SOURCE,
                     cached: dict[str, Any] | None = None) -> SourceResult:
        """Citing works of ``review``; search records carry full metadata, so ``known`` saves nothing."""
        if not review.pmid:
            raise SourceSkipped(f"{SOURCE}: the review has no pmid configured; Europe PMC's CITES: "
                                "search needs the review's PubMed id")
        query = f"CITES:{review.pmid}_MED"
        before = self.http.log.count
        works: list[Work] = []
        with collector_paused():
            for page in self.search_pages(query, max_records=max_records):
                works.extend(from_europepmc(record) for record in page)
        log.info("europepmc: %d citing works for %s (hitCount %s) in %d requests", len(works), query,
                 self.hit_count, self.http.log.count - before)
        markers = {"version": self.version} if self.version else {}
        return SourceResult(
            source=SOURCE, works=works,
            listed=self.hit_count if self.hit_count is not None else len(works),
            markers=markers,
            query={"endpoint": self.http.url(SEARCH), "query": query, "resultType": "core",
                   "format": "json", "pageSize": max(1, min(self.page_size, max_records)),
                   "max_records": max_records},
        )
