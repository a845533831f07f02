"""Living review view: one page per deployment showing how each review's evidence grows.

The page (citing works over time, source coverage, latest changes, quarantine,
data quality, links to Data Docs and the latest manifest) is rendered by
:mod:`include.living_review.report`; this plugin only mounts it in the Airflow API
server and adds it to the UI:

* ``fastapi_apps`` serves it at ``<airflow base url>/living-review/``;
* ``external_views`` adds **Browse → Living review**, which shows that page inside the
  Airflow UI (at ``/plugin/living-review``).

Every process that loads plugins (scheduler, DAG processor, workers) imports this
file, so it imports nothing heavy: FastAPI, pyarrow and the report module are loaded
by the API server on the first request. The page uses the Airflow login: a request
without a valid Airflow session or bearer token gets 401 (set
``LIVING_REVIEW_VIEW_AUTH=none`` to serve it without, e.g. behind your own proxy auth).
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

URL_PREFIX = "/living-review"
AUTH_ENV = "LIVING_REVIEW_VIEW_AUTH"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LivingReviewApp:
    """An ASGI app that builds the real FastAPI app on first use and checks the Airflow login."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def _build(self) -> Any:
        with self._lock:
            if self._app is None:
                from include.living_review.report import create_app

                self._app = create_app()
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            app = self._build()
        except ImportError as exc:
            # The project root must be importable (PYTHONPATH), as for the DAGs.
            log.exception("living review view: cannot import the report module")
            await _plain(send, 503, f"The living-review code is not importable from the API server ({exc}). "
                                    "Set PYTHONPATH to the project root, as for the DAG processor.")
            return
        if scope["type"] == "http":
            denied = await _login_problem(scope)
            if denied is not None:
                await _plain(send, *denied)
                return
        await app(scope, receive, send)


async def _login_problem(scope: Scope) -> tuple[int, str] | None:
    """None when the request carries a valid Airflow session (cookie) or bearer token."""
    if os.environ.get(AUTH_ENV, "airflow").strip().lower() == "none":
        return None
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import HTTPException
    from fastapi.security import HTTPAuthorizationCredentials
    from starlette.requests import Request

    request = Request(scope)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    credentials = HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if token else None
    try:
        # The same check as every Airflow API route: bearer token first, then the UI's session cookie.
        await get_user(request, None, credentials)
    except HTTPException as exc:
        return exc.status_code, f"{exc.detail}: log in to the Airflow UI first; this page uses its session."
    return None


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


app = LivingReviewApp()


class LivingReviewViewPlugin(AirflowPlugin):
    """Registers the page with the API server and the UI's Browse menu."""

    name = "living_review_view"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Living review"}]
    external_views = [{
        "name": "Living review",
        # Relative (no leading slash): the UI resolves it against its base URL, so the
        # view also works when Airflow is served under a sub-path.
        "href": "living-review/",
        "icon": "living-review/icon.svg",
        "destination": "nav",
        "category": "browse",
        # With a url_route the UI embeds the page in an iframe at /plugin/living-review.
        "url_route": "living-review",
    }]
