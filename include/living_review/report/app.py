"""Serving the page inside Airflow: :func:`create_app` and the security headers it sends.

The plugin (``plugins/living_review_view.py``) builds this app on the API server's
first request and wraps it in Airflow's login check; the app itself does no auth.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from include.living_review import settings
from include.living_review.config import ConfigError, load_config
from include.living_review.report.gather import gather
from include.living_review.report.page import AppLinks, render_html
from include.living_review.storage import Layout, published_dates

# No scripts, nothing external; frame-ancestors lets the Airflow UI embed the page.
PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'self'")
# Great Expectations' Data Docs come with their own scripts; a sandboxed origin keeps
# them (and any data they display) away from the Airflow session on this origin.
DOCS_CSP = "sandbox allow-scripts allow-popups"
ICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="#2563eb" stroke-width="2" '
    'stroke-linecap="round" stroke-linejoin="round"><path d="M4 19h16"/><path d="M4 15l4-4 4 3 7-8"/>'
    '<circle cx="19" cy="6" r="1.5"/></svg>')


def create_app(*, data_dir: str | Path | None = None, config_path: str | Path | None = None) -> Any:
    """The FastAPI app behind the plugin: the page, the latest manifest, Data Docs and an icon.

    ``data_dir`` and ``config_path`` default to the settings at *request* time, so a
    changed ``LIVING_REVIEW_DATA_DIR`` needs no restart. Authentication is the
    caller's job (the plugin wraps this app in Airflow's login check).
    """
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse, Response

    app = FastAPI(title="Living review", docs_url=None, redoc_url=None, openapi_url=None)

    def data_path() -> Path:
        return Path(data_dir if data_dir is not None else settings.data_dir()).resolve()

    def configured(review_id: str) -> str:
        try:
            ids = {review.id for review in load_config(config_path).reviews}
        except ConfigError:
            ids = set()
        if review_id not in ids:
            raise HTTPException(status_code=404, detail=f"review {review_id!r} is not configured")
        return review_id

    # Handlers are sync on purpose: FastAPI runs them in its thread pool, so reading
    # Parquet never blocks the API server's event loop.
    @app.get("/", response_class=HTMLResponse, response_model=None)
    def page() -> Any:
        html = render_html(gather(data_path(), config_path), AppLinks(), mode="airflow")
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store",
                                           "X-Content-Type-Options": "nosniff"})

    @app.get("/reviews/{review_id}/manifest.json", response_model=None)
    def manifest(review_id: str) -> Any:
        review_id = configured(review_id)
        dates = published_dates(data_path(), review_id)
        path = Layout.of(data_path(), review_id, dates[-1]).manifest_file if dates else None
        if path is None or not path.is_file():
            raise HTTPException(status_code=404, detail=f"review {review_id!r} has no published manifest yet")
        return FileResponse(path, media_type="application/json", headers={"Cache-Control": "no-store"})

    @app.get("/reviews/{review_id}/docs/{path:path}", response_model=None)
    def data_docs(review_id: str, path: str) -> Any:
        review_id = configured(review_id)
        root = (data_path() / "docs" / review_id).resolve()
        target = (root / (path or "index.html")).resolve()
        if not target.is_relative_to(root) or not target.is_file():  # no ../ escapes out of the docs
            raise HTTPException(status_code=404, detail="no such Data Docs file")
        return FileResponse(target, headers={"Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff"})

    @app.get("/icon.svg", response_model=None)
    def icon() -> Any:
        return Response(ICON_SVG, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    return app

