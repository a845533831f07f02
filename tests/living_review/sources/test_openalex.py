"""OpenAlex: the mapper on real recorded works, the client against the local fake."""
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
from include.living_review.sources.http import SourceError
from include.living_review.sources.base import KnownWorks, RawContractError, SourceSkipped, check_raw_contract
from include.living_review.sources.openalex import SELECT_FIELDS, OpenAlexClient, from_openalex
from tests.fakes.corpus import REVIEW, Paper, seed_corpus, synthetic_corpus
from tests.fakes.openalex import SEED_ALIASES, FakeOpenAlex
from tests.fakes.server import Response

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "openalex"
EMAIL = "curator@example.org"
KEY = "test-key-123"
REVIEW_ID = REVIEW["openalex_id"]


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def seed_review(**changes: Any) -> ReviewConfig:
    fields = {"id": REVIEW["id"], "title": REVIEW["title"], "doi": REVIEW["doi"], "pmid": REVIEW["pmid"],
              "sources": ["openalex"], **changes}
    return ReviewConfig(**fields)


@pytest.fixture
def papers() -> list[Paper]:
    return seed_corpus()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAlex]:
    # One server per module: stopping one costs half a second (serve_forever's poll interval).
    with FakeOpenAlex([]) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAlex, papers: list[Paper]) -> FakeOpenAlex:
    server.clear()
    server.papers, server.review_works, server.page_hook, server.api_keys = papers, None, None, None
    server.aliases = dict(SEED_ALIASES)
    return server


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client_for(fake: FakeOpenAlex, sleeps: list[float], *, api_key: str | None = KEY, **kwargs: Any
               ) -> OpenAlexClient:
    return OpenAlexClient(fake.url, email=EMAIL, api_key=api_key, sleep=sleeps.append, **kwargs)


# -- the mapper on real works -------------------------------------------------------

def test_maps_a_real_singleton_with_url_shaped_ids() -> None:
    raw = load("W2741809807.json")
    check_raw_contract("openalex_work", raw)
    work = from_openalex(raw)
    assert work.openalex_id == "W2741809807"
    assert work.doi == "10.7717/peerj.4375"
    assert work.pmid == "29456894"  # from https://pubmed.ncbi.nlm.nih.gov/29456894
    assert work.pmcid == "PMC5815332"  # from .../pmc/articles/5815332: the PMC prefix is restored
    assert work.title == ("The state of OA: a large-scale analysis of the prevalence and impact of "
                          "Open Access articles")
    assert work.authors == ["Piwowar H", "Priem J", "Larivière V", "Alperín JP", "Matthias L",
                            "Norlander B", "Farley A", "West JD", "Haustein S"]
    assert work.journal == "PeerJ" and work.journal_abbrev is None
    assert (work.volume, work.issue, work.pages) == ("6", None, "e4375")
    assert work.publication_year == 2018
    assert work.publication_date == dt.date(2018, 2, 13)
    assert work.publication_types == ["article", "journal-article"]
    assert work.language == "eng"  # "en" normalized to PubMed's ISO 639-2 vocabulary
    assert work.is_retracted is False
    assert work.sources == ["openalex"] and work.source_ids == {"openalex": "W2741809807"}
    assert json.loads(work.raw or "")["id"] == "https://openalex.org/W2741809807"


def test_maps_a_real_citing_page() -> None:
    page = load("citing_json/results_page_1.json")
    check_raw_contract("openalex", page)
    check_raw_contract("openalex", load("citing_json/results_page_2.json"))
    works = [from_openalex(r) for r in page["results"]]
    assert [w.openalex_id for w in works] == ["W4311043552", "W4293919086", "W4387316167"]
    assert [w.doi for w in works] == ["10.36312/esaintika.v6i3.897", "10.18421/tem113-46",
                                      "10.1109/jcdl57899.2023.00026"]
    assert all(w.pmid is None and w.pmcid is None for w in works)  # these citers carry no PubMed ids
    # display_name is OpenAlex's disambiguated name, dotless ı included.
    assert works[0].authors[:3] == ["Prahanı BK", "Jatmiko B", "Amelia T"]
    assert works[1].journal == "TEM Journal" and works[1].pages == "1357-1363"
    assert works[2].journal is None  # primary_location.source is null for this proceedings paper
    assert works[2].publication_types == ["article", "proceedings-article"]
    assert works[0].publication_date == dt.date(2022, 11, 30)


def test_raw_author_name_is_the_fallback() -> None:
    raw = copy.deepcopy(load("citing_json/results_page_1.json")["results"][2])
    raw["authorships"][0]["author"]["display_name"] = None
    raw["authorships"][0]["raw_author_name"] = "Breuer, Timo"
    assert from_openalex(raw).authors[0] == "Breuer T"


def test_real_pages_through_the_client_stop_at_meta_count(fake: FakeOpenAlex, sleeps: list[float]) -> None:
    fake.inject(Response(200, load("citing_json/results_page_1.json")), path_contains="/works")
    fake.inject(Response(200, load("citing_json/results_page_2.json")), path_contains="/works")
    result = client_for(fake, sleeps).fetch_citing(
        seed_review(), KnownWorks(), cached={"openalex_review_id": "W3046863325"})
    assert len(result.works) == 3 and result.listed == 3
    assert len(fake.requests) == 1  # meta.count reached: the empty terminating page is never asked for
    assert result.markers["openalex_review_id"] == "W3046863325"


def test_follows_next_cursor_to_the_null_terminator(fake: FakeOpenAlex, sleeps: list[float]) -> None:
    first = load("citing_json/results_page_1.json")
    first["meta"]["count"] = 4  # an overstated count: the walk must still end
    fake.inject(Response(200, first), path_contains="/works")
    fake.inject(Response(200, load("citing_json/results_page_2.json")), path_contains="/works")
    result = client_for(fake, sleeps).fetch_citing(
        seed_review(), KnownWorks(), cached={"openalex_review_id": "W3046863325"})
    assert len(result.works) == 3
    assert [r.param("cursor") for r in fake.requests] == ["*", first["meta"]["next_cursor"]]


# -- the client against the fake ------------------------------------------------------

def test_resolves_the_review_then_pages(fake: FakeOpenAlex, papers: list[Paper], sleeps: list[float]) -> None:
    client = client_for(fake, sleeps, per_page=7)
    result = client.fetch_citing(seed_review(), KnownWorks())

    resolve, *pages = fake.requests
    assert resolve.path == f"/works/doi:{REVIEW['doi']}"
    assert len(pages) == 3  # 7 + 7 + 6, then meta.count is reached
    assert [r.param("cursor") for r in pages][0] == "*"
    assert len({r.param("cursor") for r in pages}) == 3
    for request in fake.requests:
        assert request.param("api_key") == KEY and request.param("mailto") == EMAIL
        assert request.headers["User-Agent"] == settings.USER_AGENT
    for request in pages:
        assert request.path == "/works"
        assert request.param("filter") == f"cites:{REVIEW_ID}"
        assert request.param("per_page") == "7"
        assert set((request.param("select") or "").split(",")) == set(SELECT_FIELDS)

    ids = [w.openalex_id for w in result.works]
    assert len(ids) == len(set(ids)) == 20
    assert set(ids) == {p.openalex_id for p in papers}
    assert result.listed == 20
    assert result.markers == {"openalex_review_id": REVIEW_ID, "openalex_review_key": f"doi:{REVIEW['doi']}"}
    assert result.query["filter"] == f"cites:{REVIEW_ID}"
    assert KEY not in json.dumps(result.query) and EMAIL not in json.dumps(result.query)
    assert all(KEY not in r.url for r in client.http.log.records)

    xu = next(w for w in result.works if w.pmid == "39991198")
    assert xu.pmcid == "PMC11842349"
    assert xu.doi == "10.3389/fpsyg.2024.1470758"
    assert xu.authors[:2] == ["Xu R", "Jing M"]
    assert xu.journal == "Front Psychol"
    assert xu.source_ids == {"openalex": xu.openalex_id}


def test_cached_review_id_skips_resolution(fake: FakeOpenAlex, sleeps: list[float]) -> None:
    result = client_for(fake, sleeps, per_page=7).fetch_citing(
        seed_review(), KnownWorks(), cached={"openalex_review_id": REVIEW_ID})
    assert [r.path for r in fake.requests] == ["/works"] * 3
    assert len(result.works) == 20
    assert result.markers["openalex_review_id"] == REVIEW_ID


def test_cached_review_id_of_another_doi_is_not_used(fake: FakeOpenAlex, sleeps: list[float]) -> None:
    # The config's DOI changed since the last run: the old W-id must not be trusted.
    cached = {"openalex_review_id": "W999", "openalex_review_key": "doi:10.1000/old"}
    result = client_for(fake, sleeps).fetch_citing(seed_review(), KnownWorks(), cached=cached)
    assert fake.requests[0].path == f"/works/doi:{REVIEW['doi']}"
    assert result.markers["openalex_review_id"] == REVIEW_ID
    assert len(result.works) == 20


def test_missing_api_key_skips_without_a_request(fake: FakeOpenAlex, sleeps: list[float]) -> None:
    with pytest.raises(SourceSkipped) as caught:
        client_for(fake, sleeps, api_key=None).fetch_citing(seed_review(), KnownWorks())
    assert str(caught.value) == ("openalex: no API key configured; set the api_key in the openalex "
                                 "connection's password or extra")
    assert fake.requests == []


def test_rejected_key_fails_without_retrying(fake: FakeOpenAlex, sleeps: list[float]) -> None:
    fake.api_keys = {"the-right-key"}
    with pytest.raises(SourceError) as caught:
        client_for(fake, sleeps).fetch_citing(seed_review(), KnownWorks())
    assert caught.value.status == 403
    assert len(fake.requests) == 1
    assert KEY not in str(caught.value)


def test_review_unknown_to_openalex(fake: FakeOpenAlex, sleeps: list[float]) -> None:
    with pytest.raises(SourceError, match="not in OpenAlex") as caught:
        client_for(fake, sleeps).fetch_citing(seed_review(doi="10.9999/unknown"), KnownWorks())
    assert caught.value.status == 404


def test_retry_after_429_mid_pagination(fake: FakeOpenAlex, papers: list[Paper], sleeps: list[float]) -> None:
    fake.inject(Response(429, {"error": "Too Many Requests", "message": "Rate limit exceeded"},
                         headers={"Retry-After": "7"}), path_contains="/works", after=2)
    client = client_for(fake, sleeps, per_page=7)
    result = client.fetch_citing(seed_review(), KnownWorks())
    assert 7.0 in sleeps
    assert client.http.log.status_counts() == {"200": 4, "429": 1}
    pages = fake.requests_to("/works")[1:]
    assert len(pages) == 4  # 3 pages + the throttled retry of the second
    assert pages[1].param("cursor") == pages[2].param("cursor") != "*"
    ids = [w.openalex_id for w in result.works]
    assert len(ids) == len(set(ids)) == len(papers)


def test_max_records_caps_the_walk(fake: FakeOpenAlex, sleeps: list[float]) -> None:
    cached = {"openalex_review_id": REVIEW_ID}
    result = client_for(fake, sleeps, per_page=7).fetch_citing(seed_review(), KnownWorks(), max_records=10,
                                                                cached=cached)
    assert len(result.works) == 10 and len(fake.requests) == 2
    assert result.listed == 20

    fake.clear()
    result = client_for(fake, sleeps, per_page=7).fetch_citing(seed_review(), KnownWorks(), max_records=5,
                                                                cached=cached)
    assert len(result.works) == 5
    assert [r.param("per_page") for r in fake.requests] == ["5"]


def test_renamed_field_is_schema_drift(fake: FakeOpenAlex, sleeps: list[float]) -> None:
    def rename(page: dict[str, Any]) -> dict[str, Any]:
        for work in page["results"]:
            work["authors"] = work.pop("authorships")
        return page

    fake.page_hook = rename
    with pytest.raises(RawContractError) as caught:
        client_for(fake, sleeps, per_page=7).fetch_citing(seed_review(), KnownWorks())
    assert caught.value.field_path == "results[].authorships"
    assert "results[].authorships" in str(caught.value)


def test_serves_only_visible_citers_of_each_review(fake: FakeOpenAlex, sleeps: list[float]) -> None:
    a, b, c, hidden, retracted = synthetic_corpus(5, seed=5)
    hidden.visible_in = {"pubmed", "europepmc"}
    retracted.retracted = True
    fake.papers = [a, b, c, hidden, retracted]
    fake.review_works = {"W111": [a, b, hidden, retracted], "W222": [c]}
    fake.aliases = {**fake.aliases, "pmid:11111111": "W111", "doi:10.5555/second": "W222"}
    client = client_for(fake, sleeps, per_page=2)

    # No DOI configured: the review is resolved by its PMID.
    first = client.fetch_citing(seed_review(id="first", doi=None, pmid="11111111"), KnownWorks())
    second = client.fetch_citing(seed_review(id="second", doi="10.5555/second", pmid=None), KnownWorks())

    assert fake.requests[0].path == "/works/pmid:11111111"
    assert first.markers == {"openalex_review_id": "W111", "openalex_review_key": "pmid:11111111"}
    assert [w.openalex_id for w in first.works] == [a.openalex_id, b.openalex_id, retracted.openalex_id]
    assert [w.is_retracted for w in first.works] == [False, False, True]
    assert [w.pmcid for w in first.works] == [a.pmcid, b.pmcid, retracted.pmcid]
    assert second.markers["openalex_review_id"] == "W222"
    assert [w.doi for w in second.works] == [c.doi]


def test_doi_with_url_special_characters_is_escaped(fake: FakeOpenAlex, sleeps: list[float]) -> None:
    doi = "10.1002/(sici)1097-0258#a;b?c"
    fake.aliases = {f"doi:{doi}": REVIEW_ID}
    result = client_for(fake, sleeps).fetch_citing(seed_review(doi=doi), KnownWorks())
    assert fake.requests[0].path == "/works/doi:10.1002/(sici)1097-0258%23a%3Bb%3Fc"
    assert result.markers["openalex_review_id"] == REVIEW_ID
