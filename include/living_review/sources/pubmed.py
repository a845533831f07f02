"""PubMed through NCBI E-utilities: ``elink`` for the cited-by list, ``efetch`` for metadata,
``esearch`` (by modification date) to find which known works changed.

API docs: https://www.ncbi.nlm.nih.gov/books/NBK25499/
XML is parsed with Biopython's ``Bio.Entrez`` parser, with every DTD coming from the
copies Biopython bundles: a run never downloads one (see :func:`entrez_read`).
"""
from __future__ import annotations

import datetime as dt
import gc
import io
import logging
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import requests
from Bio import Entrez
from Bio.Entrez import Parser as EntrezParser

from include.living_review import settings
from include.living_review.config import ReviewConfig
from include.living_review.sources.http import BodyError, HttpClient, RetryableError, SourceError
from include.living_review.records.ids import normalize_doi, normalize_pmcid, normalize_pmid
from include.living_review.records import Work
from include.living_review.records.normalize import (clean_abstract, clean_text, clean_title, is_preprint_type, make_date,
                                             medline_date, notice, notice_kind, year_of)
from include.living_review.sources.base import (KnownWorks, SourceResult, check_raw_contract, collector_paused,
                                                raw_json)

log = logging.getLogger(__name__)
SOURCE = "pubmed"
CITEDIN = "pubmed_pubmed_citedin"

_DTD_DIR = Path(Entrez.__file__).with_name("DTDs")
_DOCTYPE = re.compile(rb"<!DOCTYPE\s+(\w+)\s+PUBLIC\s+\"[^\"]*\"\s+\"([^\"]+)\"\s*>")
# Entity declarations have no business in E-utilities output; refusing them outright
# closes XXE (file or URL reads) and billion-laughs expansion before expat sees them.
_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_BUNDLED_PUBMED = sorted(p.name for p in _DTD_DIR.glob("pubmed_*.dtd"))
# Bio.Entrez caches downloaded DTDs here; point it at a private, empty folder so a
# stray download attempt could never be served from (or write to) a shared cache.
Entrez.local_cache = tempfile.mkdtemp(prefix="living-review-entrez-")


class _UnbundledDtd(Exception):
    """The body names a DTD Biopython lacks (NCBI's terse error bodies declare efetch.dtd)."""


def _offline_doctype(body: bytes, url: str) -> bytes:
    """Point a DOCTYPE at a DTD Biopython bundles, so parsing never hits the network.

    NCBI bumps the PubMed DTD yearly (``pubmed_260101.dtd``…) before Biopython ships
    it; the yearly DTDs only add optional elements, so the newest bundled one parses
    newer files correctly.
    """
    match = _DOCTYPE.search(body[:2048])
    if not match:
        return body
    name = match.group(2).rsplit(b"/", 1)[-1].decode("ascii", "replace")
    if (_DTD_DIR / name).exists():
        return body
    if name.startswith("pubmed_") and _BUNDLED_PUBMED:
        newest = _BUNDLED_PUBMED[-1]
        log.info("pubmed: DTD %s is not bundled with Biopython; parsing with %s", name, newest)
        return body.replace(match.group(2), match.group(2).replace(name.encode(), newest.encode()), 1)
    raise _UnbundledDtd(name)


def entrez_read(body: bytes, url: str) -> Any:
    """Parse an E-utilities XML body with Bio.Entrez, safely and offline."""
    head = body.lstrip()[:200].lower()
    if head.startswith(b"<!doctype html") or b"<html" in head:
        raise RetryableError(SOURCE, url, "expected E-utilities XML but got an HTML page")
    if not head.startswith(b"<?xml") and not head.startswith(b"<!doctype") and not head.startswith(b"<e"):
        raise RetryableError(SOURCE, url, "expected E-utilities XML but got a non-XML body")
    # The whole body is scanned (a linear pass): padding must not hide a declaration.
    if _ENTITY_DECL.search(body):
        raise SourceError(SOURCE, url, "response declares XML entities (possible XXE or entity "
                          "expansion attack); refused")
    try:
        body = _offline_doctype(body, url)
    except _UnbundledDtd as exc:
        error = _undeclared_body_error(_DOCTYPE.sub(b"", body, count=1), url)
        if isinstance(error, BodyError):
            raise error from exc
        raise SourceError(SOURCE, url, f"response uses DTD {exc}, which Biopython does not bundle; "
                          "upgrade biopython") from exc
    try:
        record = Entrez.read(io.BytesIO(body))
    except RuntimeError as exc:  # Bio.Entrez raises RuntimeError for <ERROR> elements
        raise BodyError(SOURCE, url, f"E-utilities error in HTTP 200 body: {exc}") from exc
    except (EntrezParser.CorruptedXMLError, EntrezParser.NotXMLError) as exc:
        raise RetryableError(SOURCE, url, f"truncated or malformed XML: {exc}") from exc
    except ValueError as exc:
        # Bio.Entrez refuses XML without a DOCTYPE; NCBI's terse error bodies look like that.
        raise _undeclared_body_error(body, url) from exc
    except Exception as exc:  # expat errors surface as xml.parsers.expat.ExpatError
        if type(exc).__name__ == "ExpatError":
            raise RetryableError(SOURCE, url, f"truncated or malformed XML: {exc}") from exc
        raise
    if isinstance(record, dict):
        errors = record.get("ERROR") or record.get("ErrorList")
        if errors:
            raise BodyError(SOURCE, url, f"E-utilities error in HTTP 200 body: {errors}")
    return record


def _undeclared_body_error(body: bytes, url: str) -> SourceError:
    import xml.etree.ElementTree as ET  # safe here: entity declarations were refused above

    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        return RetryableError(SOURCE, url, f"truncated or malformed XML: {exc}")
    errors = [e.text for e in root.iter() if e.tag in ("ERROR", "Error") and e.text]
    if errors:
        return BodyError(SOURCE, url, f"E-utilities error in HTTP 200 body: {'; '.join(errors)}")
    return SourceError(SOURCE, url, f"XML <{root.tag}> without a DOCTYPE; cannot parse it with Bio.Entrez")


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def from_pubmed(article: dict[str, Any]) -> Work:
    """Map one parsed ``PubmedArticle`` onto a :class:`Work`.

    The work's own ids come only from ``PubmedData/ArticleIdList`` and
    ``MedlineCitation/PMID``: ``ReferenceList`` and ``CommentsCorrections`` carry
    other papers' ids (the review's included).
    """
    citation = article["MedlineCitation"]
    art = citation["Article"]
    ids = {str(a.attributes.get("IdType")): str(a) for a in article["PubmedData"]["ArticleIdList"]}
    doi = normalize_doi(ids.get("doi"))
    if doi is None:
        for loc in art.get("ELocationID", []):
            if getattr(loc, "attributes", {}).get("EIdType") == "doi":
                doi = normalize_doi(str(loc))
    title, translated = clean_title(art.get("ArticleTitle") or citation.get("VernacularTitle"))

    authors = []
    for author in art.get("AuthorList", []):
        if author.get("CollectiveName"):
            authors.append(clean_text(author["CollectiveName"]))
        elif author.get("LastName"):
            initials = author.get("Initials")
            authors.append(f"{clean_text(author['LastName'])} {initials}".strip() if initials
                           else clean_text(author["LastName"]))
    journal = art.get("Journal", {})
    issue = journal.get("JournalIssue", {})
    pub_date = issue.get("PubDate", {})
    if pub_date.get("Year"):
        year = year_of(pub_date["Year"])
        date = make_date(pub_date["Year"], pub_date.get("Month") or pub_date.get("Season"), pub_date.get("Day"))
    else:
        year, date = medline_date(pub_date.get("MedlineDate"))
    has_day = bool(pub_date.get("Day"))
    for article_date in art.get("ArticleDate", []):
        if article_date.attributes.get("DateType") == "Electronic":
            epub = make_date(article_date.get("Year"), article_date.get("Month"), article_date.get("Day"))
            # The e-pub date wins when it is earlier, or when it only adds the day
            # to a month-precision print date.
            same_month = date is not None and epub is not None and (epub.year, epub.month) == (date.year, date.month)
            if epub and (date is None or epub < date or (same_month and not has_day)):
                date = epub
    pages = clean_text((art.get("Pagination") or {}).get("MedlinePgn"))
    if not pages:
        for loc in art.get("ELocationID", []):
            if getattr(loc, "attributes", {}).get("EIdType") != "doi":
                pages = clean_text(loc)
                break
    pub_types = [str(t) for t in art.get("PublicationTypeList", [])]
    corrections = citation.get("CommentsCorrectionsList", [])
    retracted = "Retracted Publication" in pub_types or any(
        getattr(c, "attributes", {}).get("RefType") == "RetractionIn" for c in corrections)
    pmid = normalize_pmid(str(citation["PMID"]))
    notices = [notice(notice_kind(getattr(c, "attributes", {}).get("RefType")), c.get("PMID"))
               for c in corrections]
    abstract = (art.get("Abstract") or {}).get("AbstractText") or []
    return Work(
        title=title,
        title_is_translated=translated,
        doi=doi,
        pmid=pmid,
        pmcid=normalize_pmcid(ids.get("pmc")),
        authors=[a for a in authors if a],
        journal=clean_text(journal.get("Title")),
        journal_abbrev=clean_text(journal.get("ISOAbbreviation")
                                  or (citation.get("MedlineJournalInfo") or {}).get("MedlineTA")),
        publication_year=year,
        publication_date=date,
        volume=clean_text(issue.get("Volume")),
        issue=clean_text(issue.get("Issue")),
        pages=pages,
        publication_types=pub_types,
        language=clean_text(_first(art.get("Language"))),
        is_retracted=retracted,
        sources=[SOURCE],
        source_ids={SOURCE: pmid} if pmid else {},
        abstract=clean_abstract([str(part) for part in abstract]),
        update_notices=sorted({n for n in notices if n}),
        is_preprint=is_preprint_type(pub_types),
        raw=raw_json(article),
    )


class PubMedClient:
    """NCBI E-utilities client: one ``elink`` for the cited-by ids, batched ``efetch``."""

    def __init__(self, base_url: str = settings.DEFAULT_BASE_URLS["ncbi_eutils"], *,
                 email: str | None = None, api_key: str | None = None,
                 session: requests.Session | None = None, batch_size: int = settings.EFETCH_BATCH_SIZE,
                 max_records: int = settings.MAX_RECORDS_PER_SOURCE,
                 probe_batch: int = settings.PROBE_BATCH_SIZE, **http_kwargs: Any):
        low, high = settings.RATE_LIMITS[SOURCE]
        self.http = HttpClient(SOURCE, base_url, rate=high if api_key else low, session=session, **http_kwargs)
        self.batch_size = batch_size
        self.probe_batch = probe_batch
        self.max_records = max_records
        self.identity = {"tool": settings.TOOL_NAME}
        if email:
            self.identity["email"] = email
        if api_key:
            self.identity["api_key"] = api_key

    def cited_by(self, pmid: str) -> list[str]:
        """PMIDs of PubMed articles citing ``pmid`` (PMC-deposited citers only; NCBI's limit)."""
        params = {"dbfrom": "pubmed", "db": "pubmed", "id": pmid, "linkname": CITEDIN,
                  "retmode": "xml", **self.identity}

        def parse(response: requests.Response, body: bytes) -> list[str]:
            # Counted before parsing: Bio.Entrez holds the whole tree in memory.
            listed = body.count(b"<Id>") - 1  # minus the queried id itself
            if listed > self.max_records:
                raise SourceError(SOURCE, self.http.url("elink.fcgi"),
                                  f"elink lists {listed:,} citing ids, more than the limit of {self.max_records:,} "
                                  "(settings.MAX_RECORDS_PER_SOURCE); raise the limit if this review really is "
                                  "cited that often")
            record = entrez_read(body, self.http.url("elink.fcgi"))
            ids: list[str] = []
            for linkset in record:
                if linkset.get("ERROR"):
                    raise BodyError(SOURCE, self.http.url("elink.fcgi"), f"elink error: {linkset['ERROR']}")
                for db in linkset.get("LinkSetDb", []):
                    if db.get("LinkName") == CITEDIN:
                        ids.extend(str(link["Id"]) for link in db.get("Link", []))
            return list(dict.fromkeys(ids))

        return self.http.get("elink.fcgi", parse, params=params)

    def fetch_pages(self, pmids: list[str], *, max_records: int = settings.MAX_RECORDS_PER_SOURCE
                    ) -> Iterator[list[dict[str, Any]]]:
        """Parsed ``PubmedArticle`` records, one batch per POSTed ``efetch``."""
        pmids = pmids[:max_records]
        for start in range(0, len(pmids), self.batch_size):
            batch = pmids[start:start + self.batch_size]
            data = {"db": "pubmed", "id": ",".join(batch), "retmode": "xml", **self.identity}

            def parse(response: requests.Response, body: bytes) -> list[dict[str, Any]]:
                record = entrez_read(body, self.http.url("efetch.fcgi"))
                articles = list(record.get("PubmedArticle", []))
                check_raw_contract(SOURCE, {"PubmedArticle": articles})
                # Bio.Entrez's parser keeps the record in a reference cycle (the expat parser
                # and its handler); emptied, the articles are freed as soon as they are mapped.
                record.clear()
                return articles

            page = self.http.post("efetch.fcgi", parse, data=data)
            log.info("pubmed: efetch %d-%d of %d: %d records", start + 1, start + len(batch), len(pmids), len(page))
            yield page

    def reference_list(self, pmid: str) -> list[Work]:
        """The works ``pmid`` cites (its ``ReferenceList``), as id-only records: one ``efetch``."""
        refs: list[Work] = []
        for page in self.fetch_pages([pmid]):
            for article in page:
                for block in article.get("PubmedData", {}).get("ReferenceList", []):
                    for reference in block.get("Reference", []):
                        ids = {str(a.attributes.get("IdType")): str(a) for a in reference.get("ArticleIdList", [])}
                        work = Work(title=None, doi=normalize_doi(ids.get("doi")), pmid=normalize_pmid(ids.get("pubmed")),
                                    pmcid=normalize_pmcid(ids.get("pmc")), sources=[SOURCE])
                        if work.doi or work.pmid or work.pmcid:
                            work.source_ids = {SOURCE: work.pmid} if work.pmid else {}
                            refs.append(work)
        return refs

    def changed_since(self, pmids: Iterable[str], since: dt.date, until: dt.date) -> list[str]:
        """Which of ``pmids`` PubMed modified between ``since`` and ``until`` (inclusive).

        ``esearch`` over the ids as ``[uid]`` terms with a modification-date window
        (``datetype=mdat``), :data:`settings.PROBE_BATCH_SIZE` ids per POST: ceil(K/200)
        requests for K known works, however few changed.
        """
        wanted = sorted(set(pmids), key=int)
        changed: list[str] = []
        url = self.http.url("esearch.fcgi")
        for start in range(0, len(wanted), self.probe_batch):
            batch = wanted[start:start + self.probe_batch]
            data = {"db": "pubmed", "term": " OR ".join(f"{p}[uid]" for p in batch), "datetype": "mdat",
                    "mindate": since.strftime("%Y/%m/%d"), "maxdate": until.strftime("%Y/%m/%d"),
                    "retmax": str(len(batch)), **self.identity}

            def parse(response: requests.Response, body: bytes) -> list[str]:
                record = entrez_read(body, url)
                return [str(i) for i in record.get("IdList", [])]

            changed.extend(self.http.post("esearch.fcgi", parse, data=data))
        asked = set(wanted)
        return [p for p in dict.fromkeys(changed) if p in asked]  # never trust an id we did not ask about

    def fetch_citing(self, review: ReviewConfig, known: KnownWorks, *,
                     max_records: int = settings.MAX_RECORDS_PER_SOURCE,
                     cached: dict[str, Any] | None = None) -> SourceResult:
        """Citing works of ``review``; metadata for new PMIDs and for known ones PubMed has changed.

        Known works are not re-downloaded: one ``esearch`` per 200 of them finds those
        modified since the last check (a retraction, a correction, new ids), and only
        those are fetched again. A changed work the cited-by list no longer shows comes
        back as a probe record: its fields are refreshed, but it is not reported.
        """
        if not review.pmid:
            raise SourceError(SOURCE, self.http.url("elink.fcgi"), "the review has no pmid configured")
        citing = self.cited_by(review.pmid)
        log.info("pubmed: elink lists %d citing PMIDs for %s", len(citing), review.pmid)
        listed = set(citing)
        probe: dict[str, Any] | None = None
        changed: list[str] = []
        if known.since is not None and known.until is not None and known.pmids:
            before = self.http.log.count
            changed = self.changed_since(known.pmids, known.since, known.until)
            probe = {"known": len(known.pmids), "since": known.since.isoformat(), "until": known.until.isoformat(),
                     "requests": self.http.log.count - before, "changed": len(changed)}
            log.info("pubmed: %d of %d known works changed since %s (%d esearch requests)", len(changed),
                     len(known.pmids), known.since, probe["requests"])
        refetch = set(changed)
        new = [p for p in citing if p not in known.pmids]
        wanted = new + [p for p in changed if p not in new]
        works: list[Work] = [Work(title=None, pmid=p, sources=[SOURCE], source_ids={SOURCE: p})
                             for p in citing if p in known.pmids and p not in refetch]
        before = self.http.log.count
        with collector_paused():
            for page in self.fetch_pages(wanted, max_records=max_records):
                for article in page:
                    work = from_pubmed(article)
                    work.probe = work.pmid not in listed
                    works.append(work)
                page.clear()
                # What is left of the page is the parser's cycle: a pass over the young
                # generation (this page's objects only) frees it.
                gc.collect(0)
        return SourceResult(
            source=SOURCE, works=works, listed=len(citing),
            metadata_requests=self.http.log.count - before,
            query={"elink": {"dbfrom": "pubmed", "db": "pubmed", "id": review.pmid, "linkname": CITEDIN},
                   "efetch": {"db": "pubmed", "ids": len(wanted), "batch_size": self.batch_size},
                   **({"esearch": {"db": "pubmed", "datetype": "mdat", "ids": len(known.pmids),
                                   "batch_size": self.probe_batch}} if probe else {})},
            probe=probe,
        )
