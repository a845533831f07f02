"""Digest rows of the fault matrix, through the real digest DAG (``dag.test()``), a real SMTP server
(aiosmtpd) and a Slack webhook sink.

Guarantee proved here (and documented in docs/reliability.md): **each event at most
once per channel, and channels independent**. A send that provably did not happen
(connection refused, SMTP refusal, Slack 4xx/5xx except 502/504) fails the task after
every channel was tried, and the retry sends only what is still pending; a send whose
outcome is unknown (the server took the message but the answer never came) is left
``sending`` in the ledger, and the retry reports ``uncertain`` instead of sending again.

Three weeks share one data directory:
1. the SMTP server accepts the message but answers after the client's timeout;
2. the SMTP server refuses DATA once, then Slack answers 500 once;
3. the SMTP server is down for every try (the task fails, the snapshot stays, Slack
   still gets its digest), then comes back; a manual rerun sends the email once,
   another sends nothing.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest

from include.living_review.digest.delivery import DeliveryLedger
from include.living_review.digest import DIGEST_HEADER
from include.living_review.digest.send import digest_status
from include.living_review.storage import published_dates
from tests.fakes.corpus import Paper, seed_corpus
from tests.fakes.server import Response
from tests.fakes.smtp import FakeSmtpServer
from tests.reliability.conftest import DIGEST, PIPELINE, REVIEW_ID, TODAY, Scenario, alert_posts

pytestmark = pytest.mark.integration
WEEKS = [TODAY - dt.timedelta(days=14), TODAY - dt.timedelta(days=7), TODAY]


def new_paper(n: int) -> Paper:
    return Paper(title=f"Peer support workers in crisis lines, study {n}: a mixed-methods evaluation.",
                 authors=[("Okafor", "C"), ("Lindqvist", "A")], journal_abbrev="BMC Psychiatry",
                 journal="BMC psychiatry", year=TODAY.year, month=TODAY.month, day=1, pmid=f"4100000{n}",
                 pmcid=f"PMC1200000{n}", doi=f"10.1186/s12888-026-0000{n}-1")


def digests_for(smtp: FakeSmtpServer, day: dt.date) -> list[Any]:
    return [m for m in smtp.messages if m.message[DIGEST_HEADER] and f"week of {_monday(day)}" in
            str(m.message["Subject"])]


def _monday(day: dt.date) -> str:
    return (day - dt.timedelta(days=day.weekday())).isoformat()


def slack_digests(slack: Any, day: dt.date) -> list[dict[str, Any]]:
    return [p for p in slack.payloads if p.get("blocks") and f"week of {_monday(day)}" in p.get("text", "")]


def snapshot_state(sc: Scenario, day: dt.date) -> bytes:
    return sc.layout(day).snapshot_file.read_bytes()


@pytest.fixture(scope="module")
def digest_runs(tmp_path_factory, module_mp, airflow_db) -> dict[str, Any]:
    out: dict[str, Any] = {}
    papers = seed_corpus()
    with Scenario(tmp_path_factory.mktemp("digest"), module_mp, papers, ["pubmed"]) as sc:
        out["scenario"] = sc
        smtp, slack = sc.stack.smtp, sc.stack.slack

        # -- week 1: accepted, but the answer comes after the client's timeout --------------
        sc.run(PIPELINE, WEEKS[0])
        sc.set_connection("smtp_default", extra={"timeout": 1})
        smtp.delay_reply(3.0)
        out["w1_states"] = sc.run(DIGEST, WEEKS[0])
        out["w1_tries"] = sc.try_numbers(DIGEST, WEEKS[0])
        out["w1_digest"] = digest_status(sc.layout(WEEKS[0]))
        out["w1_transactions"] = smtp.transactions
        smtp.delay_reply(0.0)
        sc.set_connection("smtp_default", extra={"timeout": 10})
        out["w1_rerun_states"] = sc.run(DIGEST, WEEKS[0])  # an operator reruns the digest before resolving
        out["w1_rerun_digest"] = digest_status(sc.layout(WEEKS[0]))
        out["w1_rerun_transactions"] = smtp.transactions

        # -- week 2: SMTP refuses DATA once, then Slack answers 500 once ------------------
        sc.stack.set_papers(papers + [new_paper(1)])
        sc.run(PIPELINE, WEEKS[1])
        out["w2_snapshot"] = snapshot_state(sc, WEEKS[1])
        transactions, slack_requests = smtp.transactions, len(slack.requests)
        smtp.refuse("data", "554 5.7.1 Message refused (fake)", times=1)
        slack.inject(Response(500, "rollup_error", content_type="text/plain"), times=1)
        out["w2_states"] = sc.run(DIGEST, WEEKS[1])
        out["w2_tries"] = sc.try_numbers(DIGEST, WEEKS[1])
        out["w2_transactions"] = smtp.transactions - transactions
        out["w2_slack_requests"] = len(slack.requests) - slack_requests
        out["w2_digest"] = digest_status(sc.layout(WEEKS[1]))
        out["w2_rerun_states"] = sc.run(DIGEST, WEEKS[1])  # a manual rerun: nothing is sent again
        out["w2_snapshot_after"] = snapshot_state(sc, WEEKS[1])

        # -- week 3: SMTP down for every try, then back (and Slack 429 once) ------------
        sc.stack.set_papers(papers + [new_paper(1), new_paper(2)])
        sc.run(PIPELINE, WEEKS[2])
        out["w3_snapshot"] = snapshot_state(sc, WEEKS[2])
        alerts_before = len(alert_posts(sc.stack))
        port = smtp.port
        smtp.stop()
        out["w3_states"] = sc.run(DIGEST, WEEKS[2])
        out["w3_tries"] = sc.try_numbers(DIGEST, WEEKS[2])
        out["w3_digest"] = digest_status(sc.layout(WEEKS[2]))
        out["w3_alerts"] = alert_posts(sc.stack)[alerts_before:]
        out["w3_published"] = published_dates(sc.data_dir, REVIEW_ID)
        out["w3_frame"] = pd.read_parquet(sc.data_dir / "snapshots")
        out["w3_ledger_down"] = records(sc, WEEKS[2])
        sc.stack.smtp = FakeSmtpServer(port=port).start()  # back up, same address
        out["w3_rerun_states"] = sc.run(DIGEST, WEEKS[2])
        out["w3_rerun_tries"] = sc.try_numbers(DIGEST, WEEKS[2])
        out["w3_rerun_digest"] = digest_status(sc.layout(WEEKS[2]))
        out["w3_second_rerun_states"] = sc.run(DIGEST, WEEKS[2])
        out["w3_snapshot_after"] = snapshot_state(sc, WEEKS[2])
        out["smtp_before_restart"] = smtp
        out["ledger"] = {day: records(sc, day) for day in WEEKS}
    return out


def records(sc: Scenario, day: dt.date) -> dict[str, list[Any]]:
    """The ledger's records of each channel for the digest of ``day``."""
    ledger = DeliveryLedger(sc.layout(day).ledger_file)
    return {channel: [r for _, r in ledger.records(channel) if r.snapshot_date == day.isoformat()]
            for channel in ("email", "slack")}


def test_a_reply_lost_after_smtp_accepted_is_never_resent(digest_runs):
    """Row 10: the server stored the digest, the client timed out; the retry reports 'uncertain', sends nothing."""
    smtp = digest_runs["smtp_before_restart"]
    assert digest_runs["w1_states"] == {"send_digest": "success"}
    assert digest_runs["w1_tries"]["send_digest"] == 2  # try 1 failed on the timeout, try 2 did not resend
    assert len(digests_for(smtp, WEEKS[0])) == 1
    # the digest once, and the alert that its delivery is uncertain (once, also by Slack; row 25)
    assert digest_runs["w1_transactions"] == 2
    others = [m.message["Subject"] for m in smtp.messages if not m.message[DIGEST_HEADER]]
    assert len(others) == 1 and "email digest may not have been delivered" in others[0]
    digest = digest_runs["w1_digest"]
    assert digest["status"] == "uncertain"
    assert {k: v["status"] for k, v in digest["channels"].items()} == {"email": "uncertain", "slack": "sent"}
    assert len(slack_digests(digest_runs["scenario"].stack.slack, WEEKS[0])) == 1


def test_an_uncertain_delivery_stays_uncertain_through_a_rerun(digest_runs):
    """A rerun of the digest neither resends nor erases the uncertain state (it stays until resolved)."""
    assert digest_runs["w1_rerun_states"] == {"send_digest": "success"}
    assert digest_runs["w1_rerun_transactions"] == digest_runs["w1_transactions"]  # nothing sent again
    channels = digest_runs["w1_rerun_digest"]["channels"]
    assert digest_runs["w1_rerun_digest"]["status"] == "uncertain"
    assert channels["email"]["status"] == "uncertain" and "resolve" in channels["email"]["reason"]
    assert channels["slack"]["status"] == "sent"


def test_uncertain_delivery_is_left_for_an_operator_in_the_ledger(digest_runs):
    """Row 10: the ledger keeps 'sending' (the intent recorded before the send), never 'failed'."""
    week1 = digest_runs["ledger"][WEEKS[0]]
    assert [(r.state, r.attempts) for r in week1["email"]] == [("sending", 1)]
    assert [r.state for r in week1["slack"]] == ["sent"]
    assert week1["email"][0].events == week1["slack"][0].events  # both carried the baseline's events


def test_smtp_refusal_and_slack_500_fail_the_task_and_each_channel_sends_once(digest_runs):
    """Row 9: refused DATA and Slack 500 both fail try 1 (each channel is tried); try 2 sends both, once."""
    assert digest_runs["w2_states"] == {"send_digest": "success"}
    assert digest_runs["w2_tries"]["send_digest"] == 2
    smtp, slack = digest_runs["smtp_before_restart"], digest_runs["scenario"].stack.slack
    emails = digests_for(smtp, WEEKS[1])
    assert len(emails) == 1 and digest_runs["w2_transactions"] == 2  # one refused, one accepted
    assert "1 new citing paper" in emails[0].message["Subject"]
    assert len(slack_digests(slack, WEEKS[1])) == 1 and digest_runs["w2_slack_requests"] == 2
    assert {k: v["status"] for k, v in digest_runs["w2_digest"]["channels"].items()} == {"email": "sent",
                                                                                        "slack": "sent"}
    week2 = digest_runs["ledger"][WEEKS[1]]
    assert [r.state for r in week2["email"]] == ["sent"] and [r.state for r in week2["slack"]] == ["sent"]


def test_a_manual_rerun_does_not_resend_and_the_snapshot_never_moves(digest_runs):
    """Row 9: rerunning a delivered digest sends nothing; digest failures never touch the snapshot."""
    assert digest_runs["w2_rerun_states"] == {"send_digest": "success"}
    smtp, slack = digest_runs["smtp_before_restart"], digest_runs["scenario"].stack.slack
    assert len(digests_for(smtp, WEEKS[1])) == 1 and len(slack_digests(slack, WEEKS[1])) == 1
    assert digest_runs["w2_snapshot_after"] == digest_runs["w2_snapshot"]
    assert digest_runs["w3_snapshot_after"] == digest_runs["w3_snapshot"]


def test_smtp_down_fails_the_digest_after_its_retries_and_the_snapshot_stays_published(digest_runs):
    """Row 9: connection refused on every try -> the task fails, one alert; the snapshot is published,
    and Slack, which works, got its digest on the first try."""
    assert digest_runs["w3_states"] == {"send_digest": "failed"}
    scenario = digest_runs["scenario"]
    retries = scenario.runner.dag(DIGEST).get_task("send_digest").retries
    assert digest_runs["w3_tries"]["send_digest"] == retries + 1
    assert WEEKS[2] in digest_runs["w3_published"]
    frame = digest_runs["w3_frame"]
    assert len(frame[frame["snapshot_date"].astype(str) == WEEKS[2].isoformat()]) == 22
    assert digest_runs["w3_digest"]["status"] == "failed"
    assert digest_runs["w3_digest"]["channels"]["slack"]["status"] == "sent"
    (email,) = digest_runs["w3_ledger_down"]["email"]
    assert email.state == "failed" and email.attempts == retries + 1
    assert "ConnectionRefusedError" in email.error or "Connection refused" in email.error, email
    assert [r.state for r in digest_runs["w3_ledger_down"]["slack"]] == ["sent"]  # one channel down, not both
    alerts = [p["text"] for p in digest_runs["w3_alerts"]]
    assert len(alerts) == 1 and "send_digest failed" in alerts[0], alerts


def test_when_smtp_is_back_a_rerun_sends_once_and_another_sends_nothing(digest_runs):
    """Row 9: after the outage the rerun sends the email once (Slack has nothing pending), then nothing more."""
    smtp, slack = digest_runs["scenario"].stack.smtp, digest_runs["scenario"].stack.slack
    assert digest_runs["w3_rerun_states"] == {"send_digest": "success"}
    assert digest_runs["w3_rerun_tries"]["send_digest"] == 1
    assert digest_runs["w3_second_rerun_states"] == {"send_digest": "success"}
    emails = digests_for(smtp, WEEKS[2])
    assert len(emails) == 1 and len(slack_digests(slack, WEEKS[2])) == 1
    assert digest_runs["w3_rerun_digest"]["status"] == "sent"
    week3 = digest_runs["ledger"][WEEKS[2]]
    # the email that finally went out carries the same events as Slack's (the new paper of week 3)
    (email,) = week3["email"]  # the failed record was retried under the same key, then sent
    retries = digest_runs["scenario"].runner.dag(DIGEST).get_task("send_digest").retries
    assert email.state == "sent" and email.attempts == retries + 2
    assert week3["email"][-1].events == week3["slack"][-1].events and len(week3["slack"][-1].events) == 1
    assert all(len(digests_for(digest_runs["smtp_before_restart"], w)) == 1 for w in WEEKS[:2])
    assert emails[0].rcpt_tos == ["maintainer@example.org"]
