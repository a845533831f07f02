"""Run the real DAGs with ``dag.test()`` against the local stack."""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def write_config(path: Path, reviews: list[dict[str, Any]]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"reviews": reviews}, sort_keys=False), encoding="utf-8")
    return path


class DagRunner:
    """Parses ``dags/`` with the current environment and runs a DAG for a logical date."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir

    def dag(self, dag_id: str):
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(str(ROOT / "dags"))
        assert not bag.import_errors, bag.import_errors
        return bag.dags[dag_id]

    def run(self, dag_id: str, day: dt.date) -> Any:
        logical = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
        return self.dag(dag_id).test(logical_date=logical)

    def task_states(self, dag_run: Any) -> dict[str, str]:
        from airflow.utils.session import create_session

        with create_session() as session:
            return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}


@pytest.fixture
def runner(tmp_path, monkeypatch, airflow_db) -> DagRunner:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("LIVING_REVIEW_DATA_DIR", str(data_dir))
    return DagRunner(data_dir)


def apply_env(monkeypatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    os.environ.setdefault("NO_PROXY", "127.0.0.1")
