"""Digest content and rendering: subjects, items, Slack blocks, hostile input, email and outbox."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from include.living_review import settings
from include.living_review.config import DigestConfig, ReviewConfig
from include.living_review.digest import (
    DIGEST_HEADER,
    Digest,
    badges_for,
    build_digest,
    build_email,
    format_authors,
    idempotency_key,
    safe_url,
    slack_escape,
    week_of,
    work_url,
    write_outbox,
)

SNAPSHOT = dt.date(2026, 11, 25)  # a Wednesday; the week starts on 2026-11-23
COVERAGE = {"pubmed": 212, "europepmc": 260, "openalex": 301}
ZWSP = "\u200b"


@pytest.fixture
def review() -> ReviewConfig:
    return ReviewConfig(id="peer-support-mental-health", title="Peer Support in Mental Health",
                        doi="10.2196/15572", pmid="32357127", sources=["pubmed", "europepmc", "openalex"],
                        digest=DigestConfig(email=["team@example.org"]))


def work(n: int, **overrides: Any) -> dict[str, Any]:
    """A snapshot row; paper ``n`` is published ``n`` days after 2020-01-01."""
    published = dt.date(2020, 1, 1) + dt.timedelta(days=n)
    row: dict[str, Any] = {
        "work_id": f"doi:10.1234/paper.{n}", "doi": f"10.1234/paper.{n}", "pmid": str(1000 + n), "pmcid": None,
        "openalex_id": None, "s2_paper_id": None, "title": f"Paper number {n}", "title_is_translated": False,
        "authors": ["Xu R", "Smith J"], "journal": "Journal of Medical Internet Research",
        "journal_abbrev": "J Med Internet Res", "publication_year": published.year, "publication_date": published,
        "volume": None, "issue": None, "pages": None, "publication_types": ["Journal Article"], "language": "eng",
        "is_retracted": False, "sources": ["pubmed", "openalex"], "source_ids": {},
        "first_seen": dt.datetime(2026, 11, 25, tzinfo=dt.UTC), "last_reported": None,
    }
    row.update(overrides)
    return row


def digest_of(review: ReviewConfig, works: list[dict[str, Any]], **kwargs: Any) -> Digest:
    kwargs.setdefault("total_works", 334)
    kwargs.setdefault("coverage", COVERAGE)
    return build_digest(review, SNAPSHOT, works, **kwargs)


def slack_texts(payload: dict[str, Any]) -> list[str]:
    """Every text string in a Block Kit payload, the fallback ``text`` included."""
    texts = [payload["text"]]
    for block in payload["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts += [element["text"] for element in block.get("elements", [])]
    return texts


def item_sections(payload: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section" and "found by" in b["text"]["text"]]


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(html: str) -> TagCollector:
    parser = TagCollector()
    parser.feed(html)
    parser.close()
    return parser


# -- subjects and structure ------------------------------------------------------
def test_subject_counts_new_papers_with_the_monday_of_the_week(review: ReviewConfig) -> None:
    digest = digest_of(review, [work(1), work(2), work(3)])
    assert digest.subject == "Peer Support in Mental Health: 3 new citing papers (week of 2026-11-23)"
    assert digest.item_count == 3 and digest.shown_count == 3 and not digest.is_empty
    assert digest.text.startswith(digest.subject + "\n")
    assert week_of(dt.date(2026, 11, 23)) == dt.date(2026, 11, 23)
    assert week_of(dt.date(2026, 11, 29)) == dt.date(2026, 11, 23)


def test_subject_is_singular_for_one_paper(review: ReviewConfig) -> None:
    digest = digest_of(review, [work(1)])
    assert digest.subject == "Peer Support in Mental Health: 1 new citing paper (week of 2026-11-23)"
    assert "1 new paper cites this review" in digest.text


def test_baseline_shows_the_total_and_only_the_latest_twenty(review: ReviewConfig) -> None:
    works = [work(n) for n in range(50)]
    digest = digest_of(review, works, baseline=True, total_works=50, union=50)
    assert digest.subject == ("Peer Support in Mental Health: now tracking 50 citing papers "
                              "(baseline, week of 2026-11-23)")
    assert digest.item_count == 50 and digest.shown_count == settings.BASELINE_DIGEST_ITEMS == 20
    for n in range(30, 50):  # the 20 newest
        assert f"Paper number {n}\n" in digest.text and f">Paper number {n}</a>" in digest.html
    for n in range(30):
        assert f"Paper number {n}\n" not in digest.text and f">Paper number {n}</a>" not in digest.html
    assert "and 30 more in the snapshot" in digest.text and "and 30 more in the snapshot" in digest.html
    assert "The 20 most recent are listed below" in digest.text
    sections = item_sections(digest.slack_payload)
    assert len(sections) == settings.SLACK_MAX_ITEMS
    assert "and 40 more" in json.dumps(digest.slack_payload)


def test_baseline_subject_is_singular_for_one_work(review: ReviewConfig) -> None:
    digest = digest_of(review, [work(1)], baseline=True, total_works=1)
    assert "now tracking 1 citing paper (baseline, week of 2026-11-23)" in digest.subject


def test_empty_digest_says_no_new_papers(review: ReviewConfig) -> None:
    digest = digest_of(review, [])
    assert digest.is_empty and digest.item_count == 0
    assert digest.subject == "Peer Support in Mental Health: no new citing papers (week of 2026-11-23)"
    assert "No new papers" in digest.text and "No new papers" in digest.html
    assert "No new papers" in digest.slack_payload["blocks"][1]["text"]["text"]
    assert not item_sections(digest.slack_payload)


def test_slack_shows_ten_items_then_and_n_more(review: ReviewConfig) -> None:
    digest = digest_of(review, [work(n) for n in range(15)])
    payload = digest.slack_payload
    assert payload["blocks"][0]["type"] == "header"
    assert payload["blocks"][0]["text"] == {"type": "plain_text", "emoji": True, "text": digest.subject}
    assert payload["text"] == digest.subject
    sections = item_sections(payload)
    assert len(sections) == 10
    assert "Paper number 14" in sections[0] and "Paper number 5" in sections[-1]
    contexts = [b["elements"][0]["text"] for b in payload["blocks"] if b["type"] == "context"]
    assert contexts[0] == "and 5 more (see the email digest or the snapshot)"
    assert contexts[1].startswith("Coverage: PubMed 212 · Europe PMC 260 · OpenAlex 301 · union 334")
    assert len(payload["blocks"]) <= 50
    # the email lists all 15
    assert all(f"Paper number {n}\n" in digest.text for n in range(15))


def test_items_are_ordered_newest_first_undated_last(review: ReviewConfig) -> None:
    works = [work(5), work(300), work(7, publication_date=None, publication_year=2019, title="Year only"),
             work(8, publication_date=None, publication_year=None, title="No date at all"), work(100)]
    digest = digest_of(review, works)
    order = [digest.text.index(t) for t in
             ("Paper number 300", "Paper number 100", "Paper number 5", "Year only", "No date at all")]
    assert order == sorted(order)


# -- one paper --------------------------------------------------------------------
def test_links_follow_doi_then_pmid_then_pmcid(review: ReviewConfig) -> None:
    assert work_url("10.1234/ABC.1", "123", "PMC9") == "https://doi.org/10.1234/abc.1"
    assert work_url(None, "123", "PMC9") == "https://pubmed.ncbi.nlm.nih.gov/123/"
    assert work_url("not a doi", "123", None) == "https://pubmed.ncbi.nlm.nih.gov/123/"
    assert work_url(None, None, "PMC7312261") == "https://pmc.ncbi.nlm.nih.gov/articles/PMC7312261/"
    assert work_url(None, "pmid-garbage", "also bad") is None
    # characters that could break out of an attribute or a Slack link are percent-encoded
    assert work_url('10.1234/a"><b>|x', None, None) == "https://doi.org/10.1234/a%22%3E%3Cb%3E%7Cx"

    works = [work(1), work(2, doi=None), work(3, doi=None, pmid=None, pmcid="PMC123"),
             work(4, doi=None, pmid=None, title="Unlinked")]
    digest = digest_of(review, works)
    assert 'href="https://doi.org/10.1234/paper.1"' in digest.html
    assert 'href="https://pubmed.ncbi.nlm.nih.gov/1002/"' in digest.html
    assert 'href="https://pmc.ncbi.nlm.nih.gov/articles/PMC123/"' in digest.html
    assert "https://pubmed.ncbi.nlm.nih.gov/1002/" in digest.text
    assert ">Unlinked</span>" in digest.html
    sections = item_sections(digest.slack_payload)
    assert sections[1].startswith("*<https://pmc.ncbi.nlm.nih.gov/articles/PMC123/|Paper number 3>*\n")
    assert sections[0].startswith("*Unlinked*\n")  # newest first: paper 4 leads


def test_authors_first_three_then_et_al() -> None:
    assert format_authors(["A X", "B Y", "C Z", "D W"]) == "A X, B Y, C Z, et al."
    assert format_authors(["A X", "B Y", "C Z"]) == "A X, B Y, C Z"
    assert format_authors(["A X", "", None]) == "A X"
    assert format_authors(None) == ""


def test_journal_abbreviation_is_preferred_with_the_year(review: ReviewConfig) -> None:
    digest = digest_of(review, [work(1, authors=["A X", "B Y", "C Z", "D W"]),
                                work(2, journal_abbrev=None, journal="Full Journal Name")])
    assert "A X, B Y, C Z, et al." in digest.text and "A X, B Y, C Z, et al." in digest.html
    assert "J Med Internet Res 2020" in digest.text
    assert "Full Journal Name 2020" in digest.text
    assert "Journal of Medical Internet Research" not in digest.text


def test_badges_from_publication_types() -> None:
    assert badges_for(["Journal Article", "Review"], False) == ("Review",)
    assert badges_for(["Preprint", "Randomized Controlled Trial", "Meta-Analysis", "Systematic Review"], False) == (
        "Systematic Review", "Meta-Analysis", "RCT", "Preprint")
    assert badges_for(["posted-content"], False) == ("Preprint",)
    assert badges_for(["meta_analysis", "review"], True) == ("Retracted", "Meta-Analysis", "Review")
    assert badges_for(["Retracted Publication"], False) == ("Retracted",)
    assert badges_for(None, None) == ()


def test_badges_and_found_by_are_rendered(review: ReviewConfig) -> None:
    row = work(1, publication_types=["Journal Article", "Randomized Controlled Trial", "Review"], is_retracted=True,
               sources=["semanticscholar", "crossref", "europepmc", "pubmed", "opencitations", "openalex"])
    digest = digest_of(review, [row])
    assert "[RETRACTED] [Review] [RCT]" in digest.text
    assert "Found by: PubMed, Europe PMC, OpenAlex, OpenCitations, Semantic Scholar, Crossref" in digest.text
    retracted = re.search(r'<span style="([^"]*)">Retracted</span>', digest.html)
    assert retracted and "background-color:#b91c1c" in retracted.group(1)
    assert ">RCT</span>" in digest.html and ">Review</span>" in digest.html
    section = item_sections(digest.slack_payload)[0]
    assert ":red_circle: *Retracted*" in section and "`RCT`" in section and "`Review`" in section
    assert section.endswith("found by PubMed, Europe PMC, OpenAlex, OpenCitations, Semantic Scholar, Crossref")


def test_coverage_warnings_and_links(review: ReviewConfig) -> None:
    digest = digest_of(review, [work(1)], warnings=["europepmc returned 40% fewer works than last run"],
                       links={"Snapshot": "/data/snapshots/review_id=x/citing_works.parquet",
                              "Data docs": "https://docs.example.org/dq?run=1&x=2",
                              "Evil": "javascript:alert(1)"})
    assert "Coverage: PubMed 212 · Europe PMC 260 · OpenAlex 301 · union 334" in digest.text
    assert "PubMed 212 · Europe PMC 260 · OpenAlex 301 · union 334" in digest.html
    assert " - europepmc returned 40% fewer works than last run" in digest.text
    assert "<li" in digest.html and "europepmc returned 40% fewer works" in digest.html
    assert 'href="https://docs.example.org/dq?run=1&amp;x=2"' in digest.html
    assert " - Snapshot: /data/snapshots/review_id=x/citing_works.parquet" in digest.text
    assert "javascript:" not in "".join(v or "" for _, attrs in parse_html(digest.html).tags for _, v in attrs)
    slack = json.dumps(digest.slack_payload)
    assert "<https://docs.example.org/dq?run=1&amp;amp;x=2|Data docs>" not in slack  # no double escaping
    assert "<https://docs.example.org/dq?run=1&amp;x=2|Data docs>" in slack
    assert "<javascript" not in slack


def test_coverage_line_orders_sources_and_reports_gaps(review: ReviewConfig) -> None:
    digest = digest_of(review, [work(1)], coverage={"openalex": 3, "zzz": 1, "pubmed": None}, union=4)
    assert "Coverage: PubMed n/a · OpenAlex 3 · zzz 1 · union 4" in digest.text


def test_idempotency_key_depends_on_review_date_and_the_set_of_works(review: ReviewConfig) -> None:
    a = digest_of(review, [work(1), work(2)])
    b = digest_of(review, [work(2), work(1)], total_works=999, warnings=["other"])
    assert a.idempotency_key == b.idempotency_key and len(a.idempotency_key) == 64
    assert a.key12 == a.idempotency_key[:12]
    assert digest_of(review, [work(1)]).idempotency_key != a.idempotency_key
    assert idempotency_key(review.id, SNAPSHOT + dt.timedelta(days=7), a.work_ids) != a.idempotency_key
    assert idempotency_key("other-review", SNAPSHOT, a.work_ids) != a.idempotency_key


# -- hostile input ----------------------------------------------------------------
HOSTILE_TITLES = [
    "<script>alert('x')</script> Peer support",
    '<img src=x onerror="alert(1)"> outcomes',
    '"><a href=javascript:alert(document.cookie)>click me</a>',
    "Ping <!channel> and <!here> and <@U123> now",
    "Forged <http://evil.example|click here> link",
    "*bold* _italic_ ~strike~ `code` claims",
    "NUL\x00 and \x07bell\x1b[31m controls",
    "Override \u202eevil\u202c text",
]
RTL_EMOJI = "تأثير الدعم 👩\u200d⚕️ בריאות x\u0301 Ω\u0308"


def hostile_works() -> list[dict[str, Any]]:
    works = [work(n, title=title) for n, title in enumerate(HOSTILE_TITLES)]
    works.append(work(50, title=RTL_EMOJI, authors=["<b>Evil</b> A", "*Star* B", "<@U999> C", "Hidden D"],
                      journal_abbrev="J <i>X</i> & Y", doi='10.1234/x"><script>'))
    return works


def test_hostile_html_is_inert(review: ReviewConfig) -> None:
    digest = digest_of(review, hostile_works(), warnings=["<script>alert(2)</script> warning"],
                       links={"<b>label</b>": "https://ok.example/a?b=<c>"})
    parsed = parse_html(digest.html)
    allowed = {"html", "head", "meta", "title", "body", "table", "tr", "td", "div", "h1", "h2", "p", "a", "span",
               "strong", "ul", "li"}
    assert {tag for tag, _ in parsed.tags} <= allowed
    for tag, attrs in parsed.tags:
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            if name == "href":
                assert value and re.match(r"^https?://", value), value
            assert name in {"lang", "charset", "name", "content", "style", "role", "width", "cellpadding",
                            "cellspacing", "border", "align", "href"}, name
    lowered = digest.html.lower()
    assert "<script" not in lowered and "<img" not in lowered
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Peer support" in digest.html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; outcomes" in digest.html
    assert "&#34;&gt;&lt;a href=javascript:alert(document.cookie)&gt;click me&lt;/a&gt;" in digest.html
    assert "&lt;b&gt;Evil&lt;/b&gt; A" in digest.html and "J &lt;i&gt;X&lt;/i&gt; &amp; Y" in digest.html
    text = "".join(parsed.text)
    assert "<script>alert('x')</script> Peer support" in text  # shown literally, as text


def test_hostile_slack_text_cannot_ping_forge_links_or_format(review: ReviewConfig) -> None:
    digest = digest_of(review, hostile_works(), warnings=["<!channel> *urgent*"])
    for text in slack_texts(digest.slack_payload):
        # every remaining "<" opens one of our own links
        for match in re.finditer("<", text):
            assert re.match(r"<https?://[^\s<>|]+\|", text[match.start():]), text
        assert "<!" not in text and "<@" not in text and "<#" not in text
        for literal in ("*bold*", "_italic_", "~strike~", "`code`", "*Star*", "*urgent*"):
            assert literal not in text
    blob = json.dumps(digest.slack_payload, ensure_ascii=False)
    assert f"{ZWSP}*{ZWSP}Star{ZWSP}*{ZWSP} B" in blob and f"&lt;!channel&gt; {ZWSP}*{ZWSP}urgent" in blob
    assert "Ping &lt;!channel&gt; and &lt;!here&gt; and &lt;@U123&gt; now" in blob
    assert "Forged &lt;http://evil.example|click here&gt; link" in blob
    assert f"{ZWSP}*{ZWSP}bold{ZWSP}*{ZWSP} {ZWSP}_{ZWSP}italic{ZWSP}_{ZWSP}" in blob
    assert "*bold*" not in blob
    assert "&lt;@U999&gt; C, et al." in blob
    assert "https://doi.org/10.1234/x%22%3E%3Cscript%3E|" in blob


def test_slack_escape_rules() -> None:
    assert slack_escape("a & <b> *c*") == f"a &amp; &lt;b&gt; {ZWSP}*{ZWSP}c{ZWSP}*{ZWSP}"
    assert slack_escape("&lt;") == "&amp;lt;"  # data that looks escaped stays literal


def test_control_characters_are_stripped_and_unicode_survives(review: ReviewConfig) -> None:
    digest = digest_of(review, hostile_works())
    rendered = [digest.subject, digest.text, digest.html, json.dumps(digest.slack_payload, ensure_ascii=False)]
    for output in rendered:
        assert "\x00" not in output and "\x07" not in output and "\x1b" not in output
        assert "\u202e" not in output and "\u202c" not in output
    assert "NUL and bell[31m controls" in digest.text
    assert "Override evil text" in digest.text
    assert RTL_EMOJI in digest.text and RTL_EMOJI in digest.html
    assert RTL_EMOJI in json.dumps(digest.slack_payload, ensure_ascii=False)
    message = build_email(digest, sender="digest@example.org", recipients=["a@example.org"])
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert RTL_EMOJI in parsed.get_body(("plain",)).get_content()
    assert RTL_EMOJI in parsed.get_body(("html",)).get_content()


def test_safe_url_accepts_only_http_links() -> None:
    assert safe_url("https://example.org/a?b=1&c=2") == "https://example.org/a?b=1&c=2"
    assert safe_url("http://example.org/x|y<z>") == "http://example.org/x%7Cy%3Cz%3E"
    for bad in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>", "file:///etc/passwd",
                "//example.org", "/relative", "https://exa mple.org", "https://example.org/\x00", "", None, 3):
        assert safe_url(bad) is None, bad


def test_review_title_with_newlines_cannot_inject_headers(review: ReviewConfig) -> None:
    evil = review.model_copy(update={"title": "Title\r\nBcc: victim@example.org"})
    digest = digest_of(evil, [work(1)])
    assert "\n" not in digest.subject and "\r" not in digest.subject
    message = build_email(digest, sender="digest@example.org", recipients=["a@example.org"])
    assert message["Bcc"] is None


# -- email and outbox ---------------------------------------------------------------
def test_build_email_is_multipart_alternative_with_key_headers(review: ReviewConfig) -> None:
    digest = digest_of(review, [work(1), work(2)])
    message = build_email(digest, sender="Living Review <digest@example.org>",
                          recipients=["a@example.org", "b@example.org"])
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["Subject"] == digest.subject
    assert parsed["To"] == "a@example.org, b@example.org"
    assert parsed["From"].addresses[0].addr_spec == "digest@example.org"
    assert parsed["Date"] is not None
    assert parsed["Message-ID"] == f"<digest-{digest.idempotency_key}@example.org>"
    assert parsed[DIGEST_HEADER] == digest.idempotency_key
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert "Paper number 1" in parsed.get_body(("plain",)).get_content()
    assert "Paper number 2" in parsed.get_body(("html",)).get_content()
    # the same digest gives the same Message-ID, whatever the build time
    again = build_email(digest, sender="digest@example.org", recipients=["c@example.org"])
    assert again["Message-ID"] == message["Message-ID"]


def test_html_uses_inline_css_and_no_external_resources(review: ReviewConfig) -> None:
    html = digest_of(review, [work(1, is_retracted=True)], warnings=["w"]).html
    lowered = html.lower()
    for forbidden in ("<style", "<link", "<script", "<img", "@import", "url(", "src=", "class="):
        assert forbidden not in lowered, forbidden
    assert lowered.count("<table") >= 3 and 'role="presentation"' in html


def test_write_outbox_writes_once_atomically(review: ReviewConfig, tmp_path: Any) -> None:
    digest = digest_of(review, [work(1), work(2)])
    paths = write_outbox(digest, tmp_path)
    folder = tmp_path / review.id
    assert [p.name for p in paths] == [f"2026-11-25-{digest.key12}.eml", f"2026-11-25-{digest.key12}.json"]
    assert all(p.parent == folder for p in paths)
    eml = email.message_from_bytes(paths[0].read_bytes(), policy=email.policy.default)
    assert eml["Subject"] == digest.subject and eml[DIGEST_HEADER] == digest.idempotency_key
    assert eml["To"] == "team@example.org"
    assert json.loads(paths[1].read_text(encoding="utf-8")) == digest.slack_payload
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in paths}

    again = write_outbox(digest_of(review, [work(2), work(1)]), tmp_path)
    assert again == paths
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in paths} == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)  # no temp files left
