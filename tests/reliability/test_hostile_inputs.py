"""Hostile and bad inputs at the level where each is handled: XML attacks, oversized bodies, unicode, config.

The end-to-end counterpart (hostile titles through both DAGs into the received email
and the Slack payload, and the secrets) is ``test_hostile_end_to_end_dag.py``.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from include.living_review import settings
from include.living_review.config import ReviewConfig
from include.living_review.sources.http import HttpClient, RetryPolicy, SourceError, parse_json
from include.living_review.records.ids import normalize_doi
from include.living_review.records.normalize import clean_title
from include.living_review.pipeline import RunContext, fetch_source
from include.living_review.sources.base import KnownWorks
from include.living_review.sources.crossref import from_crossref
from include.living_review.sources.europepmc import EuropePmcClient, from_europepmc
from include.living_review.sources.openalex import from_openalex
from include.living_review.sources.opencitations import OpenCitationsClient
from include.living_review.sources.pubmed import PubMedClient
from include.living_review.sources.semanticscholar import from_semanticscholar
from tests.fakes.corpus import REVIEW, Paper, seed_corpus
from tests.fakes.crossref import work_message
from tests.fakes.europepmc import FakeEuropePmc, core_record
from tests.fakes.eutils import FakeEutils
from tests.fakes.openalex import work_json
from tests.fakes.semanticscholar import citing_paper
from tests.fakes.server import FakeApi, Request, Response

ROOT = Path(__file__).resolve().parents[2]
REVIEW_CONF = ReviewConfig(id="peer-support-mental-health", title=REVIEW["title"], doi=REVIEW["doi"],
                           pmid=REVIEW["pmid"], sources=["pubmed", "europepmc", "opencitations"])
ELINK_DOCTYPE = ('<!DOCTYPE eLinkResult PUBLIC "-//NLM//DTD elink 20101123//EN" '
                 '"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20101123/elink.dtd"')
PAD = "<!-- " + "x" * 70_000 + " -->\n"  # pushes the declarations past the cheap 64 KiB pre-check


# -- XXE and entity expansion ----------------------------------------------------------
class Exfil(FakeApi):
    """Where an external entity would phone home; it must never be asked."""

    def handle(self, request: Request) -> Response:
        return Response(200, "STOLEN", content_type="text/plain")


def _attack(kind: str, sentinel: Path, exfil: str, *, padded: bool) -> str:
    pad = PAD if padded else ""
    if kind == "xxe-file":
        subset = f'{pad}<!ENTITY xxe SYSTEM "file://{sentinel}">'
        content = "&xxe;"
    elif kind == "xxe-url":
        subset = f'{pad}<!ENTITY xxe SYSTEM "{exfil}/dtd">'
        content = "&xxe;"
    elif kind == "parameter-entity":
        subset = f'{pad}<!ENTITY % remote SYSTEM "{exfil}/param.dtd"> %remote;'
        content = "1"
    else:  # billion laughs: 10^9 "lol"s from a few hundred bytes
        subset = pad + '<!ENTITY lol "lol">' + "".join(
            f'<!ENTITY lol{i} "{("&lol;" if i == 1 else f"&lol{i - 1};") * 10}">' for i in range(1, 10))
        content = "&lol9;"
    return (f'<?xml version="1.0" encoding="UTF-8" ?>\n{ELINK_DOCTYPE} [\n{subset}\n]>\n'
            f"<eLinkResult><LinkSet><DbFrom>{content}</DbFrom><IdList><Id>32357127</Id></IdList>"
            "</LinkSet></eLinkResult>")


_AUDIT: list[tuple[str, str]] = []
_AUDITING = threading.Event()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _AUDITING.is_set() and event in ("open", "urllib.Request", "socket.connect"):
        _AUDIT.append((event, repr(args)[:300]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it records only while _AUDITING is set


ATTACKS = [pytest.param(kind, padded, marks=(),
                        id=f"{kind}-{'past-the-64KiB-precheck' if padded else 'plain'}")
           for kind in ("xxe-file", "xxe-url", "parameter-entity", "billion-laughs") for padded in (False, True)]


@pytest.mark.parametrize(("kind", "padded"), ATTACKS)
def test_xml_entity_attacks_are_rejected_without_reading_anything(tmp_path, kind, padded):
    """Hostile input: XXE (file, URL, parameter entity) and billion laughs in an E-utilities answer."""
    sentinel = tmp_path / "secret.txt"
    sentinel.write_text("TOP-SECRET-FILE-CONTENT")
    with Exfil() as exfil, FakeEutils(seed_corpus()) as fake:
        fake.inject(Response(200, _attack(kind, sentinel, exfil.url, padded=padded), content_type="text/xml"),
                    path_contains="elink", times=100)
        client = PubMedClient(fake.url, sleep=lambda s: None, retry=RetryPolicy(max_tries=1 if padded else 2))
        tracemalloc.start()
        _AUDIT.clear()
        _AUDITING.set()
        try:
            with pytest.raises(SourceError) as err:
                client.fetch_citing(REVIEW_CONF, KnownWorks())
        finally:
            _AUDITING.clear()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert exfil.requests == []
    message = str(err.value)
    assert message.startswith("pubmed: ") and f"{fake.url}/elink.fcgi" in message
    assert "TOP-SECRET" not in message and "lollol" not in message
    assert not [e for e in _AUDIT if str(sentinel) in e[1] or exfil.url.split("//")[1] in e[1]], _AUDIT
    assert not [e for e in _AUDIT if e[0] == "urllib.Request"], _AUDIT
    assert peak < 32 * 1024 * 1024, f"peak {peak:,} bytes"
    if not padded:
        assert "declares XML entities (possible XXE or entity expansion attack); refused" in message
        assert len(fake.requests_to("elink")) == 1  # refused outright, not retried


# -- oversized bodies ------------------------------------------------------------------
class Streamer:
    """A raw HTTP server that streams a body from a generator, as fast as the client reads it."""

    def __init__(self, chunks: Callable[[], Iterator[bytes]], *, declared: int | None = None):
        streamer = self
        self.sent = 0
        self.requests = 0

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                streamer.requests += 1
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                head += f"Content-Length: {declared}\r\n" if declared else "Transfer-Encoding: chunked\r\n"
                try:
                    self.wfile.write((head + "Connection: close\r\n\r\n").encode())
                    for chunk in chunks():
                        self.wfile.write(chunk if declared else b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        streamer.sent += len(chunk)
                    if not declared:
                        self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Streamer:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _two_hundred_mb() -> Iterator[bytes]:
    block = b"[" + b'{"oci": "0612345-0698765", "citing": "omid:br/0612345 doi:10.1/x"},' * 900
    for _ in range(200 * 1024 * 1024 // len(block)):
        yield block


@pytest.mark.parametrize("framing", ["declared Content-Length", "chunked, no length"])
def test_a_200_mb_body_is_refused_with_bounded_memory(framing):
    """Hostile input: a 200 MB answer; the client stops at its cap (1 MiB here) and says so."""
    declared = 200 * 1024 * 1024 if framing.startswith("declared") else None
    with Streamer(_two_hundred_mb, declared=declared) as server:
        http = HttpClient("opencitations", server.url, rate=0, sleep=lambda s: None, max_body_bytes=1 << 20)
        tracemalloc.start()
        try:
            with pytest.raises(SourceError) as err:
                http.get("index/v2/citations/doi:10.2196/15572", parse_json("opencitations"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        time.sleep(0.2)
        sent = server.sent
    message = str(err.value)
    assert "1,048,576-byte cap; lower the page size" in message and "opencitations:" in message
    if declared:
        assert f"response of {declared:,} bytes exceeds" in message
    assert peak < 8 * 1024 * 1024, f"peak {peak:,} bytes"
    assert sent < 64 * 1024 * 1024  # the rest of the 200 MB was never pulled
    assert server.requests == 1  # not retried: asking again would get the same answer


def test_a_page_of_a_million_citations_hits_the_default_cap_with_bounded_memory():
    """Hostile input: OpenCitations lists 1,000,000 citing works in one unpaged answer (~250 MB)."""
    row = (b'{"oci": "06%09d-0610123", "citing": "omid:br/06%09d doi:10.5555/c.%d pmid:%d", "cited": '
           b'"omid:br/0610123 doi:10.2196/15572 pmid:32357127", "creation": "2024-05-01", "timespan": "P4Y", '
           b'"journal_sc": "no", "author_sc": "no"}')

    def rows() -> Iterator[bytes]:  # ~250 bytes a row, as the index sends them; generated as they are read
        yield b"["
        for start in range(0, 1_000_000, 2000):
            block = b",".join(row % (i, i, i, 30_000_000 + i) for i in range(start, start + 2000))
            yield block + (b"," if start + 2000 < 1_000_000 else b"]")

    with Streamer(rows) as server:
        client = OpenCitationsClient(server.url, sleep=lambda s: None)
        tracemalloc.start()
        try:
            with pytest.raises(SourceError, match=f"exceeds the {settings.HTTP_MAX_BODY_BYTES:,}-byte cap"):
                client.fetch_citing(REVIEW_CONF, KnownWorks())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < settings.HTTP_MAX_BODY_BYTES * 1.5, f"peak {peak:,} bytes"


MILLION_IDS_CHILD = textwrap.dedent("""
    import json
    from tests.fakes.server import FakeApi, Response
    from tests.fakes.eutils import ELINK_HEAD
    from include.living_review.sources.pubmed import PubMedClient

    links = "".join(f"<Link><Id>{40000000 + i}</Id></Link>" for i in range(1_000_000))
    body = (ELINK_HEAD + "<eLinkResult><LinkSet><DbFrom>pubmed</DbFrom><IdList><Id>32357127</Id></IdList>"
            "<LinkSetDb><DbTo>pubmed</DbTo><LinkName>pubmed_pubmed_citedin</LinkName>" + links
            + "</LinkSetDb></LinkSet></eLinkResult>").encode()
    del links

    class Elink(FakeApi):
        def handle(self, request):
            return Response(200, body, content_type="text/xml")

    with Elink() as fake:
        print("ready", flush=True)
        try:
            ids = PubMedClient(fake.url, sleep=lambda s: None).cited_by("32357127")
            print(json.dumps({"outcome": "ids", "count": len(ids)}), flush=True)
        except Exception as exc:
            print(json.dumps({"outcome": "error", "message": f"{type(exc).__name__}: {exc}"}), flush=True)
""")
RSS_LIMIT_MB = 350  # the child holds ~200 MB before parsing (interpreter, the 30 MB answer twice)


def _rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to watch the child's memory")
def test_an_elink_page_of_a_million_ids_is_refused_with_bounded_memory():
    """Hostile input: a page with 1,000,000 ids -> bounded memory and a clear error (or at most the cap)."""
    child = subprocess.Popen([sys.executable, "-c", MILLION_IDS_CHILD], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    peak, killed = 0, False
    try:
        assert child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 120
        while child.poll() is None and time.monotonic() < deadline:
            peak = max(peak, _rss_mb(child.pid))
            if peak > RSS_LIMIT_MB:
                killed = True
                break
            time.sleep(0.05)
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        pass  # the child ended between two looks
    finally:
        if child.poll() is None:
            child.kill()
        output = child.communicate(timeout=30)[0]
    assert not killed, f"the child passed {RSS_LIMIT_MB} MB RSS while parsing"
    result = json.loads(output.strip().splitlines()[-1])
    if result["outcome"] == "error":
        assert "1,000,000" in result["message"] or "limit" in result["message"] or "cap" in result["message"]
    else:
        assert result["count"] <= settings.MAX_RECORDS_PER_SOURCE


# -- unicode ---------------------------------------------------------------------------
NASTY_TITLE = "  Cafe\u0301\u00a0<i>peer</i>\u0000 support\u0007 \u202eevil\u202c \u0627\u0644\u062f\u0639\u0645 \U0001F9E0\t\n"
NASTY_NAME = ("Nguye\u0302\u0303n\u0000", "T\u001b[31m")
CLEAN_TITLE = "Café peer support evil \u0627\u0644\u062f\u0639\u0645 \U0001F9E0"
BAD = set(map(chr, [*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x20), *range(0x7f, 0xa0),
                    *range(0x202a, 0x202f), *range(0x2066, 0x206a)]))


def _nasty_paper() -> Paper:
    return Paper(title=NASTY_TITLE, authors=[NASTY_NAME], journal_abbrev="J\u0000 X", journal="J\u0007 X\u202e",
                 year=2025, pmid="39000001", pmcid="PMC39000001", doi="10.5555/nasty.1", openalex_id="W39000001",
                 s2_paper_id="f" * 40)


MAPPERS: dict[str, Callable[[Paper], Any]] = {
    "europepmc": lambda p: from_europepmc(core_record(p)),
    "openalex": lambda p: from_openalex(work_json(p)),
    "semanticscholar": lambda p: from_semanticscholar(citing_paper(p)),
    "crossref": lambda p: from_crossref(work_message(p, cites=[])),
}


@pytest.mark.parametrize("source", list(MAPPERS))
def test_every_mapper_cleans_hostile_unicode(source):
    """Hostile input: NUL, controls, bidi overrides removed; combining marks composed (NFC); RTL and emoji kept."""
    work = MAPPERS[source](_nasty_paper())
    assert work.title == CLEAN_TITLE
    texts = [work.title, work.journal or "", *work.authors]
    for text in texts:
        assert not BAD & set(text), (source, text)
        assert unicodedata.is_normalized("NFC", text)
        text.encode("utf-8")
    assert any(a.startswith("Nguyễn") for a in work.authors), work.authors


def test_a_lone_surrogate_in_one_title_does_not_sink_the_source(tmp_path):
    ctx = RunContext.create(REVIEW_CONF, tmp_path / "data", dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc), "r")
    papers = seed_corpus()
    papers[0].title = "Peer support \ud83d outcomes."  # half an emoji: what a broken JSON encoder emits
    with FakeEuropePmc(papers) as fake:
        stats = fetch_source(ctx, "europepmc", EuropePmcClient(fake.url, sleep=lambda s: None))
    assert stats["status"] == "ok" and stats["works"] == 20


@pytest.mark.parametrize("doi", ["10.1234/abc\x1b[31m", "10.1234/a\x00b", "10.1234/x\u202egnp.exe"])
def test_a_doi_with_control_characters_is_not_a_doi(doi):
    assert normalize_doi(doi) is None


def test_a_title_with_less_than_and_greater_than_signs_keeps_its_text():
    assert clean_title("Outcomes at age <65 years and >80 years: a cohort study.")[0] == \
        "Outcomes at age <65 years and >80 years: a cohort study."


# -- config -----------------------------------------------------------------------------
GOOD = "  - {id: good-one, title: Good, pmid: '1', doi: 10.1234/x}\n"


@pytest.mark.parametrize(("name", "body", "needles"), [
    ("YAML syntax error", "reviews:\n" + GOOD + "  - {id: broken, title: [unclosed\n",
     ["not valid YAML", ", column ", "correct the YAML syntax"]),
    ("empty review list", "reviews: []\n", ["reviews", "non-empty list", "add at least one review"]),
])
def test_an_unusable_config_loads_no_dag_at_all_and_says_why(tmp_path, monkeypatch, name, body, needles):
    """Config: a file that cannot be read as a whole is one import error and no half-loaded DAGs."""
    from airflow.dag_processing.dagbag import DagBag

    config = tmp_path / "reviews.yaml"
    config.write_text(body, encoding="utf-8")
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config))
    bag = DagBag(str(ROOT / "dags"))
    assert not [d for d in bag.dag_ids if d.startswith("living_review__") or d.startswith("living_review_digest")]
    (path, message), = bag.import_errors.items()
    assert path.endswith("living_review_config_check.py") and str(config) in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_a_duplicate_review_id_is_an_import_error_and_the_first_still_loads(tmp_path, monkeypatch):
    """Config: the second entry with the same id is refused (named), the first keeps its DAGs."""
    from airflow.dag_processing.dagbag import DagBag

    config = tmp_path / "reviews.yaml"
    config.write_text("reviews:\n" + GOOD + GOOD.replace("Good", "Other"), encoding="utf-8")
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config))
    bag = DagBag(str(ROOT / "dags"))
    assert {"living_review__good_one", "living_review_digest__good_one"} <= set(bag.dag_ids)
    assert bag.dags["living_review__good_one"].description == "Good"
    (path, message), = bag.import_errors.items()
    assert "reviews[1]" in message and "duplicates the id 'good-one'" in message and "unique" in message


def test_dns_guard_is_active():
    """The suite's own guard: a name that is not loopback fails locally (see conftest.py)."""
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("api.openalex.org", 443)
