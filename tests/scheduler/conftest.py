"""Fixtures for the scheduler test: a throwaway PostgreSQL database, the local stack, a running cluster.

Skipped with the reason when the machine's PostgreSQL (127.0.0.1:5432, user postgres,
trust auth) is not reachable; ``.ci/run`` starts it when it is installed.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.corpus import REVIEW, seed_corpus
from tests.fakes.stack import LocalStack
from tests.scheduler.cluster import AirflowCluster, postgres_unreachable, throwaway_database

REVIEW_ID = "peer-support-mental-health"
SOURCES = ("pubmed", "europepmc")  # two sources report the same papers: the merge must not duplicate


@pytest.fixture
def postgres_url() -> Iterator[str]:
    reason = postgres_unreachable()
    if reason:
        pytest.skip(f"scheduler test needs the local PostgreSQL: {reason}. Start it "
                    "(e.g. `pg_ctlcluster 15 main start`; .ci/run does) to run this test")
    with throwaway_database() as url:
        yield url


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    with LocalStack(seed_corpus(), sources=SOURCES) as local:
        yield local


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str, stack: LocalStack, data_dir: Path) -> Iterator[AirflowCluster]:
    """Migrated metadata DB with the pools, and all four components running. Killed at teardown."""
    import yaml

    config = tmp_path / "reviews.yaml"
    config.write_text(yaml.safe_dump({"reviews": [{
        "id": REVIEW_ID, "title": REVIEW["title"], "doi": REVIEW["doi"], "pmid": REVIEW["pmid"],
        "pmcid": REVIEW["pmcid"], "schedule": "@weekly", "sources": list(SOURCES),
        "digest": {"email": ["maintainer@example.org"], "slack": True}}]}, sort_keys=False), encoding="utf-8")
    cluster = AirflowCluster(tmp_path / "airflow", postgres_url, extra_env={
        **stack.env(),
        "LIVING_REVIEW_CONFIG": str(config),
        "LIVING_REVIEW_DATA_DIR": str(data_dir),
        "LIVING_REVIEW_RETRY_DELAY_SECONDS": "1",
    })
    cluster.migrate()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach task states and the tail of every component's output to the report."""
    outcome = yield
    report = outcome.get_result()
    cluster = getattr(item, "funcargs", {}).get("cluster")
    if report.failed and report.when == "call" and isinstance(cluster, AirflowCluster):
        try:
            report.sections.append(("Airflow components", cluster.diagnostics()))
        except Exception as exc:  # diagnostics must never hide the real failure
            report.sections.append(("Airflow components", f"(could not collect diagnostics: {exc!r})"))
