from __future__ import annotations

import copy
import datetime as dt
import gzip
import json
from pathlib import Path

import pytest
import yaml

from include.living_review import settings
from include.living_review.config import ReviewConfig
from include.living_review.sources.http import SourceError
from include.living_review.sources.base import KnownWorks, RawContractError, SourceSkipped, check_raw_contract
from include.living_review.sources.crossref import MAX_CONSECUTIVE_FAILURES, CrossrefClient, from_crossref
from tests.fakes.corpus import REVIEW, seed_corpus
from tests.fakes.crossref import FakeCrossref, notice_doi
from tests.fakes.server import FakeApi, Request, Response

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "crossref"


def habanero_envelope() -> dict:
    """The gzip ``!!binary`` body of the habanero cassette, decoded."""
    recorded = yaml.safe_load((FIXTURES / "test_works_with_one_id.yaml").read_text(encoding="utf-8"))
    return json.loads(gzip.decompress(recorded["interactions"][0]["response"]["body"]["string"]))


def rcrossref_interactions(name: str) -> list[dict]:
    return yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))["http_interactions"]


class CassetteCrossref(FakeApi):
    """Replays an R vcr cassette: each recorded URI path answers with its recorded reply."""

    name = "crossref-cassette"

    def __init__(self, interactions: list[dict], **kwargs):
        super().__init__(**kwargs)
        self.replies = {}
        for interaction in interactions:
            path = "/" + interaction["request"]["uri"].split("://", 1)[1].split("/", 1)[1]
            answer = interaction["response"]
            self.replies[path] = Response(int(answer["status"]["status_code"]), answer["body"]["string"].encode(),
                                          content_type=answer["headers"]["content-type"])
        self.missing = next(r for r in self.replies.values() if r.status == 404)

    def handle(self, request: Request) -> Response:
        return self.replies.get(request.path, self.missing)


@pytest.fixture
def papers():
    return seed_corpus()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client(fake, sleeps, **kwargs) -> CrossrefClient:
    return CrossrefClient(fake.url, sleep=sleeps.append, **kwargs)


# -- mapper, on recorded payloads ------------------------------------------------------

def test_gzip_cassette_maps_every_field_and_reads_updated_by():
    envelope = habanero_envelope()
    check_raw_contract("crossref", envelope)
    message = envelope["message"]
    work = from_crossref(message)
    assert work.doi == "10.1371/journal.pone.0033693"
    assert work.title == ("Methylphenidate Exposure Induces Dopamine Neuron Loss and Activation of Microglia "
                          "in the Basal Ganglia of Mice")
    assert work.authors == ["Sadasivan S", "Pond BB", "Pani AK", "Qu C", "Jiao Y", "Smeyne RJ"]
    assert (work.journal, work.journal_abbrev) == ("PLoS ONE", "PLoS ONE")
    assert (work.publication_year, work.publication_date) == (2012, dt.date(2012, 3, 21))
    assert (work.volume, work.issue, work.pages) == ("7", "3", "e33693")
    assert (work.publication_types, work.language) == (["journal-article"], "eng")  # ISO 639-1 "en" normalized to PubMed's vocabulary
    assert work.sources == ["crossref"] and work.source_ids == {"crossref": "10.1371/journal.pone.0033693"}
    # The recorded updated-by is a correction: the work still stands...
    assert message["updated-by"][0]["type"] == "correction" and work.is_retracted is False
    # ...and the same pointer typed "retraction" flags it.
    retracted = copy.deepcopy(message)
    retracted["updated-by"][0]["type"] = "retraction"
    assert from_crossref(retracted).is_retracted is True


def test_a_retraction_notice_is_flagged_by_update_to():
    message = copy.deepcopy(habanero_envelope()["message"])
    del message["updated-by"]
    message["update-to"] = [{"DOI": "10.1371/journal.pone.0000001", "type": "retraction", "label": "Retraction"}]
    assert from_crossref(message).is_retracted is True


def test_subtitle_is_joined_and_unknown_dates_are_null():
    message = copy.deepcopy(habanero_envelope()["message"])
    message["subtitle"] = ["A <i>Mouse</i> Study"]
    for key in ("published", "published-online"):
        del message[key]
    message["issued"] = {"date-parts": [[None]]}
    work = from_crossref(message)
    assert work.title.endswith("in the Basal Ganglia of Mice: A Mouse Study")
    assert (work.publication_year, work.publication_date) == (None, None)


def test_plain_json_cassette_without_language_and_with_diacritics():
    body = rcrossref_interactions("cr_works_empty_funder.yml")[0]["response"]["body"]["string"]
    envelope = json.loads(body)
    check_raw_contract("crossref", envelope)
    work = from_crossref(envelope["message"])
    assert work.doi == "10.3389/fgene.2017.00147"
    assert work.authors == ["Pánek J", "Modrák M", "Schwarz M"]
    assert (work.journal, work.journal_abbrev) == ("Frontiers in Genetics", "Front. Genet.")
    assert (work.language, work.issue, work.pages, work.is_retracted) == (None, None, None, False)
    assert work.publication_date == dt.date(2017, 10, 10)


def test_recorded_404_is_not_found_and_the_batch_goes_on(sleeps):
    with CassetteCrossref(rcrossref_interactions("cr_works_warns_well.yml")) as fake:
        cr = client(fake, sleeps, email="team@example.org")
        works, report = cr.enrich(["10.1038/nnano.2014.279", "10.1234/blblbl", "blblbl"])
    assert [w.doi for w in works] == ["10.1038/nnano.2014.279"]
    # "published" (earliest) wins over the later, month-precision "published-print".
    assert (works[0].publication_year, works[0].publication_date) == (2014, dt.date(2014, 11, 10))
    assert works[0].authors == ["Kuschel T", "Reiss G"]
    assert report["not_found"] == ["10.1234/blblbl"] and report["invalid"] == ["blblbl"]
    # the cassette knows no list request: its 404 sends the batch's DOIs one by one
    assert report["failed"] == {} and report["requests"] == 3 and len(fake.requests) == 3


# -- client against the fake -----------------------------------------------------------

def test_enrich_asks_in_polite_batches_of_doi_filters(papers, sleeps):
    dois = [p.doi for p in papers[:6]]
    with FakeCrossref(papers) as fake:
        cr = client(fake, sleeps, email="team@example.org")
        cr.batch_size = 4
        works, report = cr.enrich(dois + [dois[0].upper()])
    assert len(fake.requests) == report["requests"] == 2 and report["found"] == report["batched"] == 6
    assert all(r.path == "/works" and r.param("mailto") == "team@example.org" for r in fake.requests)
    assert [r.param("filter") for r in fake.requests] == [",".join(f"doi:{d.lower()}" for d in dois[:4]),
                                                          ",".join(f"doi:{d.lower()}" for d in dois[4:])]
    assert fake.requests[0].param("rows") == "4" and "reference" not in fake.requests[0].param("select").split(",")
    by_doi = {w.doi: w for w in works}
    for paper in papers[:6]:
        work = by_doi[paper.doi.lower()]
        assert (work.journal, work.journal_abbrev) == (paper.journal, paper.journal_abbrev)
        assert work.publication_date == dt.date(paper.year, paper.month, paper.day)
        assert work.authors == [f"{f} {i}" if i else f for f, i in paper.authors]
        assert (work.volume, work.issue, work.pages) == (paper.volume, paper.issue, paper.pages)
        # The reference list holds the review's DOI: it must not leak into the work.
        assert work.doi != REVIEW["doi"] and work.pmid is None
    assert report["not_found"] == [] and report["skipped"] == 0


def test_polite_pool_rate_needs_an_email():
    assert CrossrefClient("http://127.0.0.1:9").http.throttle.interval == pytest.approx(1 / (5 * settings.RATE_SAFETY))
    polite = CrossrefClient("http://127.0.0.1:9", email="team@example.org")
    assert polite.http.throttle.interval == pytest.approx(1 / (10 * settings.RATE_SAFETY))
    assert polite.params == {"mailto": "team@example.org"}


def test_anonymous_requests_carry_no_mailto(papers, sleeps):
    with FakeCrossref(papers) as fake:
        client(fake, sleeps).enrich([papers[0].doi])
    assert "mailto" not in fake.requests[0].params


def test_retracted_paper_and_its_notice(papers, sleeps):
    papers[2].retracted = True
    with FakeCrossref(papers) as fake:
        works, report = client(fake, sleeps).enrich([papers[1].doi, papers[2].doi, notice_doi(papers[2])])
    flags = {w.doi: w.is_retracted for w in works}
    assert flags == {papers[1].doi.lower(): False, papers[2].doi.lower(): True, notice_doi(papers[2]).lower(): True}
    assert json.loads(works[1].raw)["updated-by"][0]["DOI"] == notice_doi(papers[2])


def test_dois_are_quoted_in_the_path(papers, sleeps):
    odd = "10.1002/(SICI)1097-4571(199806)49:8<693::AID-ASI4>3.0.CO;2-O"
    papers[0].doi = odd
    with FakeCrossref(papers) as fake:
        fake.inject(Response(400, {"status": "failed"}))  # the list request is refused: the single GET follows
        works, _ = client(fake, sleeps).enrich([odd])
        assert works[0].doi == odd.lower()
    raw_path = fake.requests[-1].path
    assert "%3C693%3A%3A" in raw_path and "<" not in raw_path


def test_a_doi_with_a_comma_is_asked_on_its_own(papers, sleeps):
    papers[0].doi = "10.1000/a,b"
    with FakeCrossref(papers) as fake:
        works, report = client(fake, sleeps).enrich([papers[0].doi, papers[1].doi])
    assert sorted(w.doi for w in works) == sorted([papers[0].doi, papers[1].doi.lower()])
    assert [r.path for r in fake.requests] == ["/works", "/works/10.1000/a%2Cb"]
    assert fake.requests[0].param("filter") == f"doi:{papers[1].doi.lower()}"


def test_hidden_papers_are_not_found(papers, sleeps):
    papers[0].visible_in.discard("crossref")
    with FakeCrossref(papers) as fake:
        works, report = client(fake, sleeps).enrich([papers[0].doi, papers[1].doi])
    assert report["not_found"] == [papers[0].doi.lower()] and len(works) == 1


def test_max_records_caps_the_requests(papers, sleeps):
    with FakeCrossref(papers) as fake:
        works, report = client(fake, sleeps).enrich([p.doi for p in papers[:10]], max_records=4)
    assert len(fake.requests) == 1 and len(works) == 4 and report["skipped"] == 6


def test_429_with_retry_after_is_waited_out(papers, sleeps):
    with FakeCrossref(papers) as fake:
        fake.inject(Response(429, "Too Many Requests", content_type="text/plain", headers={"Retry-After": "2"}))
        works, report = client(fake, sleeps).enrich([p.doi for p in papers[:3]])
    assert 2.0 in sleeps and len(works) == 3 and len(fake.requests) == 2


def test_one_failing_doi_is_reported_and_the_rest_enriched(papers, sleeps):
    with FakeCrossref(papers) as fake:
        # the list request is refused, so each DOI is asked alone; the second of those fails
        fake.inject(Response(400, {"status": "failed", "message-type": "validation-failure"}), path_contains="/works")
        fake.inject(Response(400, {"status": "failed", "message-type": "validation-failure"}),
                    path_contains="/works/", after=1)
        works, report = client(fake, sleeps).enrich([p.doi for p in papers[:3]])
    assert list(report["failed"]) == [papers[1].doi.lower()] and "HTTP 400" in report["failed"][papers[1].doi.lower()]
    assert len(works) == 2


def test_consecutive_failures_stop_the_batch(papers, sleeps):
    with FakeCrossref(papers) as fake:
        fake.inject(Response(401, {"status": "error", "message": "Unauthorized"}), times=100)
        cr = client(fake, sleeps)
        cr.batch_size = 1
        with pytest.raises(SourceError, match="in a row failed"):
            cr.enrich([p.doi for p in papers[:10]])
    assert len(fake.requests) == MAX_CONSECUTIVE_FAILURES


def test_an_html_404_is_a_failure_not_an_unknown_doi(papers, sleeps):
    with FakeCrossref(papers) as fake:
        fake.inject(Response(404, "<html><body>Not Found</body></html>", content_type="text/html"), times=100)
        with pytest.raises(SourceError, match="check the base URL"):
            client(fake, sleeps).enrich([p.doi for p in papers[:10]])
    assert len(fake.requests) == MAX_CONSECUTIVE_FAILURES  # the list request, then single ones, all failing


def test_raw_contract_drift_stops_the_batch_naming_the_field(papers, sleeps):
    with FakeCrossref(papers) as fake:
        fake.inject(Response(200, {"status": "ok", "message-type": "work-list",
                                   "message": {"items": [{"doi": "10.1000/x", "title": ["T"]}]}}))
        with pytest.raises(RawContractError) as caught:
            client(fake, sleeps).enrich([papers[0].doi])
    assert caught.value.field_path == "message.items[].DOI"


def test_the_update_probe_asks_known_dois_changed_since_the_last_check(papers, sleeps):
    for paper in papers:
        paper.modified = dt.date(2026, 1, 1)
    papers[4].retracted, papers[4].modified = True, dt.date(2026, 12, 2)  # Retraction Watch, via Crossref
    with FakeCrossref(papers) as fake:
        cr = client(fake, sleeps, email="team@example.org")
        cr.batch_size = 8
        works, probe = cr.changed_since([p.doi for p in papers], dt.date(2026, 11, 27), dt.date(2026, 12, 4))
    assert [w.doi for w in works] == [papers[4].doi.lower()] and works[0].is_retracted
    assert works[0].update_notices == [f"retraction:{notice_doi(papers[4]).lower()}"]
    assert probe == {"known": 20, "since": "2026-11-27", "until": "2026-12-04", "requests": 3, "changed": 1}
    assert all(r.param("filter").startswith("from-update-date:2026-11-27,doi:") for r in fake.requests)


def test_fetch_citing_is_skipped():
    review = ReviewConfig(id=REVIEW["id"], title=REVIEW["title"], doi=REVIEW["doi"], sources=["europepmc"], enrich=["crossref"])
    with pytest.raises(SourceSkipped, match="no open cited-by list"):
        CrossrefClient("http://127.0.0.1:9").fetch_citing(review, KnownWorks())
