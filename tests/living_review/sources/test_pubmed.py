"""PubMed parsing on real recorded E-utilities responses, offline, plus the client over a fake."""
from __future__ import annotations

import datetime as dt
import gc
import socket
from pathlib import Path

import pytest
import yaml

from include.living_review.config import ReviewConfig
from include.living_review.sources.http import BodyError, RetryPolicy, SourceError
from include.living_review.sources.base import KnownWorks
from include.living_review.sources.pubmed import CITEDIN, PubMedClient, entrez_read, from_pubmed
from tests.fakes.corpus import REVIEW, seed_corpus
from tests.fakes.eutils import FakeEutils
from tests.fakes.server import Response

FIXTURES = Path(__file__).parents[2] / "fixtures" / "pubmed"
REVIEW_CONF = ReviewConfig(id="peer-support-mental-health", title=REVIEW["title"], doi=REVIEW["doi"],
                           pmid=REVIEW["pmid"], pmcid=REVIEW["pmcid"], sources=["pubmed"])


def cassette_body(name: str, index: int = 0) -> bytes:
    interactions = yaml.safe_load((FIXTURES / name).read_text())["interactions"]
    return interactions[index]["response"]["body"]["string"].encode()


def articles(name: str) -> list[dict]:
    return list(entrez_read((FIXTURES / name).read_bytes(), name)["PubmedArticle"])


@pytest.fixture
def no_network(monkeypatch):
    """Parsing must never fetch a DTD: any socket connect fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access during parsing")
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_season_date_and_missing_doi(no_network):
    first, second = (from_pubmed(a) for a in articles("pubmed1.xml"))
    assert first.pmid == "12091962"
    assert first.doi is None and first.pmcid is None
    assert first.publication_year == 1990
    assert first.publication_date == dt.date(1990, 3, 1)  # Season "Spring" -> March
    assert "Review" in first.publication_types
    assert second.doi == "10.1016/0005-2795(76)90109-4"
    assert second.publication_date == dt.date(1976, 9, 28)
    assert second.authors == ["Strekas TC"]


def test_inline_html_title_and_comments_corrections_ids(no_network):
    (work,) = (from_pubmed(a) for a in articles("pubmed4.xml"))
    assert work.title == "Leucocyte telomere length, genetic variants at the TERT gene region and risk of pancreatic cancer."
    assert work.pmid == "27797938"  # not one of the ~48 CommentsCorrections PMIDs
    assert work.pmcid == "PMC5442267"
    assert work.doi == "10.1136/gutjnl-2016-312510"
    assert work.publication_date == dt.date(2016, 10, 21)  # e-pub before the June 2017 issue
    assert work.publication_year == 2017
    assert work.journal_abbrev == "Gut"
    assert work.authors[:2] == ["Bao Y", "Prescott J"]


def test_reference_list_ids_never_leak(no_network):
    (work,) = (from_pubmed(a) for a in articles("pubmed7.xml"))
    assert work.pmid == "29963580"
    assert work.doi == "10.1117/1.jmi.5.2.026002"
    assert work.pmcid == "PMC6022861"
    assert work.authors[-1] == "Canadian Respiratory Research Network"  # collective name as given


def test_recorded_efetch_cassette_with_bold_abstract_and_references(no_network):
    record = entrez_read(cassette_body("test_eutils_xmlfacades_pubmedarticle_29915538"), "efetch")
    (work,) = (from_pubmed(a) for a in record["PubmedArticle"])
    assert (work.pmid, work.doi, work.pmcid) == ("29915538", "10.3389/fphar.2018.00576", "PMC5994433")
    assert "<" not in work.title


def test_recorded_elink_citedin_block_is_filtered(no_network):
    record = entrez_read(cassette_body("test_elink"), "elink")
    dbs = {db["LinkName"]: [link["Id"] for link in db["Link"]] for db in record[0]["LinkSetDb"]}
    assert CITEDIN in dbs and len(dbs) > 1
    citing = dbs[CITEDIN]
    assert len(citing) == 8
    assert citing == sorted(citing, key=int, reverse=True)


def test_translated_title_flag():
    (paper,) = [p for p in seed_corpus() if p.pmid == "39694049"]
    with FakeEutils([paper]) as fake:
        result = PubMedClient(fake.url).fetch_citing(REVIEW_CONF, KnownWorks())
    (work,) = result.works
    assert work.title_is_translated is True
    assert work.title == "Effects of Peer Support Work in Psychiatry: A Systematic Literature Review of Reviews."


@pytest.mark.parametrize("name", ["esummary8.xml", "esearch8.xml"])
def test_error_bodies_with_http_200_are_errors(name, no_network):
    with pytest.raises(BodyError, match="E-utilities error in HTTP 200 body"):
        entrez_read((FIXTURES / name).read_bytes(), name)


def test_unknown_newer_dtd_parses_offline(no_network):
    body = (FIXTURES / "pubmed1.xml").read_bytes().replace(b"pubmed_250101", b"pubmed_290101")
    assert len(entrez_read(body, "efetch")["PubmedArticle"]) == 2


@pytest.mark.parametrize("payload", [
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><eLinkResult>&x;</eLinkResult>',
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    b"<eLinkResult>&lol2;</eLinkResult>",
])
def test_entity_declarations_are_refused(payload, no_network):
    with pytest.raises(SourceError, match="declares XML entities"):
        entrez_read(payload, "elink")


def test_client_fetches_only_unknown_pmids_in_batches():
    papers = seed_corpus()
    known = KnownWorks(pmids=frozenset(p.pmid for p in papers[:15]))
    with FakeEutils(papers) as fake:
        client = PubMedClient(fake.url, email="dev@example.org", batch_size=2)
        result = client.fetch_citing(REVIEW_CONF, known)
    assert result.listed == 20
    efetches = [r for r in fake.requests if r.path.endswith("efetch.fcgi")]
    assert len(efetches) == 3  # 5 unknown PMIDs in batches of 2
    assert all(r.method == "POST" and r.param("tool") == "living-review" for r in efetches)
    assert result.metadata_requests == 3
    assert sorted(w.pmid for w in result.works if w.title) == sorted(p.pmid for p in papers[15:])
    # known works come back id-only, so the merge keeps the previous snapshot's metadata
    assert sum(1 for w in result.works if w.title is None) == 15
    for work in result.works:
        assert work.pmid != REVIEW["pmid"] and work.doi != REVIEW["doi"]


def test_known_works_are_probed_by_modification_date_and_only_changed_ones_fetched():
    papers = seed_corpus()
    week = dt.date(2026, 11, 27), dt.date(2026, 12, 4)
    for paper in papers:
        paper.modified = dt.date(2026, 1, 1)
    papers[3].modified = dt.date(2026, 12, 1)  # e.g. PubMed added "Retracted Publication"
    papers[3].retracted = True
    gone = papers[19]
    gone.modified = dt.date(2026, 12, 4)  # changed, but PubMed's cited-by no longer lists it
    known = KnownWorks(pmids=frozenset(p.pmid for p in papers[:15] + [gone]), since=week[0], until=week[1])
    with FakeEutils(papers, review_pmids={REVIEW["pmid"]: papers[:19]}) as fake:
        client = PubMedClient(fake.url, batch_size=200, probe_batch=10)
        result = client.fetch_citing(REVIEW_CONF, known)
    searches = [r for r in fake.requests if r.path.endswith("esearch.fcgi")]
    assert len(searches) == 2  # 16 known PMIDs, 10 per esearch
    assert all(r.method == "POST" and r.param("datetype") == "mdat" and r.param("mindate") == "2026/11/27"
               and r.param("maxdate") == "2026/12/04" for r in searches)
    assert result.probe == {"known": 16, "since": "2026-11-27", "until": "2026-12-04", "requests": 2, "changed": 2}
    (efetch,) = [r for r in fake.requests if r.path.endswith("efetch.fcgi")]
    assert sorted(efetch.param("id").split(",")) == sorted([p.pmid for p in papers[15:19]] + [papers[3].pmid,
                                                                                             gone.pmid])
    by_pmid = {w.pmid: w for w in result.works}
    assert by_pmid[papers[3].pmid].is_retracted and not by_pmid[papers[3].pmid].probe  # listed: it reports
    assert by_pmid[gone.pmid].title and by_pmid[gone.pmid].probe  # not listed: refreshed, not reported
    assert by_pmid[papers[0].pmid].title is None  # unchanged known works are not fetched again


def test_a_first_run_or_nothing_known_costs_no_probe():
    with FakeEutils(seed_corpus()) as fake:
        result = PubMedClient(fake.url).fetch_citing(REVIEW_CONF, KnownWorks(since=None, until=dt.date(2026, 12, 4)))
    assert result.probe is None and not [r for r in fake.requests if r.path.endswith("esearch.fcgi")]


def test_parsed_pages_are_freed_while_the_collector_is_paused(monkeypatch):
    """Mapping pauses the cyclic collector; each parsed page must still be freed once mapped."""
    from include.living_review.sources import pubmed

    alive: list[int] = []

    def counting(article):
        if not alive or len(alive) % 4 == 0:  # once per page of 4
            alive.append(sum(1 for o in gc.get_objects() if type(o).__name__ == "DictionaryElement"
                             and getattr(o, "tag", None) == "PubmedArticle"))
        else:
            alive.append(alive[-1])
        return from_pubmed(article)

    monkeypatch.setattr(pubmed, "from_pubmed", counting)
    with FakeEutils(seed_corpus()) as fake:
        gc.collect()
        result = PubMedClient(fake.url, batch_size=4).fetch_citing(REVIEW_CONF, KnownWorks())
    assert gc.isenabled()
    assert len(result.works) == 20
    assert max(alive) <= 4, alive  # the page being mapped, not every page so far


def test_html_error_page_is_retried_then_fails_with_url():
    with FakeEutils(seed_corpus()) as fake:
        fake.inject(Response(200, "<html><body>Service unavailable</body></html>", content_type="text/html"),
                    path_contains="elink", times=10)
        client = PubMedClient(fake.url, api_key="secret-key", retry=RetryPolicy(max_tries=3), sleep=lambda s: None)
        with pytest.raises(SourceError) as err:
            client.cited_by(REVIEW["pmid"])
    assert "HTML page" in str(err.value) and "elink.fcgi" in str(err.value)
    assert "secret-key" not in str(err.value)
    assert len(fake.requests) == 3


def test_elink_error_body_is_not_zero_results():
    with FakeEutils(seed_corpus()) as fake:
        fake.inject(Response(200, '<?xml version="1.0"?><eLinkResult><ERROR>Invalid db name</ERROR></eLinkResult>',
                             content_type="text/xml"), path_contains="elink")
        with pytest.raises(BodyError, match="Invalid db name"):
            PubMedClient(fake.url, sleep=lambda s: None).cited_by(REVIEW["pmid"])
