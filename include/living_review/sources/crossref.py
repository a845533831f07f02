"""Crossref REST API: metadata, update notices and version relations for DOIs other sources list.

API docs: https://api.crossref.org/swagger-ui/index.html
Crossref has no open cited-by list, so this client only *enriches* and *probes*.
Both ask ``/works`` with ``filter=doi:…,doi:…`` (the repeated ``doi:`` filters are
OR'ed), :data:`settings.CROSSREF_BATCH_SIZE` DOIs per request: 10 requests for 1,000
DOIs instead of one ``GET /works/{doi}`` each. The probe adds
``from-update-date:<since>`` so only records changed since the last check come back,
and ``select=`` keeps answers light (no reference lists). A DOI the list does not
return is asked on its own (``GET /works/{doi}``): Crossref answers an alias DOI
there with its primary record. A ``mailto`` parameter moves requests into the
polite pool (10 requests/s instead of 5). An unknown DOI is a 404 whose body is the
plain text "Resource not found." even though the Content-Type says JSON.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import quote

import requests

from include.living_review import settings
from include.living_review.config import ReviewConfig
from include.living_review.sources.http import BodyError, HttpClient, SourceError, parse_json
from include.living_review.records.ids import normalize_doi
from include.living_review.records import Work
from include.living_review.records.normalize import (author_name, clean_abstract, clean_text, clean_title, make_date,
                                             normalize_language, notice, notice_kind, year_of)
from include.living_review.sources.base import KnownWorks, SourceResult, SourceSkipped, check_raw_contract, raw_json

log = logging.getLogger(__name__)
SOURCE = "crossref"
# Update types meaning the work no longer stands. "withdrawal" and "removal" are how
# some publishers (Elsevier, IEEE) record what others call a retraction.
RETRACTION_TYPES = frozenset({"retraction", "withdrawal", "removal"})
DATE_FIELDS = ("published", "published-online", "published-print", "issued")
# After this many DOIs in a row fail (not 404), Crossref is down or refusing us:
# stop instead of spending every DOI's full retry budget.
MAX_CONSECUTIVE_FAILURES = 5
# What from_crossref reads: asking only for these keeps each item small (a work's
# reference list alone can be larger than everything else).
SELECT_FIELDS = ("DOI", "title", "original-title", "subtitle", "author", "published", "published-online",
                 "published-print", "issued", "container-title", "short-container-title", "volume", "issue",
                 "page", "article-number", "type", "subtype", "language", "abstract", "updated-by",
                 "update-to", "relation")


def _first_text(value: Any) -> str | None:
    """First non-empty string of a Crossref list field (``title``, ``container-title``…)."""
    if isinstance(value, list):
        return next((t for t in (clean_text(v) for v in value) if t), None)
    return clean_text(value)


def crossref_date(value: dict[str, Any] | None) -> tuple[int | None, Any]:
    """Year and date from ``{"date-parts": [[2017, 10, 10]]}``; ``[[null]]`` means unknown."""
    parts = ((value or {}).get("date-parts") or [[]])[0] or []
    if not parts or parts[0] is None:
        return None, None
    year = year_of(parts[0])
    if year is None:
        return None, None
    return year, make_date(year, parts[1] if len(parts) > 1 else None, parts[2] if len(parts) > 2 else None)


def _update_types(entries: Any) -> set[str]:
    return {str(e.get("type", "")).lower() for e in entries or [] if isinstance(e, dict)}


def from_crossref(message: dict[str, Any]) -> Work:
    """Map one ``/works/{doi}`` ``message`` onto a :class:`Work`."""
    title_text = _first_text(message.get("title")) or _first_text(message.get("original-title"))
    subtitle = _first_text(message.get("subtitle"))
    # Crossref keeps the subtitle apart; PubMed and S2 join it, and the merge matches titles.
    if title_text and subtitle and subtitle.lower() not in title_text.lower():
        title_text = f"{title_text}: {subtitle}"
    title, translated = clean_title(title_text)
    authors = []
    for author in message.get("author") or []:
        name = author_name(author.get("family"), given=author.get("given")) or clean_text(author.get("name"))
        if name:
            authors.append(name)
    year, date = None, None
    for field in DATE_FIELDS:
        year, date = crossref_date(message.get(field))
        if year is not None:
            break
    # ``updated-by`` on an item points at its retraction notice; ``update-to`` on a
    # notice points back at the item it retracts. Both are flagged.
    retracted = bool(RETRACTION_TYPES & (_update_types(message.get("updated-by"))
                                         | _update_types(message.get("update-to"))))
    doi = normalize_doi(message.get("DOI"))
    kind = clean_text(message.get("type"))
    notices = [notice(notice_kind(u.get("type")), normalize_doi(u.get("DOI")))
               for u in (message.get("updated-by") or []) if isinstance(u, dict)]
    relation = message.get("relation") or {}
    # Crossref relations link a preprint and its published version both ways.
    related = [normalize_doi(r.get("id")) for key in ("is-preprint-of", "has-preprint", "is-version-of",
                                                        "has-version")
               for r in (relation.get(key) or []) if isinstance(r, dict) and r.get("id-type") == "doi"]
    return Work(
        title=title,
        title_is_translated=translated,
        doi=doi,
        authors=authors,
        journal=_first_text(message.get("container-title")),
        journal_abbrev=_first_text(message.get("short-container-title")),
        publication_year=year,
        publication_date=date,
        volume=clean_text(message.get("volume")),
        issue=clean_text(message.get("issue")),
        pages=clean_text(message.get("page")) or clean_text(message.get("article-number")),
        publication_types=[kind] if kind else [],
        language=normalize_language(message.get("language")),
        is_retracted=retracted,
        sources=[SOURCE],
        source_ids={SOURCE: doi} if doi else {},
        abstract=clean_abstract(message.get("abstract")),
        update_notices=sorted({n for n in notices if n}),
        related_dois=sorted({d for d in related if d and d != doi}),
        is_preprint=kind == "posted-content" or message.get("subtype") == "preprint",
        raw=raw_json(message),
    )


class CrossrefClient:
    """Crossref REST client: batched metadata for enrichment and update probes (there is no cited-by list)."""

    def __init__(self, base_url: str = settings.DEFAULT_BASE_URLS["crossref"], *,
                 email: str | None = None, api_key: str | None = None,
                 session: requests.Session | None = None, batch_size: int = settings.CROSSREF_BATCH_SIZE,
                 **http_kwargs: Any):
        anonymous, polite = settings.RATE_LIMITS[SOURCE]
        self.batch_size = batch_size
        headers = {"Crossref-Plus-API-Token": f"Bearer {api_key}"} if api_key else None
        self.http = HttpClient(SOURCE, base_url, rate=polite if email else anonymous, session=session,
                               headers=headers, **http_kwargs)
        self.params = {"mailto": email} if email else {}

    def work(self, doi: str) -> dict[str, Any] | None:
        """The ``message`` of ``/works/{doi}``, or None when Crossref does not know the DOI."""
        path = f"works/{quote(doi, safe='/')}"
        as_json = parse_json(SOURCE)

        def parse(response: requests.Response, body: bytes) -> dict[str, Any] | None:
            if response.status_code == 404:
                # Crossref's own 404 is plain text; an HTML 404 comes from something
                # else answering (a wrong base URL, a proxy) and must not pass as "unknown DOI".
                if body.lstrip()[:1] == b"<":
                    raise SourceError(SOURCE, self.http.url(path), "HTTP 404 with an HTML page; check the base URL",
                                      status=404)
                return None
            envelope = as_json(response, body)
            check_raw_contract(SOURCE, envelope)
            if envelope.get("status") != "ok":
                raise BodyError(SOURCE, self.http.url(path), f"status {envelope.get('status')!r} in an HTTP 200 body")
            return envelope["message"]

        return self.http.get(path, parse, params=self.params, ok_statuses=frozenset({200, 404}))

    def reference_list(self, doi: str) -> list[Work]:
        """The works ``doi`` cites with a DOI (its deposited ``reference`` list): one ``GET /works/{doi}``."""
        message = self.work(doi) or {}
        dois = {normalize_doi(r.get("DOI")) for r in message.get("reference") or [] if isinstance(r, dict)}
        return [Work(title=None, doi=d, sources=[SOURCE], source_ids={SOURCE: d}) for d in sorted(d for d in dois if d)]

    def works(self, dois: list[str], *, updated_since: dt.date | None = None) -> list[dict[str, Any]]:
        """The ``message`` items for ``dois``, ``batch_size`` DOIs per ``/works`` list request.

        With ``updated_since``, only records Crossref changed on or after that day.
        """
        items: list[dict[str, Any]] = []
        as_json = parse_json(SOURCE)
        for start in range(0, len(dois), self.batch_size):
            batch = dois[start:start + self.batch_size]
            filters = [f"doi:{doi}" for doi in batch]
            if updated_since is not None:
                filters.insert(0, f"from-update-date:{updated_since.isoformat()}")
            params = {"filter": ",".join(filters), "rows": str(len(batch)), "select": ",".join(SELECT_FIELDS),
                      **self.params}

            def parse(response: requests.Response, body: bytes) -> list[dict[str, Any]]:
                envelope = as_json(response, body)
                check_raw_contract("crossref_list", envelope)
                if envelope.get("status") != "ok":
                    raise BodyError(SOURCE, self.http.url("works"),
                                    f"status {envelope.get('status')!r} in an HTTP 200 body")
                return list(envelope["message"]["items"])

            items.extend(self.http.get("works", parse, params=params))
        return items

    def changed_since(self, dois: list[str], since: dt.date, until: dt.date) -> tuple[list[Work], dict[str, Any]]:
        """Works among ``dois`` whose Crossref record changed since ``since``: the update probe."""
        wanted = sorted({d for d in (normalize_doi(v) for v in dois) if d})
        before = self.http.log.count
        works = [from_crossref(item) for item in self.works(wanted, updated_since=since)]
        works = [w for w in works if w.doi in set(wanted)]  # never trust a record we did not ask about
        probe = {"known": len(wanted), "since": since.isoformat(), "until": until.isoformat(),
                 "requests": self.http.log.count - before, "changed": len(works)}
        log.info("crossref: %d of %d known DOIs changed since %s (%d requests)", len(works), len(wanted), since,
                 probe["requests"])
        return works, probe

    def enrich(self, dois: list[str], *, max_records: int = settings.MAX_RECORDS_PER_SOURCE,
               lookup_missing: set[str] | frozenset[str] | None = None) -> tuple[list[Work], dict[str, Any]]:
        """Works for ``dois`` (batched, see the module docstring) and a report of what could not be had.

        A DOI the batch did not return is looked up on its own only when it is in
        ``lookup_missing`` (by default all): an alias DOI is answered there with its
        primary record, and a work that lacks metadata is worth the request.

        The report has ``requested``, ``found``, ``not_found`` (404s), ``failed``
        (DOI -> error), ``invalid`` (not DOIs), ``aliased`` (requested -> the DOI
        Crossref answered with), ``skipped`` (over ``max_records``) and ``requests``.
        """
        wanted: dict[str, None] = {}
        invalid: list[str] = []
        for value in dois:
            doi = normalize_doi(value)
            if doi is None:
                invalid.append(value)
            else:
                wanted[doi] = None
        skipped = list(wanted)[max_records:]
        requested = list(wanted)[:max_records]
        works: list[Work] = []
        not_found: list[str] = []
        failed: dict[str, str] = {}
        aliased: dict[str, str] = {}
        consecutive = 0
        before = self.http.log.count
        batched: dict[str, Work] = {}
        # A comma would split the filter: such DOIs are asked on their own.
        listable = [d for d in requested if "," not in d]
        for start in range(0, len(listable), self.batch_size):
            batch = listable[start:start + self.batch_size]
            try:
                items = self.works(batch)
            except SourceError as exc:  # RawContractError is not one: drift stops the batch
                consecutive += 1
                log.warning("crossref: a list request for %d DOIs failed (%s); asking them one by one", len(batch),
                            exc)
                if consecutive >= MAX_CONSECUTIVE_FAILURES:
                    raise SourceError(SOURCE, self.http.url("works"), f"{consecutive} requests in a row failed; "
                                      f"last: {exc}", status=exc.status) from exc
                continue
            consecutive = 0
            for item in items:
                work = from_crossref(item)
                if work.doi in wanted and work.doi not in batched:
                    batched[work.doi] = work
        works.extend(batched.values())
        missing = [d for d in requested if d not in batched]
        singles = [d for d in missing if lookup_missing is None or d in lookup_missing or "," in d]
        not_found.extend(d for d in missing if d not in singles)
        for doi in singles:
            try:
                message = self.work(doi)
            except SourceError as exc:  # RawContractError is not one: drift stops the batch
                failed[doi] = str(exc)
                consecutive += 1
                log.warning("crossref: %s failed: %s", doi, exc)
                if consecutive >= MAX_CONSECUTIVE_FAILURES:
                    raise SourceError(SOURCE, self.http.url("works"), f"{consecutive} DOIs in a row failed; "
                                      f"last: {exc}", status=exc.status) from exc
                continue
            consecutive = 0
            if message is None:
                not_found.append(doi)
                continue
            work = from_crossref(message)
            if work.doi and work.doi != doi:
                # Crossref answers an alias DOI with its primary record.
                aliased[doi] = work.doi
            works.append(work)
        report = {"requested": len(requested), "found": len(works), "not_found": not_found, "failed": failed,
                  "invalid": invalid, "aliased": aliased, "skipped": len(skipped), "batched": len(batched),
                  "looked_up_alone": len(singles), "requests": self.http.log.count - before}
        log.info("crossref: enriched %d of %d DOIs (%d not found, %d failed)",
                 len(works), len(requested), len(not_found), len(failed))
        return works, report

    def fetch_citing(self, review: ReviewConfig, known: KnownWorks, *,
                     max_records: int = settings.MAX_RECORDS_PER_SOURCE,
                     cached: dict[str, Any] | None = None) -> SourceResult:
        """Always skipped: kept so every source has the same interface."""
        raise SourceSkipped("crossref has no open cited-by list; it only enriches")
