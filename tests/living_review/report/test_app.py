"""The FastAPI app on its own (no Airflow): routes, security headers, and settings read per request.

``tests/plugins`` checks the same app as Airflow mounts it, behind the login check.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from include.living_review import report as rp
from include.living_review.report.app import DOCS_CSP, PAGE_CSP
from tests.living_review.report.handmade import publish, write_config
from tests.living_review.report.pagedata import page_numbers

# FastAPI's TestClient still wraps httpx; the warning is about that, not about this app.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def _client(app: Any) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(app)


def test_page_and_icon_carry_their_security_headers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path / "reviews.yaml", ["app-1"])
    publish(data, "app-1", dt.date(2026, 3, 2), ["A", "B"])
    client = _client(rp.create_app(data_dir=data, config_path=config))

    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == PAGE_CSP
    assert "default-src 'none'" in PAGE_CSP and "script-src" not in PAGE_CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    metrics, _, links = page_numbers(page.text)
    assert metrics["total-works"] == "2"
    assert "data-docs" not in links  # none were written, so no link to a 404

    manifest = client.get("/" + links["manifest"])
    assert manifest.status_code == 200 and manifest.json()["counts"] == {"new": 2}
    icon = client.get("/icon.svg")
    assert icon.status_code == 200 and icon.text.startswith("<svg")
    for hidden in ("/docs", "/openapi.json", "/redoc"):  # no API explorer on the Airflow origin
        assert client.get(hidden).status_code == 404


def test_manifest_and_docs_routes_only_serve_what_exists(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path / "reviews.yaml", ["app-1", "empty-1"])
    publish(data, "app-1", dt.date(2026, 3, 2), ["A"])
    publish(data, "app-1", dt.date(2026, 3, 9), ["A", "B"], manifest=False)  # staged, never committed
    docs = data / "docs" / "app-1"
    docs.mkdir(parents=True)
    (docs / "index.html").write_text("<html>Data Docs</html>")
    client = _client(rp.create_app(data_dir=data, config_path=config))

    # the latest *committed* manifest, not the newer uncommitted folder
    assert client.get("/reviews/app-1/manifest.json").json()["counts"] == {"new": 1}
    answer = client.get("/reviews/empty-1/manifest.json")
    assert answer.status_code == 404 and "no published manifest yet" in answer.json()["detail"]
    assert client.get("/reviews/unknown-1/manifest.json").status_code == 404

    index = client.get("/reviews/app-1/docs/")  # the folder serves its index.html
    assert index.status_code == 200 and index.text == "<html>Data Docs</html>"
    assert index.headers["content-security-policy"] == DOCS_CSP
    assert client.get("/reviews/app-1/docs/missing.html").status_code == 404
    assert client.get("/reviews/empty-1/docs/index.html").status_code == 404


def test_data_dir_and_config_are_read_per_request(tmp_path: Path, monkeypatch) -> None:
    """Changing LIVING_REVIEW_DATA_DIR needs no API server restart."""
    first, second = tmp_path / "first", tmp_path / "second"
    publish(first, "env-1", dt.date(2026, 3, 2), ["A"])
    publish(second, "env-1", dt.date(2026, 3, 9), ["A", "B", "C"])
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(write_config(tmp_path / "reviews.yaml", ["env-1"])))
    monkeypatch.setenv("LIVING_REVIEW_DATA_DIR", str(first))
    client = _client(rp.create_app())
    assert page_numbers(client.get("/").text)[0]["total-works"] == "1"

    monkeypatch.setenv("LIVING_REVIEW_DATA_DIR", str(second))
    assert page_numbers(client.get("/").text)[0]["total-works"] == "3"
    assert client.get("/reviews/env-1/manifest.json").json()["counts"] == {"new": 3}
