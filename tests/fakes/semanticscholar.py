"""A stand-in for the Semantic Scholar Graph API ``paper/{id}/citations`` endpoint.

Pages follow the recorded responses (danielnsilva/semanticscholar cassettes):
``{"offset", "next", "data": [{"citingPaper": {...}}]}`` with ``next`` left out of
the last page, only the requested fields (plus ``paperId``) in each paper, bare
digits for ``PubMed``/``PubMedCentral``, and ``{"error": ...}`` bodies for 400/404.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from tests.fakes.corpus import REVIEW, Paper
from tests.fakes.server import FakeApi, Request, Response

CITATIONS = re.compile(r"^/graph/v1/paper/(?P<id>.+)/citations$")
PAPER_FIELDS = frozenset({
    "paperId", "corpusId", "externalIds", "url", "title", "abstract", "venue", "publicationVenue", "year",
    "referenceCount", "citationCount", "influentialCitationCount", "isOpenAccess", "openAccessPdf",
    "fieldsOfStudy", "s2FieldsOfStudy", "publicationTypes", "publicationDate", "journal", "citationStyles",
    "authors"})
CITATION_FIELDS = frozenset({"contexts", "intents", "contextsWithIntent", "isInfluential"})
S2_TYPES = {"Journal Article": "JournalArticle", "Review": "Review", "Systematic Review": "Review",
            "Meta-Analysis": "MetaAnalysis", "Case Reports": "CaseReport", "Editorial": "Editorial",
            "Clinical Trial": "ClinicalTrial", "Letter": "LettersAndComments", "Comment": "LettersAndComments"}


def plain_title(paper: Paper) -> str:
    """The title without PubMed's ``[...]`` translation brackets, which only PubMed adds."""
    title = paper.title
    if title.startswith("[") and title.rstrip(".").endswith("]"):
        title = title[1:].rstrip(".")[:-1] + ("." if title.endswith(".") else "")
    return title


def display_name(family: str, initials: str) -> str:
    """S2 shows authors as display names: ``("Xu", "RM")`` → ``"R. M. Xu"``."""
    return " ".join([f"{i}." for i in initials] + [family])


def citing_paper(paper: Paper) -> dict[str, Any]:
    """Every field of one citing paper, as the Graph API names them."""
    external: dict[str, Any] = {}
    if paper.doi:
        external["DOI"] = paper.doi
    if paper.pmid:
        external["PubMed"] = paper.pmid
    if paper.pmcid:
        external["PubMedCentral"] = paper.pmc_number
    corpus_id = int(paper.s2_paper_id[-8:], 16) if paper.s2_paper_id else None
    if corpus_id is not None:
        external["CorpusId"] = corpus_id
    journal = {"name": paper.journal}
    if paper.volume:
        journal["volume"] = paper.volume
    if paper.pages:
        journal["pages"] = paper.pages
    return {
        "paperId": paper.s2_paper_id,
        "corpusId": corpus_id,
        "externalIds": external,
        "url": f"https://www.semanticscholar.org/paper/{paper.s2_paper_id}",
        "title": plain_title(paper),
        "abstract": paper.abstract or None,
        "venue": paper.journal,
        "year": paper.year,
        "publicationTypes": list(dict.fromkeys(S2_TYPES.get(t, "JournalArticle") for t in paper.pub_types)) or None,
        "publicationDate": f"{paper.year}-{paper.month:02d}-{paper.day:02d}",
        "journal": journal,
        "authors": [{"authorId": str(1000 + i), "name": display_name(f, ini)} for i, (f, ini) in
                    enumerate(paper.authors)],
    }


def unresolved_paper(title: str) -> dict[str, Any]:
    """A citer S2 could not resolve: null paperId, title only (seen in recorded pages)."""
    return {"paperId": None, "corpusId": None, "externalIds": None, "url": None, "title": title,
            "abstract": None, "venue": None, "year": None, "publicationTypes": None, "publicationDate": None,
            "journal": None, "authors": []}


def error(status: int, message: str) -> Response:
    return Response(status, {"error": message})


class FakeSemanticScholar(FakeApi):
    """Serves papers visible in ``semanticscholar`` as citations of the reviews in ``cited_by``.

    ``cited_by`` maps a review DOI to its citing papers (default: every paper cites
    the seed review). ``unresolved`` adds null-paperId citers with these titles at
    the end of every list. With ``api_key`` set, a request carrying a different
    ``x-api-key`` gets 403, as the real gateway answers a bad key.
    """

    name = "semanticscholar"

    def __init__(self, papers: list[Paper], *, cited_by: dict[str, list[Paper]] | None = None,
                 unresolved: list[str] | None = None, api_key: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.papers = papers
        self.cited_by = {d.lower(): ps for d, ps in (cited_by or {REVIEW["doi"]: papers}).items()}
        self.unresolved = unresolved or []
        self.api_key = api_key

    def resolve(self, paper_id: str) -> str | None:
        """The review DOI for ``DOI:…``, ``PMID:…`` or a bare paperId we serve."""
        kind, sep, value = paper_id.partition(":")
        if not sep:
            return REVIEW["doi"] if paper_id == REVIEW["s2_paper_id"] else None
        kind, value = kind.upper(), value.lower()
        if kind == "DOI":
            return value if value in self.cited_by else None
        if kind == "PMID" and value == REVIEW["pmid"]:
            return REVIEW["doi"]
        return None

    def handle(self, request: Request) -> Response:
        key = {k.lower(): v for k, v in request.headers.items()}.get("x-api-key")
        if self.api_key is not None and key is not None and key != self.api_key:
            return Response(403, {"message": "Forbidden"})
        match = CITATIONS.match(request.path)
        if not match:
            return error(404, "Not found")
        paper_id = unquote(match.group("id"))
        fields = [f for f in (request.param("fields") or "").split(",") if f]
        unknown = [f for f in fields if f.split(".")[0] not in PAPER_FIELDS | CITATION_FIELDS]
        if unknown:
            return error(400, f"Unrecognized or unsupported fields: [{', '.join(unknown)}]")
        try:
            offset = int(request.param("offset") or 0)
            limit = int(request.param("limit") or 100)
        except ValueError:
            return error(400, "offset and limit must be integers")
        if limit > 1000 or limit < 1:
            return error(400, "limit must be between 1 and 1000")
        if offset + limit >= 10_000:
            return error(400, "offset + limit must be < 10000")
        doi = self.resolve(paper_id)
        if doi is None or doi not in self.cited_by:
            return error(404, f"Paper with id {paper_id} not found")
        papers = [citing_paper(p) for p in self.cited_by[doi] if "semanticscholar" in p.visible_in]
        papers += [unresolved_paper(t) for t in self.unresolved]
        wanted = {f for f in fields if f in PAPER_FIELDS} | {"paperId"}
        data = [{"citingPaper": {k: v for k, v in p.items() if k in wanted}}
                for p in papers[offset:offset + limit]]
        body: dict[str, Any] = {"offset": offset, "data": data}
        if offset + limit < len(papers):
            body["next"] = offset + limit
        return Response(200, body)
