"""The shared retry and throttle layer, over a real local socket."""
from __future__ import annotations

import datetime as dt
import email.utils

import pytest
import requests

from include.living_review.sources.http import (
    HttpClient,
    RetryableError,
    RetryPolicy,
    SourceError,
    Throttle,
    parse_json,
    parse_retry_after,
)
from tests.fakes.server import FakeApi, Request, Response


class Echo(FakeApi):
    def handle(self, request: Request) -> Response:
        return Response(200, {"path": request.path, "n": len(self.requests)})


@pytest.fixture
def echo():
    with Echo() as fake:
        yield fake


def client(fake, **kwargs) -> tuple[HttpClient, list[float]]:
    sleeps: list[float] = []
    return HttpClient("test", fake.url, rate=0, sleep=sleeps.append, **kwargs), sleeps


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("7") == 7.0
    now = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.timezone.utc)
    date = email.utils.format_datetime(now + dt.timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(date, now=lambda: now) == 30.0
    assert parse_retry_after("garbage") is None


def test_429_honours_retry_after_with_cap(echo):
    echo.inject(Response(429, {"error": "slow down"}, headers={"Retry-After": "3"}))
    echo.inject(Response(503, "busy", headers={"Retry-After": "9999"}))
    http, sleeps = client(echo, retry=RetryPolicy(retry_after_cap=60))
    assert http.get("x", parse_json("test"))["path"] == "/x"
    assert sleeps == [3.0, 60.0]
    assert http.log.status_counts() == {"429": 1, "503": 1, "200": 1}


def test_backoff_is_capped_exponential(echo):
    echo.inject(Response(500, "oops"), times=4)
    http, sleeps = client(echo, retry=RetryPolicy(max_tries=5, backoff_base=1, backoff_cap=3))
    http.get("x", parse_json("test"))
    sleeps = [s for s in sleeps if s > 0.01]  # drop the throttle's sub-millisecond waits
    assert len(sleeps) == 4
    for attempt, slept in enumerate(sleeps, start=1):
        full = min(3, 2 ** (attempt - 1))
        assert full / 2 <= slept <= full


def test_gives_up_with_clear_message_and_no_secret(echo):
    echo.inject(Response(503, "busy"), times=10)
    http, _ = client(echo, retry=RetryPolicy(max_tries=3))
    with pytest.raises(RetryableError) as err:
        http.get("works", parse_json("test"), params={"api_key": "TOPSECRET", "q": "x"})
    message = str(err.value)
    assert "HTTP 503" in message and "/works" in message and "api_key=%2A%2A%2A" in message
    assert "TOPSECRET" not in message
    assert len(echo.requests) == 3


def test_4xx_is_not_retried(echo):
    echo.inject(Response(404, "Resource not found.", content_type="text/plain"))
    http, sleeps = client(echo)
    with pytest.raises(SourceError, match="HTTP 404.*Resource not found"):
        http.get("x", parse_json("test"))
    assert sleeps == [] and len(echo.requests) == 1


def test_truncated_body_is_retried(echo):
    echo.inject(Response(200, {"results": list(range(500))}, truncate_to=40))
    http, sleeps = client(echo)
    assert http.get("x", parse_json("test"))["path"] == "/x"
    assert len(sleeps) == 1 and len(echo.requests) == 2


def test_connection_reset_is_retried(echo):
    echo.inject(Response(drop=True))
    http, sleeps = client(echo)
    assert http.get("x", parse_json("test"))["path"] == "/x"
    assert len(sleeps) == 1


def test_read_timeout_is_retried(echo):
    echo.inject(Response(200, {"late": True}, delay=1.5))
    http, sleeps = client(echo, timeout=(2, 0.5))
    assert http.get("x", parse_json("test"))["path"] == "/x"
    assert len(sleeps) == 1


def test_unreachable_host_fails_after_retries():
    http = HttpClient("test", "http://127.0.0.1:9", rate=1000, sleep=lambda s: None, retry=RetryPolicy(max_tries=2))
    with pytest.raises(RetryableError, match="network error"):
        http.get("x", parse_json("test"))


def test_oversized_body_is_refused(echo):
    echo.inject(Response(200, b"x" * 5000))
    http, _ = client(echo, max_body_bytes=1000)
    with pytest.raises(SourceError, match="exceeds the 1,000-byte cap"):
        http.get("x", parse_json("test"))


def test_throttle_spaces_calls():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    throttle = Throttle(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        throttle.wait()
    assert slept == pytest.approx([0.25, 0.25, 0.25, 0.25])


class _Body:
    """What ``parse_json`` reads from a response besides the body."""

    url = "https://api.example.org/works?api_key=SECRET"
    headers = {"Content-Type": "application/json"}


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"title": "Peer support \\ud83d outcomes."}', {"title": "Peer support \ud83d outcomes."}),
    (b'{"title": "\\ud83d\\ude00"}', {"title": "\U0001f600"}),
    (b'{"n": NaN, "big": 1e400, "int": 123456789012345678901234567890}',
     {"n": pytest.approx(float("nan"), nan_ok=True), "big": float("inf"), "int": 123456789012345678901234567890}),
    (b'\xef\xbb\xbf{"a": [1, 2.5, null, true]}', {"a": [1, 2.5, None, True]}),
    ("{\"text\": \"déjà vu\"}".encode(), {"text": "déjà vu"}),
])
def test_parse_json_accepts_what_json_loads_accepts(body, expected):
    """msgspec refuses a lone surrogate escape, NaN, a BOM and an out-of-range number; json.loads takes over."""
    assert parse_json("test")(_Body(), body) == expected


@pytest.mark.parametrize(("body", "message"), [
    (b'{"results": [1, 2', "test: expected JSON but got invalid JSON (Expecting ',' delimiter at byte 17) "
                           "(Content-Type 'application/json') (https://api.example.org/works)"),
    (b"  <html><body>Bad gateway</body></html>", "test: expected JSON but got an HTML page "
                                                 "(Content-Type 'application/json') (https://api.example.org/works)"),
    (b"", "test: expected JSON but got invalid JSON (Expecting value at byte 0) "
          "(Content-Type 'application/json') (https://api.example.org/works)"),
    (b'"\xff"', "test: expected JSON but got invalid JSON (Content-Type 'application/json') "
                "(https://api.example.org/works)"),
])
def test_parse_json_names_what_it_got_instead(body, message):
    with pytest.raises(RetryableError) as err:
        parse_json("test")(_Body(), body)
    assert str(err.value) == message


# -- gzip: Content-Length counts the compressed bytes (issue 14, item 4) ---------------
@pytest.mark.parametrize("document", [[], {"results": [{"oci": "06101801781-06180334099"}], "next": None}])
def test_a_small_gzip_body_is_read_whole_not_reported_truncated(echo, document):
    """OpenCitations' ``[]`` gzipped is 22 bytes on the wire and 2 decoded: not a truncation."""
    import gzip
    import json

    wire = gzip.compress(json.dumps(document).encode())
    assert len(json.dumps(document)) != len(wire)  # the declared length is not the decoded one
    echo.inject(Response(200, wire, headers={"Content-Encoding": "gzip"}))
    http, sleeps = client(echo, retry=RetryPolicy(max_tries=1))
    assert http.get("x", parse_json("test")) == document
    assert sleeps == [] and len(echo.requests) == 1


def test_a_truncated_gzip_body_is_still_retried(echo):
    import gzip
    import json

    wire = gzip.compress(json.dumps({"results": list(range(5000))}).encode())
    echo.inject(Response(200, wire, headers={"Content-Encoding": "gzip"}, truncate_to=len(wire) // 2))
    http, _ = client(echo, retry=RetryPolicy(max_tries=1))
    with pytest.raises(RetryableError, match="IncompleteRead"):
        http.get("x", parse_json("test"))
    echo.inject(Response(200, wire, headers={"Content-Encoding": "gzip"}, truncate_to=len(wire) // 2))
    http, sleeps = client(echo)
    assert http.get("x", parse_json("test"))["path"] == "/x"  # the retry got the whole page
    assert len(sleeps) == 1 and len(echo.requests) == 3


def test_a_gzip_bomb_is_stopped_at_the_cap_with_bounded_memory(echo):
    """64 MiB of zeros is 64 KiB gzipped: the compressed size passes the declared-size check,
    the decoded size is stopped at the cap, and memory stays near the cap, not the bomb."""
    import gzip
    import tracemalloc

    wire = gzip.compress(b"0" * (64 << 20), compresslevel=9)
    echo.inject(Response(200, wire, headers={"Content-Encoding": "gzip"}))
    http, _ = client(echo, max_body_bytes=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(SourceError, match="exceeds the 1,048,576-byte cap"):
            http.get("x", parse_json("test"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak
    assert len(echo.requests) == 1  # the cap is not retried


# -- a total deadline per request (issue 14, item 5) -----------------------------------
class Ticks:
    """A clock that moves ``step`` seconds each time it is read: the deadline without waiting for it."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_slow_loris_is_cut_at_the_total_deadline_and_retried(echo):
    """Headers at once, then a byte every few ms: the read timeout never fires, the deadline does."""
    drip = Response(200, {"results": list(range(200))}, trickle=0.005)
    echo.inject(drip, times=2)
    http, sleeps = client(echo, timeout=(2, 0.5), deadline=10.0, clock=Ticks(1.0),
                          retry=RetryPolicy(max_tries=2))
    with pytest.raises(RetryableError) as err:
        http.get("works", parse_json("test"), params={"api_key": "TOPSECRET", "q": "x"})
    message = str(err.value)
    assert message.startswith("test: no complete answer within the 10-second deadline")
    assert "gave up after 2 tries" in message
    assert f"{echo.url}/works?api_key=%2A%2A%2A&q=x" in message and "TOPSECRET" not in message
    assert len(echo.requests) == 2 and len(sleeps) == 1  # retried like any network error


def test_a_body_within_the_deadline_is_read(echo):
    echo.inject(Response(200, {"results": list(range(20))}, trickle=0.001))
    http, sleeps = client(echo, timeout=(2, 0.5), deadline=1000.0, clock=Ticks(1.0))
    assert http.get("x", parse_json("test")) == {"results": list(range(20))}
    assert sleeps == []


def test_the_deadline_defaults_to_the_setting(echo):
    from include.living_review import settings

    assert client(echo)[0].deadline == settings.HTTP_REQUEST_DEADLINE > max(settings.HTTP_TIMEOUT)


# -- redirects never carry a secret to another host (issue 14, item 9) ------------------
class Redirecting(FakeApi):
    """Answers ``/moved`` with ``status`` and ``Location: target``; anything else as Echo does."""

    def __init__(self) -> None:
        super().__init__()
        self.target, self.status = "", 302

    def handle(self, request: Request) -> Response:
        if request.path == "/moved":
            return Response(self.status, "", headers={"Location": self.target})
        return Response(200, {"path": request.path, "n": len(self.requests)})


@pytest.fixture
def origin():
    with Redirecting() as fake:
        yield fake


def _secret_headers(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items() if k.lower() in ("x-api-key", "authorization")}


@pytest.mark.parametrize("elsewhere", ["another host", "another port"])
def test_a_redirect_to_another_host_carries_no_secret_header_or_param(origin, echo, elsewhere):
    """Semantic Scholar answers 302 to another host: neither x-api-key nor a secret param goes along."""
    other = echo.url.replace("127.0.0.1", "localhost") if elsewhere == "another host" else echo.url
    origin.target = f"{other}/landing?api_key=TOPSECRET&mailto=me%40x.org&q=x"
    http = HttpClient("test", origin.url, rate=0, sleep=lambda s: None,
                      headers={"x-api-key": "TOPSECRET", "Authorization": "Bearer TOPSECRET"})
    assert http.get("moved", parse_json("test"), params={"api_key": "TOPSECRET"})["path"] == "/landing"
    (asked,) = origin.requests
    assert _secret_headers(asked) == {"x-api-key": "TOPSECRET", "authorization": "Bearer TOPSECRET"}
    (landed,) = echo.requests
    assert _secret_headers(landed) == {} and landed.params == {"q": "x"}
    assert "TOPSECRET" not in repr(landed)


def test_a_posted_form_keeps_its_fields_but_not_its_key_across_a_307_to_another_host(origin, echo):
    """A 307 repeats the POST with its body (E-utilities posts api_key in the form): the key is dropped."""
    origin.status, origin.target = 307, f"{echo.url}/landing"
    http = HttpClient("test", origin.url, rate=0, sleep=lambda s: None)
    http.post("moved", parse_json("test"), data={"api_key": "TOPSECRET", "id": "1,2", "db": "pubmed"})
    (landed,) = echo.requests
    assert landed.method == "POST" and landed.params == {"id": "1,2", "db": "pubmed"}
    assert b"TOPSECRET" not in landed.body and int(landed.headers["Content-Length"]) == len(landed.body)


def test_a_redirect_on_the_same_host_keeps_the_key(origin):
    origin.target = f"{origin.url}/landing?q=x"
    http = HttpClient("test", origin.url, rate=0, sleep=lambda s: None, headers={"x-api-key": "TOPSECRET"})
    assert http.get("moved", parse_json("test"))["path"] == "/landing"
    assert [_secret_headers(r) for r in origin.requests] == [{"x-api-key": "TOPSECRET"}] * 2


@pytest.mark.parametrize(("before", "after", "dropped"), [
    ("https://api.example.org/x", "http://api.example.org/x", True),      # a scheme downgrade
    ("https://api.example.org/x", "https://cdn.example.net/x", True),     # another host
    ("https://api.example.org/x", "https://api.example.org:8443/x", True),  # another port
    ("http://api.example.org/x", "https://api.example.org/x", False),     # an upgrade on standard ports
    ("https://api.example.org/x", "https://api.example.org/y", False),
])
def test_which_redirects_lose_the_secrets(before, after, dropped):
    """The decision is requests' own (``should_strip_auth``, what it uses for Authorization)."""
    from include.living_review.sources.http import drop_secrets_on_redirect

    hop = requests.Request("GET", after + "?api_key=K&q=1", headers={"X-Api-Key": "K", "Accept": "json"}).prepare()
    drop_secrets_on_redirect(requests.Session(), before, hop)
    assert ("X-Api-Key" not in hop.headers) is dropped and ("api_key=K" not in hop.url) is dropped
    assert hop.headers["Accept"] == "json" and "q=1" in hop.url


def test_a_redirect_loop_fails_clearly(origin):
    origin.target = f"{origin.url}/moved"
    http = HttpClient("test", origin.url, rate=0, sleep=lambda s: None)
    with pytest.raises(SourceError, match=r"more than 30 redirects"):
        http.get("moved", parse_json("test"), params={"api_key": "TOPSECRET"})
