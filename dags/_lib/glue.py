"""The only place that maps Airflow objects (connections, context) onto plain arguments.

Imported lazily inside tasks, so DAG parsing never pays for it.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from include.living_review import settings
from include.living_review.config import ReviewConfig, load_config
from include.living_review.connections import ClientSettings, client_settings

log = logging.getLogger(__name__)


def get_connection(conn_id: str) -> Any | None:
    """The Airflow connection, or None when it is not defined anywhere."""
    from airflow.sdk import Connection

    try:
        return Connection.get(conn_id)
    except Exception as exc:  # the SDK raises different types for "not found" across versions
        if "not found" in str(exc).lower() or "isn't defined" in str(exc).lower() or \
                type(exc).__name__ in ("AirflowNotFoundException", "AirflowRuntimeError"):
            return None
        raise


def settings_for(conn_id: str) -> ClientSettings:
    conn = get_connection(conn_id)
    if conn is None:
        log.info("connection %r is not defined; using the public default %s", conn_id,
                 settings.DEFAULT_BASE_URLS.get(conn_id))
        return client_settings(conn_id)
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    return client_settings(conn_id, host=conn.host, login=conn.login, password=conn.password, extra=extra,
                           schema=conn.schema, port=conn.port)


def review(review_id: str) -> ReviewConfig:
    return load_config().review(review_id)


def run_context(review_id: str, context: dict[str, Any]) -> Any:
    """A :class:`RunContext` from the task context: the review, the logical date, the run id."""
    from include.living_review.pipeline import RunContext

    logical = context.get("logical_date") or context.get("data_interval_end") or dt.datetime.now(dt.timezone.utc)
    return RunContext.create(review(review_id), settings.data_dir(), logical, context["run_id"])


def client_for(source: str) -> Any:
    from include.living_review.sources import build_client

    conf = settings_for(settings.SOURCE_CONNECTIONS[source])
    log.info("%s: using %r", source, conf)
    return build_client(source, conf)
