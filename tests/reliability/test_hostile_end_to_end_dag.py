"""Hostile text and configured secrets, end to end through the real pipeline and digest DAGs.

Strangers write paper titles and author names; six APIs pass them on. Here they carry
HTML/JS (raw and entity-encoded), Slack control sequences, mrkdwn, combining marks,
RTL text, emoji, control characters, bidi overrides and mojibake. They go through the
fakes' real wire formats (E-utilities XML, Europe PMC and OpenAlex JSON), the merge,
Great Expectations, Parquet, the digest and a real SMTP server and Slack sink.

At the same time every secret the deployment has is configured: an NCBI API key (in
the connection's ``extra``), an OpenAlex API key (its ``password``), an SMTP password
(the server requires AUTH) and a Slack webhook URL. Week 2 fails on purpose: NCBI
answers 400 with a page that echoes the request (key included), OpenAlex's host does
not resolve, the SMTP server refuses the first login and Slack answers 500 once. Then
no secret may appear in the task logs, the data directory (manifest, coverage,
staging, ledger, Data Docs), Airflow's metadata DB (XComs), the alerts or the digests.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from include.living_review import settings
from include.living_review.digest import DIGEST_HEADER
from include.living_review.records.normalize import clean_title
from tests.fakes.corpus import Paper, seed_corpus
from tests.fakes.server import Response
from tests.fakes.smtp import FakeSmtpServer
from tests.reliability.conftest import DIGEST, PIPELINE, TODAY, LogTap, Scenario

pytestmark = pytest.mark.integration
WEEKS = [TODAY - dt.timedelta(days=7), TODAY]
SOURCES = ["pubmed", "europepmc", "openalex"]
NCBI_KEY = "ncbi-SECRET-4b2f8a11c0"
OPENALEX_KEY = "oa-SECRET-9c1d7e55aa"
SMTP_PASSWORD = "smtp-SECRET-pw-73e0f1"
SLACK_TOKEN = "hooks-SECRET-5a9d2c77"
ZWSP = "\u200b"

RTL_EMOJI = "\u0627\u0644\u062f\u0639\u0645 \u05e2\u05d1\u05e8\u05d9\u05ea \U0001F9E0\U0001F91D\U0001F3FD"
HOSTILE = {
    # title as the API sends it -> what must be shown (as text) in the digest
    "raw-script": "<script>alert('x')</script> Peer support in schools.",
    "encoded-script": "&lt;script&gt;alert(2)&lt;/script&gt; Peer support online.",
    "img-onerror": '&lt;img src=x onerror="alert(3)"&gt; Recovery colleges.',
    "attr-breakout": '"&gt;&lt;a href=javascript:alert(4)&gt;click me&lt;/a&gt; Peer mentoring.',
    "slack": "&lt;!channel&gt; &lt;@U123&gt; &lt;http://evil.example|click&gt; *bold* _it_ ~st~ `code` groups.",
    "unicode": f"Cafe\u0301 peer support in Tunis: {RTL_EMOJI}",
    "mojibake": "PeerÂ supportâ€™s impact on Ã©quipes.",
}
JSON_ONLY = {
    # control characters cannot travel in XML 1.0, so only the JSON APIs carry these
    "controls": "NUL\u0000 bell\u0007 esc\u001b[31m red \u202eevil override\u202c text \u0085end.",
}


def paper(n: int, title: str, *, visible: set[str] | None = None, **extra: Any) -> Paper:
    return Paper(title=title, authors=[("<b>Evil</b>", "A"), ("*Star*", "B"), ("<@U999>", "C"),
                                       ("Nguye\u0302\u0303n", "T")],
                 journal_abbrev="J <i>X</i> & Y", journal="Journal <i>X</i> & Y", year=TODAY.year - 1, month=1 + n % 12,
                 day=1 + n, pmid=f"3900{n:04d}", pmcid=f"PMC3900{n:04d}", doi=f"10.5555/hostile.{n}",
                 openalex_id=f"W39000{n:04d}", visible_in=visible or {"pubmed", "europepmc", "openalex"}, **extra)


def corpus() -> list[Paper]:
    papers = seed_corpus()[:2]  # 10 works in week 1: the Slack digest shows them all
    papers += [paper(i, t) for i, t in enumerate(HOSTILE.values())]
    papers += [paper(50 + i, t, visible={"europepmc", "openalex"}) for i, t in enumerate(JSON_ONLY.values())]
    return papers


class AuthSmtpServer(FakeSmtpServer):
    """The fake SMTP server, but AUTH is required and only ``SMTP_PASSWORD`` is accepted."""

    def __init__(self) -> None:
        super().__init__()
        self.logins: list[str] = []
        self.reject_logins = 0
        self.controller = Controller(self, hostname=self.host, port=self.port, ready_timeout=10.0,
                                     auth_require_tls=False, auth_required=True, authenticator=self._authenticate)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        password = auth_data.password.decode() if isinstance(auth_data, LoginPassword) else ""
        self.logins.append(password)
        if self.reject_logins > 0:
            self.reject_logins -= 1
            return AuthResult(success=False, handled=False)
        return AuthResult(success=password == SMTP_PASSWORD)


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, module_mp, airflow_db) -> dict[str, Any]:
    out: dict[str, Any] = {"logs": []}
    module_mp.setattr(settings, "KEEP_STAGING", True)  # staging is searched for secrets too
    sc = Scenario(tmp_path_factory.mktemp("hostile"), module_mp, corpus(), SOURCES)
    sc.stack.smtp = AuthSmtpServer()
    with sc:
        out["scenario"] = sc
        sc.set_connection("ncbi_eutils", extra={"api_key": NCBI_KEY})
        sc.set_connection("openalex", password=OPENALEX_KEY)
        sc.set_connection("smtp_default", login="digest-bot", password=SMTP_PASSWORD)
        webhook = sc.stack.slack.webhook_url(f"/services/T000/B000/{SLACK_TOKEN}")
        sc.set_connection("slack_digest", password=webhook)
        out["webhook"] = webhook

        for step, dag_id, day in (("w1-pipeline", PIPELINE, WEEKS[0]), ("w1-digest", DIGEST, WEEKS[0])):
            with LogTap() as tap:
                out[step] = sc.run(dag_id, day)
            out["logs"].append(tap.text)
        out["w1_rows"] = pq.read_table(sc.layout(WEEKS[0]).snapshot_file).to_pylist()
        out["w1_requests"] = {s: list(f.requests) for s, f in sc.stack.fakes.items()}

        # week 2: one new hostile paper; NCBI echoes the request in a 400 page, OpenAlex does not resolve
        sc.stack.set_papers(sc.stack.papers + [paper(90, "&lt;@U123&gt; pinged *again*: a new <b>trial</b>.",
                                                     visible={"europepmc"})])
        sc.stack.fakes["pubmed"].inject(Response(
            400, f"<html><body>Bad request: /elink.fcgi?dbfrom=pubmed&api_key={NCBI_KEY}&email=demo%40example.org"
                 "</body></html>", content_type="text/html"), path_contains="elink", times=1000)
        sc.set_connection("openalex", host="http://nonexistent.invalid")
        with LogTap() as tap:
            out["w2-pipeline"] = sc.run(PIPELINE, WEEKS[1])
        out["logs"].append(tap.text)
        sc.stack.smtp.reject_logins = 2  # smtplib tries PLAIN, then LOGIN: refuse both once
        sc.stack.slack.inject(Response(500, "rollup_error", content_type="text/plain"), times=1)
        with LogTap() as tap:
            out["w2-digest"] = sc.run(DIGEST, WEEKS[1])
            out["w2-digest-tries"] = sc.try_numbers(DIGEST, WEEKS[1])
        out["logs"].append(tap.text)
        out["w2_manifest"] = sc.manifest(WEEKS[1])
    return out


def emails(e2e: dict[str, Any]) -> list[Any]:
    return [m for m in e2e["scenario"].stack.smtp.messages if m.message[DIGEST_HEADER]]


def slack_digest_payloads(e2e: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in e2e["scenario"].stack.slack.payloads if p.get("blocks")]


def test_the_runs_did_what_the_scenario_says(e2e):
    """Guard against a vacuous pass: the secrets were really used and week 2 really failed."""
    assert set(e2e["w1-pipeline"].values()) == {"success"} and e2e["w1-digest"] == {"send_digest": "success"}
    assert {r.param("api_key") for r in e2e["w1_requests"]["pubmed"]} == {NCBI_KEY}
    assert {r.param("api_key") for r in e2e["w1_requests"]["openalex"]} == {OPENALEX_KEY}
    assert e2e["w2-pipeline"]["fetch_pubmed"] == "failed" and e2e["w2-pipeline"]["fetch_openalex"] == "failed"
    assert e2e["w2-pipeline"]["publish_snapshot"] == "success"
    # SMTP login refused and Slack 500 fail the same first try (each channel is tried); try 2 sends both
    assert e2e["w2-digest"] == {"send_digest": "success"} and e2e["w2-digest-tries"]["send_digest"] == 2
    smtp, slack = e2e["scenario"].stack.smtp, e2e["scenario"].stack.slack
    assert SMTP_PASSWORD in smtp.logins and len(emails(e2e)) == 2
    assert all(r.path.endswith(SLACK_TOKEN) for r in slack.requests) and len(slack_digest_payloads(e2e)) == 2
    assert "SourceFailed" in e2e["logs"][2]  # the failing tasks' tracebacks are part of what was searched
    reasons = e2e["w2_manifest"]["sources"]
    assert "HTTP 400" in reasons["pubmed"]["reason"] and "api_key=***" in reasons["pubmed"]["reason"]
    assert "cannot resolve nonexistent.invalid" in reasons["openalex"]["reason"]


# -- hostile text ---------------------------------------------------------------------
class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


# Only tags the template itself writes may appear: hostile data must never add one.
TEMPLATE = Path(__file__).resolve().parents[2] / "include" / "living_review" / "digest" / "templates" / "digest.html.j2"
ALLOWED_TAGS = set(re.findall(r"<([a-z][a-z0-9]*)", TEMPLATE.read_text(encoding="utf-8")))


def test_received_email_html_is_inert(e2e):
    """Hostile input: <script>, <img onerror>, attribute break-outs arrive as text, never as markup."""
    for received in emails(e2e):
        html = received.message.get_body(("html",)).get_content()
        parsed = Tags()
        parsed.feed(html)
        assert {tag for tag, _ in parsed.tags} <= ALLOWED_TAGS and "script" not in ALLOWED_TAGS
        for tag, attrs in parsed.tags:
            for name, value in attrs:
                assert not name.lower().startswith("on"), (tag, name)
                if name == "href":
                    assert re.match(r"^https?://[^\s\"'<>]+$", value or ""), value
        lowered = html.lower()
        assert "<script" not in lowered and "<img" not in lowered and "<a href=javascript" not in lowered
    parsed = Tags()
    parsed.feed(emails(e2e)[0].message.get_body(("html",)).get_content())
    shown = "".join(parsed.text)
    # Titles are stored without markup (clean_title decodes entities, then drops anything
    # tag-shaped); whatever text remains is displayed literally, as text.
    for key in ("encoded-script", "img-onerror", "attr-breakout"):
        assert clean_title(HOSTILE[key])[0] in shown, key
    assert "alert(2) Peer support online." in shown and '">click me Peer mentoring.' in shown
    assert "<b>Evil</b> A" in shown and "J <i>X</i> & Y" in shown  # author names are text, escaped


def _slack_texts(payload: Any) -> list[str]:
    found: list[str] = []
    if isinstance(payload, dict):
        for key, value in payload.items():
            if key == "text" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_slack_texts(value))
    elif isinstance(payload, list):
        for item in payload:
            found.extend(_slack_texts(item))
    return found


def test_slack_payload_cannot_ping_forge_links_or_format(e2e):
    """Hostile input: <!channel>, <@U123>, <http://evil|click> and *bold* are shown literally."""
    payloads = slack_digest_payloads(e2e)
    for payload in payloads:
        for text in _slack_texts(payload):
            for match in re.finditer("<", text):
                assert re.match(r"<https?://[^\s<>|]+\|", text[match.start():]), text  # only our own links
            assert "<!" not in text and "<@" not in text and "<#" not in text
            for literal in ("*bold*", "_it_", "~st~", "`code`", "*Star*", "*again*"):
                assert literal not in text, text
    blob = json.dumps(payloads, ensure_ascii=False)
    # "<!channel>" and "<http://…|click>" are tag-shaped and dropped from the stored title;
    # the mention-shaped "<@U123>" survives cleaning and is escaped so it cannot ping.
    assert "&lt;@U123&gt; " in blob and "evil.example" not in blob
    assert f"{ZWSP}*{ZWSP}bold{ZWSP}*{ZWSP}" in blob and "&lt;@U999&gt; C" in blob
    assert "&lt;@U123&gt; pinged" in json.dumps(payloads[1], ensure_ascii=False)  # week 2's new paper


CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def test_unicode_is_stored_as_clean_nfc_utf8(e2e):
    """Hostile input: combining marks, RTL, emoji kept (NFC); NUL, controls and bidi overrides removed."""
    sc = e2e["scenario"]
    rows = pq.read_table(sc.layout(WEEKS[1]).snapshot_file).to_pylist()
    for row in rows:
        for text in _strings(row):
            assert not CONTROL.search(text), (row["work_id"], text)
            assert unicodedata.is_normalized("NFC", text), (row["work_id"], text)
            text.encode("utf-8")  # strict: no lone surrogates
    titles = {r["title"] for r in rows}
    assert f"Café peer support in Tunis: {RTL_EMOJI}" in titles
    assert "PeerÂ supportâ€™s impact on Ã©quipes." in titles  # mojibake is kept as text, not "repaired"
    assert "NUL bell esc[31m red evil override text end." in titles
    assert any("Nguyễn T" in (r["authors"] or []) for r in rows)
    count = duckdb.sql(f"select count(*) from read_parquet('{sc.data_dir}/snapshots/**/*.parquet', "
                       "hive_partitioning=true)").fetchall()[0][0]
    assert count == len(rows) + len(e2e["w1_rows"])  # DuckDB rejects invalid UTF-8


def test_unicode_is_rendered_safely_in_both_digests(e2e):
    first = emails(e2e)[0].message
    rendered = [first["Subject"], first.get_body(("plain",)).get_content(), first.get_body(("html",)).get_content(),
                json.dumps(slack_digest_payloads(e2e)[0], ensure_ascii=False)]
    for output in rendered:
        assert not CONTROL.search(output)
    for output in rendered[1:]:
        assert RTL_EMOJI in output and "Café peer support" in output


# -- secrets --------------------------------------------------------------------------
SECRETS = (NCBI_KEY, OPENALEX_KEY, SMTP_PASSWORD, SLACK_TOKEN)


def _text_of(path: Path) -> str:
    if path.suffix == ".parquet" and not path.name.startswith("."):
        return json.dumps(pq.read_table(path).to_pylist(), default=str, ensure_ascii=False)
    return path.read_bytes().decode("utf-8", "replace")


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def test_no_secret_in_the_task_logs(e2e):
    for log in e2e["logs"]:
        assert log and _leaks(log) == [], [line for line in log.splitlines() if _leaks(line)][:5]
        assert e2e["webhook"] not in log


def test_no_secret_in_manifest_coverage_staging_ledger_or_data_docs(e2e):
    data_dir = e2e["scenario"].data_dir
    leaked = {str(p.relative_to(data_dir)): _leaks(_text_of(p)) for p in data_dir.rglob("*") if p.is_file()}
    assert {k: v for k, v in leaked.items() if v} == {}
    assert any(k.endswith("manifest.json") for k in leaked) and any(k.endswith("coverage.parquet") for k in leaked)
    assert any("ledger.json" in k for k in leaked) and any("source=pubmed.json" in k for k in leaked)


def test_no_secret_in_exception_messages_or_alerts(e2e):
    manifest = e2e["w2_manifest"]
    reasons = json.dumps(manifest["sources"])
    assert _leaks(reasons) == []
    alerts = [p for p in e2e["scenario"].stack.slack.payloads if not p.get("blocks")]
    assert len(alerts) >= 2 and _leaks(json.dumps(alerts)) == []
    alert_mails = [m for m in e2e["scenario"].stack.smtp.messages if not m.message[DIGEST_HEADER]]
    for mail in alert_mails:
        assert _leaks(mail.message.get_body(("html", "plain")).get_content()) == []


def test_no_secret_in_the_digests(e2e):
    for received in emails(e2e):
        for part in ("plain", "html"):
            assert _leaks(received.message.get_body((part,)).get_content()) == []
        assert _leaks(received.data.decode("utf-8", "replace")) == []
    assert _leaks(json.dumps(slack_digest_payloads(e2e))) == []
    week2 = emails(e2e)[1].message.get_body(("plain",)).get_content()
    assert "pubmed failed this run" in week2 and "openalex failed this run" in week2  # the reasons are shown


def test_no_secret_in_airflow_metadata_or_log_files(e2e, airflow_db):
    """XComs (the tasks' returned stats) and any task log files Airflow wrote."""
    db = Path(airflow_db) / "airflow.db"
    assert _leaks(db.read_bytes().decode("utf-8", "replace")) == []
    for path in (Path(airflow_db) / "logs").rglob("*"):
        if path.is_file():
            assert _leaks(path.read_text(errors="replace")) == [], path
