"""Failure alerts: one alert per failed task (not per retry), with what a maintainer needs."""
from __future__ import annotations

import datetime as dt

import pytest

from tests.fakes.corpus import REVIEW, seed_corpus
from tests.fakes.server import Response
from tests.fakes.stack import LocalStack
from tests.integration.conftest import apply_env, write_config

pytestmark = pytest.mark.integration
PIPELINE = "living_review__peer_support_mental_health"


def test_failed_source_sends_one_alert(tmp_path, monkeypatch, runner):
    with LocalStack(seed_corpus(), sources=("pubmed", "europepmc")) as stack:
        apply_env(monkeypatch, stack.env())
        monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(write_config(tmp_path / "reviews.yaml", [{
            "id": "peer-support-mental-health", "title": REVIEW["title"], "doi": REVIEW["doi"],
            "pmid": REVIEW["pmid"], "sources": ["pubmed", "europepmc"],
            "digest": {"email": ["maintainer@example.org"], "slack": True}}])))
        stack.fakes["europepmc"].inject(Response(503, {"error": "maintenance"}), times=1000)
        day = dt.datetime.now(dt.timezone.utc).date()
        states = runner.task_states(runner.run(PIPELINE, day))

    assert states["fetch_europepmc"] == "failed" and states["publish_snapshot"] == "success"
    # several tries reached the server, but only one alert went out per channel
    assert len(stack.fakes["europepmc"].requests) > 1
    alerts = [p for p in stack.slack.payloads if "failed" in p.get("text", "")]
    assert len(alerts) == 1, stack.slack.payloads
    text = alerts[0]["text"]
    assert "fetch_europepmc failed" in text and "Peer Support in Mental Health" in text
    assert "HTTP 503" in text and "last good snapshot none yet" in text  # the fetch failed before publish
    emails = [m.message for m in stack.smtp.messages]
    assert len(emails) == 1
    assert emails[0]["Subject"].startswith("[living-review] Peer Support in Mental Health: Literature Review: "
                                           "fetch_europepmc failed")
    assert emails[0]["To"] == "maintainer@example.org"
