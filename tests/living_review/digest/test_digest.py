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
    allowed = {"html", "head", "meta", "title", "body", "table", "tr", "td", "div", "h1", "p", "a", "span",
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


# -- sections: new, now published, retracted or corrected (issue 8) ---------------------
ANNOUNCED = dt.date(2026, 10, 5)
PREPRINT_DOI = "10.1101/2025.03.01.555"


def published_work(n: int, **overrides: Any) -> dict[str, Any]:
    """A work whose preprint was published in this window: the row carries the journal DOI."""
    overrides.setdefault("title", f"Published paper {n}")
    overrides.setdefault("versions", [
        {"id": PREPRINT_DOI, "kind": "preprint", "date": dt.date(2025, 3, 1)},
        {"id": f"10.1234/paper.{n}", "kind": "published", "date": dt.date(2026, 11, 20)}])
    return work(n, **overrides)


def retracted_work(n: int, **overrides: Any) -> dict[str, Any]:
    overrides.setdefault("title", f"Retracted paper {n}")
    overrides.setdefault("update_notices", ["retraction:10.1234/notice.{}".format(n)])
    return work(n, is_retracted=True, **overrides)


def corrected_work(n: int, **overrides: Any) -> dict[str, Any]:
    overrides.setdefault("title", f"Corrected paper {n}")
    overrides.setdefault("update_notices", [f"correction:10.1234/erratum.{n}"])
    return work(n, **overrides)


def full_digest(review: ReviewConfig, **kwargs: Any) -> Digest:
    """Three new papers, one published preprint, one flagged retraction, one correction."""
    kwargs.setdefault("published", [published_work(40)])
    kwargs.setdefault("retracted", [retracted_work(50)])
    kwargs.setdefault("corrected", [corrected_work(60)])
    kwargs.setdefault("previously_announced", {"doi:10.1234/paper.50": ANNOUNCED})
    return digest_of(review, [work(1), work(2), work(3)], **kwargs)


def headers(payload: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in payload["blocks"] if b["type"] == "header"]


def html_text(html: str) -> str:
    return _SPACES.sub(" ", "".join(parse_html(html).text))


_SPACES = re.compile(r"\s+")


def positions(haystack: str, needles: list[str]) -> list[int]:
    found = [haystack.find(n) for n in needles]
    assert -1 not in found, dict(zip(needles, found, strict=True))
    return found


def test_sections_come_in_order_in_html_text_and_slack(review: ReviewConfig) -> None:
    digest = full_digest(review)
    assert not digest.is_empty and digest.item_count == 3
    html = html_text(digest.html)
    html = html[html.index("Living review digest"):]  # after the flagged box, which names paper 50 first
    order = positions(html, ["New citing papers", "Paper number 3", "Now published", "Published paper 40",
                             "Retracted or corrected", "Retracted paper 50", "Corrected paper 60", "Coverage:"])
    assert order == sorted(order)
    heading = r'<div style="margin:0;font-size:16px;line-height:22px;font-weight:bold;[^"]*">([^<]*)</div>'
    assert [m.group(1) for m in re.finditer(heading, digest.html)] == [
        "New citing papers", "Now published", "Retracted or corrected"]
    text_order = positions(digest.text[digest.text.index(digest.subject):], ["New citing papers\n=================", "1. Paper number 3\n",
                                         "Now published\n=============", "1. Published paper 40\n",
                                         "Retracted or corrected\n======================", "1. Retracted paper 50\n",
                                         "2. Corrected paper 60\n", "Coverage:"])
    assert text_order == sorted(text_order)
    assert headers(digest.slack_payload)[1:] == ["New citing papers", "Now published", "Retracted or corrected"]
    blob = json.dumps(digest.slack_payload["blocks"][1:])  # after the flagged block
    slack_order = positions(blob, ["Paper number 3", "Published paper 40", "Retracted paper 50", "Corrected paper 60",
                                   "Coverage:"])
    assert slack_order == sorted(slack_order)


def test_now_published_links_the_journal_version_and_shows_the_preprint_doi_small(review: ReviewConfig) -> None:
    digest = digest_of(review, [], published=[published_work(40)])
    assert digest.subject == "Peer Support in Mental Health: no new citing papers, 1 now published (week of 2026-11-23)"
    assert not digest.is_empty and digest.item_count == 0
    assert re.search(r'<a href="https://doi.org/10.1234/paper.40"[^>]*>Published paper 40</a>', digest.html)
    preprint = re.search(r'<td style="([^"]*)">Preprint: <a href="https://doi.org/10.1101/2025.03.01.555"[^>]*>'
                         r"10.1101/2025.03.01.555</a></td>", digest.html)
    assert preprint and "font-size:12px" in preprint.group(1) and "color:#6b7280" in preprint.group(1)
    assert "   https://doi.org/10.1234/paper.40\n   Preprint: 10.1101/2025.03.01.555 " \
           "<https://doi.org/10.1101/2025.03.01.555>\n" in digest.text
    section = next(t for t in slack_texts(digest.slack_payload) if "Published paper 40" in t)
    assert section.startswith("*<https://doi.org/10.1234/paper.40|Published paper 40>*\n")
    assert "Preprint: <https://doi.org/10.1101/2025.03.01.555|10.1101/2025.03.01.555>" in section
    # the journal version itself is never listed as "the preprint"
    assert "Preprint: 10.1234/paper.40" not in digest.text


def test_relevance_reasons_are_shown_for_new_papers_only(review: ReviewConfig) -> None:
    digest = digest_of(review, [scored(1, 0.9, "new reason")],
                       published=[published_work(40, relevance=0.9, relevance_reason="published reason")],
                       retracted=[retracted_work(50, relevance=0.9, relevance_reason="retracted reason")],
                       corrected=[corrected_work(60, relevance=0.9, relevance_reason="corrected reason")])
    for part in (digest.text, digest.html, json.dumps(digest.slack_payload)):
        assert "why: new reason" in part
        assert "published reason" not in part and "retracted reason" not in part and "corrected reason" not in part


def test_a_new_work_is_not_listed_again_as_now_published(review: ReviewConfig) -> None:
    digest = digest_of(review, [published_work(40)], published=[published_work(40)])
    assert "Now published" not in digest.html and "Now published" not in digest.text
    assert digest.text.count("Published paper 40\n") == 1
    assert digest.events == ("published:doi:10.1234/paper.40",)


def test_retracted_or_corrected_badges_and_notice_links(review: ReviewConfig) -> None:
    retracted = [retracted_work(50, update_notices=["retraction:10.1234/notice.50", "correction:10.1234/old"]),
                 retracted_work(51, update_notices=["retraction"], title="Retracted without a notice id"),
                 retracted_work(52, update_notices=["retraction:29000001"], title="Retracted with a PubMed notice")]
    corrected = [corrected_work(60),
                 corrected_work(61, update_notices=["correction:J Foo. 2020/123"], title="Corrected, free-text notice")]
    digest = digest_of(review, [], retracted=retracted, corrected=corrected)
    assert digest.subject == ("Peer Support in Mental Health: no new citing papers, 3 retracted, 2 corrected "
                              "(week of 2026-11-23)")
    assert not digest.flagged_retractions and "you were told about" not in digest.html
    html = digest.html
    assert 'Retraction notice: <a href="https://doi.org/10.1234/notice.50"' in html
    assert 'Retraction notice: <a href="https://pubmed.ncbi.nlm.nih.gov/29000001/"' in html
    assert 'Correction notice: <a href="https://doi.org/10.1234/erratum.60"' in html
    assert "Correction notice: J Foo. 2020/123</td>" in html  # free text: shown, never linked
    assert "pubmed.ncbi.nlm.nih.gov/123/" not in html
    assert "10.1234/old" not in html  # a correction notice of a retracted (not corrected) work
    badges = re.findall(r'<span style="([^"]*)">(Retracted|Corrected)</span>', html)
    assert [label for _, label in badges] == ["Retracted"] * 3 + ["Corrected"] * 2
    assert all("background-color:#b91c1c" in style for style, label in badges if label == "Retracted")
    assert all("background-color:#b45309" in style for style, label in badges if label == "Corrected")
    text = digest.text
    assert "   J Med Internet Res 2020 [RETRACTED]\n" in text and "   J Med Internet Res 2020 [Corrected]\n" in text
    assert "   Retraction notice: https://doi.org/10.1234/notice.50\n" in text
    assert "   Correction notice: J Foo. 2020/123\n" in text
    sections = [t for t in slack_texts(digest.slack_payload) if "found by" in t]
    assert sum(":red_circle: *Retracted*" in s for s in sections) == 3
    assert sum(":large_orange_circle: *Corrected*" in s for s in sections) == 2
    assert any("Retraction notice: <https://doi.org/10.1234/notice.50|10.1234/notice.50>" in s for s in sections)


def test_a_work_both_retracted_and_corrected_is_listed_once_with_both_badges(review: ReviewConfig) -> None:
    row = retracted_work(50, update_notices=["retraction:10.1234/r", "correction:10.1234/c"])
    digest = digest_of(review, [], retracted=[row], corrected=[row])
    assert digest.text.count("Retracted paper 50\n") == 1
    assert "[RETRACTED] [Corrected]" in digest.text
    assert "Retraction notice: https://doi.org/10.1234/r\n   Correction notice: https://doi.org/10.1234/c" in digest.text
    assert "1 retracted (week" in digest.subject and "corrected" not in digest.subject
    assert digest.events == ("corrected:doi:10.1234/paper.50", "retracted:doi:10.1234/paper.50")


def test_retraction_of_an_announced_paper_is_flagged_first_everywhere(review: ReviewConfig) -> None:
    digest = full_digest(review, corrected=[], published=[])
    assert digest.subject == "Peer Support in Mental Health: 3 new citing papers, 1 retracted (week of 2026-11-23)"
    assert digest.flagged_retractions == ("doi:10.1234/paper.50",)
    flag = "Retracted: Retracted paper 50 — announced in the digest of 2026-10-05"
    # HTML: a red box is the card's first row, before the heading and everything else
    card = digest.html.index('max-width:640px')
    first_row = re.search(r'<tr><td style="([^"]*)">\s*<div[^>]*>(.*?)</div>', digest.html[card:], re.S)
    assert first_row and "border:3px solid #b91c1c" in first_row.group(1) and "#fef2f2" in first_row.group(1)
    assert "1 retraction of a paper you were told about" in first_row.group(2)
    body = html_text(digest.html)
    assert body.index(flag) < body.index("Living review digest") < body.index("New citing papers")
    assert re.search(r'<strong>Retracted:</strong> <a href="https://doi.org/10.1234/paper.50"', digest.html)
    assert "You were told about this paper: announced in the digest of 2026-10-05." in body
    # plain text: the same box first
    assert digest.text.startswith("!! 1 RETRACTION OF A PAPER YOU WERE TOLD ABOUT\n!! " + flag + "\n"
                                  "!! https://doi.org/10.1234/paper.50\n\n" + digest.subject + "\n")
    # Slack: the first block, before the header
    first = digest.slack_payload["blocks"][0]
    assert first["type"] == "section"
    assert first["text"]["text"] == (":rotating_light: *1 retraction of a paper you were told about*\n"
                                     "• *Retracted:* <https://doi.org/10.1234/paper.50|Retracted paper 50> — "
                                     "announced in the digest of 2026-10-05")
    assert digest.slack_payload["blocks"][1]["type"] == "header"


def test_only_retractions_of_announced_papers_are_flagged(review: ReviewConfig) -> None:
    digest = full_digest(review, previously_announced={"doi:10.1234/paper.1": ANNOUNCED},
                         retracted=[retracted_work(50), retracted_work(51)])
    assert digest.flagged_retractions == ()
    assert "you were told about" not in digest.html.lower() and not digest.text.startswith("!!")
    assert digest.slack_payload["blocks"][0]["type"] == "header"
    assert "3 new citing papers, 2 retracted, 1 corrected, 1 now published" in digest.subject

    two = full_digest(review, retracted=[retracted_work(50), retracted_work(51, title="Other retracted")],
                      previously_announced={"doi:10.1234/paper.50": ANNOUNCED,
                                            "doi:10.1234/paper.51": "2026-11-02"})
    assert "2 retractions of papers you were told about" in two.html
    # several flagged retractions: each on its own line, newest publication first
    text = two.text
    assert text.index("!! Retracted: Other retracted — announced in the digest of 2026-11-02") < \
        text.index("Retracted paper 50 — announced in the digest of 2026-10-05") < text.index(two.subject)


def test_flagged_retraction_without_a_usable_date_still_flags(review: ReviewConfig) -> None:
    digest = full_digest(review, previously_announced={"doi:10.1234/paper.50": "not a date"})
    assert "Retracted: Retracted paper 50 — announced in an earlier digest" in digest.text
    assert digest.flagged_retractions == ("doi:10.1234/paper.50",)


# -- relevance ----------------------------------------------------------------------
def scored(n: int, relevance: float | None, reason: str | None = None, **overrides: Any) -> dict[str, Any]:
    return work(n, relevance=relevance, relevance_reason=reason, **overrides)


def test_relevance_orders_then_splits_likely_relevant_from_the_rest(review: ReviewConfig,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "LIKELY_RELEVANT_THRESHOLD", 0.4, raising=False)
    works = [scored(1, 0.9, "keywords: peer support; matches: peer worker"),
             scored(2, None),
             scored(3, 0.1, "matches: mental"),
             scored(4, 0.5, "matches: lived experience"),       # older than paper 5 at the same score
             scored(5, 0.5, "matches: recovery"),
             scored(6, 0.39, "matches: stigma"),
             scored(7, None, title="Unscored newest", publication_date=dt.date(2026, 1, 1),
                    publication_year=2026)]
    digest = digest_of(review, works)
    text, html = digest.text, digest.html
    # likely relevant: by score, ties newest first, each in full with its reason
    order = positions(text, ["Likely relevant (relevance 0.4 or more)", "1. Paper number 1\n", "2. Paper number 5\n",
                             "3. Paper number 4\n", "Other citing papers", " - Paper number 6 ", " - Paper number 3 ",
                             " - Unscored newest ", " - Paper number 2 "])
    assert order == sorted(order)
    assert "   why: keywords: peer support; matches: peer worker\n" in text
    assert "   why: matches: recovery\n" in text
    why = re.search(r'<td style="([^"]*)">why: keywords: peer support; matches: peer worker</td>', html)
    assert why and "font-size:12px" in why.group(1) and "color:#6b7280" in why.group(1)
    # the rest: one line each (linked title, journal and year), no reason, no authors
    assert " - Paper number 6 · J Med Internet Res 2020 <https://doi.org/10.1234/paper.6>\n" in text
    assert "matches: stigma" not in text and "matches: stigma" not in html
    compact = re.findall(r'<tr><td style="padding:5px 24px[^"]*"><a href="([^"]+)"[^>]*>([^<]+)</a> '
                         r'<span style="color:#6b7280;">&middot; ([^<]+)</span></td></tr>', html)
    assert [(title, cite) for _, title, cite in compact] == [
        ("Paper number 6", "J Med Internet Res 2020"), ("Paper number 3", "J Med Internet Res 2020"),
        ("Unscored newest", "J Med Internet Res 2026"), ("Paper number 2", "J Med Internet Res 2020")]
    assert html.count("Xu R, Smith J") == 3  # authors only for the three shown in full
    h = html_text(html)
    assert h.index("Likely relevant") < h.index("Paper number 1") < h.index("Other citing papers") < \
        h.index("Paper number 6")
    # nothing hidden: all seven are in every part
    assert digest.item_count == digest.shown_count == 7
    for n in (1, 2, 3, 4, 5, 6):
        assert f"Paper number {n}" in text and f"Paper number {n}" in html
    # Slack: the same split, reasons on the full items, the rest compact
    payload = digest.slack_payload
    contexts = [b["elements"][0]["text"] for b in payload["blocks"] if b["type"] == "context"]
    assert contexts[:2] == ["*Likely relevant* (relevance ≥ 0.4)", "*Other citing papers*"]
    full = item_sections(payload)
    assert [re.search(r"\|(Paper number \d)>", s).group(1) for s in full] == [  # type: ignore[union-attr]
        "Paper number 1", "Paper number 5", "Paper number 4"]
    assert full[0].endswith("\nwhy: keywords: peer support; matches: peer worker")
    other = next(t for t in slack_texts(payload) if t.startswith("• "))
    assert other.splitlines() == [
        "• <https://doi.org/10.1234/paper.6|Paper number 6> · J Med Internet Res 2020",
        "• <https://doi.org/10.1234/paper.3|Paper number 3> · J Med Internet Res 2020",
        "• <https://doi.org/10.1234/paper.7|Unscored newest> · J Med Internet Res 2026",
        "• <https://doi.org/10.1234/paper.2|Paper number 2> · J Med Internet Res 2020"]


def test_threshold_comes_from_settings_with_a_default_and_survives_float32(review: ReviewConfig,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from include.living_review.digest import DEFAULT_LIKELY_RELEVANT_THRESHOLD, likely_relevant_threshold

    monkeypatch.delattr(settings, "LIKELY_RELEVANT_THRESHOLD", raising=False)
    assert likely_relevant_threshold() == DEFAULT_LIKELY_RELEVANT_THRESHOLD == 0.35
    # a score stored as float32 (0.35 -> 0.3499999940...) still counts as reaching 0.35
    stored = float(np.float32(0.35))
    assert stored < 0.35
    digest = digest_of(review, [scored(1, stored, "at the threshold"), scored(2, 0.3, "below")])
    assert digest.text.index("Likely relevant (relevance 0.35 or more)") < digest.text.index("1. Paper number 1\n") \
        < digest.text.index("Other citing papers") < digest.text.index(" - Paper number 2 ")
    monkeypatch.setattr(settings, "LIKELY_RELEVANT_THRESHOLD", 0.9, raising=False)
    strict = digest_of(review, [scored(1, 0.8, "close")])
    assert "No paper reaches the likely-relevant score (0.9) this time." in strict.text
    assert " - Paper number 1 · J Med Internet Res 2020" in strict.text


def test_unscored_digest_is_one_newest_first_list(review: ReviewConfig) -> None:
    digest = digest_of(review, [work(1), work(3), work(2)])
    for part in (digest.text, digest.html, json.dumps(digest.slack_payload)):
        assert "Likely relevant" not in part and "Other citing papers" not in part and "why:" not in part
    order = positions(digest.text, ["1. Paper number 3\n", "2. Paper number 2\n", "3. Paper number 1\n"])
    assert order == sorted(order)
    assert len(item_sections(digest.slack_payload)) == 3


def test_baseline_keeps_twenty_chosen_by_relevance_then_date(review: ReviewConfig,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "LIKELY_RELEVANT_THRESHOLD", 0.4, raising=False)
    # the five oldest are the relevant ones; the rest are unscored or low
    works = [scored(n, 0.8 if n < 5 else (0.1 if n % 2 else None), "matches: peer" if n < 5 else "low")
             for n in range(50)]
    digest = digest_of(review, works, baseline=True, total_works=50, union=50)
    assert digest.item_count == 50 and digest.shown_count == 20
    assert "The 20 most relevant (then most recent) are listed below" in digest.text
    for n in range(5):
        assert f". Paper number {n}\n" in digest.text
    # then the 15 newest of those scored 0.1 (odd numbers 49 down to 21); the unscored (even) ones miss the cut
    low = [n for n in range(49, 4, -1) if n % 2][:15]
    assert all(f" - Paper number {n} " in digest.text for n in low)
    assert not any(f"Paper number {n} " in digest.text for n in range(5, 50) if n % 2 == 0)
    assert "and 30 more in the snapshot" in digest.text
    assert "1. Paper number 4\n" in digest.text  # equal scores: newest first


# -- Slack budget ---------------------------------------------------------------------
def test_slack_shows_at_most_ten_papers_over_all_sections(review: ReviewConfig) -> None:
    digest = digest_of(review, [work(n) for n in range(8)],
                       published=[published_work(40 + n) for n in range(3)],
                       retracted=[retracted_work(50), retracted_work(51)],
                       previously_announced={"doi:10.1234/paper.50": ANNOUNCED})
    payload = digest.slack_payload
    papers = [t for t in slack_texts(payload)[1:] if "found by" in t]
    assert len(papers) == settings.SLACK_MAX_ITEMS == 10
    # events first get the budget: both retractions, all three published, five of the eight new
    assert sum("Retracted paper" in p for p in papers) == 2 and sum("Published paper" in p for p in papers) == 3
    assert sum("|Paper number" in p for p in papers) == 5
    contexts = [b["elements"][0]["text"] for b in payload["blocks"] if b["type"] == "context"]
    assert "and 3 more (see the email digest or the snapshot)" in contexts
    assert payload["blocks"][0]["text"]["text"].startswith(":rotating_light:")
    assert len(payload["blocks"]) <= 50
    # and the email lists everything
    assert all(f"Paper number {n}\n" in digest.text for n in range(8))

    many = digest_of(review, [work(1)], retracted=[retracted_work(50 + n) for n in range(12)])
    blob = json.dumps(many.slack_payload)
    assert "and 2 more retracted or corrected" in blob and "and 1 more (see" in blob


# -- emptiness and keys ---------------------------------------------------------------
def test_is_empty_only_when_every_section_is_empty(review: ReviewConfig) -> None:
    assert digest_of(review, []).is_empty
    for kwargs in ({"published": [published_work(40)]}, {"retracted": [retracted_work(50)]},
                   {"corrected": [corrected_work(60)]}):
        digest = digest_of(review, [], **kwargs)
        assert not digest.is_empty, kwargs
        assert "No new papers this time." not in digest.html and "No new papers this time." not in digest.text
        assert "New citing papers" not in digest.html
    corrected = digest_of(review, [], corrected=[corrected_work(60)])
    assert corrected.subject == "Peer Support in Mental Health: no new citing papers, 1 corrected (week of 2026-11-23)"


def test_idempotency_key_covers_the_events(review: ReviewConfig) -> None:
    plain = digest_of(review, [work(1), work(2)])
    # no events: the very key earlier versions computed, so an upgrade never resends a digest
    assert plain.idempotency_key == idempotency_key(review.id, SNAPSHOT, ["doi:10.1234/paper.1", "doi:10.1234/paper.2"])
    assert plain.events == ()

    a = full_digest(review)
    retry = full_digest(review, retracted=[retracted_work(50)], corrected=[corrected_work(60)],
                        previously_announced={})  # flagging changes the rendering, not what is announced
    assert a.idempotency_key == retry.idempotency_key
    assert a.events == ("corrected:doi:10.1234/paper.60", "published:doi:10.1234/paper.40",
                        "retracted:doi:10.1234/paper.50")
    assert a.idempotency_key != plain.idempotency_key
    reordered = digest_of(review, [work(3), work(2), work(1)], published=[published_work(40)],
                          retracted=[retracted_work(50)], corrected=[corrected_work(60)])
    assert reordered.idempotency_key == a.idempotency_key
    for changed in (full_digest(review, retracted=[retracted_work(50), retracted_work(51)]),
                    full_digest(review, corrected=[]),
                    full_digest(review, published=[published_work(41)]),
                    full_digest(review, retracted=[], corrected=[corrected_work(60), corrected_work(50)])):
        assert changed.idempotency_key != a.idempotency_key
    # same work, different event: a different key
    assert digest_of(review, [], retracted=[retracted_work(50)]).idempotency_key != \
        digest_of(review, [], corrected=[retracted_work(50)]).idempotency_key


# -- hostile input in the new sections ----------------------------------------------------
def assert_inert_html(html: str) -> None:
    parsed = parse_html(html)
    allowed = {"html", "head", "meta", "title", "body", "table", "tr", "td", "div", "h1", "p", "a", "span",
               "strong", "ul", "li"}
    assert {tag for tag, _ in parsed.tags} <= allowed
    for _, attrs in parsed.tags:
        for name, value in attrs:
            assert not name.startswith("on"), name
            if name == "href":
                assert value and re.match(r"^https?://[^\s\"'<>]+$", value), value
    lowered = html.lower()
    assert "<script" not in lowered and "<img" not in lowered


def assert_inert_slack(payload: dict[str, Any]) -> None:
    for text in slack_texts(payload):
        for match in re.finditer("<", text):
            assert re.match(r"<https?://[^\s<>|]+\|", text[match.start():]), text
        assert "<!" not in text and "<@" not in text and "<#" not in text
        for literal in ("*bold*", "_it_", "`code`"):
            assert literal not in text


def test_hostile_strings_in_the_new_sections_stay_inert(review: ReviewConfig) -> None:
    evil = "<script>alert(1)</script> <!channel> <@U1> <http://evil.example|click> *bold* _it_ `code` \u202eX"
    new = [scored(1, 0.9, evil), scored(2, 0.0, "x", title="Other " + evil)]
    published = [published_work(40, title="Pub " + evil, versions=[
        {"id": '10.1101/x"><script>', "kind": "preprint", "date": None},
        {"id": "javascript:alert(1)", "kind": "preprint", "date": None},
        {"id": "<@U2> *x*", "kind": "preprint", "date": None}])]
    retracted = [retracted_work(50, title="Ret " + evil,
                                update_notices=['retraction:"><img src=x onerror=alert(1)>', "retraction:<!here>",
                                                "retraction:javascript:alert(1)"])]
    corrected = [corrected_work(60, title="Cor " + evil, update_notices=["correction:*bold* <@U3>"])]
    digest = digest_of(review, new, published=published, retracted=retracted, corrected=corrected,
                       previously_announced={"doi:10.1234/paper.50": ANNOUNCED})
    assert_inert_html(digest.html)
    assert "javascript:" not in "".join(v or "" for _, attrs in parse_html(digest.html).tags for _, v in attrs)
    assert "why: &lt;script&gt;alert(1)&lt;/script&gt; &lt;!channel&gt;" in digest.html
    assert "Retraction notice: &#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in digest.html
    assert "Retracted:</strong> <a href=\"https://doi.org/10.1234/paper.50\" " \
           "style=\"color:#991b1b;text-decoration:underline;\">Ret &lt;script&gt;" in digest.html
    # the preprint DOI with quotes is linked only percent-encoded; the rest are text
    assert 'href="https://doi.org/10.1101/x%22%3E%3Cscript%3E"' in digest.html
    assert "Preprint: javascript:alert(1)</td>" in digest.html
    assert_inert_slack(digest.slack_payload)
    blob = json.dumps(digest.slack_payload, ensure_ascii=False)
    assert "why: &lt;script&gt;alert(1)&lt;/script&gt; &lt;!channel&gt; &lt;@U1&gt;" in blob
    assert "Retraction notice: &lt;!here&gt;" in blob and "Correction notice: \u200b*\u200bbold" in blob
    assert "Preprint: &lt;@U2&gt;" in blob
    first = digest.slack_payload["blocks"][0]["text"]["text"]
    assert "|Ret &lt;script&gt;alert(1)&lt;/script&gt; &lt;!channel&gt;" in first
    for output in (digest.subject, digest.text, digest.html, blob):
        assert "\u202e" not in output
