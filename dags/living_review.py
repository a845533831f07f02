"""
### Living review pipeline

One DAG per review configured in `include/reviews.yaml` (dag id
`living_review__<review id>`). Each run asks every configured source which papers
cite the review, merges them into one row per paper, validates the rows with Great
Expectations (bad rows go to quarantine with a reason), and publishes a Parquet
snapshot partition for the run's logical date. Publishing updates the review's
snapshot **Asset**, which triggers `living_review_digest__<review id>`.

A failed source fails its own `fetch_*` task; the others still merge and publish,
and the manifest marks the run `partial`. See `docs/operations.md`.
"""
from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, dag, task

from dags._lib.glue import alert_on_failure
from include.living_review import settings
from include.living_review.config import ConfigError, ReviewConfig, load_config

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


def build_pipeline(review: ReviewConfig):
    asset = snapshot_asset(review.id)

    @dag(dag_id=f"living_review__{review.dag_suffix}", schedule=review.schedule,
         start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), catchup=False, max_active_runs=1,
         default_args=DEFAULT_ARGS,
         tags=["living-review", "pipeline"], doc_md=__doc__, description=review.title)
    def pipeline():
        fetches = []
        for source in review.sources:
            if source == "crossref":
                continue

            @task(task_id=f"fetch_{source}", pool=settings.pool_for(source))
            def fetch_citations(source: str = source, **context) -> dict:
                from dags._lib import glue
                from include.living_review.pipeline import fetch_source

                return fetch_source(glue.run_context(review.id, context), source, glue.client_for(source))

            fetches.append(fetch_citations())

        @task(trigger_rule="all_done")
        def merge(**context) -> dict:
            from dags._lib import glue
            from include.living_review.pipeline import merge_sources

            return merge_sources(glue.run_context(review.id, context))

        @task(pool=settings.pool_for("crossref"))
        def enrich(**context) -> dict:
            from dags._lib import glue
            from include.living_review.pipeline import enrich_metadata

            client = glue.client_for("crossref") if "crossref" in review.sources else None
            return enrich_metadata(glue.run_context(review.id, context), client)

        @task
        def validate(**context) -> dict:
            from dags._lib import glue
            from include.living_review import pipeline

            return pipeline.validate(glue.run_context(review.id, context))

        @task(outlets=[asset])
        def publish_snapshot(**context) -> dict:
            from dags._lib import glue
            from include.living_review import pipeline

            summary = pipeline.publish(glue.run_context(review.id, context))
            context["outlet_events"][asset].extra = summary
            return summary

        fetches >> merge() >> enrich() >> validate() >> publish_snapshot()

    return pipeline()


try:
    _config = load_config()
except ConfigError:
    _config = None  # reported as an import error by living_review_config_check.py

for _review in (_config.reviews if _config else []):
    globals()[f"living_review__{_review.dag_suffix}"] = build_pipeline(_review)
