"""A tiny threaded HTTP server with a request log and fault injection.

Every fake API subclasses :class:`FakeApi` and implements :meth:`FakeApi.handle`.
Tests read ``fake.requests`` (what was asked, with timestamps) and queue faults
with :meth:`FakeApi.inject` (a status, headers and body for the next matching
requests), so retry behaviour is exercised over a real socket.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float

    def param(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name, default)


@dataclass
class Response:
    status: int = 200
    body: bytes | str | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    # Send fewer bytes than Content-Length declares, then close: a truncated body.
    truncate_to: int | None = None
    # Sleep before answering (read-timeout tests).
    delay: float = 0.0
    # Close the socket without answering (connection-reset tests).
    drop: bool = False
    # Send the headers at once, then the body one byte at a time with this pause
    # between bytes: a slow loris, never idle long enough for a read timeout.
    trickle: float = 0.0

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body).encode("utf-8")


@dataclass
class Fault:
    response: Response
    path_contains: str = ""
    times: int = 1
    after: int = 0  # let this many matching requests through first


class FakeApi:
    """Base class: subclass, implement ``handle``, use as a context manager."""

    name = "fake"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
                if body and "form-urlencoded" in (self.headers.get("Content-Type") or ""):
                    params.update({k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()})
                request = Request(self.command, split.path, params, dict(self.headers.items()), body, time.time())
                response = fake._dispatch(request)
                if response.delay:
                    time.sleep(response.delay)
                if response.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                payload = response.encoded()
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(payload)))
                for key, value in response.headers.items():
                    self.send_header(key, value)
                if response.truncate_to is not None:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(payload[:response.truncate_to])
                    self.close_connection = True
                    return
                self.end_headers()
                if response.trickle:
                    for byte in payload:
                        self.wfile.write(bytes([byte]))
                        time.sleep(response.trickle)
                    return
                self.wfile.write(payload)

            def _serve_quietly(self) -> None:
                try:
                    self._serve()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (size cap, timeout test): nothing to report

            do_GET = _serve_quietly
            do_POST = _serve_quietly

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeApi:
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour -------------------------------------------------------------
    def inject(self, response: Response, *, path_contains: str = "", times: int = 1, after: int = 0) -> None:
        """Answer the next ``times`` requests whose path contains ``path_contains`` with ``response``."""
        with self._lock:
            self.faults.append(Fault(response, path_contains, times, after))

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.faults.clear()

    def requests_to(self, path_contains: str) -> list[Request]:
        return [r for r in self.requests if path_contains in r.path]

    def _dispatch(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
            for fault in self.faults:
                if fault.path_contains in request.path and fault.times > 0:
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    fault.times -= 1
                    return fault.response
        try:
            return self.handle(request)
        except Exception as exc:  # a bug in a fake must be loud, not a hang
            return Response(500, {"error": f"fake {self.name} crashed: {exc!r}"})

    def handle(self, request: Request) -> Response:
        raise NotImplementedError
