"""
### Living review digest

One DAG per review (dag id `living_review_digest__<review id>`), scheduled on the
review's snapshot **Asset**: it runs whenever `living_review__<review id>` publishes.
It announces the works first seen since the last delivered digest by email (the
`smtp_default` connection) and Slack (the `slack_digest` connection); a channel
without a connection writes to `<data_dir>/outbox/` instead.

Delivery is recorded per channel before and after each send, so a retried or
re-run digest never sends twice. Backfilled weeks never send (see
`include/living_review/digest/plan.py`).
"""
from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Asset

from dags._lib import tasks
from dags._lib.config import START_DATE, load_dag_config
from dags._lib.glue import alert_on_failure
from include.living_review import settings
from include.living_review.config import ConfigError, ReviewConfig

DEFAULT_ARGS = {
    "owner": "living-review",
    "retries": settings.TASK_RETRIES,
    "retry_delay": dt.timedelta(seconds=settings.TASK_RETRY_DELAY_SECONDS),
    "retry_exponential_backoff": True,
    "execution_timeout": dt.timedelta(minutes=30),
    "on_failure_callback": alert_on_failure,
}


def build_digest_dag(review: ReviewConfig) -> DAG:
    asset = Asset(name=f"living_review_snapshot__{review.dag_suffix}", uri=f"living-review://snapshots/{review.id}")
    with DAG(dag_id=f"living_review_digest__{review.dag_suffix}", schedule=[asset],
             start_date=START_DATE, catchup=False, max_active_runs=1,
             default_args=DEFAULT_ARGS, tags=["living-review", "digest"], doc_md=__doc__,
             description=f"Digest: {review.title}") as digest:
        PythonOperator(task_id="send_digest", python_callable=tasks.send_digest, op_kwargs={"review_id": review.id})
    return digest


try:
    _config = load_dag_config()  # a review whose schedule Airflow refuses is left out
except ConfigError:
    _config = None  # reported as an import error by living_review_config_check.py

for _review in (_config.reviews if _config else []):
    globals()[f"living_review_digest__{_review.dag_suffix}"] = build_digest_dag(_review)
