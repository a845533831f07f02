"""Secrets never reach a log line or an error: redaction of URLs, scrubbing of messages, raw or URL-encoded."""
from __future__ import annotations

from urllib.parse import quote, quote_plus

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ProtocolError

from include.living_review.sources.http import (
    SECRET_HEADERS,
    HttpClient,
    RetryableError,
    RetryPolicy,
    SourceError,
    _network_reason,
    _short,
    parse_json,
    redact_url,
    scrub,
    secret_values,
)
from tests.fakes.server import FakeApi, Request, Response

# A key with every character class that URL encoding treats differently.
KEY = "k3y/with+plus and@at"


def test_redact_url_hides_secret_parameters_whatever_their_case_and_keeps_the_rest():
    url = redact_url("https://api.example.org/works", {"API_KEY": "s3cret", "Mailto": "me@example.org", "q": "peer support",
                                                       "ids": ["1", "2"]})
    assert url == "https://api.example.org/works?API_KEY=%2A%2A%2A&Mailto=%2A%2A%2A&q=peer+support&ids=1&ids=2"
    assert redact_url("https://api.example.org/works", None) == "https://api.example.org/works"
    assert redact_url("https://api.example.org/works", {}) == "https://api.example.org/works"


def test_secret_values_takes_secret_named_entries_of_every_mapping():
    params = {"api_key": "s3cret", "q": "not secret", "EMAIL": "me@example.org", "token": "", "key": None,
              "mailto": 12345}
    assert secret_values(params, None, {"x-api-key": "h3ader"}) == {"s3cret", "me@example.org", "12345", "h3ader"}
    assert secret_values({"Authorization": "Bearer abc", "Accept": "json"}, names=SECRET_HEADERS) == {"Bearer abc"}
    assert secret_values({"x-custom": "c"}, names=["X-Custom"]) == {"c"}  # the names are compared lower-cased
    assert secret_values({"q": "x"}) == set()


def test_scrub_removes_each_secret_raw_and_url_encoded():
    text = f"raw {KEY} | quote {quote(KEY, safe='')} | path-quote {quote(KEY)} | plus {quote_plus(KEY)} | end"
    assert scrub(text, {KEY}) == "raw *** | quote *** | path-quote k3y/with%2Bplus%20and%40at | plus *** | end"


def test_scrub_replaces_a_secret_inside_another_longest_first():
    # "zzzz" sorts after "abzzzzcd": replacing by name order would leave "ab***cd" behind.
    assert scrub("token abzzzzcd and zzzz", {"zzzz", "abzzzzcd"}) == "token *** and ***"


def test_scrub_leaves_values_too_short_to_be_a_key():
    assert scrub("a 1 b abc abcd", {"1", "abc", "abcd"}) == "a 1 b abc ***"
    assert scrub("nothing to hide", set()) == "nothing to hide"


def test_scrub_drops_the_query_string_of_urllib3_messages():
    message = "Max retries exceeded with url: /works?api_key=xyz&page=2 (Caused by ConnectTimeoutError())"
    assert scrub(message, set()) == "Max retries exceeded with url: /works?*** (Caused by ConnectTimeoutError())"


def wrapped(reason: Exception) -> requests.ConnectionError:
    """What requests raises: its ConnectionError around urllib3's MaxRetryError around the cause."""
    return requests.ConnectionError(MaxRetryError(None, "/works?api_key=xyz", reason=reason))  # type: ignore[arg-type]


def test_network_reason_names_the_host_that_did_not_resolve():
    error = NameResolutionError("api.openalex.org", None, OSError("[Errno -3] Temporary failure"))  # type: ignore[arg-type]
    assert _network_reason(wrapped(error)) == "cannot resolve api.openalex.org (no network, or DNS failed)"
    assert _network_reason(requests.ConnectionError(OSError("Failed to resolve 'x.org' (gaierror)"))) == \
        "cannot resolve x.org (no network, or DNS failed)"


def test_network_reason_knows_a_resolution_error_by_its_type_when_the_text_differs():
    class NameResolutionError(OSError):  # another urllib3 version's wording
        pass

    assert _network_reason(wrapped(NameResolutionError("[Errno -2] Name or service not known"))) == \
        "cannot resolve the host (no network, or DNS failed)"


def test_network_reason_says_connection_refused_and_what_to_check():
    refused = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    assert _network_reason(wrapped(refused)) == \
        "connection refused (is the service up, and is the connection's host right?)"


def test_network_reason_gives_the_inner_error_without_the_url_laden_wrapper():
    assert _network_reason(wrapped(ProtocolError("Connection aborted."))) == "ProtocolError: Connection aborted."
    assert _network_reason(requests.ConnectionError(ProtocolError("reset"))) == "ProtocolError: reset"
    assert _network_reason(requests.ConnectionError("plain text")) == "plain text"
    assert _network_reason(requests.ConnectionError()) == ""


def test_short_keeps_up_to_199_characters_and_cuts_longer_text_at_200():
    assert _short("x" * 199) == "x" * 199
    assert _short("x" * 200) == "x" * 200 + "…"
    assert _short("y" * 500) == "y" * 200 + "…"
    assert _short(ValueError("boom")) == "boom"


class EchoesKey(FakeApi):
    """A server whose error page quotes the key it was sent: form-encoded, percent-encoded and raw."""

    def handle(self, request: Request) -> Response:
        key = request.param("api_key") or ""
        return Response(400, f"bad request {request.path}?api_key={quote_plus(key)} (key {quote(key, safe='')}, "
                             f"{key})", content_type="text/plain")


def test_a_4xx_body_that_quotes_the_key_in_any_encoding_is_scrubbed_from_the_error():
    with EchoesKey() as fake:
        http = HttpClient("test", fake.url, rate=0, sleep=lambda s: None, retry=RetryPolicy(max_tries=1))
        with pytest.raises(SourceError) as err:
            http.get("works", parse_json("test"), params={"api_key": KEY, "q": "x"})
    message = str(err.value)
    assert "HTTP 400" in message and "bad request /works" in message
    for form in (KEY, quote(KEY, safe=""), quote_plus(KEY), "k3y"):
        assert form not in message, form


def test_a_network_error_names_its_cause_without_the_key():
    http = HttpClient("test", "http://127.0.0.1:9", rate=0, sleep=lambda s: None, retry=RetryPolicy(max_tries=1))
    with pytest.raises(RetryableError) as err:
        http.get("works", parse_json("test"), params={"api_key": KEY})
    message = str(err.value)
    assert "network error: ConnectionError: connection refused" in message
    assert "k3y" not in message and err.value.__cause__ is None and err.value.__suppress_context__
