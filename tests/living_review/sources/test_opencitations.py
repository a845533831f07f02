from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from include.living_review import settings
from include.living_review.config import ReviewConfig
from include.living_review.sources.http import SourceError
from include.living_review.sources.base import KnownWorks, RawContractError, check_raw_contract
from include.living_review.sources.opencitations import (OpenCitationsClient, dedupe, from_opencitations,
                                                         parse_pids)
from tests.fakes.corpus import REVIEW, seed_corpus
from tests.fakes.opencitations import FakeOpenCitations, omid_for
from tests.fakes.server import Response

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "opencitations"
# The documented v2 sample output (opencitations/oc_api src/api/index_v2.hf), including
# its second DOI on one entity; no real v2 response has been recorded.
V2_SAMPLE = [
    {"oci": "06101801781-06180334099", "citing": "omid:br/06101801781 doi:10.7717/peerj-cs.421 pmid:33817056",
     "cited": "omid:br/06180334099 doi:10.1108/jd-12-2013-0166", "creation": "2021-03-10",
     "timespan": "P6Y0M1D", "journal_sc": "no", "author_sc": "no"},
    {"oci": "06101802023-06180334099",
     "citing": "omid:br/06101802023 doi:10.7717/peerj-cs.163 pmid:33816816 doi:10.7287/peerj.preprints.26727v1",
     "cited": "omid:br/06180334099 doi:10.1108/jd-12-2013-0166", "creation": "2019-11-25",
     "timespan": "P4Y8M16D", "journal_sc": "yes", "author_sc": "no"},
]


def cassette_rows() -> list[dict]:
    recorded = yaml.safe_load((FIXTURES / "oc_coci_cites.yml").read_text(encoding="utf-8"))
    return json.loads(recorded["http_interactions"][0]["response"]["body"]["string"])


def review(**overrides) -> ReviewConfig:
    fields = {"id": REVIEW["id"], "title": REVIEW["title"], "doi": REVIEW["doi"], "pmid": REVIEW["pmid"],
              "sources": ["opencitations"], **overrides}
    return ReviewConfig(**fields)


@pytest.fixture
def papers():
    return seed_corpus()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client(fake, sleeps, **kwargs) -> OpenCitationsClient:
    return OpenCitationsClient(fake.url, sleep=sleeps.append, **kwargs)


# -- mapper, on recorded and documented payloads ---------------------------------------

def test_recorded_v1_rows_map_to_dois_with_partial_dates():
    rows = cassette_rows()
    check_raw_contract("opencitations", rows)
    works = {w.doi: w for w in map(from_opencitations, rows)}
    assert len(works) == len(rows) == 20
    year_only = works["10.1145/3197026.3197050"]  # creation "2018"
    assert (year_only.publication_year, year_only.publication_date) == (2018, dt.date(2018, 1, 1))
    month_only = works["10.1057/s41275-017-0070-x"]  # creation "2017-08"
    assert (month_only.publication_year, month_only.publication_date) == (2017, dt.date(2017, 8, 1))
    assert works["10.3233/ds-190016"].publication_date == dt.date(2019, 4, 10)
    # v1 OCIs are DOI-encoded ("020…"), so no OMID can be read from them.
    assert all(w.omid is None and w.title is None for w in works.values())
    assert works["10.1142/s021964921850034x"].source_ids == {"opencitations": "10.1142/s021964921850034x"}
    assert json.loads(year_only.raw)["oci"].startswith("0200101040536")


def test_documented_v2_rows_map_all_ids_and_take_the_first_doi():
    first, second = (from_opencitations(r) for r in V2_SAMPLE)
    assert (first.omid, first.doi, first.pmid) == ("br/06101801781", "10.7717/peerj-cs.421", "33817056")
    assert first.sources == ["opencitations"] and first.source_ids == {"opencitations": "br/06101801781"}
    assert first.publication_date == dt.date(2021, 3, 10)
    assert (second.doi, second.pmid) == ("10.7717/peerj-cs.163", "33816816")
    assert parse_pids(V2_SAMPLE[1]["citing"])["doi"] == ["10.7717/peerj-cs.163", "10.7287/peerj.preprints.26727v1"]


def test_empty_citing_string_falls_back_to_the_omid_in_the_oci():
    # oc_api's indexapi_v2 leaves "citing" and "creation" empty when Meta lacks the entity.
    work = from_opencitations({"oci": "06101801781-06180334099", "citing": "", "cited": "", "creation": ""})
    assert (work.omid, work.doi, work.publication_year, work.publication_date) == ("br/06101801781", None, None, None)


def test_dedupe_merges_rows_sharing_any_id():
    a = from_opencitations({"oci": "0611-0699", "citing": "omid:br/0611 doi:10.1000/a", "creation": "2020"})
    b = from_opencitations({"oci": "0612-0699", "citing": "omid:br/0612 doi:10.1000/a pmid:5", "creation": "2020"})
    c = from_opencitations({"oci": "0613-0699", "citing": "omid:br/0613 doi:10.1000/c", "creation": "2020"})
    merged = dedupe([a, b, c])
    assert [w.doi for w in merged] == ["10.1000/a", "10.1000/c"]
    assert (merged[0].omid, merged[0].pmid) == ("br/0611", "5")


# -- client against the fake -----------------------------------------------------------

def test_fetch_citing_lists_visible_citers_in_one_request(papers, sleeps):
    papers[0].visible_in.discard("opencitations")
    with FakeOpenCitations(papers) as fake:
        result = client(fake, sleeps, api_key="oc-token").fetch_citing(review(), KnownWorks())
    assert len(fake.requests) == 1
    sent = fake.requests[0]
    assert sent.path == f"/index/v2/citations/doi:{REVIEW['doi']}"
    assert sent.headers["authorization"] == "oc-token"
    assert sent.headers["User-Agent"] == settings.USER_AGENT
    assert result.source == "opencitations" and result.listed == 19
    assert {w.doi for w in result.works} == {p.doi.lower() for p in papers[1:]}
    by_doi = {w.doi: w for w in result.works}
    for index, paper in enumerate(papers[1:]):
        work = by_doi[paper.doi.lower()]
        assert (work.pmid, work.omid, work.title, work.publication_year) == (paper.pmid, paper.omid, None, paper.year)
        # The fake gives full, month and year precision in turn.
        assert work.publication_date.day == (paper.day if index % 3 == 0 else 1)
    assert result.query == {"citations": f"doi:{REVIEW['doi']}"}


def test_no_authorization_header_without_a_token(papers, sleeps):
    with FakeOpenCitations(papers) as fake:
        client(fake, sleeps).fetch_citing(review(), KnownWorks())
    assert "authorization" not in {k.lower() for k in fake.requests[0].headers}


def test_repeated_citing_entries_are_deduplicated(papers, sleeps):
    with FakeOpenCitations(papers, duplicate_rows=4) as fake:
        result = client(fake, sleeps).fetch_citing(review(), KnownWorks())
    assert result.listed == 24
    assert len(result.works) == 20 and len({w.omid for w in result.works}) == 20
    assert result.markers["duplicates"] == 4


def test_pmid_is_used_when_the_review_has_no_doi(papers, sleeps):
    with FakeOpenCitations(papers) as fake:
        result = client(fake, sleeps).fetch_citing(review(doi=None), KnownWorks())
    assert fake.requests[0].path == f"/index/v2/citations/pmid:{REVIEW['pmid']}"
    assert len(result.works) == 20


def test_each_review_gets_its_own_citers(papers, sleeps):
    other = "10.1000/other-review"
    with FakeOpenCitations(papers, cited_by={REVIEW["doi"]: papers[:3], other: papers[3:5]}) as fake:
        oc = client(fake, sleeps)
        first = oc.fetch_citing(review(), KnownWorks())
        second = oc.fetch_citing(review(id="other-review", doi=other, pmid=None), KnownWorks())
        rows = next(oc.pages(f"omid:{omid_for(other)}"))
    assert [w.pmid for w in first.works] == [p.pmid for p in papers[:3]]
    assert [w.pmid for w in second.works] == [p.pmid for p in papers[3:5]]
    assert len(rows) == 2


def test_max_records_caps_the_works(papers, sleeps):
    with FakeOpenCitations(papers) as fake:
        result = client(fake, sleeps).fetch_citing(review(), KnownWorks(), max_records=5)
    assert len(result.works) == 5 and result.listed == 20 and result.markers["truncated"] is True
    assert len(fake.requests) == 1


def test_a_503_is_retried(papers, sleeps):
    with FakeOpenCitations(papers) as fake:
        fake.inject(Response(503, "<html>Service Unavailable</html>", content_type="text/html",
                             headers={"Retry-After": "3"}))
        result = client(fake, sleeps).fetch_citing(review(), KnownWorks())
    assert len(fake.requests) == 2 and 3.0 in sleeps and len(result.works) == 20


def test_raw_contract_drift_names_the_field(papers, sleeps):
    with FakeOpenCitations(papers) as fake:
        fake.inject(Response(200, [{"oci": "061-062", "citing_pids": "omid:br/061"}]))
        with pytest.raises(RawContractError) as caught:
            client(fake, sleeps).fetch_citing(review(), KnownWorks())
    assert caught.value.field_path == "[].citing"
    assert "'[].citing'" in str(caught.value)


def test_an_unknown_review_has_no_citations_and_a_bad_id_fails(papers, sleeps):
    with FakeOpenCitations(papers) as fake:
        oc = client(fake, sleeps)
        assert oc.citations("doi:10.1000/unknown") == []
        with pytest.raises(SourceError) as caught:
            oc.citations("isbn:123")
    assert caught.value.status == 400
