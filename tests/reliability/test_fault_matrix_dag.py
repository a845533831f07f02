"""The source rows of the fault matrix, through the real pipeline DAG (``dag.test()``).

One review, five listing sources, local fakes, three weekly runs that share a data
directory (each run costs seconds, so the rows share them):

* week 1, transient faults that the HTTP layer absorbs: 429 mid-pagination with
  Retry-After in seconds and as an HTTP date, a 503, an HTML page with 200, a
  connection reset, a wrong content type, a truncated body and a read timeout.
  Every task succeeds on its first try and every paper is in the snapshot once.
* week 2, persistent answers: 429 on every try, Europe PMC ``errCode`` with 200, an
  HTML page on every try, and Semantic Scholar suddenly empty. Those four tasks fail
  after their retries, OpenCitations still publishes, the manifest says ``partial``.
* week 3, persistent network faults: DNS failure, connection reset, read timeout,
  and a truncated page 2 (page 1 parsed, never staged).

Page sizes are patched down (and rate limits up) so that 45 papers need three pages.
"""
from __future__ import annotations

import datetime as dt
import email.utils
from collections import Counter
from typing import Any

import pyarrow.parquet as pq
import pytest

from include.living_review import settings
from include.living_review.sources.http import HttpClient
from include.living_review.records.ids import work_id_for
from include.living_review.sources.europepmc import EuropePmcClient
from include.living_review.sources.openalex import OpenAlexClient
from include.living_review.sources.pubmed import PubMedClient
from include.living_review.sources.semanticscholar import SemanticScholarClient
from tests.fakes.corpus import synthetic_corpus
from tests.fakes.server import Response
from tests.reliability.conftest import (DNS_LOOKUPS, PIPELINE, TODAY, LogTap, Scenario)

pytestmark = pytest.mark.integration
LISTING = ["pubmed", "europepmc", "openalex", "opencitations", "semanticscholar"]
WEEKS = [TODAY - dt.timedelta(days=21), TODAY - dt.timedelta(days=14), TODAY - dt.timedelta(days=7)]
PAGE = 15
READ_TIMEOUT = 0.3


def _http_date(seconds: float) -> str:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    return email.utils.format_datetime(when, usegmt=True)


def _week(scenario: Scenario, day: dt.date) -> dict[str, Any]:
    for fake in scenario.stack.fakes.values():
        fake.requests.clear()
    posts = len(scenario.stack.slack.payloads)
    with LogTap() as tap:
        states = scenario.run(PIPELINE, day)
    return {"states": states, "alerts": scenario.stack.slack.payloads[posts:], "tries": scenario.try_numbers(PIPELINE, day), "log": tap.text,
            "manifest": scenario.manifest(day),
            "rows": pq.read_table(scenario.layout(day).snapshot_file).to_pylist(),
            "requests": {s: list(f.requests) for s, f in scenario.stack.fakes.items()},
            "staged": sorted(p.name for p in scenario.layout(day).staging_root.glob("run=*/*"))}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, module_mp, airflow_db) -> dict[str, Any]:
    mp = module_mp
    mp.setattr(settings, "KEEP_STAGING", True)  # what each source staged is asserted after the run
    for source in settings.RATE_LIMITS:
        mp.setitem(settings.RATE_LIMITS, source, (1000.0, 1000.0))
    mp.setitem(PubMedClient.__init__.__kwdefaults__, "batch_size", PAGE)
    mp.setitem(EuropePmcClient.__init__.__kwdefaults__, "page_size", PAGE)
    mp.setitem(OpenAlexClient.__init__.__kwdefaults__, "per_page", PAGE)
    mp.setitem(SemanticScholarClient.__init__.__kwdefaults__, "page_size", PAGE)
    mp.setitem(HttpClient.__init__.__kwdefaults__, "timeout", (2.0, READ_TIMEOUT))
    papers = synthetic_corpus(45, seed=11)
    results: dict[str, Any] = {"papers": papers}
    # Faults are injected by request order on each fake; the reference watch's own requests to
    # the same fakes (PubMed, OpenAlex, Europe PMC) would take them in whatever order the tasks run.
    with Scenario(tmp_path_factory.mktemp("matrix"), mp, papers, LISTING, stack_sources=tuple(LISTING),
                  review={"watch_included_studies": False}) as sc:
        results["scenario"] = sc
        fakes = sc.stack.fakes
        # -- week 1: transient faults, each answered once -------------------------------
        fakes["pubmed"].inject(Response(200, "<html><body>Service unavailable</body></html>",
                                        content_type="text/html"), path_contains="elink")
        fakes["pubmed"].inject(Response(503, "busy"), path_contains="efetch", after=1)
        fakes["europepmc"].inject(Response(429, {"error": "slow down"}, headers={"Retry-After": "1"}),
                                  path_contains="/search", after=1)
        fakes["openalex"].inject(Response(429, {"error": "slow down"}, headers={"Retry-After": _http_date(1)}),
                                 path_contains="/works", after=2)  # resolve, page 1, then page 2
        fakes["semanticscholar"].inject(Response(drop=True), path_contains="/citations", after=1)
        fakes["semanticscholar"].inject(Response(200, "<citations/>", content_type="application/xml"),
                                        path_contains="/citations", after=2)  # page 3 (counted past the reset)
        fakes["opencitations"].inject(Response(200, "[" + '{"oci": "1"},' * 2000 + "]", truncate_to=100))
        fakes["opencitations"].inject(Response(200, [], delay=READ_TIMEOUT * 4))
        results[1] = _week(sc, WEEKS[0])

        # -- week 2: the same answer on every try ---------------------------------------
        fakes["pubmed"].inject(Response(429, "Too Many Requests", headers={"Retry-After": "0"}),
                               path_contains="elink", times=1000)
        fakes["europepmc"].inject_err_code(500, "Internal cursor error", times=1000)
        fakes["openalex"].inject(Response(200, "<!DOCTYPE html><html><body>Gateway timeout</body></html>",
                                          content_type="text/html"), path_contains="/works", times=1000)
        fakes["semanticscholar"].inject(Response(200, {"offset": 0, "data": []}), path_contains="/citations",
                                        times=1000)
        results[2] = _week(sc, WEEKS[1])
        for fake in fakes.values():
            fake.clear()

        # -- week 3: the network fails on every try -------------------------------------
        sc.set_connection("ncbi_eutils", host="http://nonexistent.invalid")
        fakes["europepmc"].inject(Response(drop=True), path_contains="/search", times=1000)
        fakes["openalex"].inject(Response(200, '{"meta": {"count": 45}, "results": [{"id": "https://openalex.org/W1"'),
                                 path_contains="/works", after=1, times=1000)
        fakes["semanticscholar"].inject(Response(200, {"offset": 0, "data": []}, delay=READ_TIMEOUT * 4),
                                        path_contains="/citations", times=1000)
        dns_before = len(DNS_LOOKUPS)
        results[3] = _week(sc, WEEKS[2])
        results[3]["dns"] = DNS_LOOKUPS[dns_before:]
    return results


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["work_id"] for r in rows]


def _expected_work_ids(papers) -> set[str]:
    return {work_id_for(p.doi, p.pmid, p.pmcid, p.openalex_id, p.s2_paper_id, p.omid) for p in papers}


def _retries(scenario: Scenario) -> int:
    return scenario.runner.dag(PIPELINE).get_task("fetch_pubmed").retries


# -- week 1 -------------------------------------------------------------------------
def test_transient_faults_are_absorbed_without_a_task_retry(matrix):
    """Rows 1, 3, 4: every transient fault is retried inside the task; all tasks succeed on try 1."""
    week = matrix[1]
    assert set(week["states"].values()) == {"success"}, week["states"]
    assert all(week["tries"][f"fetch_{s}"] == 1 for s in LISTING), week["tries"]
    codes = {s: week["manifest"]["sources"][s]["http"]["status_counts"] for s in LISTING}
    assert codes["pubmed"].get("503") == 1 and codes["europepmc"].get("429") == 1
    assert codes["openalex"].get("429") == 1
    assert codes["semanticscholar"].get("error") == 1  # the reset connection has no status
    assert codes["opencitations"].get("error") == 1  # the read timeout
    log = week["log"]
    for expected in ("pubmed: try 1 of 5 failed (pubmed: expected E-utilities XML but got an HTML page",
                     "pubmed: try 1 of 5 failed (pubmed: HTTP 503",
                     "europepmc: try 1 of 5 failed (europepmc: HTTP 429", "retrying in 1.0s",
                     "openalex: try 1 of 5 failed (openalex: HTTP 429",
                     "semanticscholar: try 1 of 5 failed (semanticscholar: network error: ConnectionError",
                     "semanticscholar: try 1 of 5 failed (semanticscholar: expected JSON but got an HTML page "
                     "(Content-Type 'application/xml')",
                     "opencitations: try 1 of 5 failed (opencitations: network error: ChunkedEncodingError",
                     "opencitations: try 2 of 5 failed (opencitations: network error: ReadTimeout: "
                     "ReadTimeoutError"):
        assert expected in log, expected


def test_429_mid_pagination_loses_and_duplicates_no_page(matrix):
    """Row 1 through the DAG: the throttled page is asked again once; the snapshot has every paper once."""
    week = matrix[1]
    expected = _expected_work_ids(matrix["papers"])
    ids = _ids(week["rows"])
    assert len(ids) == len(set(ids)) == len(expected) == 45
    assert set(ids) == expected
    cursors = [r.param("cursorMark") for r in week["requests"]["europepmc"]]
    assert cursors[1] == cursors[2] and len(cursors) == len(set(cursors)) + 1 == 4, cursors
    pages = [r.param("cursor") for r in week["requests"]["openalex"] if r.path == "/works"]
    assert pages[1] == pages[2] and len(pages) == len(set(pages)) + 1, pages
    sources = week["manifest"]["sources"]
    pubmed_visible = sum(1 for p in matrix["papers"] if p.pmid and p.pmcid)
    assert sources["pubmed"]["listed"] == sources["pubmed"]["works"] == pubmed_visible
    for source in ("europepmc", "openalex", "semanticscholar", "opencitations"):
        assert sources[source]["listed"] == 45 and sources[source]["works"] == 45, source
    assert week["manifest"]["partial"] is False


# -- week 2 -------------------------------------------------------------------------
FAILING_2 = {"pubmed": "pubmed: HTTP 429; gave up after 5 tries",
             "europepmc": "Europe PMC error in HTTP 200 body: errCode=500 errMsg='Internal cursor error'",
             "openalex": "openalex: expected JSON but got an HTML page (Content-Type 'text/html'); gave up after 5 tries",
             "semanticscholar": "returned 0 citing works after 45 last run"}


def test_persistent_faults_fail_only_their_source_after_its_retries(matrix):
    """Rows 2, 4, 5, 6: each failing source's task fails after its retries; the others publish."""
    week, scenario = matrix[2], matrix["scenario"]
    failed = {t for t, s in week["states"].items() if s == "failed"}
    assert failed == {f"fetch_{s}" for s in FAILING_2}, week["states"]
    assert all(week["states"][t] == "success" for t in ("fetch_opencitations", "merge", "enrich", "validate",
                                                        "publish_snapshot"))
    retries = _retries(scenario)
    assert retries >= 2
    assert all(week["tries"][f"fetch_{s}"] == retries + 1 for s in FAILING_2), week["tries"]
    requests = {s: len(r) for s, r in week["requests"].items()}
    # the HTTP layer's 5 tries inside each of the task's tries; body errors are not re-asked by the HTTP layer
    assert requests["pubmed"] == requests["openalex"] == 5 * (retries + 1)
    assert requests["europepmc"] == requests["semanticscholar"] == retries + 1


def test_persistent_failures_are_reported_clearly_and_the_run_is_partial(matrix):
    """Rows 2, 4, 5, 6: the manifest says partial and names each cause, the source and the URL."""
    manifest = matrix[2]["manifest"]
    assert manifest["partial"] is True
    for source, needle in FAILING_2.items():
        stats = manifest["sources"][source]
        assert stats["status"] == "failed" and needle in stats["reason"], (source, stats["reason"])
    url = {s: f.url for s, f in matrix["scenario"].stack.fakes.items()}
    assert f"({url['pubmed']}/elink.fcgi?" in manifest["sources"]["pubmed"]["reason"]
    assert f"({url['openalex']}/works)" in manifest["sources"]["openalex"]["reason"]
    assert manifest["sources"]["opencitations"]["status"] == "ok"


def test_errcode_and_empty_answers_are_not_taken_as_zero_results(matrix):
    """Rows 5, 6: the previous works stay in the snapshot; nothing is dropped."""
    before, after = set(_ids(matrix[1]["rows"])), _ids(matrix[2]["rows"])
    assert set(after) == before and len(after) == len(set(after))
    assert matrix[2]["manifest"]["counts"]["published"] == 45


def test_one_alert_per_failed_source(matrix):
    """Row 2: one alert per failed task (not one per try), none for the sources that worked."""
    alerts = [p["text"] for p in matrix[2]["alerts"] if not p.get("blocks")]
    per_task = Counter(source for text in alerts for source in LISTING if f"fetch_{source} failed" in text)
    assert per_task == Counter({s: 1 for s in FAILING_2}), alerts


# -- week 3 -------------------------------------------------------------------------
FAILING_3 = {"pubmed": "network error: ConnectionError: cannot resolve nonexistent.invalid",
             "europepmc": "network error: ConnectionError: ProtocolError: ('Connection aborted.'",
             "openalex": "expected JSON but got invalid JSON",
             "semanticscholar": "network error: ReadTimeout: ReadTimeoutError"}


def test_network_faults_fail_their_source_after_backoff_and_retries(matrix):
    """Row 3: DNS failure, connection reset and read timeout, then the same outcome as row 2."""
    week = matrix[3]
    failed = {t for t, s in week["states"].items() if s == "failed"}
    assert failed == {f"fetch_{s}" for s in FAILING_3}, week["states"]
    assert week["states"]["publish_snapshot"] == "success" and week["manifest"]["partial"] is True
    for source, needle in FAILING_3.items():
        reason = week["manifest"]["sources"][source]["reason"]
        assert needle in reason and "gave up after 5 tries" in reason, (source, reason)
    retries = _retries(matrix["scenario"])
    assert week["dns"] == ["nonexistent.invalid"] * (5 * (retries + 1))  # resolved locally, never sent out
    assert len(week["requests"]["europepmc"]) == 5 * (retries + 1)
    assert len(week["requests"]["semanticscholar"]) == 5 * (retries + 1)
    assert set(_ids(week["rows"])) == set(_ids(matrix[1]["rows"]))


def test_a_source_failing_mid_walk_is_never_half_parsed_into_rows(matrix):
    """Row 4: OpenAlex served page 1, then a truncated page 2 on every try: nothing of it is staged."""
    week = matrix[3]
    pages = [r for r in week["requests"]["openalex"] if r.path == "/works"]
    assert pages[0].param("cursor") == "*" and len(pages) > 1  # page 1 was served (and parsed) every try
    assert "source=openalex.parquet" not in week["staged"]
    assert "source=opencitations.parquet" in week["staged"]
    stats = week["manifest"]["sources"]["openalex"]
    assert stats["works"] == 0 and stats["listed"] == 0
    coverage = pq.read_table(matrix["scenario"].layout(WEEKS[2]).coverage_file).to_pylist()
    assert {c["source"]: c["status"] for c in coverage}["openalex"] == "failed"
