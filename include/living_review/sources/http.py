"""The one HTTP layer every source client uses: throttle, retry, size cap, request log.

Retry follows habanero's ``retry.py`` shape, built on tenacity: a named set of
retryable statuses, capped exponential backoff, ``Retry-After`` honoured in seconds
or as an HTTP date (with a cap), and a ``sleep`` seam that tests replace.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError
from urllib3.exceptions import SSLError as Urllib3SSLError

from include.living_review import settings
from include.living_review.redact import scrub_secrets

log = logging.getLogger(__name__)
T = TypeVar("T")

# 429 and 503 are the providers' documented "slow down" answers; 502/504 come from
# their gateways (Semantic Scholar's CloudFront, EBI's load balancer). 500 is in the
# set too: NCBI and Europe PMC answer transient 500s under load, and a persistent
# 500 still fails after ``max_tries`` with the status in the message.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
SECRET_PARAMS = frozenset({"api_key", "apikey", "key", "token", "email", "mailto", "x-api-key"})
SECRET_HEADERS = frozenset({"authorization", "x-api-key"})
# urllib3 puts the request path *with its query string* into connection errors
# ("Max retries exceeded with url: /works?api_key=..."); the query is dropped.
_URL_IN_MESSAGE = re.compile(r"(url: [^\s?]*)\?\S*")


class SourceError(RuntimeError):
    """A request to a source failed for good. The message is safe to log: no secrets."""

    def __init__(self, source: str, url: str, message: str, *, status: int | None = None):
        self.source = source
        self.url = url
        self.status = status
        super().__init__(f"{source}: {message} ({url})")


class RetryableError(SourceError):
    """A failure worth another try: throttling, a 5xx, a network error, a truncated body."""

    def __init__(self, source: str, url: str, message: str, *, status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(source, url, message, status=status)
        self.retry_after = retry_after


class BodyError(SourceError):
    """HTTP 200 whose body is an error (E-utilities ``<ERROR>``, Europe PMC ``errCode``)."""


def parse_retry_after(value: str | None, *, now: Callable[[], dt.datetime] | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    current = now() if now else dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - current).total_seconds())


def redact_url(url: str, params: Mapping[str, Any] | None = None) -> str:
    """The URL with secret query parameters replaced by ``***``."""
    if not params:
        return url
    shown = {k: ("***" if k.lower() in SECRET_PARAMS else v) for k, v in params.items()}
    return f"{url}?{urlencode(shown, doseq=True)}"


def secret_values(*mappings: Mapping[str, Any] | None, names: Iterable[str] = SECRET_PARAMS) -> set[str]:
    """The values of secret-named entries, for :func:`scrub`."""
    wanted = {n.lower() for n in names}
    return {str(v) for m in mappings if m for k, v in m.items() if k.lower() in wanted and v}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` without query strings in urllib3-style messages and without any secret, raw or URL-encoded."""
    return scrub_secrets(_URL_IN_MESSAGE.sub(r"\1?***", text), secrets)


def drop_secrets_on_redirect(session: requests.Session, from_url: str, hop: requests.PreparedRequest) -> bool:
    """Remove secret headers, query params and form fields from ``hop`` if it leaves ``from_url``'s origin.

    requests strips only ``Authorization`` on such a redirect; a custom header
    (``x-api-key``) or a key in the query or a 307's re-posted form would go along.
    "Leaves the origin" is requests' own test (``should_strip_auth``): another host
    or port, or a scheme change other than http -> https on the standard ports.
    Returns True when the hop is cross-origin.
    """
    if not session.should_strip_auth(from_url, hop.url or ""):
        return False
    for name in [h for h in hop.headers if h.lower() in SECRET_HEADERS]:
        del hop.headers[name]
    parts = urlsplit(hop.url or "")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k.lower() in SECRET_PARAMS for k, _ in query):
        kept = [(k, v) for k, v in query if k.lower() not in SECRET_PARAMS]
        hop.url = parts._replace(query=urlencode(kept)).geturl()
    if hop.body and "form-urlencoded" in (hop.headers.get("Content-Type") or ""):
        body = hop.body.decode() if isinstance(hop.body, bytes) else str(hop.body)
        fields = parse_qsl(body, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMS for k, _ in fields):
            hop.prepare_body([(k, v) for k, v in fields if k.lower() not in SECRET_PARAMS], None)
    return True


class Throttle:
    """At most ``rate`` calls per second, shared by every thread using one client.

    Hand-written because requests/urllib3 have no client-side rate limit; Airflow
    pools cap concurrency, not requests per second.
    """

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            self._sleep(delay)


@dataclass
class RetryPolicy:
    max_tries: int = settings.HTTP_MAX_TRIES
    backoff_base: float = settings.HTTP_BACKOFF_BASE
    backoff_cap: float = settings.HTTP_BACKOFF_CAP
    retry_after_cap: float = settings.HTTP_RETRY_AFTER_CAP

    def wait_seconds(self, attempt: int, error: BaseException | None) -> float:
        """Retry-After when the server gave one (capped), else capped exponential backoff with jitter."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        backoff = min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1)))
        return backoff * (0.5 + random.random() / 2)


@dataclass
class RequestRecord:
    method: str
    url: str  # redacted
    status: int | None
    seconds: float


@dataclass
class RequestLog:
    """What a client asked, for the manifest's audit trail."""

    records: list[RequestRecord] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.records)

    def status_counts(self) -> dict[str, int]:
        return dict(Counter(str(r.status) if r.status is not None else "error" for r in self.records))

    def summary(self) -> dict[str, Any]:
        return {"requests": self.count, "status_counts": self.status_counts(),
                "urls": sorted({r.url for r in self.records})[:50]}


class HttpClient:
    """A throttled, retrying HTTP client bound to one source's base URL."""

    def __init__(self, source: str, base_url: str, *, rate: float,
                 session: requests.Session | None = None,
                 headers: Mapping[str, str] | None = None,
                 retry: RetryPolicy | None = None,
                 timeout: tuple[float, float] = settings.HTTP_TIMEOUT,
                 max_body_bytes: int = settings.HTTP_MAX_BODY_BYTES,
                 deadline: float = settings.HTTP_REQUEST_DEADLINE,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.headers = {"User-Agent": settings.USER_AGENT, **(headers or {})}
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.deadline = deadline
        self.sleep = sleep
        self.clock = clock  # the deadline's clock; tests pass one that does not need waiting for
        # 5% under the limit: pacing exactly at it lets limit+1 requests land in one rolling second.
        self.throttle = Throttle(rate * settings.RATE_SAFETY, sleep=sleep)
        self.log = RequestLog()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    def request(self, method: str, path: str, parse: Callable[[requests.Response, bytes], T], *,
                params: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None,
                ok_statuses: frozenset[int] = frozenset({200})) -> T:
        """Send, check and parse one request, retrying what is retryable.

        ``parse(response, body)`` turns the body into a value; it raises
        :class:`RetryableError` for truncated bodies and :class:`SourceError` for
        anything that will not get better by asking again.
        """
        url = self.url(path)
        shown = redact_url(url, params)
        secrets = secret_values(params, data) | secret_values({**self.headers, **(headers or {})},
                                                              names=SECRET_HEADERS)

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning("%s: try %d of %d failed (%s); retrying in %.1fs", self.source,
                        state.attempt_number, self.retry.max_tries, error, state.upcoming_sleep)

        retrying = Retrying(
            stop=stop_after_attempt(self.retry.max_tries),
            wait=lambda state: self.retry.wait_seconds(
                state.attempt_number, state.outcome.exception() if state.outcome else None),
            retry=retry_if_exception(lambda e: isinstance(e, RetryableError)),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._once, method, url, shown, parse, params, data, headers, ok_statuses, secrets)
        except RetryableError as exc:
            if self.retry.max_tries <= 1:
                raise
            message = str(exc).removeprefix(f"{exc.source}: ").removesuffix(f" ({exc.url})")
            raise RetryableError(exc.source, exc.url, f"{message}; gave up after {self.retry.max_tries} tries",
                                 status=exc.status, retry_after=exc.retry_after) from exc

    def get(self, path: str, parse: Callable[[requests.Response, bytes], T], **kwargs: Any) -> T:
        return self.request("GET", path, parse, **kwargs)

    def post(self, path: str, parse: Callable[[requests.Response, bytes], T], **kwargs: Any) -> T:
        return self.request("POST", path, parse, **kwargs)

    def _once(self, method: str, url: str, shown: str, parse: Callable[[requests.Response, bytes], T],
              params: Mapping[str, Any] | None, data: Mapping[str, Any] | None,
              headers: Mapping[str, str] | None, ok_statuses: frozenset[int], secrets: set[str] = frozenset()) -> T:
        self.throttle.wait()
        started = self.clock()
        status: int | None = None
        try:
            with self._send(method, url, shown, started, params=params, data=data,
                            headers={**self.headers, **(headers or {})}) as response:
                status = response.status_code
                self._check_deadline(started, shown, "before the body")
                if status in RETRYABLE_STATUSES:
                    raise RetryableError(self.source, shown, f"HTTP {status}", status=status,
                                         retry_after=parse_retry_after(response.headers.get("Retry-After")))
                if status not in ok_statuses:
                    snippet = response.raw.read(300, decode_content=True).decode("utf-8", "replace").strip()
                    raise SourceError(self.source, shown, f"HTTP {status}: {scrub(snippet, secrets)[:200]!r}",
                                      status=status)
                body = self._read_capped(response, shown, started)
            return parse(response, body)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            # ``from None``: requests' own message (printed with a chained traceback)
            # holds the full URL, secrets included; the scrubbed text keeps the cause.
            raise RetryableError(self.source, shown, f"network error: {type(exc).__name__}: "
                                 f"{_short(scrub(_network_reason(exc), secrets))}") from None
        finally:
            self.log.records.append(RequestRecord(method, shown, status, self.clock() - started))

    def _send(self, method: str, url: str, shown: str, started: float, **kwargs: Any) -> requests.Response:
        """The final response after redirects, each hop stripped of secrets if it leaves the origin.

        requests prepares each hop (``Response.next`` with ``allow_redirects=False``:
        relative Locations, 303 -> GET, cookies, proxies); only the secret-stripping
        step is added, then the hop is sent the way requests itself sends it.
        """
        response = self.session.request(method, url, stream=True, timeout=self.timeout, allow_redirects=False,
                                        **kwargs)
        for _ in range(self.session.max_redirects):
            hop = response.next
            if hop is None:
                return response
            response.close()
            self._check_deadline(started, shown, "following redirects")
            if drop_secrets_on_redirect(self.session, response.request.url or "", hop):
                log.info("%s: redirected from %s to another origin (%s); its API key and contact "
                         "parameters are not sent there", self.source, shown, urlsplit(hop.url or "").hostname)
            environment = self.session.merge_environment_settings(hop.url, {}, True, None, None)
            response = self.session.send(hop, timeout=self.timeout, allow_redirects=False, **environment)
        response.close()
        raise SourceError(self.source, shown, f"more than {self.session.max_redirects} redirects")

    def _check_deadline(self, started: float, shown: str, progress: str) -> None:
        elapsed = self.clock() - started
        if elapsed > self.deadline:
            raise RetryableError(self.source, shown, f"no complete answer within the {self.deadline:g}-second "
                                 f"deadline ({progress} after {elapsed:.0f}s); the server is answering too "
                                 "slowly (settings.HTTP_REQUEST_DEADLINE)")

    def _read_capped(self, response: requests.Response, shown: str, started: float) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise SourceError(self.source, shown, f"response of {int(declared):,} bytes exceeds the "
                              f"{self.max_body_bytes:,}-byte cap; lower the page size")
        chunks: list[bytes] = []
        size = 0
        for chunk in _arrived(response):
            self._check_deadline(started, shown, f"{size:,} bytes of the body")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise SourceError(self.source, shown, f"response exceeds the {self.max_body_bytes:,}-byte "
                                  "cap; lower the page size")
            chunks.append(chunk)
        # No length check here: Content-Length counts the bytes on the wire, compressed
        # ones for a gzip body, while these chunks are decoded. urllib3 2 checks the wire
        # bytes itself (``enforce_content_length``, on by default) and raises
        # IncompleteRead for a short body, which arrives here as ChunkedEncodingError.
        return b"".join(chunks)


def _arrived(response: requests.Response) -> Iterator[bytes]:
    """The decoded body as it arrives: ``iter_content`` with ``read1`` instead of ``read``.

    Hand-written because ``iter_content(n)`` blocks until ``n`` bytes came (a drip of a
    byte a second fills 64 KiB in 18 hours) and requests/urllib3 have no total
    timeout. urllib3's ``read1`` returns what one network read brought, so the caller
    checks its deadline between reads; decoding, the gzip-bomb limit and the
    Content-Length check stay urllib3's. Errors are mapped as ``iter_content`` maps them.
    """
    try:
        while chunk := response.raw.read1(1 << 16, decode_content=True):
            yield chunk
    except ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc
    except ReadTimeoutError as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    except Urllib3SSLError as exc:
        raise requests.exceptions.SSLError(exc) from exc


def _network_reason(exc: BaseException) -> str:
    """The innermost cause of a requests network error ("Failed to resolve 'x'"), not its URL-laden wrapper."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", None) or reason  # urllib3's MaxRetryError wraps the real error
    text = str(reason)
    if "NameResolutionError" in type(reason).__name__ or "Failed to resolve" in text:
        host = re.search(r"Failed to resolve '([^']+)'", text)
        return f"cannot resolve {host.group(1) if host else 'the host'} (no network, or DNS failed)"
    if "Connection refused" in text:
        return "connection refused (is the service up, and is the connection's host right?)"
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return str(exc)


def _short(exc: BaseException | str) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "…"


def parse_json(source: str) -> Callable[[requests.Response, bytes], Any]:
    """A ``parse`` for JSON APIs: a truncated or non-JSON body is a retryable error."""
    import json

    import msgspec

    def parse(response: requests.Response, body: bytes) -> Any:
        try:
            # About twice as fast as json.loads on API pages. What msgspec refuses (a lone
            # surrogate escape, NaN, a BOM, a number beyond float range, a bad body) goes
            # to json.loads, which accepts the first four and words the error for the last.
            return msgspec.json.decode(body)
        except (msgspec.MsgspecError, ValueError):
            pass
        content_type = response.headers.get("Content-Type", "")
        try:
            return json.loads(body)
        except ValueError as exc:
            kind = "an HTML page" if body.lstrip()[:1] == b"<" else f"invalid JSON ({exc.msg} at byte {exc.pos})" \
                if isinstance(exc, json.JSONDecodeError) else "invalid JSON"
            raise RetryableError(source, redact_url(response.url.split("?")[0]),
                                 f"expected JSON but got {kind} (Content-Type {content_type!r})") from exc
    return parse
