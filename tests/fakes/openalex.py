"""A stand-in for the OpenAlex ``/works`` API: singleton look-ups and ``filter=cites:W…`` lists.

Works follow the 2025 schema of ``tests/fixtures/openalex/`` (``ids`` with URL-shaped
``pmid``/``pmcid``, the latter without its "PMC" prefix; ``primary_location.source``;
``authorships[].author.display_name`` plus ``raw_author_name``). Cursor paging
behaves like the real one: every non-empty page hands out a ``next_cursor`` and the
walk ends with an empty page whose ``next_cursor`` is null. ``select`` is honoured
(root fields only, unknown fields are a 400), and every request needs ``api_key``
(required since February 2026).
"""
from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from tests.fakes.corpus import REVIEW, Paper
from tests.fakes.server import FakeApi, Request, Response

OPENALEX = "https://openalex.org/"
MAX_PER_PAGE = 200
_LANGUAGES = {"eng": "en", "fre": "fr", "ger": "de", "spa": "es", "por": "pt", "chi": "zh", "jpn": "ja"}
# How the seed review is looked up: /works/doi:… or /works/pmid:… -> its W-id.
SEED_ALIASES = {f"doi:{REVIEW['doi']}": REVIEW["openalex_id"], f"pmid:{REVIEW['pmid']}": REVIEW["openalex_id"]}
_WORK_ID = re.compile(r"^(?:https://openalex\.org/)?(W\d+)$", re.IGNORECASE)


def _error(status: int, error: str, message: str) -> Response:
    return Response(status, {"error": error, "message": message})


def encode_cursor(offset: int) -> str:
    return base64.b64encode(f"IlsxLjAsICd{offset}']".encode()).decode()


def decode_cursor(cursor: str) -> int | None:
    if cursor == "*":
        return 0
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    match = re.fullmatch(r"IlsxLjAsICd(\d+)'\]", text)
    return int(match.group(1)) if match else None


def _display_name(family: str, initials: str) -> str:
    # OpenAlex shows "Given Family"; the corpus only knows initials.
    given = " ".join(f"{c}." for c in initials if c.isalpha())
    return f"{given} {family}".strip()


def work_json(paper: Paper, *, cites: list[str] | None = None) -> dict[str, Any]:
    """One OpenAlex Work object for ``paper`` (all root fields the real API returns that we model)."""
    wid = paper.openalex_id or f"W{int(hashlib.sha1(paper.title.encode()).hexdigest()[:9], 16)}"
    doi_url = f"https://doi.org/{paper.doi}" if paper.doi else None
    ids: dict[str, Any] = {"openalex": OPENALEX + wid}
    if doi_url:
        ids["doi"] = doi_url
    if paper.pmid:
        ids["pmid"] = f"https://pubmed.ncbi.nlm.nih.gov/{paper.pmid}"
    if paper.pmc_number:
        ids["pmcid"] = f"https://www.ncbi.nlm.nih.gov/pmc/articles/{paper.pmc_number}"
    source = {"id": f"{OPENALEX}S{4200000000 + sum(map(ord, paper.journal)) % 10000000}",
              "display_name": paper.journal, "issn_l": None, "issn": None, "is_oa": bool(paper.pmcid),
              "is_in_doaj": False, "is_indexed_in_scopus": True, "is_core": True, "host_organization": None,
              "host_organization_name": None, "host_organization_lineage": [],
              "host_organization_lineage_names": [], "type": "journal"}
    location = {"is_oa": bool(paper.pmcid), "landing_page_url": doi_url, "pdf_url": None, "source": source,
                "license": None, "license_id": None, "version": "publishedVersion", "is_accepted": True,
                "is_published": True}
    first_page, _, last_page = (paper.pages or "").partition("-")
    authorships = [{
        "author_position": "first" if n == 0 else "last" if n == len(paper.authors) - 1 else "middle",
        "author": {"id": f"{OPENALEX}A{5000000000 + n}", "display_name": _display_name(family, initials),
                   "orcid": None},
        "institutions": [], "countries": [], "is_corresponding": n == 0,
        "raw_author_name": _display_name(family, initials), "raw_affiliation_strings": [], "affiliations": [],
    } for n, (family, initials) in enumerate(paper.authors)]
    is_review = any("Review" in t for t in paper.pub_types)
    return {
        "id": OPENALEX + wid,
        "doi": doi_url,
        "title": paper.title,
        "display_name": paper.title,
        "publication_year": paper.year,
        "publication_date": f"{paper.year:04d}-{paper.month:02d}-{paper.day:02d}",
        "ids": ids,
        "language": _LANGUAGES.get(paper.language, paper.language[:2]),
        "primary_location": location,
        "type": "review" if is_review else "article",
        "type_crossref": "journal-article",
        "indexed_in": ["crossref", "pubmed"] if paper.pmid else ["crossref"],
        "open_access": {"is_oa": bool(paper.pmcid), "oa_status": "green" if paper.pmcid else "closed",
                        "oa_url": None, "any_repository_has_fulltext": bool(paper.pmcid)},
        "authorships": authorships,
        "cited_by_count": 0,
        "biblio": {"volume": paper.volume, "issue": paper.issue, "first_page": first_page or None,
                   "last_page": last_page or first_page or None},
        "is_retracted": paper.retracted_in("openalex"),
        "is_paratext": False,
        "locations_count": 1,
        "locations": [location],
        "referenced_works_count": len(cites or []),
        "referenced_works": [OPENALEX + w for w in cites or []],
        "best_oa_location": location if paper.pmcid else None,
        "sustainable_development_goals": [], "grants": [], "datasets": [], "versions": [],
        "institution_assertions": [], "countries_distinct_count": 0, "institutions_distinct_count": 0,
        "corresponding_author_ids": [], "corresponding_institution_ids": [],
        "apc_list": None, "apc_paid": None, "fwci": None, "has_fulltext": False, "fulltext_origin": None,
        "citation_normalized_percentile": None, "cited_by_percentile_year": {"min": 0, "max": 0},
        "primary_topic": None, "topics": [], "keywords": [], "concepts": [], "mesh": [], "related_works": [],
        "abstract_inverted_index": {w: [i] for i, w in enumerate(paper.abstract.split()[:20])} or None,
        "abstract_inverted_index_v3": None,
        "cited_by_api_url": f"https://api.openalex.org/works?filter=cites:{wid}",
        "counts_by_year": [],
        "updated_date": "2026-01-05T00:00:00.000000",
        "created_date": f"{paper.year:04d}-{paper.month:02d}-{paper.day:02d}",
    }


def review_work(work_id: str) -> dict[str, Any]:
    """The cited review as a Work: the seed review in full, any other W-id with just its id."""
    if work_id != REVIEW["openalex_id"]:
        return {"id": OPENALEX + work_id, "doi": None, "title": f"Review {work_id}",
                "display_name": f"Review {work_id}", "publication_year": None,
                "ids": {"openalex": OPENALEX + work_id}}
    return {"id": OPENALEX + work_id, "doi": f"https://doi.org/{REVIEW['doi']}",
            "title": REVIEW["title"], "display_name": REVIEW["title"], "publication_year": 2020,
            "ids": {"openalex": OPENALEX + work_id, "doi": f"https://doi.org/{REVIEW['doi']}",
                    "pmid": f"https://pubmed.ncbi.nlm.nih.gov/{REVIEW['pmid']}",
                    "pmcid": f"https://www.ncbi.nlm.nih.gov/pmc/articles/{REVIEW['pmcid'][3:]}"}}


class FakeOpenAlex(FakeApi):
    """Serves ``papers`` visible in ``openalex`` as citers of ``review_works``.

    ``review_works`` maps a review's W-id to the papers citing it (default: every paper
    cites the seed review); ``aliases`` maps ``doi:<doi>``/``pmid:<pmid>`` to a W-id for
    ``/works/{key}`` look-ups (default: the seed review's DOI and PMID). ``api_keys``
    limits the accepted keys (default: any non-empty key). ``page_hook`` rewrites each
    list page before it is sent (schema-drift tests).
    """

    name = "openalex"

    def __init__(self, papers: list[Paper], *, review_works: dict[str, list[Paper]] | None = None,
                 aliases: dict[str, str] | None = None, api_keys: set[str] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.papers = papers
        self.review_works = review_works
        self.aliases = dict(SEED_ALIASES if aliases is None else aliases)
        self.api_keys = api_keys
        self.page_hook: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.included: list[Paper] = []  # the seed review's referenced_works (its included studies)

    def citers(self, work_id: str) -> list[Paper]:
        pool = self.review_works.get(work_id, []) if self.review_works is not None else (
            self.papers if work_id == REVIEW["openalex_id"] else [])
        return [p for p in pool if "openalex" in p.visible_in]

    def handle(self, request: Request) -> Response:
        key = request.param("api_key")
        if not key:
            return _error(401, "Unauthorized", "An API key is required. Add api_key=YOUR_KEY to the request; "
                          "get a free key at https://openalex.org/settings/api")
        if self.api_keys is not None and key not in self.api_keys:
            return _error(403, "Forbidden", "Invalid API key.")
        path = request.path.rstrip("/")
        if path == "/works":
            return self.works(request)
        if path.startswith("/works/"):
            return self.single(request, path.removeprefix("/works/"))
        return _error(404, "Not Found", f"The requested path {request.path} was not found.")

    def _select(self, request: Request, work: dict[str, Any]) -> dict[str, Any] | Response:
        select = request.param("select")
        if not select:
            return work
        fields = [f.strip() for f in select.split(",") if f.strip()]
        unknown = [f for f in fields if f not in work]
        if unknown:
            return _error(400, "Invalid query parameters error.",
                          f"{unknown[0]} is not a valid select field. Valid fields for select are: "
                          f"{', '.join(sorted(work))}.")
        return {f: work[f] for f in fields}

    def single(self, request: Request, key: str) -> Response:
        key = unquote(key)
        if key.lower().startswith(("doi:", "pmid:")):
            key = key.lower()
        work_id = self.aliases.get(key)
        if work_id is None:
            match = _WORK_ID.match(key)
            work_id = match.group(1).upper() if match else None
        reviews = set(self.review_works or {}) | set(self.aliases.values()) | {REVIEW["openalex_id"]}
        work: dict[str, Any] | None = review_work(work_id) if work_id in reviews else None
        if work is not None and work_id == REVIEW["openalex_id"]:
            work["referenced_works"] = [OPENALEX + p.openalex_id for p in self.included
                                        if p.openalex_id and "openalex" in p.visible_in]
        for paper in self.papers if work is None else []:
            if "openalex" in paper.visible_in and (
                    (work_id and paper.openalex_id == work_id)
                    or (paper.doi and key == f"doi:{paper.doi.lower()}")
                    or (paper.pmid and key == f"pmid:{paper.pmid}")):
                work = work_json(paper)
                break
        if work is None:
            return _error(404, "Not Found", f"The requested work {key} was not found.")
        selected = self._select(request, work)
        return selected if isinstance(selected, Response) else Response(200, selected)

    def by_ids(self, request: Request, wanted: list[str]) -> Response:
        pool = {p.openalex_id: p for p in [*self.papers, *self.included] if p.openalex_id and "openalex" in p.visible_in}
        results = []
        for wid in wanted:
            if wid in pool:
                selected = self._select(request, work_json(pool[wid]))
                if isinstance(selected, Response):
                    return selected
                results.append(selected)
        return Response(200, {"meta": {"count": len(results), "db_response_time_ms": 5, "page": 1,
                                       "per_page": len(wanted), "next_cursor": None, "groups_count": None},
                              "results": results, "group_by": []})

    def works(self, request: Request) -> Response:
        cited: list[str] = []
        for clause in (request.param("filter") or "").split(","):
            name, _, value = clause.partition(":")
            if name.strip() == "openalex":  # works by id: filter=openalex:W1|W2
                return self.by_ids(request, [part.strip().upper() for part in value.split("|") if part.strip()])
            if name.strip() == "cites":
                for part in value.split("|"):
                    match = _WORK_ID.match(part.strip())
                    if not match:
                        return _error(400, "Invalid query parameters error.",
                                      f"'{part}' is not a valid OpenAlex ID.")
                    cited.append(match.group(1).upper())
            elif clause.strip():
                return _error(400, "Invalid query parameters error.", f"This fake only filters on cites, not {name}.")
        if not cited:
            return _error(400, "Invalid query parameters error.", "This fake needs filter=cites:W…")
        try:
            per_page = int(request.param("per_page", "25") or 25)
        except ValueError:
            return _error(400, "Invalid query parameters error.", "per_page must be a number")
        if not 1 <= per_page <= MAX_PER_PAGE:
            return _error(400, "Invalid query parameters error.", f"per_page is limited to {MAX_PER_PAGE}.")
        cursor = request.param("cursor")
        offset = decode_cursor(cursor) if cursor else 0
        if offset is None:
            return _error(400, "Invalid query parameters error.", f"Invalid cursor: {cursor}")
        by_identity: dict[int, Paper] = {}
        for work_id in cited:
            for paper in self.citers(work_id):
                by_identity.setdefault(id(paper), paper)
        citers = list(by_identity.values())
        chunk = citers[offset:offset + per_page]
        results = []
        for paper in chunk:
            selected = self._select(request, work_json(paper, cites=cited))
            if isinstance(selected, Response):
                return selected
            results.append(selected)
        next_cursor = encode_cursor(offset + len(chunk)) if cursor and chunk else None
        page = {"meta": {"count": len(citers), "db_response_time_ms": 12, "page": None if cursor else 1,
                         "per_page": per_page, "next_cursor": next_cursor, "groups_count": None},
                "results": results, "group_by": []}
        if self.page_hook:
            page = self.page_hook(page)
        return Response(200, page)
