"""Property-based tests (hypothesis) for the id normalizers and the title cleaner.

Every source's ids and titles pass through these functions, so "no input crashes
them" and "normalizing twice changes nothing" are checked on arbitrary text, and on
text shaped like what the APIs send (URLs, prefixes, versions, markup, entities).
The merge's properties (order-independence, fixed point, nothing disappears) are in
``tests/living_review/test_merge_properties.py``.
"""
from __future__ import annotations

import re
import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from include.living_review.records.ids import (DOI_RE, OPENALEX_RE, PMCID_RE, PMID_RE, normalize_doi, normalize_openalex_id,
                                       normalize_pmcid, normalize_pmid, work_id_for)
from include.living_review.records.normalize import clean_text, clean_title

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NORMALIZERS = {"doi": normalize_doi, "pmid": normalize_pmid, "pmcid": normalize_pmcid,
               "openalex": normalize_openalex_id}
SHAPES = {"doi": DOI_RE, "pmid": PMID_RE, "pmcid": PMCID_RE, "openalex": OPENALEX_RE}

digits = st.text(string.digits, min_size=1, max_size=10)
id_like = st.one_of(
    st.text(),  # anything at all, including surrogates, controls and RTL
    st.builds(lambda p, d, s: f"{p}10.{d}/{s}", st.sampled_from(["", "doi:", "DOI: ", "https://doi.org/",
                                                                 "http://dx.doi.org/", " "]),
              st.text(string.digits, min_size=4, max_size=9), st.text(min_size=1, max_size=30)),
    st.builds(lambda p, d, t: f"{p}{d}{t}", st.sampled_from(["", "pmid:", "PMC", "pmc", "PMCID:",
                                                             "https://pubmed.ncbi.nlm.nih.gov/",
                                                             "https://www.ncbi.nlm.nih.gov/pmc/articles/PMC",
                                                             "https://openalex.org/W", "W"]),
              digits, st.sampled_from(["", "/", ".1", ".", " ", "?x=1", "#a"])),
)
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
MARKUP = re.compile(r"<[A-Za-z/!?][^<>]*>")  # what an HTML parser would treat as a tag or declaration


@pytest.mark.parametrize("kind", list(NORMALIZERS))
@PROPS
@given(value=id_like)
def test_id_normalizers_never_crash_and_are_idempotent(kind, value):
    normalize = NORMALIZERS[kind]
    once = normalize(value)
    if once is None:
        return
    assert normalize(once) == once
    assert SHAPES[kind].fullmatch(once)
    assert once == once.strip() and not re.search(r"\s", once)


@PROPS
@given(doi=id_like, pmid=id_like, pmcid=id_like)
def test_work_id_is_stable_under_renormalization(doi, pmid, pmcid):
    ids = normalize_doi(doi), normalize_pmid(pmid), normalize_pmcid(pmcid)
    again = tuple(f(i) if i else None for f, i in zip((normalize_doi, normalize_pmid, normalize_pmcid), ids))
    assert work_id_for(*ids) == work_id_for(*again)


@pytest.mark.parametrize("kind", list(NORMALIZERS))
@PROPS
@given(value=id_like)
@example(value="1\u0662\u0663")
@example(value="PMC\u0661\u0662")
@example(value="W\u0661")
@example(value="10.\u0661\u0662\u0663\u0664/x")
@example(value="10.1234/a\x1bb")
def test_normalized_ids_are_printable_ascii_digits(kind, value):
    once = NORMALIZERS[kind](value)
    if once is None:
        return
    if kind == "doi":
        prefix, _, suffix = once.partition("/")
        assert prefix.isascii() and not CONTROL.search(suffix)
    else:
        assert once.isascii()


text_with_markup = st.one_of(
    st.text(),
    st.lists(st.one_of(st.text(max_size=12), st.sampled_from(
        ["<i>", "</i>", "<sup>2</sup>", "<mml:math><mml:mi>x</mml:mi></mml:math>", "&amp;", "&lt;", "&gt;",
         "&#x202e;", "&#0;", "&nbsp;", "\u0000", "\u202e", "\u0301", "[", "].", "<", ">", "\ud83d"])),
        max_size=12).map("".join),
)


@PROPS
@given(value=st.one_of(st.none(), text_with_markup, st.integers(), st.floats()))
# Brackets around nothing: Hypothesis finds these only sometimes, so they are pinned.
@example(value="[]")
@example(value="[].")
@example(value="[ ]")
@example(value="[\u00a0].")
@example(value="[<i></i>]")
@example(value="[&#0;]")
def test_clean_title_never_crashes(value):
    title, translated = clean_title(value)
    assert title is None or (isinstance(title, str) and title == title.strip() and title)
    assert isinstance(translated, bool)
    assert title is not None or not translated


@PROPS
@given(value=text_with_markup)
def test_cleaned_titles_have_no_control_characters_and_no_runs_of_whitespace(value):
    title, _ = clean_title(value)
    if title is None:
        return
    assert not CONTROL.search(title) and "  " not in title and "\n" not in title and "\t" not in title


@PROPS
@given(value=text_with_markup)
@example(value="&lt;script&gt;alert(1)&lt;/script&gt; Title")
@example(value="Title \ud83d")
# A tag inside a tag: stripping the inner one must not leave the outer one behind.
@example(value="<?<?>>")
@example(value="<scr<i>ipt>alert(1)</scr</i>ipt> Title")
@example(value="&lt;scr&lt;i&gt;ipt&gt;x")
def test_cleaned_titles_have_no_markup_and_are_valid_utf8(value):
    title, _ = clean_title(value)
    if title is None:
        return
    assert not MARKUP.search(title)
    title.encode("utf-8")


@PROPS
@given(value=st.text())
def test_clean_text_is_idempotent(value):
    once = clean_text(value)
    assert once is None or clean_text(once) == once
