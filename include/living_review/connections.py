"""Map an Airflow connection's fields onto client arguments.

Only the DAG layer touches Airflow; it passes the connection's plain fields here so
this module stays importable (and testable) without Airflow.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from include.living_review import settings


@dataclass(frozen=True)
class ClientSettings:
    conn_id: str
    base_url: str
    api_key: str | None = None
    email: str | None = None
    from_connection: bool = False

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        key = "***" if self.api_key else None
        return (f"ClientSettings(conn_id={self.conn_id!r}, base_url={self.base_url!r}, "
                f"api_key={key!r}, email={self.email!r})")


def client_settings(conn_id: str, *, host: str | None = None, login: str | None = None,
                    password: str | None = None, extra: Mapping[str, Any] | None = None,
                    schema: str | None = None, port: int | None = None) -> ClientSettings:
    """Client settings from a connection's fields; the public default when ``host`` is empty."""
    extra = dict(extra or {})
    base_url = (host or "").strip()
    if base_url and "://" not in base_url:
        scheme = schema if schema in ("http", "https") else "https"
        base_url = f"{scheme}://{base_url}"
        if port:
            base_url = f"{base_url}:{port}"
    if not base_url:
        base_url = settings.DEFAULT_BASE_URLS[conn_id]
    return ClientSettings(
        conn_id=conn_id,
        base_url=base_url.rstrip("/"),
        api_key=password or extra.get("api_key") or None,
        email=extra.get("email") or extra.get("mailto") or login or None,
        from_connection=bool(host),
    )


def default_settings(conn_id: str) -> ClientSettings:
    return client_settings(conn_id)


def storage_options(*, login: str | None = None, password: str | None = None,
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """s3fs options from an ``aws`` connection: login/password are the key pair, extras as the provider names them.

    ``endpoint_url`` (or ``host``) points at MinIO or another S3-compatible store;
    ``region_name`` goes to the botocore client.
    """
    extra = dict(extra or {})
    options: dict[str, Any] = {}
    key = login or extra.get("aws_access_key_id")
    secret = password or extra.get("aws_secret_access_key")
    if key:
        options["key"] = key
    if secret:
        options["secret"] = secret
    if extra.get("aws_session_token"):
        options["token"] = extra["aws_session_token"]
    endpoint = extra.get("endpoint_url") or extra.get("host")
    if endpoint:
        options["endpoint_url"] = endpoint
    if extra.get("region_name"):
        options["client_kwargs"] = {"region_name": extra["region_name"]}
    return options
