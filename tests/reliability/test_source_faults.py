"""Source faults at client level: every paging mechanism, every kind of bad answer, over real sockets.

The HTTP layer's ``sleep`` seam records waits instead of sleeping, so Retry-After
values and backoff are asserted exactly and nothing here depends on wall-clock time.
The same faults are driven through the real DAG in ``test_fault_matrix_dag.py``.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from include.living_review.config import ReviewConfig
from include.living_review.sources.http import (BodyError, HttpClient, RetryableError, RetryPolicy, SourceError,
                                        parse_json)
from include.living_review.pipeline import RunContext, SourceFailed, fetch_source
from include.living_review.sources.base import KnownWorks
from include.living_review.sources.europepmc import EuropePmcClient
from include.living_review.sources.openalex import OpenAlexClient
from include.living_review.sources.opencitations import OpenCitationsClient
from include.living_review.sources.pubmed import PubMedClient
from include.living_review.sources.semanticscholar import SemanticScholarClient
from include.living_review.storage import read_json
from tests.fakes.corpus import REVIEW, seed_corpus
from tests.fakes.europepmc import FakeEuropePmc
from tests.fakes.eutils import FakeEutils
from tests.fakes.openalex import FakeOpenAlex
from tests.fakes.opencitations import FakeOpenCitations
from tests.fakes.semanticscholar import FakeSemanticScholar
from tests.fakes.server import FakeApi, Request, Response
from tests.reliability.conftest import DNS_LOOKUPS

SECRET = "sk-live-RELIABILITY-7f3a9c"  # an api_key that must never show in a message
REVIEW_CONF = ReviewConfig(id="peer-support-mental-health", title=REVIEW["title"], doi=REVIEW["doi"],
                           pmid=REVIEW["pmid"], pmcid=REVIEW["pmcid"],
                           sources=["pubmed", "europepmc", "openalex", "opencitations", "semanticscholar"])
PAGE = 7  # 20 seed papers -> pages of 7, 7 and 6


@dataclass(frozen=True)
class Paging:
    """How one source pages, and how to tell its page requests apart."""

    fake: type[FakeApi]
    client: Callable[..., Any]
    kwargs: dict[str, Any]
    path: str  # matches the page requests (fault injection)
    after: int  # page requests before the second page (OpenAlex resolves the review first)
    page_key: Callable[[Request], Any]
    work_key: Callable[[Any], Any]


PAGING = {
    "pubmed": Paging(FakeEutils, PubMedClient, {"batch_size": PAGE, "api_key": SECRET}, "efetch", 1,
                     lambda r: r.param("id"), lambda w: w.pmid),
    "europepmc": Paging(FakeEuropePmc, EuropePmcClient, {"page_size": PAGE}, "/search", 1,
                        lambda r: r.param("cursorMark"), lambda w: w.pmid),
    "openalex": Paging(FakeOpenAlex, OpenAlexClient, {"per_page": PAGE, "api_key": SECRET}, "/works", 2,
                       lambda r: (r.path, r.param("cursor")), lambda w: w.openalex_id),
    "semanticscholar": Paging(FakeSemanticScholar, SemanticScholarClient, {"page_size": PAGE}, "/citations", 1,
                              lambda r: r.param("offset"), lambda w: w.s2_paper_id),
}


def http_date(seconds_from_now: float) -> str:
    return email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds_from_now),
                                       usegmt=True)


# Retry-After forms: (header value factory, cap, check on the recorded waits)
RETRY_AFTER = {
    "seconds": (lambda: "7", 120.0, lambda waits: 7.0 in waits),
    "http-date": (lambda: http_date(90), 120.0, lambda waits: any(80.0 < w <= 90.0 for w in waits)),
    "http-date-over-the-cap": (lambda: http_date(86_400), 45.0, lambda waits: 45.0 in waits),
    "seconds-over-the-cap": (lambda: "3600", 45.0, lambda waits: 45.0 in waits),
}


def run_paging(source: str, sleeps: list[float], *, retry: RetryPolicy | None = None,
               fault: Response | None = None, times: int = 1) -> tuple[Any, FakeApi]:
    spec = PAGING[source]
    with spec.fake(seed_corpus()) as fake:
        if fault is not None:
            fake.inject(fault, path_contains=spec.path, times=times, after=spec.after)
        client = spec.client(fake.url, sleep=sleeps.append, retry=retry or RetryPolicy(), **spec.kwargs)
        return client.fetch_citing(REVIEW_CONF, KnownWorks()), fake


_CLEAN: dict[str, Any] = {}


@pytest.mark.parametrize("form", list(RETRY_AFTER))
@pytest.mark.parametrize("source", list(PAGING))
def test_429_mid_pagination_waits_as_told_and_loses_no_page(source, form):
    """Row 1: a 429 on the second page; the source waits (capped) and finishes the list exactly once."""
    header, cap, waited = RETRY_AFTER[form]
    spec = PAGING[source]
    if source not in _CLEAN:
        _CLEAN[source] = run_paging(source, [])[0]
    clean = _CLEAN[source]
    sleeps: list[float] = []
    result, fake = run_paging(source, sleeps, retry=RetryPolicy(retry_after_cap=cap),
                              fault=Response(429, {"error": "Too Many Requests"}, headers={"Retry-After": header()}))

    assert waited([s for s in sleeps if s >= 1.0] or [0.0]), sleeps
    assert max(sleeps) <= cap
    keys = [spec.work_key(w) for w in result.works]
    assert len(keys) == len(set(keys)) == 20 and result.listed == 20
    assert sorted(keys) == sorted(spec.work_key(w) for w in clean.works)
    pages = [spec.page_key(r) for r in fake.requests_to(spec.path)][spec.after - 1:]
    # exactly one page was asked twice (the throttled one, right after itself); every other page once
    assert pages[1] == pages[2] and len(pages) == len(set(pages)) + 1, pages


@pytest.mark.parametrize(("status", "headers", "expected_waits"), [
    (429, {"Retry-After": "3600"}, [2.0, 2.0, 2.0]),  # told to wait an hour: capped at 2s each time
    (503, {}, None),                                  # no Retry-After: capped exponential backoff
])
def test_throttled_on_every_try_gives_up_with_a_clear_message(status, headers, expected_waits):
    """Row 2 (client level): after max_tries the error names the source, status, URL and tries, no secret."""
    class Down(FakeApi):
        def handle(self, request: Request) -> Response:
            return Response(200, {})

    sleeps: list[float] = []
    with Down() as fake:
        fake.inject(Response(status, "busy", headers=headers), times=100)
        http = HttpClient("openalex", fake.url, rate=0, sleep=sleeps.append,
                          retry=RetryPolicy(max_tries=4, backoff_base=1.0, backoff_cap=3.0, retry_after_cap=2.0))
        with pytest.raises(RetryableError) as err:
            http.get("works", parse_json("openalex"), params={"filter": "cites:W1", "api_key": SECRET})
    message = str(err.value)
    assert message.startswith(f"openalex: HTTP {status}; gave up after 4 tries (")
    assert f"{fake.url}/works?filter=cites%3AW1&api_key=%2A%2A%2A" in message and SECRET not in message
    assert err.value.status == status and len(fake.requests) == 4
    if expected_waits:
        assert sleeps == expected_waits
    else:
        assert len(sleeps) == 3 and all(full / 2 <= s <= full for s, full in zip(sleeps, [1.0, 2.0, 3.0]))


class Echo(FakeApi):
    def handle(self, request: Request) -> Response:
        return Response(200, {"ok": True})


def _closed_port() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize("fault", ["connection reset", "read timeout", "DNS failure", "connection refused"])
def test_network_faults_are_retried_with_backoff_then_fail_clearly(fault):
    """Row 3 (client level): every try fails -> capped exponential backoff, then one clear error."""
    sleeps: list[float] = []
    with Echo() as fake:
        base = {"connection reset": fake.url, "read timeout": fake.url,
                "DNS failure": "http://nonexistent.invalid", "connection refused": _closed_port()}[fault]
        if fault == "connection reset":
            fake.inject(Response(drop=True), times=100)
        if fault == "read timeout":
            fake.inject(Response(200, {"late": True}, delay=0.6), times=100)
        http = HttpClient("pubmed", base, rate=0, sleep=sleeps.append, timeout=(2.0, 0.2),
                          retry=RetryPolicy(max_tries=3, backoff_base=1.0, backoff_cap=30.0))
        before = len(DNS_LOOKUPS)
        with pytest.raises(RetryableError) as err:
            http.get("elink.fcgi", parse_json("pubmed"), params={"id": "1", "api_key": SECRET, "email": "me@x.org"})
    message = str(err.value)
    kind = {"connection reset": "ConnectionError", "read timeout": "ReadTimeout", "DNS failure": "ConnectionError",
            "connection refused": "ConnectionError"}[fault]
    assert message.startswith(f"pubmed: network error: {kind}") and "gave up after 3 tries" in message
    assert f"{base}/elink.fcgi?id=1&api_key=%2A%2A%2A&email=%2A%2A%2A" in message
    assert SECRET not in message and "me@x.org" not in message and "me%40x.org" not in message
    assert err.value.__cause__ is None or SECRET not in str(err.value.__cause__)
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # capped exponential
    if fault == "DNS failure":
        assert "cannot resolve nonexistent.invalid" in message
        assert DNS_LOOKUPS[before:] == ["nonexistent.invalid"] * 3  # answered locally: nothing left the machine
    if fault == "connection refused":
        assert "connection refused" in message
    if fault in ("connection reset", "read timeout"):
        assert len(fake.requests) == 3


class Ticks:
    """A clock that moves ``step`` seconds each time it is read: a deadline without waiting for it."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_slow_loris_fails_its_source_at_the_deadline_after_its_tries(tmp_path):
    """Row 18 (client level): headers at once, then a byte at a time, never idle long enough for the read
    timeout: each try is cut at the total deadline and retried, then the source fails naming the deadline,
    the source and the URL, and no secret."""
    ctx = _review_context(tmp_path)
    with FakeOpenCitations(seed_corpus()) as fake:
        good = json.dumps([{"oci": f"06{n}-06{n}", "citing": f"doi:10.1/{n}"} for n in range(40)])
        fake.inject(Response(200, good, trickle=0.002), times=100)
        client = OpenCitationsClient(fake.url, api_key=SECRET, sleep=lambda s: None, timeout=(2.0, 0.5),
                                     deadline=60.0, clock=Ticks(5.0), retry=RetryPolicy(max_tries=3))
        with pytest.raises(SourceFailed) as err:
            fetch_source(ctx, "opencitations", client)
    message = str(err.value)
    assert "opencitations: no complete answer within the 60-second deadline" in message
    assert "gave up after 3 tries" in message and f"{fake.url}/index/v2/citations/doi:" in message
    assert SECRET not in message
    assert len(fake.requests) == 3  # each try cut at the deadline, then retried like a network error
    assert {r.headers.get("authorization") for r in fake.requests} == {SECRET}  # the key was really sent
    stats = read_json(ctx.staging.source_stats("opencitations"))
    assert stats["status"] == "failed" and "deadline" in stats["reason"] and SECRET not in json.dumps(stats)


# -- bad bodies: truncated, HTML, wrong type -----------------------------------------
def _truncated_json(text: str) -> str:
    return text[: len(text) // 2]


@dataclass(frozen=True)
class BadBody:
    response: Callable[[bytes], Response]  # from the good body of the same request
    message: str


BAD_JSON = {
    "truncated in transit": BadBody(lambda good: Response(200, good, truncate_to=len(good) // 2), "IncompleteRead"),
    "truncated document": BadBody(lambda good: Response(200, good[: len(good) // 2]), "invalid JSON"),
    "HTML error page with 200": BadBody(
        lambda good: Response(200, "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
                              content_type="text/html"), "got an HTML page (Content-Type 'text/html')"),
    "wrong content type": BadBody(
        lambda good: Response(200, '<?xml version="1.0"?><responseWrapper><hitCount>0</hitCount></responseWrapper>',
                              content_type="application/xml"), "(Content-Type 'application/xml')"),
}
BAD_XML = {
    "truncated in transit": BadBody(lambda good: Response(200, good, truncate_to=len(good) // 2,
                                                          content_type="text/xml"), "IncompleteRead"),
    "truncated document": BadBody(lambda good: Response(200, good[: len(good) // 2], content_type="text/xml"),
                                  "truncated or malformed XML"),
    "HTML error page with 200": BadBody(
        lambda good: Response(200, "<html><head><title>503</title></head><body>Service unavailable</body></html>",
                              content_type="text/html"), "expected E-utilities XML but got an HTML page"),
    "HTML5 error page with 200": BadBody(
        lambda good: Response(200, "<!DOCTYPE html><html><body>Service unavailable</body></html>",
                              content_type="text/html"), "expected E-utilities XML but got an HTML page"),
    "wrong content type": BadBody(lambda good: Response(200, '{"esearchresult": {"count": "0"}}'),
                                  "expected E-utilities XML but got a non-XML body"),
}
JSON_SOURCES = {
    "europepmc": (FakeEuropePmc, lambda url, **kw: EuropePmcClient(url, page_size=PAGE, **kw), "/search", 1),
    "openalex": (FakeOpenAlex, lambda url, **kw: OpenAlexClient(url, per_page=PAGE, api_key=SECRET, **kw), "/works",
                 2),
    "opencitations": (FakeOpenCitations, lambda url, **kw: OpenCitationsClient(url, api_key=SECRET, **kw),
                      "/citations/", 0),
    "semanticscholar": (FakeSemanticScholar, lambda url, **kw: SemanticScholarClient(url, page_size=PAGE,
                                                                                      api_key=SECRET, **kw),
                        "/citations", 1),
}


def _good_body(fake: FakeApi, path: str, index: int) -> bytes:
    """What the fake answers to the ``index``-th matching request of a clean run (replayed)."""
    request = fake.requests_to(path)[index]
    return fake.handle(request).encoded()


@pytest.mark.parametrize("bad", list(BAD_JSON))
@pytest.mark.parametrize("source", list(JSON_SOURCES))
def test_bad_json_page_is_retried_then_fails_naming_source_and_url(source, bad):
    """Row 4: one bad answer (mid-pagination where the source pages) is retried and nothing is lost or
    doubled; the same answer on every try ends in one clear error naming the source and URL, without the key."""
    fake_cls, make, path, index = JSON_SOURCES[source]
    with fake_cls(seed_corpus()) as fake:
        clean = make(fake.url, sleep=lambda s: None).fetch_citing(REVIEW_CONF, KnownWorks())
        good = _good_body(fake, path, index)
        clean_requests = len(fake.requests_to(path))

        fake.clear()
        fake.inject(BAD_JSON[bad].response(good), path_contains=path, after=index)
        sleeps: list[float] = []
        once = make(fake.url, sleep=sleeps.append).fetch_citing(REVIEW_CONF, KnownWorks())
        assert [w.to_row() | {"raw": None} for w in once.works] == [w.to_row() | {"raw": None} for w in clean.works]
        assert once.listed == clean.listed
        assert len(fake.requests_to(path)) == clean_requests + 1 and any(s > 0.01 for s in sleeps)

        fake.clear()
        fake.inject(BAD_JSON[bad].response(good), path_contains=path, after=index, times=100)
        with pytest.raises(SourceError) as err:
            make(fake.url, sleep=lambda s: None, retry=RetryPolicy(max_tries=3)).fetch_citing(REVIEW_CONF,
                                                                                              KnownWorks())
    message = str(err.value)
    assert message.startswith(f"{source}: ") and BAD_JSON[bad].message in message, message
    assert f"({fake.url}/" in message and path.strip("/") in message
    assert "gave up after 3 tries" in message and SECRET not in message
    assert len(fake.requests_to(path)) == index + 3


@pytest.mark.parametrize("bad", list(BAD_XML))
@pytest.mark.parametrize("endpoint", ["elink", "efetch"])
def test_bad_eutilities_xml_is_retried_then_fails_naming_the_url(endpoint, bad):
    """Row 4 for E-utilities: once -> retried, complete; always -> clear error, never partial results."""
    papers = seed_corpus()
    with FakeEutils(papers) as fake:
        clean = PubMedClient(fake.url, batch_size=PAGE, sleep=lambda s: None).fetch_citing(REVIEW_CONF, KnownWorks())
        index = 0 if endpoint == "elink" else 1
        good = _good_body(fake, endpoint, index)
        fake.clear()
        fake.inject(BAD_XML[bad].response(good), path_contains=endpoint, after=index)
        once = PubMedClient(fake.url, batch_size=PAGE, api_key=SECRET, sleep=lambda s: None).fetch_citing(
            REVIEW_CONF, KnownWorks())
        assert sorted(w.pmid for w in once.works) == sorted(w.pmid for w in clean.works)
        assert len({w.pmid for w in once.works}) == 20
        fake.clear()
        fake.inject(BAD_XML[bad].response(good), path_contains=endpoint, after=index, times=100)
        with pytest.raises(SourceError) as err:
            PubMedClient(fake.url, batch_size=PAGE, api_key=SECRET, sleep=lambda s: None,
                         retry=RetryPolicy(max_tries=3)).fetch_citing(REVIEW_CONF, KnownWorks())
    message = str(err.value)
    assert message.startswith("pubmed: ") and BAD_XML[bad].message in message, message
    assert f"{fake.url}/{endpoint}.fcgi" in message and "gave up after 3 tries" in message
    assert SECRET not in message


def _review_context(tmp_path) -> RunContext:
    return RunContext.create(REVIEW_CONF, tmp_path / "data", dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc),
                             "manual__reliability")


def test_a_page_failing_mid_walk_is_never_half_staged(tmp_path):
    """Row 4: page 1 parsed fine, page 2 truncated for good -> the source fails and stages nothing."""
    ctx = _review_context(tmp_path)
    staged = ctx.staging.source_records('europepmc')
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"left over from an earlier attempt")
    with FakeEuropePmc(seed_corpus()) as fake:
        fake.inject(Response(200, '{"version": "6.9", "hitCount": 20, "resultList": {"result": [{"id": "1"'),
                    path_contains="/search", after=1, times=100)
        client = EuropePmcClient(fake.url, page_size=PAGE, sleep=lambda s: None, retry=RetryPolicy(max_tries=2))
        with pytest.raises(SourceFailed, match=r"europepmc failed for review 'peer-support-mental-health': "
                                               r"europepmc: expected JSON but got invalid JSON"):
            fetch_source(ctx, "europepmc", client)
        served_first_page = fake.requests_to("/search")[0].param("cursorMark") == "*"
    assert served_first_page and not staged.exists()
    stats = read_json(ctx.staging.source_stats('europepmc'))
    assert stats["status"] == "failed" and stats["works"] == 0 and stats["listed"] == 0
    assert "invalid JSON" in stats["reason"] and f"{fake.url}/search" in stats["reason"]


# -- errors inside HTTP 200 bodies ---------------------------------------------------
# As NCBI sends it (note the DOCTYPE's "eEfetchResult"; efetch.dtd is not bundled with Biopython).
EFETCH_ERROR_REAL = ('<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE eEfetchResult PUBLIC "-//NLM//DTD efetch '
                     '20131226//EN" "https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20131226/efetch.dtd">\n'
                     "<eFetchResult>\n\t<ERROR>Unable to obtain query #1</ERROR>\n</eFetchResult>\n")
# The same without the DOCTYPE (what tests/fakes/eutils.py serves).
EFETCH_ERROR = ('<?xml version="1.0" encoding="UTF-8" ?>\n'
                "<eFetchResult><ERROR>Unable to obtain query #1</ERROR></eFetchResult>")
ELINK_LINKSET_ERROR = ('<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE eLinkResult PUBLIC "-//NLM//DTD elink '
                       '20101123//EN" "https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20101123/elink.dtd">\n'
                       "<eLinkResult><LinkSet><DbFrom>pubmed</DbFrom><IdList><Id>32357127</Id></IdList>"
                       "<ERROR>Backend failed: unavailable</ERROR></LinkSet></eLinkResult>")


@pytest.mark.parametrize(("endpoint", "body", "needle"), [
    ("efetch", EFETCH_ERROR, "Unable to obtain query #1"),
    pytest.param("efetch", EFETCH_ERROR_REAL, "Unable to obtain query #1", id="efetch-real-doctype"),
    ("elink", ELINK_LINKSET_ERROR, "Backend failed: unavailable"),
])
def test_eutilities_error_in_a_200_body_fails_the_source_not_zero_results(tmp_path, endpoint, body, needle):
    """Row 5: <ERROR> with HTTP 200 (here mid-batches and inside a LinkSet) is an error, not 'no citers'."""
    ctx = _review_context(tmp_path)
    with FakeEutils(seed_corpus()) as fake:
        fake.inject(Response(200, body, content_type="text/xml"), path_contains=endpoint,
                    after=1 if endpoint == "efetch" else 0, times=100)
        client = PubMedClient(fake.url, batch_size=PAGE, sleep=lambda s: None)
        with pytest.raises(SourceFailed) as err:
            fetch_source(ctx, "pubmed", client)
    assert isinstance(err.value.__cause__, BodyError) and needle in str(err.value)
    # not retried by the HTTP layer: asking again gets the same answer; the task retry decides
    assert len(fake.requests_to(endpoint)) == (2 if endpoint == "efetch" else 1)
    stats = read_json(ctx.staging.source_stats('pubmed'))
    assert stats["status"] == "failed" and stats["works"] == 0 and needle in stats["reason"]
    assert not ctx.staging.source_records('pubmed').exists()


def test_europepmc_errcode_mid_walk_fails_the_source_not_zero_results(tmp_path):
    """Row 5: errCode/errMsg with HTTP 200 on page 2 -> an error; page 1's records are not published."""
    ctx = _review_context(tmp_path)
    with FakeEuropePmc(seed_corpus()) as fake:
        fake.inject_err_code(500, "Internal cursor error", after=1, times=100)
        with pytest.raises(SourceFailed, match="errCode=500 errMsg='Internal cursor error'"):
            fetch_source(ctx, "europepmc", EuropePmcClient(fake.url, page_size=PAGE, sleep=lambda s: None))
    assert len(fake.requests_to("/search")) == 2
    assert read_json(ctx.staging.source_stats('europepmc'))["status"] == "failed"
    assert not ctx.staging.source_records('europepmc').exists()


def test_a_source_answering_empty_after_a_full_last_run_fails_its_health_check(tmp_path):
    """Row 6 (unit): 0 citers where the last run listed 20 -> SourceFailed; the merge keeps the old works."""
    from include.living_review.pipeline import health_problem

    assert health_problem("europepmc", 0, {"status": "ok", "listed": 20}) == "returned 0 citing works after 20 last run"
    assert health_problem("europepmc", 0, {"status": "failed", "listed": 20}) is None  # no healthy baseline
    assert health_problem("europepmc", 0, {}) is None  # a first run may be empty
    assert "down 60%" in health_problem("europepmc", 8, {"status": "ok", "listed": 20})
