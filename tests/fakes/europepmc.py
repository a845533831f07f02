"""A stand-in for the Europe PMC REST ``search`` endpoint (``CITES:<id>_MED`` queries, cursor paging).

Records follow the real ``core`` JSON shape (see ``tests/fixtures/europepmc/retracted_core.json``):
absent values are omitted rather than null, ``pubYear`` is a string, retractions show in
``pubTypeList`` and as ``commentCorrectionList`` entries of type "Retraction in". Cursor
paging behaves like Solr's: the last page still hands out a ``nextCursorMark``, and
asking with it returns no results and the same mark back.
"""
from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

from tests.fakes.corpus import REVIEW, Paper
from tests.fakes.server import FakeApi, Request, Response

VERSION = "6.9"
MAX_PAGE_SIZE = 1000
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_CITES = re.compile(r"^\s*CITES:(?P<id>[A-Za-z0-9]+)_(?P<src>[A-Z]{3})\s*$")


def encode_cursor(offset: int) -> str:
    return base64.b64encode(f"AoIIQ{offset:08d}".encode()).decode()


def decode_cursor(cursor: str) -> int | None:
    if cursor == "*":
        return 0
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return int(text[5:]) if text.startswith("AoIIQ") and text[5:].isdigit() else None


def err_code_body(err_code: int | str = 400, err_msg: str = "Syntax error in query") -> dict[str, Any]:
    """An error that Europe PMC sends with HTTP 200 (no real recording exists; shape per the docs' fields)."""
    return {"version": VERSION, "errCode": err_code, "errMsg": err_msg}


def record_id(paper: Paper) -> tuple[str, str]:
    """Europe PMC's (source, id) for a paper: MED for PubMed, PMC for PMC-only, PPR otherwise."""
    if paper.pmid:
        return "MED", paper.pmid
    if paper.pmcid:
        return "PMC", paper.pmcid
    digits = "".join(c for c in (paper.doi or paper.title) if c.isdigit())[-6:] or "1"
    return "PPR", f"PPR{int(digits)}"


def core_record(paper: Paper) -> dict[str, Any]:
    """One ``resultType=core`` search record."""
    source, rid = record_id(paper)
    date = f"{paper.year:04d}-{paper.month:02d}-{paper.day:02d}"
    pub_types = list(paper.pub_types)
    if paper.retracted_in("europepmc") and "Retracted Publication" not in pub_types:
        pub_types.insert(0, "Retracted Publication")
    record: dict[str, Any] = {"id": rid, "source": source}
    if paper.pmid:
        record["pmid"] = paper.pmid
    if paper.pmcid:
        record["pmcid"] = paper.pmcid
    if paper.doi:
        record["doi"] = paper.doi
    record["title"] = paper.title
    record["authorString"] = ", ".join(f"{f} {i}".strip() for f, i in paper.authors) + "."
    record["authorList"] = {"author": [
        {"fullName": f"{f} {i}".strip(), "lastName": f, "initials": i} if i
        else {"fullName": f, "lastName": f} for f, i in paper.authors]}
    if source == "PPR":
        record["bookOrReportDetails"] = {"publisher": paper.journal, "yearOfPublication": paper.year}
    else:
        journal_info: dict[str, Any] = {}
        if paper.issue:
            journal_info["issue"] = paper.issue
        if paper.volume:
            journal_info["volume"] = paper.volume
        journal_info.update({
            "journalIssueId": 4_000_000 + paper.year,
            "dateOfPublication": f"{paper.year} {MONTHS[paper.month - 1]}",
            "monthOfPublication": paper.month,
            "yearOfPublication": paper.year,
            "journal": {"medlineAbbreviation": paper.journal_abbrev, "title": paper.journal,
                        "isoabbreviation": paper.journal_abbrev},
            "printPublicationDate": f"{paper.year:04d}-{paper.month:02d}-01",
        })
        record["journalInfo"] = journal_info
    record["pubYear"] = str(paper.year)
    if paper.pages:
        record["pageInfo"] = paper.pages
    record.update({"publicationStatus": "epublish", "language": paper.language, "pubModel": "Electronic",
                   "pubTypeList": {"pubType": pub_types}})
    notices = []
    if paper.retracted_in("europepmc"):
        notices.append({"source": "MED", "id": str(int(paper.pmid or "1") + 1),
                        "reference": f"{paper.journal_abbrev}. {paper.year + 1}. Retraction notice.",
                        "type": "Retraction in", "orderIn": len(notices) + 1})
    if paper.corrected_in("europepmc"):
        notices.append({"source": "MED", "id": str(int(paper.pmid or "1") + 2),
                        "reference": f"{paper.journal_abbrev}. {paper.year + 1}. Erratum.",
                        "type": "Erratum in", "orderIn": len(notices) + 1})
    if notices:
        record["commentCorrectionList"] = {"commentCorrection": notices}
    in_pmc = "Y" if paper.pmcid else "N"
    if paper.doi:
        record["fullTextUrlList"] = {"fullTextUrl": [{
            "availability": "Subscription required", "availabilityCode": "S", "documentStyle": "doi",
            "site": "DOI", "url": f"https://doi.org/{paper.doi}"}]}
    record.update({"isOpenAccess": in_pmc, "inEPMC": in_pmc, "inPMC": in_pmc, "citedByCount": 0,
                   "hasReferences": "Y", "hasTextMinedTerms": "N", "hasDbCrossReferences": "N",
                   "hasPDF": in_pmc, "hasBook": "N", "hasSuppl": "N", "hasLabsLinks": "N", "hasData": "N",
                   "authMan": "N", "epmcAuthMan": "N", "nihAuthMan": "N", "hasTMAccessionNumbers": "N",
                   "dateOfCreation": date, "dateOfRevision": date, "electronicPublicationDate": date,
                   "firstPublicationDate": date, "firstIndexDate": date, "hasEvaluations": "N"})
    return record


class FakeEuropePmc(FakeApi):
    """Serves ``papers`` visible in ``europepmc`` as citers of ``review_pmids``.

    ``page_hook`` (tests set it) rewrites each JSON page before it is sent, e.g. to
    rename a field and simulate schema drift.
    """

    name = "europepmc"

    def __init__(self, papers: list[Paper], *, review_pmids: dict[str, list[Paper]] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.papers = papers
        # review PMID -> the papers that cite it; by default every paper cites the seed review.
        self.review_pmids = review_pmids
        self.page_hook: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def citers(self, pmid: str) -> list[Paper]:
        pool = self.review_pmids.get(pmid, []) if self.review_pmids is not None else (
            self.papers if pmid == REVIEW["pmid"] else [])
        # Europe PMC sorts citing searches by relevance, not date; a stable order is enough here.
        return [p for p in pool if "europepmc" in p.visible_in]

    def inject_err_code(self, err_code: int | str = 400, err_msg: str = "Syntax error in query", *,
                        times: int = 1, after: int = 0) -> None:
        """Answer the next matching search(es) with an HTTP 200 ``errCode`` body."""
        self.inject(Response(200, err_code_body(err_code, err_msg)), path_contains="/search",
                    times=times, after=after)

    def handle(self, request: Request) -> Response:
        if request.path.rstrip("/").endswith("/search"):
            return self.search(request)
        if request.path.rstrip("/").endswith("/references"):
            return self.references(request)
        return Response(404, "<html><body><h1>HTTP Status 404 – Not Found</h1></body></html>",
                        content_type="text/html;charset=utf-8")

    def references(self, request: Request) -> Response:
        """``/MED/<pmid>/references``: the seed review's reference list, as Europe PMC lists references."""
        pmid = request.path.rstrip("/").split("/")[-2]
        refs = [p for p in getattr(self, "included", []) if "europepmc" in p.visible_in] \
            if pmid == REVIEW["pmid"] else []
        listed = [{"id": p.pmid, "source": "MED", **({"doi": p.doi} if p.doi else {}), "title": p.title,
                   "pubYear": p.year, "citationType": "JOURNAL ARTICLE"} for p in refs]
        return Response(200, {"version": VERSION, "hitCount": len(listed), "request": {"id": pmid, "source": "MED"},
                              "referenceList": {"reference": listed}})

    def search(self, request: Request) -> Response:
        query = request.param("query", "") or ""
        if (request.param("format") or "xml").lower() != "json":
            return Response(200, '<?xml version="1.0" encoding="UTF-8"?><responseWrapper><version>'
                            f"{VERSION}</version><hitCount>0</hitCount></responseWrapper>",
                            content_type="application/xml")
        try:
            size = int(request.param("pageSize", "25") or 25)
        except ValueError:
            return Response(200, err_code_body(400, "pageSize must be a number"))
        size = max(1, min(size, MAX_PAGE_SIZE))
        cursor = request.param("cursorMark", "*") or "*"
        offset = decode_cursor(cursor)
        if offset is None:
            return Response(200, err_code_body(400, f"Invalid cursorMark: {cursor}"))
        match = _CITES.match(query)
        if not match:
            return Response(200, err_code_body(400, f"Unsupported query for this fake: {query!r}"))
        citers = self.citers(match.group("id")) if match.group("src") == "MED" else []
        chunk = citers[offset:offset + size]
        result_type = request.param("resultType", "lite") or "lite"
        page: dict[str, Any] = {"version": VERSION, "hitCount": len(citers)}
        # Like Solr: a non-empty page always hands out the next mark; past the end it echoes the input.
        next_mark = encode_cursor(offset + len(chunk)) if chunk else cursor
        page["nextCursorMark"] = next_mark
        if offset + len(chunk) < len(citers):
            page["nextPageUrl"] = (f"{self.url}/europepmc/webservices/rest/search?query={query}&cursorMark="
                                   f"{next_mark}&resultType={result_type}&pageSize={size}&format=json")
        page["request"] = {"queryString": query, "resultType": result_type, "cursorMark": cursor,
                           "pageSize": size, "sort": "", "synonym": False}
        page["resultList"] = {"result": [core_record(p) for p in chunk]}
        if self.page_hook:
            page = self.page_hook(page)
        return Response(200, page, content_type="application/json;charset=UTF-8")
