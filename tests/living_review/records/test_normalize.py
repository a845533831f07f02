"""The text and date normalizers: their fast paths give what the plain versions give."""
from __future__ import annotations

import datetime as dt
import re
import sys
import unicodedata

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from include.living_review.records.normalize import (author_from_display, author_name, clean_abstract, clean_text,
                                                     clean_title, make_date, parse_iso_date)

PROPS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def plain_clean_text(value: object) -> str | None:
    """clean_text as it was before its fast path: NFC, drop controls, collapse whitespace."""
    if value is None:
        return None
    text = unicodedata.normalize("NFC", str(value))
    text = _CONTROL.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text or None


def plain_parse_iso_date(value: object) -> dt.date | None:
    if value is None:
        return None
    parts = str(value).strip()[:10].split("-")
    if not parts or not parts[0].isdigit():
        return None
    return make_date(parts[0], parts[1] if len(parts) > 1 else None, parts[2] if len(parts) > 2 else None)


def test_printable_text_has_no_control_and_no_whitespace_but_the_space():
    """The fast path's premise, for every code point: printable means no control, bidi
    override or surrogate, and no whitespace other than U+0020."""
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if char.isprintable():
            assert not _CONTROL.match(char), hex(code)
            assert char == " " or not (char.isspace() or re.match(r"\s", char)), hex(code)


text_like_titles = st.one_of(
    st.text(),
    st.lists(st.one_of(st.text(max_size=8), st.sampled_from(
        [" ", "  ", "\t", "\n", "\u00a0", "\u2009", "\u3000", "\x00", "\x1b", "\x85", "\u202e", "\u2066",
         "\ud83d", "e\u0301", "\u212b", "Å", "ﬁ", "İ", "abc", "Résumé"])), max_size=12).map("".join),
)


@PROPS
@given(value=text_like_titles)
@example(value=" a  b ")
@example(value="A\u0301\u00a0b")
@example(value="x\ud83dy")
@example(value="\u212b")
def test_clean_text_matches_the_plain_version(value):
    assert clean_text(value) == plain_clean_text(value)


@pytest.mark.parametrize("value", [0, -0.0, 1.5, True, ["a", " b"], {"k": "v"}, b"x  y"])
def test_clean_text_of_non_strings_matches_the_plain_version(value):
    assert clean_text(value) == plain_clean_text(value)


@PROPS
@given(value=st.one_of(st.none(), st.text(max_size=14), st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}.{0,6}\Z"),
                       st.dates().map(str), st.integers(0, 99999)))
@example(value="2024-02-30")
@example(value="2024-00-10")
@example(value="2024-05-00")
@example(value="0000-01-01")
@example(value="2024-W01-1")
@example(value=" 2024-05-01T10:00:00Z")
@example(value="٢٠٢٤-05-01")
def test_parse_iso_date_matches_the_plain_version(value):
    assert parse_iso_date(value) == plain_parse_iso_date(value)


def test_author_names_do_not_share_a_cache_entry_across_types():
    """1, 1.0 and True are equal dictionary keys but different text."""
    assert author_name("Xu", given="Ruth") == "Xu R"
    assert author_name(1) == "1" and author_name(True) == "True" and author_name(1.0) == "1.0"
    assert author_from_display("Ruth M. Xu") == author_from_display("Ruth M. Xu") == "Xu RM"
    assert author_from_display(1.0) == "1.0" and author_from_display(1) == "1"
    # Unhashable values are not cached, and keep their (odd) text.
    assert author_from_display(["not", "hashable"]) == "['not' '"
    assert author_name(["Xu"], given={"a": 1}) == "['Xu'] {1"


@pytest.mark.parametrize(("value", "expected"), [
    ("Abstract Background text.", "Background text."),
    ("ABSTRACT  Background", "Background"),
    ("Abstracts are short", "Abstracts are short"),
    ("İ abstract x", "İ abstract x"),
])
def test_clean_abstract_drops_a_leading_abstract_label(value, expected):
    assert clean_abstract(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("[Peer support in psychiatry].", ("Peer support in psychiatry.", True)),  # PubMed's translated title
    ("[Peer support in psychiatry]", ("Peer support in psychiatry", True)),
    ("[<i>Peer</i> support].", ("Peer support.", True)),
    ("Peer support [a review].", ("Peer support [a review].", False)),
    ("Peer support.", ("Peer support.", False)),
    # Brackets around nothing are no title at all, so the record goes to quarantine
    # (title_not_null) instead of being published with an empty or blank title.
    ("[]", (None, False)),
    ("[].", (None, False)),
    ("[ ]", (None, False)),
    ("[\u00a0].", (None, False)),
    ("[<i></i>]", (None, False)),
    ("<scr<i>ipt>alert(1)</scr</i>ipt> Peer support", ("alert(1) Peer support", False)),  # a tag in a tag
    ("Outcomes at age <65 years and >80 years", ("Outcomes at age <65 years and >80 years", False)),
    ("", (None, False)),
    (None, (None, False)),
])
def test_clean_title_marks_translations_and_never_returns_an_empty_title(value, expected):
    assert clean_title(value) == expected
