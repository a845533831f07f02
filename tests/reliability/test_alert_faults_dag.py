"""Alerts when a channel is down, and the Slack webhook's secret, through the real digest DAG (issue 14).

Two weeks share one data directory, a real SMTP server (aiosmtpd) and the Slack sink:

1. Slack answers every post ``404 no_service (requested /services/T000/B000/<token>)``,
   echoing the webhook's secret path. The email digest goes out, the Slack digest
   fails on every try, so the task fails and its failure alert is due; the Slack alert
   fails the same way and the alert falls through to email. No trace of the token in
   the task log, the ledger, ``digest.json``, the data directory or the alert.
   Then a rerun while Slack answers 500 and the SMTP server is down: the alert has
   nowhere to go but the outbox (``Layout.alerts_dir``).
2. Slack is back; the SMTP server takes the digest but answers after the client's
   timeout: an ``uncertain`` delivery. The task ends green on its retry, and the
   operator gets one alert naming the channel, the key and how to resolve it; a
   rerun sends no second alert.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from include.living_review.digest import DIGEST_HEADER
from include.living_review.digest.delivery import DeliveryLedger
from include.living_review.digest.send import digest_status
from tests.fakes.corpus import Paper, seed_corpus
from tests.fakes.server import Response
from tests.fakes.smtp import FakeSmtpServer
from tests.reliability.conftest import DIGEST, PIPELINE, TODAY, LogTap, Scenario

pytestmark = pytest.mark.integration
WEEKS = [TODAY - dt.timedelta(days=7), TODAY]
TOKEN = "hooks-SECRET-5a9d2c77"
SECRET_PATH = f"/services/T000/B000/{TOKEN}"


def new_paper() -> Paper:
    return Paper(title="Peer support workers in crisis lines: a mixed-methods evaluation.",
                 authors=[("Okafor", "C")], journal_abbrev="BMC Psychiatry", journal="BMC psychiatry",
                 year=TODAY.year, month=TODAY.month, day=1, pmid="41000091", pmcid="PMC12000091",
                 doi="10.1186/s12888-026-00091-1")


def _alert_mails(smtp: FakeSmtpServer, since: int) -> list[Any]:
    return [m.message for m in smtp.messages[since:] if not m.message[DIGEST_HEADER]]


def _alert_attempts(slack: Any, since: int) -> list[dict[str, Any]]:
    """Every alert posted to the webhook, answered or refused (the sink keeps only what it accepted)."""
    bodies = [json.loads(r.body) for r in slack.requests[since:] if r.body]
    return [b for b in bodies if not b.get("blocks")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, module_mp, airflow_db) -> dict[str, Any]:
    out: dict[str, Any] = {"logs": []}
    papers = seed_corpus()
    with Scenario(tmp_path_factory.mktemp("alerts"), module_mp, papers, ["pubmed"]) as sc:
        out["scenario"] = sc
        slack = sc.stack.slack
        sc.set_connection("slack_digest", password=slack.webhook_url(SECRET_PATH))

        # -- week 1: Slack refuses every post, echoing the secret path ---------------------
        sc.run(PIPELINE, WEEKS[0])
        slack.inject(Response(404, f"no_service (requested {SECRET_PATH})", content_type="text/plain"), times=1000)
        mails, posts = len(sc.stack.smtp.messages), len(slack.requests)
        with LogTap() as tap:
            out["w1_states"] = sc.run(DIGEST, WEEKS[0])
        out["logs"].append(tap.text)
        out["w1_digest"] = digest_status(sc.layout(WEEKS[0]))
        out["w1_ledger_text"] = sc.layout(WEEKS[0]).ledger_file.read_text(encoding="utf-8")
        out["w1_alert_mails"] = _alert_mails(sc.stack.smtp, mails)
        out["w1_alert_attempts"] = _alert_attempts(slack, posts)
        out["w1_digest_mails"] = [m for m in sc.stack.smtp.messages[mails:] if m.message[DIGEST_HEADER]]
        out["w1_paths"] = {r.path for r in slack.requests[posts:]}

        # -- week 1 rerun: Slack 500 and the SMTP server down -> the outbox ------------------
        slack.clear()
        slack.inject(Response(500, "rollup_error", content_type="text/plain"), times=1000)
        port = sc.stack.smtp.port
        sc.stack.smtp.stop()
        with LogTap() as tap:
            out["w1_rerun_states"] = sc.run(DIGEST, WEEKS[0])
        out["logs"].append(tap.text)
        out["w1_rerun_alert_attempts"] = _alert_attempts(slack, 0)
        out["outbox"] = {p.name: json.loads(p.read_text(encoding="utf-8"))
                         for p in sc.layout(WEEKS[0]).alerts_dir.glob("*.json")}
        sc.stack.smtp = FakeSmtpServer(port=port).start()
        slack.clear()

        # -- week 2: SMTP takes the digest but answers late -> uncertain ----------------------
        sc.stack.set_papers(papers + [new_paper()])
        sc.run(PIPELINE, WEEKS[1])
        sc.set_connection("smtp_default", extra={"timeout": 1})
        sc.stack.smtp.delay_reply(3.0)
        posts = len(slack.payloads)
        with LogTap() as tap:
            out["w2_states"] = sc.run(DIGEST, WEEKS[1])
            out["w2_tries"] = sc.try_numbers(DIGEST, WEEKS[1])
        out["logs"].append(tap.text)
        out["w2_digest"] = digest_status(sc.layout(WEEKS[1]))
        out["w2_alerts"] = [p for p in slack.payloads[posts:] if not p.get("blocks")]
        sc.stack.smtp.delay_reply(0.0)
        sc.set_connection("smtp_default", extra={"timeout": 10})
        with LogTap() as tap:
            out["w2_rerun_states"] = sc.run(DIGEST, WEEKS[1])
        out["logs"].append(tap.text)
        out["w2_alerts_after_rerun"] = [p for p in slack.payloads[posts:] if not p.get("blocks")]
        out["ledger"] = DeliveryLedger(sc.layout(WEEKS[1]).ledger_file)
        out["data_files"] = {str(p.relative_to(sc.data_dir)): p.read_bytes().decode("utf-8", "replace")
                             for p in sc.data_dir.rglob("*") if p.is_file() and p.suffix != ".parquet"}
    return out


def test_the_runs_did_what_the_scenario_says(runs):
    """Guard against a vacuous pass: the webhook with the token was really used, and really refused."""
    assert runs["w1_paths"] == {SECRET_PATH}
    assert runs["w1_states"] == {"send_digest": "failed"} and runs["w1_rerun_states"] == {"send_digest": "failed"}
    assert len(runs["w1_digest_mails"]) == 1  # email, the working channel, delivered its digest once
    assert runs["w1_digest"]["channels"]["email"]["status"] == "sent"


# -- item 8: the webhook's secret path never leaves the channel ------------------------------
def test_a_slack_error_echoing_the_webhook_token_is_scrubbed_from_logs_ledger_and_digest_json(runs):
    slack = runs["w1_digest"]["channels"]["slack"]
    assert slack["status"] == "failed" and "404" in slack["error"]
    assert "no_service (requested /services/***)" in slack["error"]  # the reason stays readable
    assert TOKEN not in runs["w1_ledger_text"] and "no_service (requested /services/***)" in runs["w1_ledger_text"]
    for log in runs["logs"]:
        assert log and TOKEN not in log, [line for line in log.splitlines() if TOKEN in line][:5]
    assert {name: text for name, text in runs["data_files"].items() if TOKEN in text} == {}
    assert any(name.endswith("digest.json") for name in runs["data_files"])


def test_the_alert_about_the_failed_slack_digest_does_not_carry_the_token(runs):
    (mail,) = runs["w1_alert_mails"]
    body = mail.get_body(("html", "plain")).get_content()
    assert "send_digest failed" in mail["Subject"] and "/services/***" in body and TOKEN not in body
    assert all(TOKEN not in json.dumps(outbox) for outbox in runs["outbox"].values())


# -- item 10: a failed alert channel falls through to the next, then to the outbox ---------
def test_when_slack_refuses_the_alert_it_falls_through_to_email(runs):
    assert len(runs["w1_alert_attempts"]) == 1 and "send_digest failed" in runs["w1_alert_attempts"][0]["text"]
    assert len(runs["w1_alert_mails"]) == 1 and runs["w1_alert_mails"][0]["To"] == "maintainer@example.org"


def test_when_slack_and_smtp_both_fail_the_alert_is_written_to_the_outbox(runs):
    assert len(runs["w1_rerun_alert_attempts"]) == 1  # Slack was tried (and answered 500)
    (alert,) = runs["outbox"].values()
    assert "send_digest failed" in alert["subject"] and "Slack digest" not in alert["subject"]
    assert "HTTP 500" in alert["text"] or "Status Code: 500" in alert["text"]
    assert set(alert["undelivered"]) == {"slack", "email"}
    assert "500" in alert["undelivered"]["slack"] and "refused" in alert["undelivered"]["email"].lower()


# -- item 11: an uncertain delivery reaches the operator, once ------------------------------
def test_an_uncertain_delivery_is_alerted_naming_channel_key_and_how_to_resolve(runs):
    assert runs["w2_states"] == {"send_digest": "success"} and runs["w2_tries"]["send_digest"] == 2
    assert runs["w2_digest"]["channels"]["email"]["status"] == "uncertain"
    ((key, channel),) = runs["ledger"].uncertain()
    assert channel == "email" and runs["w2_digest"]["channels"]["email"]["key"] == key
    (alert,) = runs["w2_alerts"]
    text = alert["text"]
    assert "uncertain" in text and "email" in text and key in text
    assert f"resolve('{key}', 'email', delivered=" in text and "DeliveryLedger(" in text


def test_an_uncertain_delivery_is_alerted_once_not_on_every_rerun(runs):
    assert runs["w2_rerun_states"] == {"send_digest": "success"}
    assert len(runs["w2_alerts_after_rerun"]) == 1
    ((key, channel),) = runs["ledger"].uncertain()
    assert runs["ledger"].get(key, channel).alerted_at
