"""A stand-in for the OpenCitations Index v2 ``citations/{id}`` operation.

No real v2 response was recorded, so rows follow the documented v2 sample output
(opencitations/oc_api ``src/api/index_v2.hf``) with the field shapes of the recorded
v1 cassette: ``citing``/``cited`` are space-separated PID lists led by the OMID, the
OCI is the two OMID numbers joined by ``-``, and ``creation`` has the precision
OpenCitations Meta has for the citing work (``2018``, ``2017-08`` or ``2019-04-10``).
"""
from __future__ import annotations

import zlib
from urllib.parse import unquote

from tests.fakes.corpus import REVIEW, Paper
from tests.fakes.server import FakeApi, Request, Response

PREFIX = "/index/v2/citations/"


def omid_for(doi: str, *, salt: str = "") -> str:
    """A stable OMID for a review DOI (reviews in the corpus have none of their own)."""
    return f"br/0610{zlib.crc32((salt + doi.lower()).encode()) % 10**8:08d}"


def creation_for(paper: Paper, index: int) -> str:
    """Full, month or year precision in turn, as Meta's dates vary."""
    full = f"{paper.year}-{paper.month:02d}-{paper.day:02d}"
    return (full, full[:7], full[:4])[index % 3]


class FakeOpenCitations(FakeApi):
    """Serves papers visible in ``opencitations`` as citers of the reviews in ``cited_by``.

    ``cited_by`` maps a review DOI to the papers citing it; by default every paper
    cites the seed review. ``duplicate_rows`` repeats the first rows against a
    second OMID of the review, as the index does when Meta holds the review twice.
    """

    name = "opencitations"

    def __init__(self, papers: list[Paper], *, cited_by: dict[str, list[Paper]] | None = None,
                 duplicate_rows: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.papers = papers
        self.cited_by = {d.lower(): ps for d, ps in (cited_by or {REVIEW["doi"]: papers}).items()}
        self.duplicate_rows = duplicate_rows

    def resolve(self, pid: str) -> str | None:
        """The review DOI a ``doi:``/``pmid:``/``omid:`` id names, if it is one we serve."""
        scheme, _, value = pid.lower().partition(":")
        if scheme == "doi":
            return value if value in self.cited_by else None
        if scheme == "pmid":
            return REVIEW["doi"] if value == REVIEW["pmid"] and REVIEW["doi"] in self.cited_by else None
        if scheme == "omid":
            return next((d for d in self.cited_by if omid_for(d) == value), None)
        return None

    def handle(self, request: Request) -> Response:
        if not request.path.startswith(PREFIX):
            return Response(404, "<html><body>Not Found</body></html>", content_type="text/html")
        pid = unquote(request.path[len(PREFIX):])
        if pid.lower().partition(":")[0] not in ("doi", "pmid", "omid"):
            return Response(400, f"HTTP status code 400: bad request. '{pid}' is not a valid id "
                                 "(expected omid:, doi: or pmid:)", content_type="text/plain")
        doi = self.resolve(pid)
        citers = [p for p in self.cited_by.get(doi, []) if "opencitations" in p.visible_in] if doi else []
        rows = [self.row(p, i, doi) for i, p in enumerate(citers)]
        rows += [self.row(p, i, doi, cited_salt="dup") for i, p in enumerate(citers[:self.duplicate_rows])]
        return Response(200, rows)

    def row(self, paper: Paper, index: int, review_doi: str, *, cited_salt: str = "") -> dict[str, str]:
        omid = paper.omid or omid_for(paper.doi or paper.pmid or str(index), salt="paper")
        cited_omid = omid_for(review_doi, salt=cited_salt)
        citing = " ".join([f"omid:{omid}"] + ([f"doi:{paper.doi.lower()}"] if paper.doi else [])
                          + ([f"pmid:{paper.pmid}"] if paper.pmid else []))
        cited = f"omid:{cited_omid} doi:{review_doi}"
        if review_doi == REVIEW["doi"].lower():
            cited += f" pmid:{REVIEW['pmid']}"
        return {
            "oci": f"{omid.removeprefix('br/')}-{cited_omid.removeprefix('br/')}",
            "citing": citing,
            "cited": cited,
            "creation": creation_for(paper, index),
            "timespan": f"P{max(paper.year - 2020, 0)}Y{paper.month - 1}M",
            "journal_sc": "no",
            "author_sc": "no",
        }
