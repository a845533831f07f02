"""OpenAlex: resolve the review to its W-id, then ``filter=cites:W…`` with cursor paging.

API docs: https://docs.openalex.org
Since February 2026 every request needs an ``api_key``; without one the source is
skipped before any request is sent.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import requests

from include.living_review import settings
from include.living_review.config import ReviewConfig
from include.living_review.sources.http import BodyError, HttpClient, SourceError, parse_json
from include.living_review.records.ids import normalize_doi, normalize_openalex_id, normalize_pmcid, normalize_pmid
from include.living_review.records import Work
from include.living_review.records.normalize import (author_from_display, clean_abstract, clean_text, clean_title,
                                             is_preprint_type, normalize_language,
                                             parse_iso_date, year_of)
from include.living_review.sources.base import (KnownWorks, RawContractError, SourceResult, SourceSkipped,
                                                check_raw_contract, collector_paused, raw_json)

log = logging.getLogger(__name__)
SOURCE = "openalex"
WORKS = "works"
FIRST_CURSOR = "*"
NO_KEY = ("openalex: no API key configured; set the api_key in the openalex connection's password "
          "or extra")
# Only the root fields from_openalex reads: a full Work is ~15 KB, mostly abstract,
# concepts and reference lists we never use.
SELECT_FIELDS = ("id", "ids", "doi", "title", "publication_year", "publication_date", "authorships",
                 "primary_location", "biblio", "type", "type_crossref", "language", "is_retracted", "abstract_inverted_index")
REVIEW_ID_MARKER = "openalex_review_id"
REVIEW_KEY_MARKER = "openalex_review_key"


def review_key(review: ReviewConfig) -> str:
    """How OpenAlex is asked for the review itself: ``doi:…``, else ``pmid:…``."""
    return f"doi:{review.doi}" if review.doi else f"pmid:{review.pmid}"


def _pages(biblio: dict[str, Any]) -> str | None:
    first, last = clean_text(biblio.get("first_page")), clean_text(biblio.get("last_page"))
    if first and last and first != last:
        return f"{first}-{last}"
    return first or last


def abstract_from_inverted_index(index: object) -> str | None:
    """OpenAlex ships abstracts as {word: [positions]}; rebuild the text."""
    if not isinstance(index, dict) or not index:
        return None
    positions = [(pos, word) for word, places in index.items() for pos in (places or []) if isinstance(pos, int)]
    positions.sort()
    return clean_abstract(" ".join([word for _, word in positions]))


def from_openalex(raw: dict[str, Any]) -> Work:
    """Map one OpenAlex Work object onto a :class:`Work`."""
    ids = raw.get("ids") or {}
    openalex_id = normalize_openalex_id(raw.get("id") or ids.get("openalex"))
    title, translated = clean_title(raw.get("title"))
    authors: list[str] = []
    for authorship in raw.get("authorships") or []:
        name = author_from_display((authorship.get("author") or {}).get("display_name")
                                   or authorship.get("raw_author_name"))
        if name:
            authors.append(name)
    source = (raw.get("primary_location") or {}).get("source") or {}
    biblio = raw.get("biblio") or {}
    types = [t for t in (raw.get("type"), raw.get("type_crossref")) if t]
    date = parse_iso_date(raw.get("publication_date"))
    return Work(
        title=title,
        title_is_translated=translated,
        doi=normalize_doi(raw.get("doi") or ids.get("doi")),
        # ids.pmid / ids.pmcid are URLs, the PMC one without its "PMC" prefix.
        pmid=normalize_pmid(ids.get("pmid")),
        pmcid=normalize_pmcid(ids.get("pmcid")),
        openalex_id=openalex_id,
        authors=authors,
        journal=clean_text(source.get("display_name")),
        publication_year=year_of(raw.get("publication_year")) or (date.year if date else None),
        publication_date=date,
        volume=clean_text(biblio.get("volume")),
        issue=clean_text(biblio.get("issue")),
        pages=_pages(biblio),
        publication_types=list(dict.fromkeys(types)),
        language=normalize_language(raw.get("language")),
        is_retracted=bool(raw.get("is_retracted")),
        sources=[SOURCE],
        source_ids={SOURCE: openalex_id} if openalex_id else {},
        abstract=abstract_from_inverted_index(raw.get("abstract_inverted_index")),
        update_notices=["retraction"] if raw.get("is_retracted") else [],
        is_preprint=is_preprint_type(types),
        raw=raw_json(raw),
    )


class OpenAlexClient:
    """OpenAlex REST client: the works citing one review, with only the mapped fields."""

    def __init__(self, base_url: str = settings.DEFAULT_BASE_URLS["openalex"], *,
                 email: str | None = None, api_key: str | None = None,
                 session: requests.Session | None = None, per_page: int = settings.OPENALEX_PER_PAGE,
                 **http_kwargs: Any):
        low, high = settings.RATE_LIMITS[SOURCE]
        self.http = HttpClient(SOURCE, base_url, rate=high if api_key else low, session=session, **http_kwargs)
        self.per_page = per_page
        self.api_key = api_key
        self.identity: dict[str, str] = {}
        if email:
            self.identity["mailto"] = email
        if api_key:
            self.identity["api_key"] = api_key
        self.count: int | None = None

    def _parse(self, response: requests.Response, body: bytes) -> dict[str, Any]:
        payload = parse_json(SOURCE)(response, body)
        if not isinstance(payload, dict):
            raise BodyError(SOURCE, self.http.url(WORKS), f"expected a JSON object, got {type(payload).__name__}")
        return payload

    def resolve(self, review: ReviewConfig) -> str:
        """The review's bare W-id, looked up by DOI (or PMID when it has no DOI)."""
        key = review_key(review)
        # DOIs may hold '#', '?' or ';', which would otherwise end the path.
        path = f"{WORKS}/{quote(key, safe=':/()')}"
        try:
            work = self.http.get(path, self._parse, params={"select": "id,ids", **self.identity})
        except SourceError as exc:
            if exc.status == 404:
                raise SourceError(SOURCE, self.http.url(path), f"the review ({key}) is not in OpenAlex; "
                                  "check its doi/pmid in reviews.yaml", status=404) from exc
            raise
        check_raw_contract("openalex_work", work)
        work_id = normalize_openalex_id(work["id"])
        if work_id is None:
            raise RawContractError(SOURCE, "id", f"not an OpenAlex work id: {work['id']!r}")
        log.info("openalex: review %s is %s", key, work_id)
        return work_id

    def reference_list(self, review: ReviewConfig, *, work_id: str | None = None) -> list[Work]:
        """The works ``review`` cites (its ``referenced_works``), with their metadata, 100 W-ids per request."""
        if not self.api_key:
            raise SourceSkipped(NO_KEY)
        key = review_key(review)
        path = f"{WORKS}/{quote(work_id or key, safe=':/()')}"
        work = self.http.get(path, self._parse, params={"select": "id,ids,referenced_works", **self.identity})
        check_raw_contract("openalex_work", work)
        wanted = [w for w in (normalize_openalex_id(r) for r in work.get("referenced_works") or []) if w]
        return self.works_by_ids(wanted)

    def works_by_ids(self, work_ids: list[str]) -> list[Work]:
        """Works by W-id (``filter=openalex:W1|W2…``, 100 per request): OpenAlex ORs the ids."""
        works: list[Work] = []
        for start in range(0, len(work_ids), 100):
            batch = work_ids[start:start + 100]
            params = {"filter": "openalex:" + "|".join(batch), "per_page": len(batch),
                      "select": ",".join(SELECT_FIELDS), **self.identity}
            page = self.http.get(WORKS, self._parse, params=params)
            check_raw_contract(SOURCE, page)
            works.extend(from_openalex(raw) for raw in page["results"])
        return works

    def citing_pages(self, work_id: str, *, max_records: int = settings.MAX_RECORDS_PER_SOURCE
                     ) -> Iterator[list[dict[str, Any]]]:
        """Raw Work objects citing ``work_id``, one list per cursor page."""
        size = max(1, min(self.per_page, max_records))
        cursor: str | None = FIRST_CURSOR
        seen = 0
        self.count = None
        while cursor and seen < max_records:
            params = {"filter": f"cites:{work_id}", "per_page": size, "cursor": cursor,
                      "select": ",".join(SELECT_FIELDS), **self.identity}
            page = self.http.get(WORKS, self._parse, params=params)
            check_raw_contract(SOURCE, page)
            self.count = page["meta"]["count"]
            results = page["results"][:max_records - seen]
            seen += len(results)
            log.info("openalex: cites:%s page: %d works (%d of %d)", work_id, len(results), seen, self.count)
            if not results:
                return
            yield results
            # Stopping at meta.count saves the request for the empty terminating page.
            cursor = page["meta"].get("next_cursor") if seen < self.count else None

    def fetch_citing(self, review: ReviewConfig, known: KnownWorks, *,
                     max_records: int = settings.MAX_RECORDS_PER_SOURCE,
                     cached: dict[str, Any] | None = None) -> SourceResult:
        """Citing works of ``review``; list pages carry full metadata, so ``known`` saves nothing."""
        if not self.api_key:
            raise SourceSkipped(NO_KEY)
        cached = cached or {}
        key = review_key(review)
        work_id = None
        # A cached id only stands while the review's doi/pmid in the config is unchanged.
        if cached.get(REVIEW_KEY_MARKER, key) == key:
            work_id = normalize_openalex_id(cached.get(REVIEW_ID_MARKER))
        work_id = work_id or self.resolve(review)
        before = self.http.log.count
        works: list[Work] = []
        with collector_paused():
            for page in self.citing_pages(work_id, max_records=max_records):
                works.extend(from_openalex(raw) for raw in page)
        log.info("openalex: %d citing works for %s in %d requests", len(works), work_id,
                 self.http.log.count - before)
        return SourceResult(
            source=SOURCE, works=works,
            listed=self.count if self.count is not None else len(works),
            markers={REVIEW_ID_MARKER: work_id, REVIEW_KEY_MARKER: key},
            query={"endpoint": self.http.url(WORKS), "review": key, "filter": f"cites:{work_id}",
                   "per_page": max(1, min(self.per_page, max_records)), "select": ",".join(SELECT_FIELDS),
                   "max_records": max_records},
        )
