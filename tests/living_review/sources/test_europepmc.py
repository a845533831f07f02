"""Europe PMC: the mapper on real recorded records, the client against the local fake."""
from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from include.living_review import settings
from include.living_review.config import ReviewConfig
from include.living_review.sources.http import BodyError
from include.living_review.sources.base import KnownWorks, RawContractError, SourceSkipped, check_raw_contract
from include.living_review.sources.europepmc import EuropePmcClient, from_europepmc
from tests.fakes.corpus import REVIEW, Paper, seed_corpus, synthetic_corpus
from tests.fakes.europepmc import FakeEuropePmc
from tests.fakes.server import Response

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "europepmc"
EMAIL = "curator@example.org"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def seed_review(**changes: Any) -> ReviewConfig:
    fields = {"id": REVIEW["id"], "title": REVIEW["title"], "doi": REVIEW["doi"], "pmid": REVIEW["pmid"],
              "pmcid": REVIEW["pmcid"], "sources": ["europepmc"], **changes}
    return ReviewConfig(**fields)


@pytest.fixture
def papers() -> list[Paper]:
    return seed_corpus()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeEuropePmc]:
    # One server per module: stopping one costs half a second (serve_forever's poll interval).
    with FakeEuropePmc([]) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeEuropePmc, papers: list[Paper]) -> FakeEuropePmc:
    server.clear()
    server.papers, server.review_pmids, server.page_hook = papers, None, None
    return server


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client_for(fake: FakeEuropePmc, sleeps: list[float], **kwargs: Any) -> EuropePmcClient:
    return EuropePmcClient(fake.url, email=EMAIL, sleep=sleeps.append, **kwargs)


# -- the mapper on real records ---------------------------------------------------

def test_maps_real_retracted_core_records() -> None:
    page = load("retracted_core.json")
    check_raw_contract("europepmc", page)
    first, second = (from_europepmc(r) for r in page["resultList"]["result"])

    assert first.pmid == "42550576" and first.pmcid is None
    assert first.doi == "10.3928/02793695-20260701-01"
    assert first.title == ("School-Based Suicide Prevention Efforts: The Importance of a Mental Health Team "
                           "Approach and the School Nurse's Role.")
    assert first.authors == ["Mechling BM"]
    assert first.journal == "Journal of psychosocial nursing and mental health services"
    assert first.journal_abbrev == "J Psychosoc Nurs Ment Health Serv"
    assert (first.volume, first.issue, first.pages) == ("64", "8", "2-4")
    assert first.publication_year == 2026  # pubYear is a string in search results
    assert first.publication_date == dt.date(2026, 8, 1)
    assert first.publication_types == ["Retracted Publication", "Editorial"]
    assert first.language == "eng"
    assert first.is_retracted is True
    assert first.sources == ["europepmc"]
    assert first.source_ids == {"europepmc": "MED/42550576"}
    assert json.loads(first.raw or "")["id"] == "42550576"

    assert second.authors == ["Smadi Z", "Abboud JA"]
    assert second.volume is None and second.issue is None
    assert second.pages == "S1058-2746(26)00334-4"
    # firstPublicationDate (the e-pub day) beats the month-precision print date.
    assert second.publication_date == dt.date(2026, 6, 6)
    assert second.is_retracted is True
    assert second.has_metadata


def test_retraction_in_comment_correction_alone_marks_retracted() -> None:
    record = copy.deepcopy(load("retracted_core.json")["resultList"]["result"][1])
    record["pubTypeList"]["pubType"] = ["Letter"]
    # This pointer has no id, only the notice's DOI in "reference".
    assert "id" not in record["commentCorrectionList"]["commentCorrection"][0]
    assert from_europepmc(record).is_retracted is True
    del record["commentCorrectionList"]
    assert from_europepmc(record).is_retracted is False


def test_maps_collective_names_and_preprints() -> None:
    record = {"id": "PPR123", "source": "PPR", "doi": "10.1101/2024.01.02.123456", "title": "A <i>preprint</i>.",
              "authorList": {"author": [{"collectiveName": "PEER Study Group"},
                                        {"fullName": "Ortiz M", "firstName": "Maria", "lastName": "Ortiz"}]},
              "bookOrReportDetails": {"publisher": "bioRxiv"}, "pubYear": "2024",
              "firstPublicationDate": "2024-01-03", "pubTypeList": {"pubType": ["Preprint"]}}
    work = from_europepmc(record)
    assert work.title == "A preprint."
    assert work.authors == ["PEER Study Group", "Ortiz M"]
    assert work.journal == "bioRxiv"
    assert work.pmid is None and work.doi == "10.1101/2024.01.02.123456"
    assert work.source_ids == {"europepmc": "PPR/PPR123"}
    assert work.publication_date == dt.date(2024, 1, 3)


def test_real_page_through_the_client(fake: FakeEuropePmc, sleeps: list[float]) -> None:
    fake.inject(Response(200, load("retracted_core.json")), path_contains="/search")
    result = client_for(fake, sleeps).fetch_citing(seed_review(), KnownWorks(), max_records=2)
    assert [w.pmid for w in result.works] == ["42550576", "42251884"]
    assert result.listed == 34617  # hitCount, not what the cap let through
    assert result.markers == {"version": "6.9"}
    assert len(fake.requests) == 1


# -- the client against the fake --------------------------------------------------

def test_pages_through_the_cursor(fake: FakeEuropePmc, papers: list[Paper], sleeps: list[float]) -> None:
    client = client_for(fake, sleeps, page_size=7)
    result = client.fetch_citing(seed_review(), KnownWorks())

    requests = fake.requests_to("/search")
    assert len(requests) == 3  # 7 + 7 + 6: hitCount is reached, no empty fourth request
    assert [r.param("pageSize") for r in requests] == ["7", "7", "7"]
    assert requests[0].param("cursorMark") == "*"
    assert len({r.param("cursorMark") for r in requests}) == 3
    for request in requests:
        assert request.param("query") == f"CITES:{REVIEW['pmid']}_MED"
        assert request.param("resultType") == "core" and request.param("format") == "json"
        assert request.param("email") == EMAIL
        assert request.headers["User-Agent"] == settings.USER_AGENT

    pmids = [w.pmid for w in result.works]
    assert len(pmids) == len(set(pmids)) == 20
    assert set(pmids) == {p.pmid for p in papers}
    assert result.listed == 20
    assert result.markers == {"version": "6.9"}
    assert result.query["query"] == f"CITES:{REVIEW['pmid']}_MED"
    assert EMAIL not in json.dumps(result.query)
    assert client.http.log.count == 3

    xu = next(w for w in result.works if w.pmid == "39991198")
    assert xu.authors[:2] == ["Xu R", "Jing M"]
    assert xu.pmcid == "PMC11842349"
    assert xu.doi == "10.3389/fpsyg.2024.1470758"
    assert xu.journal_abbrev == "Front Psychol"
    assert xu.source_ids == {"europepmc": "MED/39991198"}
    assert xu.publication_year == 2025 and xu.publication_date is not None


def test_a_lone_surrogate_escape_in_a_page_keeps_the_record(fake: FakeEuropePmc, papers: list[Paper],
                                                           sleeps: list[float]) -> None:
    # "\ud83d" is half an emoji: msgspec refuses the page, json.loads reads it.
    papers[0].title = "Peer support \ud83d outcomes."
    result = client_for(fake, sleeps, page_size=7).fetch_citing(seed_review(), KnownWorks())
    assert len(result.works) == 20
    work = next(w for w in result.works if w.pmid == papers[0].pmid)
    assert work.title == "Peer support outcomes."
    assert json.loads(work.raw or "")["title"] == "Peer support \ud83d outcomes."


def test_stops_on_an_empty_page_when_hit_count_overstates(fake: FakeEuropePmc, sleeps: list[float]) -> None:
    fake.page_hook = lambda page: {**page, "hitCount": page["hitCount"] + 5}
    result = client_for(fake, sleeps, page_size=10).fetch_citing(seed_review(), KnownWorks())
    assert len(fake.requests_to("/search")) == 3  # 10 + 10 + the empty page
    assert len(result.works) == 20


def test_stops_when_the_cursor_stops_moving(fake: FakeEuropePmc, sleeps: list[float]) -> None:
    # A cursor that does not advance would otherwise loop forever on the same page.
    fake.page_hook = lambda page: {**page, "hitCount": 999, "nextCursorMark": page["request"]["cursorMark"]}
    result = client_for(fake, sleeps, page_size=10).fetch_citing(seed_review(), KnownWorks())
    assert len(fake.requests) == 1
    assert len(result.works) == 10


def test_retry_after_429_mid_pagination(fake: FakeEuropePmc, papers: list[Paper], sleeps: list[float]) -> None:
    fake.inject(Response(429, {"error": "Too Many Requests"}, headers={"Retry-After": "7"}),
                path_contains="/search", after=1)
    client = client_for(fake, sleeps, page_size=7)
    result = client.fetch_citing(seed_review(), KnownWorks())
    assert 7.0 in sleeps
    assert client.http.log.status_counts() == {"200": 3, "429": 1}
    requests = fake.requests_to("/search")
    assert len(requests) == 4  # 3 pages + the throttled retry
    assert requests[1].param("cursorMark") == requests[2].param("cursorMark")  # the retry re-asks the same page
    pmids = [w.pmid for w in result.works]
    assert len(pmids) == len(set(pmids)) == len(papers)


def test_http_200_err_code_is_a_body_error(fake: FakeEuropePmc, sleeps: list[float]) -> None:
    fake.inject_err_code(400, "Invalid query: unbalanced parenthesis", after=1)
    with pytest.raises(BodyError, match="unbalanced parenthesis") as caught:
        client_for(fake, sleeps, page_size=7).fetch_citing(seed_review(), KnownWorks())
    assert caught.value.source == "europepmc"
    assert len(fake.requests) == 2  # not retried: asking again gives the same answer
    assert EMAIL not in str(caught.value)


def test_review_without_pmid_is_skipped(fake: FakeEuropePmc, sleeps: list[float]) -> None:
    review = seed_review(pmid=None)
    with pytest.raises(SourceSkipped, match="pmid"):
        client_for(fake, sleeps).fetch_citing(review, KnownWorks())
    assert fake.requests == []


def test_max_records_caps_the_walk(fake: FakeEuropePmc, sleeps: list[float]) -> None:
    result = client_for(fake, sleeps, page_size=7).fetch_citing(seed_review(), KnownWorks(), max_records=10)
    assert len(result.works) == 10
    assert len(fake.requests) == 2
    assert result.listed == 20

    fake.clear()
    result = client_for(fake, sleeps, page_size=7).fetch_citing(seed_review(), KnownWorks(), max_records=5)
    assert len(result.works) == 5
    assert [r.param("pageSize") for r in fake.requests] == ["5"]


def test_renamed_field_is_schema_drift(fake: FakeEuropePmc, sleeps: list[float]) -> None:
    def rename(page: dict[str, Any]) -> dict[str, Any]:
        for record in page["resultList"]["result"]:
            record["articleTitle"] = record.pop("title")
        return page

    fake.page_hook = rename
    with pytest.raises(RawContractError) as caught:
        client_for(fake, sleeps, page_size=7).fetch_citing(seed_review(), KnownWorks())
    assert caught.value.field_path == "resultList.result[].title"
    assert "resultList.result[].title" in str(caught.value)


def test_serves_only_visible_citers_of_each_review(fake: FakeEuropePmc, sleeps: list[float]) -> None:
    a, b, c, hidden, retracted, preprint = synthetic_corpus(6, seed=3)
    hidden.visible_in = {"pubmed", "openalex"}
    retracted.retracted = True
    preprint.pmid = preprint.pmcid = None
    preprint.journal = "medRxiv"
    reviews = {"11111111": [a, b, hidden, retracted, preprint], "22222222": [c]}
    fake.papers, fake.review_pmids = [a, b, c, hidden, retracted, preprint], reviews
    client = client_for(fake, sleeps, page_size=2)
    first = client.fetch_citing(seed_review(id="first", pmid="11111111"), KnownWorks())
    second = client.fetch_citing(seed_review(id="second", pmid="22222222"), KnownWorks())
    seed = client.fetch_citing(seed_review(), KnownWorks())

    assert [w.doi for w in first.works] == [p.doi for p in (a, b, retracted, preprint)]
    assert first.listed == 4
    assert [w.is_retracted for w in first.works] == [False, False, True, False]
    assert first.works[2].publication_types[0] == "Retracted Publication"
    assert first.works[3].source_ids["europepmc"].startswith("PPR/PPR")
    assert first.works[3].journal == "medRxiv" and first.works[3].pmid is None
    assert [w.doi for w in second.works] == [c.doi]
    assert seed.works == [] and seed.listed == 0
