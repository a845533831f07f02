"""``dags/_lib/config.py``: the config as the DAG files see it, schedules checked by Airflow's own parser."""
from __future__ import annotations

from pathlib import Path

import pytest

from dags._lib.config import load_dag_config, schedule_problem


@pytest.mark.parametrize("schedule", ["@weekly", "@daily", "@once", "0 6 * * 2", "*/30 6-18 * * 1-5"])
def test_schedules_airflow_accepts(schedule):
    assert schedule_problem(schedule) is None


@pytest.mark.parametrize(("schedule", "problem"), [
    ("every tuesday", "Exactly 5, 6 or 7 columns"),
    ("60 * * * *", "out of range"),
    ("", "Exactly 5, 6 or 7 columns"),
    ("@fortnightly", "Exactly 5, 6 or 7 columns"),
])
def test_schedules_airflow_refuses_say_why(schedule, problem):
    assert problem in (schedule_problem(schedule) or "")


def test_load_dag_config_reports_a_bad_schedule_naming_review_field_and_fix(tmp_path: Path):
    config = tmp_path / "reviews.yaml"
    config.write_text("reviews:\n"
                      "  - {id: good-one, title: Good, pmid: '1'}\n"
                      "  - {id: tuesdays, title: Bad, pmid: '2', schedule: every tuesday}\n", encoding="utf-8")
    loaded = load_dag_config(config)
    assert [r.id for r in loaded.reviews] == ["good-one"]
    (issue,) = loaded.issues
    assert str(issue).startswith(f"{config}: reviews[1] (id 'tuesdays').schedule: 'every tuesday' is not a schedule")
    assert "Fix: use a cron preset such as @weekly" in str(issue)
