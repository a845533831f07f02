from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from include.living_review.config import ReviewConfig
from include.living_review.sources.http import SourceError
from include.living_review.records.normalize import clean_title
from include.living_review.sources.base import KnownWorks, RawContractError, check_raw_contract
from include.living_review.sources.semanticscholar import (FIELDS, SemanticScholarClient, from_semanticscholar,
                                                           next_offset)
from tests.fakes.corpus import REVIEW, seed_corpus
from tests.fakes.semanticscholar import FakeSemanticScholar
from tests.fakes.server import Response

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "semanticscholar"


def cassette(name: str) -> list[dict]:
    return yaml.load((FIXTURES / name).read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)["interactions"]


def recorded_response(name: str) -> Response:
    """A recorded error reply, replayed byte for byte by a fake."""
    answer = cassette(name)[0]["response"]
    body = answer.get("content") or answer["body"]["string"]
    status = answer.get("status_code") or answer["status"]["code"]
    return Response(int(status), body.encode(), content_type=answer["headers"]["Content-Type"][0])


def citation_json() -> dict:
    return json.loads((FIXTURES / "Citation.json").read_text(encoding="utf-8"))


def review(**overrides) -> ReviewConfig:
    fields = {"id": REVIEW["id"], "title": REVIEW["title"], "doi": REVIEW["doi"], "pmid": REVIEW["pmid"],
              "sources": ["semanticscholar"], **overrides}
    return ReviewConfig(**fields)


@pytest.fixture
def papers():
    return seed_corpus()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client(fake, sleeps, **kwargs) -> SemanticScholarClient:
    return SemanticScholarClient(fake.url, sleep=sleeps.append, **kwargs)


# -- mapper and paging rules, on recorded payloads -------------------------------------

def test_recorded_citing_paper_maps_every_field():
    work = from_semanticscholar(citation_json()["citingPaper"])
    assert work.s2_paper_id == "bdcbc589c8d1e4dd0c6572630f8511557406ad2f"
    assert work.source_ids == {"semanticscholar": "bdcbc589c8d1e4dd0c6572630f8511557406ad2f"}
    assert work.doi == "10.1109/lra.2022.3229266"  # S2 keeps the publisher's case
    assert work.title == "Learning to Throw With a Handful of Samples Using Decision Transformers"
    assert work.authors == ["Monastirsky M", "Azulay O", "Sintov A"]
    assert (work.journal, work.volume, work.pages) == ("IEEE Robotics and Automation Letters", "8", "576-583")
    assert (work.publication_year, work.publication_date) == (2023, dt.date(2023, 2, 1))
    assert work.publication_types == ["JournalArticle"]
    assert (work.pmid, work.pmcid, work.sources) == (None, None, ["semanticscholar"])
    assert json.loads(work.raw)["corpusId"] == 254723237


def test_pubmed_central_id_gets_its_pmc_prefix():
    # Derived from Citation.json: the recorded record has no PubMed ids, so bare-digit
    # ones (the shape S2 sends) are added here, and null date and journal are tried.
    raw = copy.deepcopy(citation_json()["citingPaper"])
    raw["externalIds"].update({"PubMed": "32357127", "PubMedCentral": "7312261"})
    raw.update({"publicationDate": None, "journal": None, "publicationTypes": None})
    work = from_semanticscholar(raw)
    assert (work.pmid, work.pmcid) == ("32357127", "PMC7312261")
    assert (work.publication_year, work.publication_date) == (2023, None)
    assert (work.journal, work.volume, work.publication_types) == ("IEEE Robotics and Automation Letters", None, [])


def test_recorded_offset_pages_end_when_next_is_absent():
    pages = [json.loads(i["response"]["content"]) for i in cassette("test_get_paper_citations.yaml")]
    assert [next_offset(p) for p in pages] == [p["offset"] + 100 for p in pages[:-1]] + [None]
    works = [from_semanticscholar(entry["citingPaper"]) for p in pages for entry in p["data"]]
    identified = [w.s2_paper_id for w in works if w.s2_paper_id]
    assert len(works) == 1881 and len(identified) == len(set(identified)) == 1873
    # S2 lists citers it could not resolve: paperId null, title only.
    unresolved = [w for w in works if not w.s2_paper_id]
    assert unresolved[0].title.startswith("Present Bias Predicts Low Adoption") and unresolved[0].source_ids == {}


def test_recorded_page_without_the_fields_we_ask_for_breaks_the_contract():
    # That recording asked for fields=title only: externalIds is absent, which for
    # our own request would mean the API changed.
    page = json.loads(cassette("test_get_paper_citations.yaml")[0]["response"]["content"])
    with pytest.raises(RawContractError) as caught:
        check_raw_contract("semanticscholar", page)
    field = caught.value.field_path.removeprefix("data[].citingPaper.")
    assert field in FIELDS and field not in ("paperId", "title")


@pytest.mark.parametrize("name, status, text", [
    ("test_bad_query_parameters.yaml", 400, "Unrecognized or unsupported fields"),
    ("test_not_found.yaml", 404, "Paper with id 0 not found"),
])
def test_recorded_error_replies_fail_with_their_message(papers, sleeps, name, status, text):
    with FakeSemanticScholar(papers) as fake:
        fake.inject(recorded_response(name))
        with pytest.raises(SourceError) as caught:
            client(fake, sleeps).fetch_citing(review(), KnownWorks())
    assert caught.value.status == status and text in str(caught.value)
    assert len(fake.requests) == 1  # 4xx is not retried


# -- client against the fake -----------------------------------------------------------

def test_offset_paging_walks_three_pages(papers, sleeps):
    with FakeSemanticScholar(papers) as fake:
        result = client(fake, sleeps, api_key="s2-key", page_size=7).fetch_citing(review(), KnownWorks())
    assert [(r.param("offset"), r.param("limit")) for r in fake.requests] == [("0", "7"), ("7", "7"), ("14", "7")]
    first = fake.requests[0]
    assert first.path == f"/graph/v1/paper/DOI:{REVIEW['doi']}/citations"
    assert first.param("fields") == ",".join(FIELDS)
    assert first.headers["x-api-key"] == "s2-key"
    assert result.listed == 20 and len(result.works) == 20
    by_id = {w.s2_paper_id: w for w in result.works}
    for paper in papers:
        work = by_id[paper.s2_paper_id]
        assert (work.doi, work.pmid, work.pmcid) == (paper.doi.lower(), paper.pmid, paper.pmcid)
        assert work.title == clean_title(paper.title)[0] and not work.title_is_translated
        assert (work.journal, work.publication_year, work.volume) == (paper.journal, paper.year, paper.volume)
        assert work.publication_date == dt.date(paper.year, paper.month, paper.day)
        # Display names lose multi-word family names ("M. Pil Jensen"); the rest round-trip.
        assert all(f"{f} {i}" in work.authors for f, i in paper.authors if " " not in f)


def test_last_page_is_detected_when_the_total_is_a_multiple_of_the_page_size(papers, sleeps):
    with FakeSemanticScholar(papers) as fake:
        result = client(fake, sleeps, page_size=5).fetch_citing(review(), KnownWorks())
    assert len(fake.requests) == 4 and len(result.works) == 20


def test_429_mid_pagination_waits_retry_after_and_loses_nothing(papers, sleeps):
    with FakeSemanticScholar(papers) as fake:
        fake.inject(Response(429, {"message": "Too Many Requests"}, headers={"Retry-After": "7"}),
                    path_contains="/citations", after=1)
        result = client(fake, sleeps, page_size=7).fetch_citing(review(), KnownWorks())
    assert [r.param("offset") for r in fake.requests] == ["0", "7", "7", "14"]
    assert 7.0 in sleeps
    ids = [w.s2_paper_id for w in result.works]
    assert len(ids) == len(set(ids)) == 20 and result.listed == 20
    assert result.markers["duplicates"] == 0


def test_max_records_caps_the_last_limit(papers, sleeps):
    with FakeSemanticScholar(papers) as fake:
        result = client(fake, sleeps, page_size=7).fetch_citing(review(), KnownWorks(), max_records=10)
    assert [(r.param("offset"), r.param("limit")) for r in fake.requests] == [("0", "7"), ("7", "3")]
    assert len(result.works) == 10


def test_hidden_papers_are_not_listed_and_unresolved_citers_are_dropped(papers, sleeps):
    papers[0].visible_in.discard("semanticscholar")
    with FakeSemanticScholar(papers, unresolved=["An Assessment of the Evidence"]) as fake:
        result = client(fake, sleeps).fetch_citing(review(), KnownWorks())
    assert result.listed == 20 and len(result.works) == 19 and result.markers["unidentified"] == 1
    assert papers[0].s2_paper_id not in {w.s2_paper_id for w in result.works}
    assert len(fake.requests) == 1


def test_pmid_is_used_when_the_review_has_no_doi(papers, sleeps):
    with FakeSemanticScholar(papers) as fake:
        result = client(fake, sleeps).fetch_citing(review(doi=None), KnownWorks())
    assert fake.requests[0].path == f"/graph/v1/paper/PMID:{REVIEW['pmid']}/citations"
    assert len(result.works) == 20


def test_each_review_gets_its_own_citers(papers, sleeps):
    other = "10.1000/other-review"
    with FakeSemanticScholar(papers, cited_by={REVIEW["doi"]: papers[:4], other: papers[4:6]}) as fake:
        s2 = client(fake, sleeps)
        first = s2.fetch_citing(review(), KnownWorks())
        second = s2.fetch_citing(review(id="other-review", doi=other, pmid=None), KnownWorks())
    assert [w.pmid for w in first.works] == [p.pmid for p in papers[:4]]
    assert [w.pmid for w in second.works] == [p.pmid for p in papers[4:6]]


def test_unknown_review_is_a_404_error(papers, sleeps):
    with FakeSemanticScholar(papers) as fake:
        with pytest.raises(SourceError) as caught:
            client(fake, sleeps).fetch_citing(review(doi="10.1000/not-indexed", pmid=None), KnownWorks())
    assert caught.value.status == 404 and "not found" in str(caught.value)


def test_a_wrong_api_key_is_refused(papers, sleeps):
    with FakeSemanticScholar(papers, api_key="right") as fake:
        with pytest.raises(SourceError) as caught:
            client(fake, sleeps, api_key="wrong").fetch_citing(review(), KnownWorks())
    assert caught.value.status == 403
    assert "wrong" not in str(caught.value)


def test_no_api_key_header_without_a_key(papers, sleeps):
    with FakeSemanticScholar(papers) as fake:
        client(fake, sleeps).fetch_citing(review(), KnownWorks())
    assert "x-api-key" not in {k.lower() for k in fake.requests[0].headers}


def test_raw_contract_drift_names_the_field(papers, sleeps):
    with FakeSemanticScholar(papers) as fake:
        fake.inject(Response(200, {"offset": 0, "data": [{"paper": {"paperId": "x", "title": "t"}}]}))
        with pytest.raises(RawContractError) as caught:
            client(fake, sleeps).fetch_citing(review(), KnownWorks())
    assert caught.value.field_path == "data[].citingPaper"


class MovedSemanticScholar(FakeSemanticScholar):
    """Answers every citations page with a 302 to the same page on ``mirror`` (another host)."""

    mirror = ""

    def handle(self, request):
        from urllib.parse import urlencode

        return Response(302, "", headers={"Location": f"{self.mirror}{request.path}?{urlencode(request.params)}"})


def test_a_302_to_another_host_does_not_take_the_api_key_along(papers, sleeps):
    """Issue 14, item 9: the pages are served from the other host, without the x-api-key header."""
    with FakeSemanticScholar(papers) as mirror, MovedSemanticScholar(papers) as fake:
        fake.mirror = mirror.url.replace("127.0.0.1", "localhost")
        result = client(fake, sleeps, api_key="s2-SECRET-key", page_size=7).fetch_citing(review(), KnownWorks())
    assert result.listed == 20 and len(mirror.requests) == 3  # every page followed the redirect
    assert {r.headers.get("x-api-key") for r in fake.requests} == {"s2-SECRET-key"}
    assert all("s2-SECRET-key" not in json.dumps(r.headers) for r in mirror.requests)
    assert [r.param("offset") for r in mirror.requests] == ["0", "7", "14"]
