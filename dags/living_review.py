"""
### Living review pipeline

One DAG per review configured in `include/reviews.yaml` (dag id
`living_review__<review id>`). Each run asks every configured source which papers
cite the review, merges them into one row per paper, validates the rows with Great
Expectations (bad rows go to quarantine with a reason), and publishes a Parquet
snapshot partition for the run's logical date. Publishing updates the review's
snapshot **Asset**, which triggers `living_review_digest__<review id>`.

`begin_run` takes the run's lease on the review and date (a second run of the same
date stops there, naming the holder) and settles what a killed run left;
`end_run`, a teardown, releases it. `fetch_references` watches the review's own
included studies for retractions and corrections. A failed source fails its own `fetch_*` task;
the others still merge and publish, and the manifest marks the run `partial`.
Publishing is one atomic commit. See `docs/operations.md`.
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
    "execution_timeout": dt.timedelta(hours=2),
    "on_failure_callback": alert_on_failure,
}


def snapshot_asset(review_id: str) -> Asset:
    return Asset(name=f"living_review_snapshot__{review_id.replace('-', '_')}",
                 uri=f"living-review://snapshots/{review_id}")


def build_pipeline(review: ReviewConfig) -> DAG:
    asset = snapshot_asset(review.id)
    with DAG(dag_id=f"living_review__{review.dag_suffix}", schedule=review.schedule,
             start_date=START_DATE, catchup=False, max_active_runs=1,
             default_args=DEFAULT_ARGS, tags=["living-review", "pipeline"], doc_md=__doc__,
             description=review.title) as pipeline:
        review_only = {"review_id": review.id}
        begin = PythonOperator(task_id="begin_run", python_callable=tasks.begin, op_kwargs=review_only)
        fetches = [PythonOperator(task_id=f"fetch_{source}", python_callable=tasks.fetch,
                                  op_kwargs={**review_only, "source": source}, pool=settings.pool_for(source))
                   for source in review.sources]
        references = PythonOperator(task_id="fetch_references", python_callable=tasks.references,
                                    op_kwargs=review_only)
        merge = PythonOperator(task_id="merge", python_callable=tasks.merge, op_kwargs=review_only,
                               trigger_rule="all_done")
        enrich = PythonOperator(task_id="enrich", python_callable=tasks.enrich, op_kwargs=review_only,
                                pool=settings.pool_for("crossref"))
        validate = PythonOperator(task_id="validate", python_callable=tasks.validate, op_kwargs=review_only)
        publish = PythonOperator(task_id="publish_snapshot", python_callable=tasks.publish, outlets=[asset],
                                 op_kwargs={**review_only, "asset_name": asset.name, "asset_uri": asset.uri})
        end = PythonOperator(task_id="end_run", python_callable=tasks.end, op_kwargs=review_only)
        begin >> [*fetches, references] >> merge >> enrich >> validate >> publish >> end.as_teardown(setups=begin)
    return pipeline


try:
    _config = load_dag_config()  # a review whose schedule Airflow refuses is left out
except ConfigError:
    _config = None  # reported as an import error by living_review_config_check.py

for _review in (_config.reviews if _config else []):
    globals()[f"living_review__{_review.dag_suffix}"] = build_pipeline(_review)
