"""
### Config check

Not a pipeline: this file exists so that a bad entry in `include/reviews.yaml`
shows up as an **import error** in the Airflow UI (naming the file, the field and
the fix) while every valid review still gets its DAGs from `living_review.py`. A
`schedule` is checked by Airflow's own parser (`dags/_lib/config.py`).
"""
from __future__ import annotations

from dags._lib.config import load_dag_config
from include.living_review.config import ConfigError

try:
    _issues = load_dag_config().issues
except ConfigError as exc:
    _issues = exc.issues

if _issues:
    raise ConfigError(_issues)
