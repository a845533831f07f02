"""A stand-in for NCBI E-utilities: ``elink.fcgi`` (cited-by) and ``efetch.fcgi`` (PubMed XML).

Responses follow the real DTDs (elink 20101123, pubmed_250101), including the traps
the client must survive: a ``ReferenceList`` full of *other* papers' ids (the
review's included), ``<ERROR>`` bodies with HTTP 200, and ids sorted descending.
"""
from __future__ import annotations

from xml.sax.saxutils import escape

from tests.fakes.corpus import REVIEW, Paper
from tests.fakes.server import FakeApi, Request, Response

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
ELINK_HEAD = ('<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE eLinkResult PUBLIC "-//NLM//DTD elink '
              '20101123//EN" "https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20101123/elink.dtd">\n')
ESEARCH_HEAD = ('<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch '
                '20060628//EN" "https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">\n')
PUBMED_HEAD = ('<?xml version="1.0" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st '
               'January 2025//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n')


def notice_pmid(paper: Paper) -> str:
    """The PMID of a paper's retraction notice (made up: the paper's own PMID with a 9 in front)."""
    return f"9{paper.pmid}"[:10]


def pubmed_article_xml(paper: Paper, *, references: list[Paper] | None = None) -> str:
    """One ``<PubmedArticle>`` as efetch returns it (``references``: its ReferenceList, default the seed review)."""
    e = escape
    authors = "".join(
        f'<Author ValidYN="Y"><LastName>{e(family)}</LastName><ForeName>{e(initials)}</ForeName>'
        f"<Initials>{e(initials)}</Initials></Author>" for family, initials in paper.authors)
    pub_types = "".join(f'<PublicationType UI="D016428">{e(t)}</PublicationType>' for t in paper.pub_types)
    if paper.retracted_in("pubmed") and "Retracted Publication" not in paper.pub_types:
        pub_types += '<PublicationType UI="D016441">Retracted Publication</PublicationType>'
    ids = f'<ArticleId IdType="pubmed">{paper.pmid}</ArticleId>'
    if paper.doi:
        ids += f'<ArticleId IdType="doi">{e(paper.doi)}</ArticleId>'
    if paper.pmcid:
        ids += f'<ArticleId IdType="pmc">{paper.pmcid}</ArticleId>'
    volume = f"<Volume>{e(paper.volume)}</Volume>" if paper.volume else ""
    issue = f"<Issue>{e(paper.issue)}</Issue>" if paper.issue else ""
    pages = f"<Pagination><MedlinePgn>{e(paper.pages)}</MedlinePgn></Pagination>" if paper.pages else ""
    doi_loc = f'<ELocationID EIdType="doi" ValidYN="Y">{e(paper.doi)}</ELocationID>' if paper.doi else ""
    # PubMed links a retracted article to its retraction notice (a PubMed record of its own).
    retraction_in = (f'<CommentsCorrections RefType="RetractionIn"><RefSource>{e(paper.journal_abbrev)}. '
                     f'{paper.year}</RefSource><PMID Version="1">{notice_pmid(paper)}</PMID></CommentsCorrections>'
                     if paper.retracted_in("pubmed") and paper.pmid else "")
    if references is None:
        # The reference list cites the review itself: its ids must never leak into this work.
        reference_list = (
            "<ReferenceList><Reference><Citation>Shalaby R, Agyapong V. Peer Support in Mental Health. "
            "JMIR Ment Health 2020.</Citation><ArticleIdList>"
            f'<ArticleId IdType="doi">{REVIEW["doi"]}</ArticleId>'
            f'<ArticleId IdType="pubmed">{REVIEW["pmid"]}</ArticleId>'
            f'<ArticleId IdType="pmc">{REVIEW["pmcid"]}</ArticleId>'
            "</ArticleIdList></Reference></ReferenceList>")
    else:
        reference_list = "<ReferenceList>" + "".join(
            f"<Reference><Citation>{e(r.title)}</Citation><ArticleIdList>"
            + (f'<ArticleId IdType="pubmed">{r.pmid}</ArticleId>' if r.pmid else "")
            + (f'<ArticleId IdType="doi">{e(r.doi)}</ArticleId>' if r.doi else "")
            + "</ArticleIdList></Reference>" for r in references) + "</ReferenceList>"
    return (
        '<PubmedArticle><MedlineCitation Status="PubMed-not-MEDLINE" Owner="NLM">'
        f'<PMID Version="1">{paper.pmid}</PMID>'
        '<Article PubModel="Electronic-eCollection"><Journal>'
        '<JournalIssue CitedMedium="Internet">'
        f"{volume}{issue}<PubDate><Year>{paper.year}</Year><Month>{MONTHS[paper.month - 1]}</Month></PubDate>"
        f"</JournalIssue><Title>{e(paper.journal)}</Title>"
        f"<ISOAbbreviation>{e(paper.journal_abbrev)}</ISOAbbreviation></Journal>"
        f"<ArticleTitle>{e(paper.title)}</ArticleTitle>{pages}{doi_loc}"
        f"<Abstract><AbstractText>{e(paper.abstract)}</AbstractText></Abstract>"
        f'<AuthorList CompleteYN="Y">{authors}</AuthorList>'
        f"<Language>{e(paper.language)}</Language>"
        f"<PublicationTypeList>{pub_types}</PublicationTypeList>"
        f'<ArticleDate DateType="Electronic"><Year>{paper.year}</Year><Month>{paper.month:02d}</Month>'
        f"<Day>{paper.day:02d}</Day></ArticleDate>"
        "</Article>"
        f'<MedlineJournalInfo><MedlineTA>{e(paper.journal_abbrev)}</MedlineTA></MedlineJournalInfo>'
        '<CommentsCorrectionsList><CommentsCorrections RefType="Cites">'
        f'<RefSource>JMIR Ment Health. 2020</RefSource><PMID Version="1">{REVIEW["pmid"]}</PMID>'
        f"</CommentsCorrections>{retraction_in}</CommentsCorrectionsList>"
        "</MedlineCitation>"
        f'<PubmedData><PublicationStatus>epublish</PublicationStatus><ArticleIdList>{ids}</ArticleIdList>'
        f"{reference_list}</PubmedData></PubmedArticle>")


def review_article_xml(included: list[Paper]) -> str:
    """The seed review's own record, whose ReferenceList is its included studies."""
    review = Paper(title=REVIEW["title"], authors=[("Shalaby", "R"), ("Agyapong", "VIO")],
                   journal_abbrev="JMIR Ment Health", journal="JMIR mental health", year=2020, month=6, day=23,
                   pmid=REVIEW["pmid"], pmcid=REVIEW["pmcid"], doi=REVIEW["doi"], pub_types=["Journal Article", "Review"])
    return pubmed_article_xml(review, references=included)


class FakeEutils(FakeApi):
    """Serves ``papers`` visible in ``pubmed`` (with a PMID and a PMCID) as citers of ``review_pmids``."""

    name = "eutils"

    def __init__(self, papers: list[Paper], *, review_pmids: dict[str, list[Paper]] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.papers = papers
        # review PMID -> the papers that cite it; by default every paper cites the seed review.
        self.review_pmids = review_pmids
        self.included: list[Paper] = []  # the seed review's own reference list (its included studies)

    def citers(self, pmid: str) -> list[Paper]:
        pool = self.review_pmids.get(pmid, []) if self.review_pmids is not None else (
            self.papers if pmid == REVIEW["pmid"] else [])
        # PubMed's cited-by only knows citers deposited in PMC.
        return [p for p in pool if "pubmed" in p.visible_in and p.pmid and p.pmcid]

    def handle(self, request: Request) -> Response:
        if request.path.endswith("/elink.fcgi"):
            return self.elink(request)
        if request.path.endswith("/efetch.fcgi"):
            return self.efetch(request)
        if request.path.endswith("/esearch.fcgi"):
            return self.esearch(request)
        return Response(404, "<html><body>Not Found</body></html>", content_type="text/html")

    def elink(self, request: Request) -> Response:
        pmid = request.param("id", "")
        if not pmid:
            return Response(200, ELINK_HEAD + "<eLinkResult><ERROR>Empty id list - nothing todo</ERROR></eLinkResult>",
                            content_type="text/xml; charset=UTF-8")
        ids = sorted((p.pmid for p in self.citers(pmid)), key=int, reverse=True)
        links = "".join(f"<Link>\n\t\t\t\t<Id>{i}</Id>\n\t\t\t</Link>" for i in ids)
        linkset_db = (f"<LinkSetDb><DbTo>pubmed</DbTo><LinkName>pubmed_pubmed_citedin</LinkName>{links}</LinkSetDb>"
                      if ids else "")
        body = (ELINK_HEAD + "<eLinkResult><LinkSet><DbFrom>pubmed</DbFrom>"
                f"<IdList><Id>{pmid}</Id></IdList>{linkset_db}</LinkSet></eLinkResult>")
        return Response(200, body, content_type="text/xml; charset=UTF-8")

    def esearch(self, request: Request) -> Response:
        """``[uid]`` terms with a ``datetype=mdat`` window: the asked papers modified in it."""
        import datetime as dt
        import re

        term = request.param("term", "")
        asked = re.findall(r"(\d+)\[uid\]", term)
        if not asked or request.param("datetype") != "mdat":
            return Response(200, ESEARCH_HEAD + "<eSearchResult><ERROR>the fake only answers [uid] terms with "
                            "datetype=mdat</ERROR></eSearchResult>", content_type="text/xml; charset=UTF-8")
        low, high = (dt.datetime.strptime(request.param(k), "%Y/%m/%d").date() for k in ("mindate", "maxdate"))
        by_pmid = {p.pmid: p for p in [*self.papers, *self.included] if p.pmid and "pubmed" in p.visible_in}
        hits = [i for i in asked if i in by_pmid and low <= by_pmid[i].modified_in("pubmed") <= high]
        ids = "".join(f"<Id>{i}</Id>" for i in hits)
        body = (ESEARCH_HEAD + f"<eSearchResult><Count>{len(hits)}</Count><RetMax>{len(hits)}</RetMax>"
                f"<RetStart>0</RetStart><IdList>{ids}</IdList><TranslationSet/>"
                f"<QueryTranslation>{escape(term[:200])}</QueryTranslation></eSearchResult>")
        return Response(200, body, content_type="text/xml; charset=UTF-8")

    def efetch(self, request: Request) -> Response:
        wanted = [i for i in (request.param("id") or "").split(",") if i]
        if not wanted:
            return Response(200, '<?xml version="1.0" ?>\n<eFetchResult><ERROR>Empty id list - nothing todo'
                                 "</ERROR></eFetchResult>", content_type="text/xml; charset=UTF-8")
        by_pmid = {p.pmid: p for p in [*self.papers, *self.included] if p.pmid and "pubmed" in p.visible_in}
        articles = "".join(review_article_xml(self.included) if i == REVIEW["pmid"] else pubmed_article_xml(by_pmid[i])
                           for i in wanted if i in by_pmid or i == REVIEW["pmid"])
        return Response(200, PUBMED_HEAD + f"<PubmedArticleSet>{articles}</PubmedArticleSet>",
                        content_type="text/xml; charset=UTF-8")
