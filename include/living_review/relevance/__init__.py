"""The relevance stage: how close each citing work is to the review's scope (``docs/relevance.md``).

:func:`score_relevance` is the step the merge calls; :mod:`.scoring` holds the scorers
(a columnar TF-IDF by default, an optional offline embedding model).
"""
from __future__ import annotations

from include.living_review.relevance.scoring import (
    ABSTRACT_ONLY_HIT,
    EMBEDDING_CEILING,
    EMBEDDING_EXTRA,
    EMBEDDING_FLOOR,
    EMBEDDING_PACKAGE,
    KEYWORD_WEIGHT,
    KEYWORDS_FOR_FULL_SCORE,
    LIKELY_RELEVANT_THRESHOLD,
    NO_MATCH_REASON,
    NO_TEXT_REASON,
    REASON_TERMS,
    SCORERS,
    STOP_WORDS,
    TEXT_WEIGHT,
    TFIDF_CEILING,
    TFIDF_FLOOR,
    TITLE_REPEAT,
    EmbeddingScorerUnavailable,
    available_scorers,
    build_review_text,
    embedding_available,
    is_likely_relevant,
    load_embedding_model,
    order_by_relevance,
    score_columns,
    score_works,
)
from include.living_review.relevance.step import score_relevance

__all__ = ["ABSTRACT_ONLY_HIT", "EMBEDDING_CEILING", "EMBEDDING_EXTRA", "EMBEDDING_FLOOR", "EMBEDDING_PACKAGE",
           "KEYWORDS_FOR_FULL_SCORE", "KEYWORD_WEIGHT", "LIKELY_RELEVANT_THRESHOLD", "NO_MATCH_REASON",
           "NO_TEXT_REASON", "REASON_TERMS", "SCORERS", "STOP_WORDS", "TEXT_WEIGHT", "TFIDF_CEILING", "TFIDF_FLOOR",
           "TITLE_REPEAT", "EmbeddingScorerUnavailable", "available_scorers", "build_review_text",
           "embedding_available", "is_likely_relevant", "load_embedding_model", "order_by_relevance",
           "score_columns", "score_relevance", "score_works"]
