"""Every local stand-in at once: the six bibliographic fakes, SMTP and a Slack webhook.

``LocalStack.env()`` gives the ``AIRFLOW_CONN_*`` variables that point the real
DAGs at them. Used by the integration tests, ``make demo`` and ``make bench``.
"""
from __future__ import annotations

import importlib
import json
from typing import Any

from tests.fakes.corpus import Paper
from tests.fakes.slack import FakeSlackWebhook
from tests.fakes.smtp import FakeSmtpServer

# source -> (connection id, "module:FakeClass")
FAKES: dict[str, tuple[str, str]] = {
    "pubmed": ("ncbi_eutils", "tests.fakes.eutils:FakeEutils"),
    "europepmc": ("europe_pmc", "tests.fakes.europepmc:FakeEuropePmc"),
    "openalex": ("openalex", "tests.fakes.openalex:FakeOpenAlex"),
    "opencitations": ("opencitations", "tests.fakes.opencitations:FakeOpenCitations"),
    "semanticscholar": ("semantic_scholar", "tests.fakes.semanticscholar:FakeSemanticScholar"),
    "crossref": ("crossref", "tests.fakes.crossref:FakeCrossref"),
}
DEMO_API_KEY = "demo-key-not-a-secret"


class LocalStack:
    """Start with ``with LocalStack(papers) as stack:``; ``stack.fakes[source]`` is each fake."""

    def __init__(self, papers: list[Paper], *, sources: tuple[str, ...] = tuple(FAKES),
                 smtp: bool = True, slack: bool = True, fake_kwargs: dict[str, dict[str, Any]] | None = None):
        self.papers = papers
        self.included: list[Paper] = []
        self.fakes: dict[str, Any] = {}
        for source in sources:
            module_name, _, class_name = FAKES[source][1].partition(":")
            cls = getattr(importlib.import_module(module_name), class_name)
            self.fakes[source] = cls(papers, **(fake_kwargs or {}).get(source, {}))
        self.smtp = FakeSmtpServer() if smtp else None
        self.slack = FakeSlackWebhook() if slack else None

    def __enter__(self) -> LocalStack:
        for fake in self.fakes.values():
            fake.start()
        if self.smtp:
            self.smtp.start()
        if self.slack:
            self.slack.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for fake in self.fakes.values():
            fake.stop()
        if self.smtp:
            self.smtp.stop()
        if self.slack:
            self.slack.stop()

    def set_included(self, included: list[Paper]) -> None:
        """The seed review's reference list (its included studies), as every fake serves it."""
        self.included = included
        for fake in self.fakes.values():
            fake.included = included

    def set_papers(self, papers: list[Paper]) -> None:
        """Serve a different corpus from now on (e.g. one new citing paper next week)."""
        self.papers = papers
        for fake in self.fakes.values():
            fake.papers = papers
            # fakes built with the default "everything cites the seed review" mapping
            cited_by = getattr(fake, "cited_by", None)
            if isinstance(cited_by, dict) and len(cited_by) == 1:
                cited_by[next(iter(cited_by))] = papers

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for source, fake in self.fakes.items():
            conn_id = FAKES[source][0]
            conn: dict[str, Any] = {"conn_type": "http", "host": fake.url,
                                    "extra": {"email": "demo@example.org"}}
            if source == "openalex":
                conn["password"] = DEMO_API_KEY
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
        if self.smtp:
            env["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps({
                "conn_type": "smtp", "host": self.smtp.host, "port": self.smtp.port,
                "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "living-review@example.org",
                          "timeout": 10, "retry_limit": 0}})
        if self.slack:
            env["AIRFLOW_CONN_SLACK_DIGEST"] = json.dumps({"conn_type": "slackwebhook",
                                                            "password": self.slack.webhook_url()})
        return env

    def requests_by_source(self) -> dict[str, int]:
        return {source: len(fake.requests) for source, fake in self.fakes.items()}
