"""A stand-in for the Crossref REST API: ``/works/{doi}`` and the ``/works?filter=doi:…`` list.

Responses follow the recorded cassettes (habanero, rcrossref): the
``{status, message-type: work, message-version, message}`` envelope, array-valued
titles, ``date-parts`` dates, a ``reference`` list holding *other* papers' DOIs
(the reviews each paper cites), and for an unknown DOI a 404 whose body is the
plain text "Resource not found." under a JSON Content-Type, exactly as recorded.
A retracted paper carries ``updated-by`` pointing at its retraction notice, which
is served too, with ``update-to`` pointing back.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from tests.fakes.corpus import REVIEW, Paper
from tests.fakes.semanticscholar import plain_title
from tests.fakes.server import FakeApi, Request, Response

PREFIX = "/works/"
NOT_FOUND = Response(404, "Resource not found.", content_type="application/json;charset=utf-8")


def date_parts(paper: Paper) -> dict[str, Any]:
    return {"date-parts": [[paper.year, paper.month, paper.day]]}


def notice_doi(paper: Paper) -> str:
    return f"{paper.doi}.retraction"


def given_name(initials: str) -> str:
    """The corpus keeps initials only; Crossref has given names, e.g. ``"R. M."``."""
    return " ".join(f"{i}." for i in initials)


def work_message(paper: Paper, *, cites: list[str]) -> dict[str, Any]:
    """The ``message`` of ``/works/{doi}`` for one paper."""
    message: dict[str, Any] = {
        "indexed": {"date-parts": [[2025, 6, 1]], "date-time": "2025-06-01T00:00:00Z", "timestamp": 1748736000000},
        "reference-count": len(cites),
        "publisher": "Fake Publisher",
        "short-container-title": [paper.journal_abbrev],
        "DOI": paper.doi,
        "type": "journal-article",
        "created": date_parts(paper),
        "source": "Crossref",
        "is-referenced-by-count": 3,
        "title": [plain_title(paper)],
        "prefix": paper.doi.split("/", 1)[0],
        "author": [{"given": given_name(initials), "family": family, "sequence": "first" if i == 0 else "additional",
                    "affiliation": []} if initials else {"family": family, "sequence": "additional", "affiliation": []}
                   for i, (family, initials) in enumerate(paper.authors)],
        "member": "1965",
        "published-online": date_parts(paper),
        "container-title": [paper.journal],
        "original-title": [],
        "language": "en" if paper.language == "eng" else paper.language,
        "reference": [{"key": f"ref{i + 1}", "doi-asserted-by": "publisher", "DOI": doi}
                      for i, doi in enumerate(cites)],
        "subtitle": [],
        "short-title": [],
        "issued": date_parts(paper),
        "URL": f"https://doi.org/{paper.doi}",
        "relation": {},
        "ISSN": ["1234-5678"],
        "subject": [],
        "published": date_parts(paper),
    }
    for key in ("volume", "issue"):
        if getattr(paper, key):
            message[key] = getattr(paper, key)
    if paper.pages:
        message["page"] = paper.pages
    if paper.retracted_in("crossref"):
        message["updated-by"] = [{"DOI": notice_doi(paper), "type": "retraction", "label": "Retraction",
                                  "source": "retraction-watch", "updated": date_parts(paper)}]
    if paper.corrected_in("crossref"):
        message.setdefault("updated-by", []).append({"DOI": f"{paper.doi}.correction", "type": "correction",
                                                    "label": "Correction", "source": "publisher",
                                                    "updated": date_parts(paper)})
    if paper.preprint_doi:  # Crossref links a journal article to its preprint both ways
        message["relation"] = {"has-preprint": [{"id-type": "doi", "id": paper.preprint_doi,
                                                 "asserted-by": "subject"}]}
    if "Preprint" in paper.pub_types:
        message["type"], message["subtype"] = "posted-content", "preprint"
    return message


def notice_message(paper: Paper) -> dict[str, Any]:
    """The retraction notice of ``paper``: its own work record, with ``update-to``."""
    return {
        "DOI": notice_doi(paper),
        "type": "journal-article",
        "title": [f"Retraction: {plain_title(paper)}"],
        "author": [],
        "container-title": [paper.journal],
        "short-container-title": [paper.journal_abbrev],
        "published": date_parts(paper),
        "issued": date_parts(paper),
        "update-to": [{"DOI": paper.doi, "type": "retraction", "label": "Retraction", "updated": date_parts(paper)}],
        "source": "Crossref",
        "language": "en",
    }


class FakeCrossref(FakeApi):
    """Serves ``/works/{doi}`` for papers visible in ``crossref`` (and their retraction notices).

    ``cited_by`` maps a review DOI to its citing papers (default: every paper cites
    the seed review); it only fills each paper's ``reference`` list, since Crossref
    has no cited-by list. Mark a paper retracted with ``Paper.retracted``.
    """

    name = "crossref"

    def __init__(self, papers: list[Paper], *, cited_by: dict[str, list[Paper]] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.papers = papers
        self.cited_by = cited_by or {REVIEW["doi"]: papers}
        self.single_requests = 0  # GET /works/{doi}, apart from the batched list requests
        self.included: list[Paper] = []  # the seed review's reference list (its included studies)

    def messages(self) -> dict[str, dict[str, Any]]:
        """Lowercased DOI -> ``message``, built per request so tests may edit papers."""
        found: dict[str, dict[str, Any]] = {}
        if self.included:  # the review itself, with its reference list
            review = Paper(title=REVIEW["title"], authors=[("Shalaby", "R")], journal_abbrev="JMIR Ment Health",
                           journal="JMIR Mental Health", year=2020, month=6, day=23, doi=REVIEW["doi"])
            found[REVIEW["doi"]] = work_message(review, cites=[p.doi for p in self.included if p.doi])
        for paper in [*self.papers, *self.included]:
            if "crossref" not in paper.visible_in or not paper.doi:
                continue
            cites = [review for review, citers in self.cited_by.items() if any(c is paper for c in citers)]
            found[paper.doi.lower()] = work_message(paper, cites=cites)
            if paper.retracted_in("crossref"):
                found[notice_doi(paper).lower()] = notice_message(paper)
        return found

    def handle(self, request: Request) -> Response:
        if request.path.rstrip("/") == "/works":
            return self.work_list(request)
        if not request.path.startswith(PREFIX):
            return NOT_FOUND
        doi = unquote(request.path[len(PREFIX):]).lower()
        self.single_requests += 1
        message = self.messages().get(doi)
        if message is None:
            return NOT_FOUND
        polite = bool(request.param("mailto"))
        headers = {"x-api-pool": "polite" if polite else "public",
                   "x-rate-limit-limit": "10" if polite else "5", "x-rate-limit-interval": "1s"}
        return Response(200, {"status": "ok", "message-type": "work", "message-version": "1.0.0",
                              "message": message}, headers=headers)

    def work_list(self, request: Request) -> Response:
        """``filter=doi:a,doi:b[,from-update-date:D]&rows=N&select=…``: the ``work-list`` envelope.

        Repeated ``doi:`` filters are OR'ed, other filters AND'ed, as Crossref does; a
        paper's update date is ``Paper.modified_on``.
        """
        import datetime as dt

        dois, since = set(), None
        for part in (request.param("filter") or "").split(","):
            name, _, value = part.partition(":")
            if name == "doi":
                dois.add(value.lower())
            elif name == "from-update-date":
                since = dt.date.fromisoformat(value)
        by_doi = {p.doi.lower(): p for p in [*self.papers, *self.included] if p.doi and "crossref" in p.visible_in}
        messages = self.messages()
        items = []
        for doi in sorted(dois):
            if doi not in messages:
                continue
            paper = by_doi.get(doi)
            if since is not None and (paper is None or paper.modified_in("crossref") < since):
                continue
            items.append(messages[doi])
        select = [f for f in (request.param("select") or "").split(",") if f]
        if select:
            items = [{k: v for k, v in item.items() if k in select} for item in items]
        rows = int(request.param("rows") or 20)
        return Response(200, {"status": "ok", "message-type": "work-list", "message-version": "1.0.0",
                              "message": {"facets": {}, "total-results": len(items), "items": items[:rows],
                                          "items-per-page": rows, "query": {"start-index": 0,
                                                                            "search-terms": None}}})
