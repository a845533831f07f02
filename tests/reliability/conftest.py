"""Shared setup for the fault matrix and the hostile-input suite (issue 6).

* DNS never leaves the machine: ``socket.getaddrinfo`` answers only for loopback
  names, anything else (``nonexistent.invalid``) fails at once with ``EAI_NONAME``,
  exactly as an unresolvable host does, without sending a query to a resolver.
* :class:`LogTap` records what the task logs show during ``dag.test()``: the stream
  of Airflow's root handler (stdlib records, rendered by Airflow's formatter) and
  ``sys.stdout``/``sys.stderr`` (structlog's own task logger). ``dag.test()`` runs
  tasks in-process and writes no per-task log files, so this *is* the task log.
* :class:`Scenario` is one data directory, one config and one :class:`LocalStack`
  shared by the tests of a module (``dag.test()`` runs cost seconds each).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from include.living_review.storage import Layout
from tests.fakes.corpus import REVIEW, Paper
from tests.fakes.stack import LocalStack
from tests.integration.conftest import DagRunner, write_config

REVIEW_ID = "peer-support-mental-health"
PIPELINE = "living_review__peer_support_mental_health"
DIGEST = "living_review_digest__peer_support_mental_health"
TODAY = dt.datetime.now(dt.timezone.utc).date()
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DNS_LOOKUPS: list[str] = []

_real_getaddrinfo = socket.getaddrinfo


def _loopback_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name in LOOPBACK or name.startswith("127."):
        return _real_getaddrinfo(host, *args, **kwargs)
    DNS_LOOKUPS.append(name)
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.fixture(autouse=True, scope="module")
def no_dns_leaves_the_machine() -> Iterator[None]:
    socket.getaddrinfo = _loopback_getaddrinfo  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.getaddrinfo = _real_getaddrinfo  # type: ignore[assignment]


# -- capturing what the task logs show ------------------------------------------------
class _Tee(io.TextIOBase):
    def __init__(self, sink: io.StringIO, other: Any):
        self.sink, self.other = sink, other

    def write(self, text: str) -> int:  # type: ignore[override]
        self.sink.write(text)
        with contextlib.suppress(Exception):
            self.other.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            self.other.flush()

    def isatty(self) -> bool:
        return False


class LogTap:
    """Everything Airflow's logging writes while active (see the module docstring)."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self._restore: list[Any] = []

    def __enter__(self) -> LogTap:
        import airflow  # noqa: F401  - importing airflow configures its logging; tap it afterwards

        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                old = handler.setStream(_Tee(self.buffer, handler.stream))
                self._restore.append((handler, old))
        self._streams = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _Tee(self.buffer, sys.stdout), _Tee(self.buffer, sys.stderr)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout, sys.stderr = self._streams
        for handler, old in self._restore:
            handler.setStream(old)

    @property
    def text(self) -> str:
        return self.buffer.getvalue()


# -- one shared scenario per module ---------------------------------------------------
def review_entry(sources: list[str], review: dict[str, Any] | None = None, **digest: Any) -> dict[str, Any]:
    return {"id": REVIEW_ID, "title": REVIEW["title"], "doi": REVIEW["doi"], "pmid": REVIEW["pmid"],
            "pmcid": REVIEW["pmcid"], "sources": sources,
            "digest": {"email": ["maintainer@example.org"], "slack": True, "backfill_grace_days": 60, **digest},
            **(review or {})}


class Scenario:
    """A LocalStack, a config and a data dir, with the env applied through ``mp``."""

    def __init__(self, root: Path, mp: pytest.MonkeyPatch, papers: list[Paper], sources: list[str], *,
                 stack_sources: tuple[str, ...] | None = None, digest: dict[str, Any] | None = None,
                 review: dict[str, Any] | None = None):
        self.root = root
        self.mp = mp
        self.data_dir = root / "data"
        self.sources = sources
        self.stack = LocalStack(papers, sources=stack_sources or tuple(s for s in sources))
        self.config = write_config(root / "reviews.yaml", [review_entry(sources, review, **(digest or {}))])
        self.runner = DagRunner(self.data_dir)
        self.runs: dict[str, Any] = {}

    def __enter__(self) -> Scenario:
        self.stack.__enter__()
        self.apply_env(self.stack.env())
        self.mp.setenv("LIVING_REVIEW_DATA_DIR", str(self.data_dir))
        self.mp.setenv("LIVING_REVIEW_CONFIG", str(self.config))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.__exit__(*exc)

    def apply_env(self, env: dict[str, str]) -> None:
        for key, value in env.items():
            self.mp.setenv(key, value)

    def set_connection(self, conn_id: str, **changes: Any) -> None:
        """Change fields of one ``AIRFLOW_CONN_*`` JSON connection (``extra`` is merged)."""
        name = f"AIRFLOW_CONN_{conn_id.upper()}"
        conn = json.loads(os.environ[name])
        extra = changes.pop("extra", None)
        conn.update(changes)
        if extra:
            conn["extra"] = {**conn.get("extra", {}), **extra}
        self.mp.setenv(name, json.dumps(conn))

    def run(self, dag_id: str, day: dt.date) -> dict[str, str]:
        dag_run = self.runner.run(dag_id, day)
        states = self.runner.task_states(dag_run)
        self.runs[f"{dag_id}@{day}"] = dag_run
        return states

    def try_numbers(self, dag_id: str, day: dt.date) -> dict[str, int]:
        from airflow.utils.session import create_session

        with create_session() as session:
            return {ti.task_id: ti.try_number
                    for ti in self.runs[f"{dag_id}@{day}"].get_task_instances(session=session)}

    def layout(self, day: dt.date) -> Layout:
        return Layout.of(self.data_dir, REVIEW_ID, day)

    def manifest(self, day: dt.date) -> dict[str, Any]:
        return json.loads(self.layout(day).manifest_file.read_text(encoding="utf-8"))


def digest_emails(stack: LocalStack) -> list[Any]:
    """Received digests (failure alerts, also sent by email, carry no digest header)."""
    from include.living_review.digest import DIGEST_HEADER

    return [m for m in stack.smtp.messages if m.message[DIGEST_HEADER]]


def digest_posts(stack: LocalStack) -> list[dict[str, Any]]:
    """Slack digest payloads (Block Kit); alerts are plain ``text`` posts."""
    return [p for p in stack.slack.payloads if p.get("blocks")]


def alert_posts(stack: LocalStack) -> list[dict[str, Any]]:
    return [p for p in stack.slack.payloads if not p.get("blocks")]


@pytest.fixture(scope="module")
def module_mp() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp
