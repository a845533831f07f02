"""The callables the DAG files run as tasks: each a thin call into ``include.living_review``.

Module-level functions run by plain ``PythonOperator``s rather than ``@task``-decorated
closures: a decorated task inspects its function's signature and walks two more
operator classes when it is built, which with 200 reviews was a third of the DAG
folder's parse time. What runs is the same: the return value is the task's XCom.
Every pipeline task first renews the run's lease (``ctx.hold``), so a second run of
the same review and date stops at its first task, naming the holder.
"""
from __future__ import annotations

from typing import Any


def begin(review_id: str, **context: Any) -> dict[str, Any]:
    from dags._lib import glue
    from include.living_review.pipeline import begin_run

    return begin_run(glue.run_context(review_id, context))


def fetch(review_id: str, source: str, **context: Any) -> dict[str, Any]:
    from dags._lib import glue
    from include.living_review.pipeline import fetch_source

    ctx = glue.run_context(review_id, context)
    ctx.hold(f"fetch_{source}")
    return fetch_source(ctx, source, glue.client_for(source))


def references(review_id: str, **context: Any) -> dict[str, Any]:
    from dags._lib import glue
    from include.living_review.references import fetch_references
    from include.living_review.references.watch import REFERENCE_SOURCES

    ctx = glue.run_context(review_id, context)
    ctx.hold("fetch_references")
    if not ctx.review.watch_included_studies:
        return {"status": "skipped", "reason": "watch_included_studies is off"}
    configured = [*ctx.review.sources, *ctx.review.enrich]
    return fetch_references(ctx, {s: glue.client_for(s) for s in REFERENCE_SOURCES if s in configured})


def merge(review_id: str, **context: Any) -> dict[str, Any]:
    from dags._lib import glue
    from include.living_review.pipeline import merge_sources

    ctx = glue.run_context(review_id, context)
    ctx.hold("merge")
    return merge_sources(ctx)


def enrich(review_id: str, **context: Any) -> dict[str, Any]:
    from dags._lib import glue
    from include.living_review.pipeline import enrich_metadata

    ctx = glue.run_context(review_id, context)
    ctx.hold("enrich")
    client = glue.client_for("crossref") if "crossref" in ctx.review.enrich else None
    return enrich_metadata(ctx, client)


def validate(review_id: str, **context: Any) -> dict[str, Any]:
    from dags._lib import glue
    from include.living_review import pipeline

    ctx = glue.run_context(review_id, context)
    ctx.hold("validate")
    return pipeline.validate(ctx)


def publish(review_id: str, asset_name: str, asset_uri: str, **context: Any) -> dict[str, Any]:
    from airflow.sdk import Asset

    from dags._lib import glue
    from include.living_review import pipeline

    summary = pipeline.publish(glue.run_context(review_id, context))
    # The snapshot Asset's event carries the summary to the digest DAG it triggers.
    context["outlet_events"][Asset(name=asset_name, uri=asset_uri)].extra = summary
    return summary


def end(review_id: str, **context: Any) -> dict[str, Any]:
    from dags._lib import glue
    from include.living_review.pipeline import end_run

    return end_run(glue.run_context(review_id, context))


def send_digest(review_id: str, **context: Any) -> dict[str, Any]:
    from dags._lib import glue

    return glue.send_digest(review_id, context)
