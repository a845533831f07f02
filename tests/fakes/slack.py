"""A stand-in for Slack incoming webhooks: POST JSON at any path, answer ``ok``, keep the payloads.

Like the real thing (https://api.slack.com/messaging/webhooks#handling_errors) it
answers ``400 invalid_payload`` to a body that is not a JSON object with ``text``
or ``blocks``; faults (``429``, ``500 rollup_error``, ``404 no_service``) are
queued with :meth:`FakeApi.inject`.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from tests.fakes.server import FakeApi, Request, Response


class FakeSlackWebhook(FakeApi):
    name = "slack"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.payloads: list[dict[str, Any]] = []
        report = self.server.handle_error

        def handle_error(request: Any, client_address: Any) -> None:
            # A client that timed out (the ambiguous-delivery tests) closes before a delayed answer.
            if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                report(request, client_address)

        self.server.handle_error = handle_error  # type: ignore[method-assign]

    def webhook_url(self, path: str = "/services/T000/B000/XXXX") -> str:
        return self.url + path

    def handle(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(405, "invalid_method", content_type="text/plain")
        try:
            payload = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return Response(400, "invalid_payload", content_type="text/plain")
        if not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
            return Response(400, "no_text", content_type="text/plain")
        with self._lock:
            self.payloads.append(payload)
        return Response(200, "ok", content_type="text/plain")
