"""Semantic Scholar Graph API: the ``citations`` list of a paper, with metadata inline.

API docs: https://api.semanticscholar.org/api-docs/graph
Offset paging: each page says where the next one starts (``next``) and leaves the
key out on the last page. The public pool allows about one request per second and
answers 429 often; the shared :class:`HttpClient` retries those.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import requests

from include.living_review import settings
from include.living_review.config import ReviewConfig
from include.living_review.sources.http import HttpClient, parse_json
from include.living_review.records.ids import normalize_doi, normalize_pmcid, normalize_pmid
from include.living_review.records import Work
from include.living_review.records.normalize import author_from_display, clean_abstract, clean_text, clean_title, parse_iso_date, year_of
from include.living_review.sources.base import (KnownWorks, SourceResult, check_raw_contract, collector_paused,
                                                raw_json)

log = logging.getLogger(__name__)
SOURCE = "semanticscholar"
# The citingPaper fields the mapper reads; asking for fewer keeps pages small.
FIELDS = ("paperId", "externalIds", "title", "abstract", "authors", "venue", "journal", "year",
          "publicationDate", "publicationTypes")
MAX_PAGE_SIZE = 1000
# The citations endpoint serves only the first 10,000 entries: offset + limit must stay below it.
MAX_OFFSET = 10_000


def from_semanticscholar(raw: dict[str, Any]) -> Work:
    """Map one ``citingPaper`` object onto a :class:`Work`."""
    external = raw.get("externalIds") or {}
    journal = raw.get("journal") or {}
    title, translated = clean_title(raw.get("title"))
    paper_id = clean_text(raw.get("paperId"))
    year = raw.get("year")
    return Work(
        title=title,
        title_is_translated=translated,
        doi=normalize_doi(external.get("DOI")),
        pmid=normalize_pmid(external.get("PubMed")),
        # S2 sends PubMedCentral as bare digits; normalize_pmcid adds the "PMC" prefix.
        pmcid=normalize_pmcid(external.get("PubMedCentral")),
        s2_paper_id=paper_id,
        authors=[a for a in (author_from_display(x.get("name")) for x in raw.get("authors") or []) if a],
        journal=clean_text(journal.get("name")) or clean_text(raw.get("venue")),
        publication_year=year_of(year) if year is not None else None,
        publication_date=parse_iso_date(raw.get("publicationDate")),
        volume=clean_text(journal.get("volume")),
        pages=clean_text(journal.get("pages")),
        publication_types=[str(t) for t in raw.get("publicationTypes") or []],
        sources=[SOURCE],
        source_ids={SOURCE: paper_id} if paper_id else {},
        abstract=clean_abstract(raw.get("abstract")),
        raw=raw_json(raw),
    )


def next_offset(page: dict[str, Any]) -> int | None:
    """Where the next page starts, or None on the last page (``next`` is absent there)."""
    value = page.get("next")
    return int(value) if value is not None else None


class SemanticScholarClient:
    """Semantic Scholar Graph API client for a paper's citations."""

    def __init__(self, base_url: str = settings.DEFAULT_BASE_URLS["semantic_scholar"], *,
                 email: str | None = None, api_key: str | None = None,
                 session: requests.Session | None = None,
                 page_size: int = settings.SEMANTIC_SCHOLAR_PAGE_SIZE, **http_kwargs: Any):
        low, high = settings.RATE_LIMITS[SOURCE]
        headers = {"x-api-key": api_key} if api_key else None
        self.http = HttpClient(SOURCE, base_url, rate=high if api_key else low, session=session,
                               headers=headers, **http_kwargs)
        self.page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        self.email = email  # the API has no contact parameter; the User-Agent names the tool

    @staticmethod
    def review_id(review: ReviewConfig) -> str:
        """The Graph API's id for the review: ``DOI:…`` when known, else ``PMID:…``."""
        return f"DOI:{review.doi}" if review.doi else f"PMID:{review.pmid}"

    def pages(self, paper_id: str, *, max_records: int = settings.MAX_RECORDS_PER_SOURCE
              ) -> Iterator[list[dict[str, Any]]]:
        """The ``data`` entries of each citations page, until ``next`` is absent or the cap is hit."""
        path = f"graph/v1/paper/{quote(paper_id, safe='/:')}/citations"
        offset, fetched = 0, 0
        while fetched < max_records:
            limit = min(self.page_size, max_records - fetched, MAX_OFFSET - 1 - offset)
            if limit <= 0:
                log.warning("semanticscholar: %s has more citations than the API serves (%d); stopping at "
                            "offset %d", paper_id, MAX_OFFSET, offset)
                return
            params = {"fields": ",".join(FIELDS), "offset": offset, "limit": limit}
            page = self.http.get(path, parse_json(SOURCE), params=params)
            check_raw_contract(SOURCE, page)
            rows = page["data"]
            fetched += len(rows)
            log.info("semanticscholar: %s offset %d: %d citations", paper_id, offset, len(rows))
            yield rows
            following = next_offset(page)
            if following is None or not rows:
                return
            offset = following

    def fetch_citing(self, review: ReviewConfig, known: KnownWorks, *,
                     max_records: int = settings.MAX_RECORDS_PER_SOURCE,
                     cached: dict[str, Any] | None = None) -> SourceResult:
        """Citing works of ``review`` with metadata; ``known`` is unused (the listing has it all)."""
        paper_id = self.review_id(review)
        listed = 0
        unidentified = 0
        works: dict[str, Work] = {}
        with collector_paused():
            for page in self.pages(paper_id, max_records=max_records):
                listed += len(page)
                for entry in page:
                    work = from_semanticscholar(entry["citingPaper"])
                    key = work.s2_paper_id or work.doi or work.pmid or work.pmcid
                    if key is None:
                        # S2 lists citers it could not resolve to a paper (paperId null,
                        # title only); with no id they cannot be merged or followed up.
                        unidentified += 1
                        continue
                    # Offsets shift when citations arrive mid-walk; keep the first sighting.
                    works.setdefault(key, work)
        if unidentified:
            log.info("semanticscholar: skipped %d citing entries without any id", unidentified)
        return SourceResult(
            source=SOURCE, works=list(works.values()), listed=listed,
            markers={"unidentified": unidentified, "duplicates": listed - unidentified - len(works)},
            query={"citations": paper_id, "fields": ",".join(FIELDS), "page_size": self.page_size},
        )
