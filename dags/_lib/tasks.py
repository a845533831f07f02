"""The callables the DAG files run as tasks: each a thin call into ``include.living_review``.

Module-level functions run by plain ``PythonOperator``s rather than ``@task``-decorated
closures: a decorated task inspects its function's signature and walks two more
operator classes when it is built, which with 200 reviews was a third of the DAG
folder's parse time. What runs is the same: the return value is the task's XCom.
"""
from __future__ import annotations

from typing import Any


def fetch(review_id: str, source: str, **context: Any) -> dict[str, Any]:
    from dags._lib import glue
    from include.living_review.pipeline import fetch_source

    return fetch_source(glue.run_context(review_id, context), source, glue.client_for(source))


def merge(review_id: str, **context: Any) -> dict[str, Any]:
    from dags._lib import glue
    from include.living_review.pipeline import merge_sources

    return merge_sources(glue.run_context(review_id, context))


def enrich(review_id: str, **context: Any) -> dict[str, Any]:
    from dags._lib import glue
    from include.living_review.pipeline import enrich_metadata

    client = glue.client_for("crossref") if "crossref" in glue.review(review_id).sources else None
    return enrich_metadata(glue.run_context(review_id, context), client)


def validate(review_id: str, **context: Any) -> dict[str, Any]:
    from dags._lib import glue
    from include.living_review import pipeline

    return pipeline.validate(glue.run_context(review_id, context))


def publish(review_id: str, asset_name: str, asset_uri: str, **context: Any) -> dict[str, Any]:
    from airflow.sdk import Asset

    from dags._lib import glue
    from include.living_review import pipeline

    summary = pipeline.publish(glue.run_context(review_id, context))
    # The snapshot Asset's event carries the summary to the digest DAG it triggers.
    context["outlet_events"][Asset(name=asset_name, uri=asset_uri)].extra = summary
    return summary


def send_digest(review_id: str, **context: Any) -> dict[str, Any]:
    from dags._lib import glue

    return glue.send_digest(review_id, context)
