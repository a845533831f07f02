"""The relevance step of the merge: every work scored against the review's scope in one call."""
from __future__ import annotations

import logging
import time
from typing import Any

from include.living_review import settings
from include.living_review.config import ReviewConfig
from include.living_review.relevance import scoring

log = logging.getLogger(__name__)


def score_relevance(review: ReviewConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Set ``relevance`` and ``relevance_reason`` on ``rows`` (TF-IDF scores are batch-relative)."""
    scorer = settings.RELEVANCE_SCORER
    text = scoring.build_review_text(review.title, review.abstract, review.scope_keywords)
    started = time.monotonic()
    titles, abstracts = [r.get("title") for r in rows], [r.get("abstract") for r in rows]
    try:
        scores = scoring.score_columns(text, list(review.scope_keywords), titles, abstracts, scorer=scorer)
    except scoring.EmbeddingScorerUnavailable as exc:
        log.warning("relevance: %s; falling back to the tfidf scorer", exc)
        scorer = "tfidf"
        scores = scoring.score_columns(text, list(review.scope_keywords), titles, abstracts, scorer=scorer)
    for row, (score, reason) in zip(rows, scores):
        row["relevance"], row["relevance_reason"] = score, reason
    likely = sum(1 for score, _ in scores if scoring.is_likely_relevant(score))
    log.info("relevance: scored %d works with %s (%d likely relevant)", len(rows), scorer, likely)
    return {"scorer": scorer, "likely_relevant": likely, "seconds": round(time.monotonic() - started, 3)}
