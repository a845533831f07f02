"""The papers the fake APIs serve: the seed review's real citing articles, or synthetic ones.

A :class:`Paper` holds everything any source could know about one citing work.
Each fake renders it in its own source's format and serves only the papers whose
``visible_in`` names that source, so tests control which source sees what.
"""
from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

SEED_FILE = Path(__file__).with_name("data") / "review-and-citing-articles.txt"
ALL_SOURCES = ("pubmed", "europepmc", "openalex", "opencitations", "semanticscholar", "crossref")

REVIEW = {
    "id": "peer-support-mental-health",
    "title": "Peer Support in Mental Health: Literature Review",
    "doi": "10.2196/15572",
    "pmid": "32357127",
    "pmcid": "PMC7312261",
    "openalex_id": "W3021587153",
    "s2_paper_id": "0f3b4c2a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a",
}


@dataclass
class Paper:
    title: str
    authors: list[tuple[str, str]]  # (family, initials)
    journal_abbrev: str
    journal: str
    year: int
    month: int = 1
    day: int = 1
    volume: str | None = None
    issue: str | None = None
    pages: str | None = None
    pmid: str | None = None
    pmcid: str | None = None
    doi: str | None = None
    openalex_id: str | None = None
    s2_paper_id: str | None = None
    omid: str | None = None
    pub_types: list[str] = field(default_factory=lambda: ["Journal Article"])
    language: str = "eng"
    retracted: bool = False
    corrected: bool = False  # an erratum/correction notice is linked to it
    # Which sources show the retraction or correction (None: every source that can).
    notices_in: set[str] | None = None
    preprint_doi: str | None = None  # for a published version: the DOI of its preprint
    # When the sources last changed its record (PubMed's mdat, Crossref's update date);
    # None: its publication date. Set it to today when a test retracts or corrects a paper.
    modified: dt.date | None = None
    abstract: str = ""
    visible_in: set[str] = field(default_factory=lambda: set(ALL_SOURCES))

    def retracted_in(self, source: str) -> bool:
        return self.retracted and (self.notices_in is None or source in self.notices_in)

    def corrected_in(self, source: str) -> bool:
        return self.corrected and (self.notices_in is None or source in self.notices_in)

    @property
    def modified_on(self) -> dt.date:
        return self.modified or dt.date(self.year, self.month, self.day)

    def modified_in(self, source: str) -> dt.date:
        """When ``source`` last changed its record: a change limited to some sources leaves the others'."""
        if self.notices_in is not None and source not in self.notices_in:
            return dt.date(self.year, self.month, self.day)
        return self.modified_on

    @property
    def pmc_number(self) -> str | None:
        return self.pmcid[3:] if self.pmcid else None


def included_studies(n: int = 6) -> list[Paper]:
    """Studies the seed review cites (its reference list), each seen by every source."""
    topics = ["peer support workers in community mental health teams", "peer-delivered recovery coaching",
              "peer specialists in inpatient psychiatric care", "online peer support forums for depression",
              "peer mentoring for people leaving prison", "peer-led groups for bipolar disorder",
              "intentional peer support training outcomes", "peer support for carers of people with psychosis"]
    return [Paper(title=f"A randomized trial of {topics[i % len(topics)]} (study {i + 1}).",
                  authors=[("Reference", "A"), ("Author", "B")], journal_abbrev="Psychiatr Serv",
                  journal="Psychiatric services", year=2010 + i, month=3, day=1, pmid=str(20_000_000 + i),
                  doi=f"10.1176/ps.2010.{i:04d}", openalex_id=f"W20{i:08d}", pub_types=["Journal Article"])
            for i in range(n)]


_CITATION = re.compile(r"^(?P<abbrev>.+?)\.\s+(?P<year>\d{4});\s*(?P<rest>.*)$")


def _journal_parts(rest: str) -> tuple[str | None, str | None, str | None]:
    rest = rest.strip().rstrip(".")
    match = re.match(r"^(?P<vol>[^(:]*)(?:\((?P<iss>[^)]*)\))?(?::(?P<pages>.*))?$", rest)
    if not match:
        return None, None, None
    vol = (match.group("vol") or "").strip() or None
    iss = (match.group("iss") or "").strip() or None
    pages = (match.group("pages") or "").strip() or None
    return vol, iss, pages


def seed_corpus() -> list[Paper]:
    """The 20 citing articles of the seed file, newest first, as :class:`Paper`."""
    lines = SEED_FILE.read_text(encoding="utf-8").splitlines()
    start = lines.index("Citing Articles") + 1
    papers: list[Paper] = []
    index = start
    while index < len(lines):
        block = lines[index:index + 6]
        if len(block) < 6 or not block[3].startswith("PMID:"):
            break
        title, authors_line, citation, pmid_line, pmc_line, doi_line = block
        match = _CITATION.match(citation)
        assert match, f"unparseable citation line: {citation!r}"
        volume, issue, pages = _journal_parts(match.group("rest"))
        authors = [tuple(a.strip().rsplit(" ", 1)) if " " in a.strip() else (a.strip(), "")
                   for a in authors_line.split(",") if a.strip()]
        pmid = pmid_line.split(":", 1)[1].strip()
        number = len(papers)
        papers.append(Paper(
            title=title.strip(),
            authors=[(f, i) for f, i in authors],
            journal_abbrev=match.group("abbrev").strip(),
            journal=match.group("abbrev").strip(),
            year=int(match.group("year")),
            month=1 + (int(pmid) % 12),
            day=1 + (int(pmid) % 28),
            volume=volume, issue=issue, pages=pages,
            pmid=pmid,
            pmcid="PMC" + pmc_line.split(":", 1)[1].strip().rstrip("."),
            doi=doi_line.split(":", 1)[1].strip().rstrip("."),
            openalex_id=f"W{4300000000 + int(pmid) % 100000000}",
            s2_paper_id=f"{int(pmid):040x}",
            omid=f"br/06{int(pmid) % 10**9:09d}",
            pub_types=["Journal Article", "Systematic Review"] if "Systematic Review" in title
            else ["Journal Article", "Review"] if "Review" in title else ["Journal Article"],
            abstract=f"{title.strip()} This study relates to peer support in mental health (seed #{number}).",
        ))
        index += 6
    return papers


def synthetic_corpus(n: int, *, seed: int = 7, start_pmid: int = 40_000_000) -> list[Paper]:
    """``n`` synthetic papers with realistic field lengths, unicode and id gaps."""
    rng = random.Random(seed)
    words = ("peer support mental health recovery community intervention randomized trial "
             "qualitative study depression anxiety youth services workforce stigma digital "
             "résumé naïve Ångström São Paulo Zürich wellbeing outcomes").split()
    families = ["Xu", "Müller", "García", "O'Brien", "Nguyễn", "Smith", "Kowalski", "Ødegård", "李", "Cohen"]
    papers = []
    for i in range(n):
        pmid = str(start_pmid + i)
        title = " ".join(rng.choice(words) for _ in range(rng.randint(6, 18))).capitalize() + "."
        has_doi = rng.random() > 0.08
        in_pmc = rng.random() > 0.35
        papers.append(Paper(
            title=title,
            authors=[(rng.choice(families), rng.choice("ABCDEFGHJKLM") + rng.choice(["", "J", "M"]))
                     for _ in range(rng.randint(1, 8))],
            journal_abbrev=f"J Synth {i % 97}",
            journal=f"Journal of Synthetic Studies {i % 97}",
            year=rng.randint(2020, 2026), month=rng.randint(1, 12), day=rng.randint(1, 28),
            volume=str(rng.randint(1, 40)), issue=str(rng.randint(1, 12)), pages=f"{rng.randint(1, 900)}-{rng.randint(901, 999)}",
            pmid=pmid if in_pmc or rng.random() > 0.5 else None,
            pmcid=f"PMC{20_000_000 + i}" if in_pmc else None,
            doi=f"10.{5000 + i % 50}/synth.{i:07d}" if has_doi else None,
            openalex_id=f"W{5_000_000_000 + i}",
            s2_paper_id=f"{i + 1:040x}",
            omid=f"br/07{i:09d}",
        ))
    return papers
