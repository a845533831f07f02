"""DAG integrity: ids, retries, tags, no import errors, and nothing heavy at parse time."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_TAGS = {"living-review", "pipeline", "digest"}
HEAVY = ("pandas", "pyarrow", "great_expectations", "Bio", "requests", "rapidfuzz", "duckdb")


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(str(ROOT / "dags"))
    bag.parse_seconds = time.perf_counter() - started
    return bag


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_dag_ids_per_review(dagbag):
    assert {"living_review__peer_support_mental_health",
            "living_review_digest__peer_support_mental_health"} <= set(dagbag.dag_ids)


def test_defaults(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.max_active_runs == 1, dag_id
        assert dag.catchup is False, dag_id
        assert set(dag.tags) <= ALLOWED_TAGS, dag_id
        assert dag.doc_md, dag_id
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag_id}.{task.task_id}"
            assert task.execution_timeout is not None, f"{dag_id}.{task.task_id}"


def test_fetch_tasks_use_one_pool_per_source(dagbag):
    dag = dagbag.dags["living_review__peer_support_mental_health"]
    pools = json.loads((ROOT / "include" / "pools.json").read_text())
    source_fetches = [t for t in dag.tasks if t.task_id.startswith("fetch_") and t.task_id != "fetch_references"]
    assert len(source_fetches) >= 5
    for task in source_fetches:
        assert task.pool == f"living_review_{task.task_id.removeprefix('fetch_')}"
        assert task.pool in pools
    # The reference watch asks four sources a handful of requests each; each client's own throttle paces it.
    assert "fetch_references" in dag.task_ids


@pytest.mark.parametrize("module", ["living_review", "living_review_digest"])
def test_no_heavy_imports_at_parse_time(module):
    code = (f"import sys, json, runpy; runpy.run_path({str(ROOT / 'dags' / (module + '.py'))!r}); "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_bad_config_entry_is_an_import_error_and_others_load(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    config = tmp_path / "reviews.yaml"
    config.write_text(
        "reviews:\n"
        "  - {id: good-one, title: Good, pmid: '1', doi: 10.1234/x}\n"
        "  - {id: ../../etc, title: Bad, pmid: '2'}\n", encoding="utf-8")
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config))
    bag = DagBag(str(ROOT / "dags"))
    assert "living_review__good_one" in bag.dag_ids
    assert not any("etc" in dag_id for dag_id in bag.dag_ids)
    (path, message), = bag.import_errors.items()
    assert path.endswith("living_review_config_check.py")
    assert str(config) in message and "reviews[1]" in message and "slug" in message
