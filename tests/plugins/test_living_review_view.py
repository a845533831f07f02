"""The living-review plugin: Airflow loads it, mounts its app, and the page shows the data.

* ``airflow plugins`` (a subprocess, as an operator would run it) lists the FastAPI app
  and the Browse-menu view;
* loading plugins the way the scheduler and DAG processor do imports nothing heavy;
* the app, mounted by Airflow's own ``init_plugins`` (what the API server calls),
  serves the page for a data dir built by the real pipeline steps, plus the manifest
  and Data Docs it links to, and refuses requests without an Airflow login.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.living_review.report.history import REVIEW_ID, History
from tests.living_review.report.pagedata import page_numbers

# FastAPI's TestClient still wraps httpx; the warning is about that, not about this plugin.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "living_review_view"


def _airflow_env() -> dict[str, str]:
    return {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"), "PYTHONPATH": str(ROOT)}


def test_airflow_plugins_cli_lists_the_view() -> None:
    result = subprocess.run([sys.executable, "-m", "airflow", "plugins", "-o", "json"], env=_airflow_env(),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    plugins = {p["name"]: p for p in json.loads(result.stdout[result.stdout.index("["):])}
    plugin = plugins[PLUGIN]
    assert plugin["source"] == "$PLUGINS_FOLDER/living_review_view.py"
    assert plugin["fastapi_apps"] == [{"app": "living_review_view.LivingReviewApp", "url_prefix": "/living-review",
                                       "name": "Living review"}]
    [view] = plugin["external_views"]
    assert view["href"] == "living-review/" and not view["href"].startswith("/")  # relative to the UI's base URL
    assert view["url_route"] == "living-review" and view["destination"] == "nav" and view["category"] == "browse"


def test_loading_plugins_imports_nothing_heavy() -> None:
    """The scheduler and DAG processor load every plugin; this one must not cost them FastAPI or pyarrow."""
    probe = (
        "import json, sys\n"
        "from airflow import plugins_manager\n"
        "plugins_manager.get_timetables_plugins(); plugins_manager.integrate_macros_plugins()\n"
        "heavy = ['fastapi', 'pyarrow', 'pandas', 'include.living_review.report']\n"
        "print(json.dumps({'loaded': 'living_review_view' in sys.modules,\n"
        "                  'heavy': [m for m in heavy if m in sys.modules],\n"
        "                  'errors': plugins_manager.get_import_errors()}))\n")
    result = subprocess.run([sys.executable, "-c", probe], env=_airflow_env(), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"loaded": True, "heavy": [], "errors": {}}


@pytest.fixture
def client(history: History, monkeypatch) -> Any:
    """Airflow's own mounting code (``init_plugins``) on a bare FastAPI app, with login off."""
    from airflow.api_fastapi.app import init_plugins
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    monkeypatch.setenv("LIVING_REVIEW_DATA_DIR", str(history.data_dir))
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(history.config))
    monkeypatch.setenv("LIVING_REVIEW_VIEW_AUTH", "none")
    root = FastAPI()
    init_plugins(root)
    return TestClient(root)


def test_page_shows_the_review(client: Any, history: History) -> None:
    page = client.get("/living-review/")
    assert page.status_code == 200, page.text[:500]
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src" not in page.headers["content-security-policy"]  # no scripts at all (default-src 'none')
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]  # the UI may embed it
    metrics, per_source, links = page_numbers(page.text)
    assert metrics["total-works"] == str(history.union)
    assert metrics["union"] == metrics["coverage-union"] == str(history.reported)
    assert metrics["quarantined"] == str(history.quarantined)
    assert per_source == {s: str(n) for s, n in history.coverage.items()}
    assert 'data-review="peer-support-mental-health"' in page.text

    manifest = client.get("/living-review/" + links["manifest"])
    assert manifest.status_code == 200
    assert manifest.json()["snapshot_date"] == history.weeks[-1].isoformat()
    docs = client.get("/living-review/" + links["data-docs"])
    assert docs.status_code == 200 and "Great Expectations" in docs.text
    assert docs.headers["content-security-policy"].startswith("sandbox")
    icon = client.get("/living-review/icon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")


@pytest.mark.parametrize("path", [
    f"/living-review/reviews/{REVIEW_ID}/docs/../../../reviews.yaml",
    f"/living-review/reviews/{REVIEW_ID}/docs/%2e%2e/%2e%2e/%2e%2e/reviews.yaml",
    f"/living-review/reviews/{REVIEW_ID}/docs/..%2f..%2f..%2freviews.yaml",
    "/living-review/reviews/not-configured/manifest.json",
    "/living-review/reviews/..%2f..%2fetc/manifest.json",
])
def test_only_a_configured_reviews_files_are_served(client: Any, path: str) -> None:
    assert client.get(path).status_code == 404


def test_login_is_required_by_default(client: Any, monkeypatch) -> None:
    monkeypatch.delenv("LIVING_REVIEW_VIEW_AUTH")
    answer = client.get("/living-review/")
    assert answer.status_code == 401
    assert "log in to the Airflow UI" in answer.text
    assert client.get(f"/living-review/reviews/{REVIEW_ID}/manifest.json").status_code == 401
