"""The reviews config as the DAG files and ``check-config`` see it: every check of
``include/living_review/config.py`` plus Airflow's own timetable parser for each ``schedule``.

``include/`` never imports Airflow, so :func:`load_config` takes the schedule check as an
argument and this module passes Airflow's. Every DAG file loads the config through
:func:`load_dag_config`, so a review whose schedule Airflow refuses gets neither of its
DAGs (its pipeline would fail the whole file with a bare ``AirflowTimetableInvalid``
while its digest loaded) and ``living_review_config_check.py`` reports it.
"""
from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

from include.living_review.config import LoadedConfig, load_config

START_DATE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@functools.lru_cache(maxsize=256)
def schedule_problem(schedule: str) -> str | None:
    """Why Airflow refuses ``schedule`` for a DAG, or None when it accepts it.

    A throwaway DAG is built with it as the DAG files build theirs and its timetable
    validated as the DagBag does, so the answer is Airflow's own (cron presets, the
    ``create_cron_data_intervals`` setting, croniter's limits). Cached: most reviews
    share a schedule, and the DAG is never registered (it is not a module global).
    """
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowException

    try:
        DAG(dag_id="living_review_schedule_check", schedule=schedule, start_date=START_DATE,
            max_active_runs=1).timetable.validate()
    except (AirflowException, ValueError, TypeError) as exc:
        return str(exc) or type(exc).__name__
    return None


def load_dag_config(path: Path | str | None = None) -> LoadedConfig:
    """:func:`load_config` with every schedule checked by Airflow."""
    return load_config(path, check_schedule=schedule_problem)
