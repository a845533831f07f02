"""The vectorised TF-IDF scorer gives exactly what the per-word implementation gave.

``Oracle`` below is that implementation (include/living_review/relevance.py before the
columnar rewrite, TF-IDF path only), kept as the reference: it tokenises each work
with ``re`` word by word and keeps a dict of features per work. The scorer must give
the same ``(relevance, reason)`` for every work, on generated texts and on the
labelled set, whatever its block sizes and whichever of its two sort paths it takes.
"""
from __future__ import annotations

import itertools
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.bench_merge import WORDS as BENCH_WORDS
from bench.eval_relevance import load_labelled_set
from include.living_review.relevance import scoring as relevance
from include.living_review.relevance import (
    ABSTRACT_ONLY_HIT,
    KEYWORD_WEIGHT,
    KEYWORDS_FOR_FULL_SCORE,
    NO_MATCH_REASON,
    NO_TEXT_REASON,
    REASON_TERMS,
    STOP_WORDS,
    TEXT_WEIGHT,
    TFIDF_CEILING,
    TFIDF_FLOOR,
    TITLE_REPEAT,
    score_columns,
    score_works,
)


# -- the reference implementation ---------------------------------------------------
class Oracle:
    """The per-word TF-IDF scorer the vectorised one replaced, verbatim but for packaging."""

    PHRASE_BREAK = re.compile(r"[.,;:!?()\[\]{}\"“”‘’/|•·–—]+|\s-\s")
    WORD = re.compile(r"[^\W_]+")
    ACRONYM_PLURAL = re.compile(r"[A-Z]{2,}s")

    @dataclass(frozen=True)
    class Doc:
        features: dict[str, int]
        surface: dict[str, str]
        title_features: frozenset[str]

    @classmethod
    def score_works(cls, review_text: str, scope_keywords: Sequence[str],
                    works: Sequence[Mapping[str, Any]]) -> list[tuple[float, str]]:
        if not works:
            return []
        scope_keywords = [k for k in scope_keywords if cls.keyword_features(k)]
        titles = [cls.text(w.get("title")) for w in works]
        abstracts = [cls.text(w.get("abstract")) for w in works]
        docs = [cls.doc(t, a) for t, a in zip(titles, abstracts, strict=True)]
        keyword_parts = [cls.keyword_hits(scope_keywords, doc) for doc in docs]
        similarity, reasons = cls.tfidf(review_text, docs)
        text_parts = np.clip((similarity - TFIDF_FLOOR) / (TFIDF_CEILING - TFIDF_FLOOR), 0.0, 1.0)
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

    @staticmethod
    def text(value: object) -> str:
        return value.strip() if isinstance(value, str) else ""

    @staticmethod
    def stem(word: str) -> str:
        if len(word) > 4 and word.endswith("ies"):
            return word[:-3] + "y"
        if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
            return word[:-1]
        return word

    @classmethod
    def token(cls, word: str) -> tuple[str, str] | None:
        word = word[:-1].lower() if cls.ACRONYM_PLURAL.fullmatch(word) else word.lower()
        if word in STOP_WORDS or len(word) < 2 or word.isdigit():
            return None
        return cls.stem(word), word

    @classmethod
    def phrases(cls, text: str) -> list[list[tuple[str, str]]]:
        runs: list[list[tuple[str, str]]] = []
        for piece in cls.PHRASE_BREAK.split(text):
            run: list[tuple[str, str]] = []
            for word in cls.WORD.findall(piece):
                token = cls.token(word)
                if token is None:
                    if run:
                        runs.append(run)
                    run = []
                else:
                    run.append(token)
            if run:
                runs.append(run)
        return runs

    @classmethod
    def features(cls, text: str, surface: dict[str, str]) -> list[str]:
        out: list[str] = []
        for run in cls.phrases(text):
            for index, (stem, word) in enumerate(run):
                out.append(stem)
                surface.setdefault(stem, word)
                if index:
                    bigram = f"{run[index - 1][0]} {stem}"
                    out.append(bigram)
                    surface.setdefault(bigram, f"{run[index - 1][1]} {word}")
        return out

    @classmethod
    def doc(cls, title: str, abstract: str) -> Oracle.Doc:
        surface: dict[str, str] = {}
        title_features = cls.features(title, surface)
        counts = Counter(cls.features(abstract, surface))
        for feature in title_features:
            counts[feature] += TITLE_REPEAT
        return cls.Doc(features=dict(counts), surface=surface, title_features=frozenset(title_features))

    @classmethod
    def keyword_hits(cls, scope_keywords: Sequence[str], doc: Oracle.Doc) -> tuple[float, list[str]]:
        features = set(doc.features)
        in_title: list[str] = []
        in_abstract: list[str] = []
        for keyword in scope_keywords:
            needed = cls.keyword_features(keyword)
            if not needed or not needed <= features:
                continue
            (in_title if needed <= doc.title_features else in_abstract).append(keyword.strip())
        weight = len(in_title) + ABSTRACT_ONLY_HIT * len(in_abstract)
        return min(1.0, weight / KEYWORDS_FOR_FULL_SCORE), in_title + in_abstract

    @classmethod
    def keyword_features(cls, keyword: str) -> frozenset[str]:
        needed: set[str] = set()
        for run in cls.phrases(keyword):
            stems = [stem for stem, _ in run]
            if len(stems) == 1:
                needed.add(stems[0])
            else:
                needed.update(f"{a} {b}" for a, b in itertools.pairwise(stems))
        return frozenset(needed)

    @classmethod
    def tfidf(cls, review_text: str, docs: Sequence[Oracle.Doc]) -> tuple[np.ndarray, list[str]]:
        review = dict(Counter(cls.features(review_text, {})))
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
        pair_doc = np.asarray(doc_ids, dtype=np.int64)
        pair_feature = np.asarray(feature_ids, dtype=np.int64)
        counts = np.asarray(pair_counts, dtype=np.float64)
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
        name_rank = np.empty(n_features, dtype=np.int64)
        name_rank[np.argsort(np.asarray(names, dtype=object), kind="stable")] = np.arange(n_features)
        shared = np.flatnonzero((contribution > 0) & ~mine)
        order = shared[np.lexsort((name_rank[pair_feature[shared]], -contribution[shared], pair_doc[shared]))]
        top: dict[int, list[str]] = {}
        for pair in order:
            top.setdefault(int(pair_doc[pair]) - 1, []).append(names[pair_feature[pair]])
        return cosine, [cls.term_reason(top.get(i, []), doc) for i, doc in enumerate(docs)]

    @staticmethod
    def term_reason(features: list[str], doc: Oracle.Doc) -> str:
        chosen: list[str] = []
        for feature in features:
            if len(chosen) == REASON_TERMS:
                break
            words = set(feature.split())
            if any(feature in c.split() or words <= set(c.split()) for c in chosen):
                continue
            if " " in feature:
                chosen = [c for c in chosen if " " in c or c not in words]
            chosen.append(feature)
        return "matches: " + ", ".join(doc.surface.get(f, f) for f in chosen) if chosen else ""


# -- how the scorer is run --------------------------------------------------------------
# The default sizes, tiny blocks and look-up groups (many blocks, words spread over
# them), and the lexsort path that a vocabulary too large to pack into an int64 takes.
CONFIGURATIONS = {
    "default": {"_BLOCK_CHARS": relevance._BLOCK_CHARS},
    "tiny blocks": {"_BLOCK_CHARS": 40, "_LOOKUP_BLOCKS": 2},
    "unpacked sort": {"_BLOCK_CHARS": 200, "_KEY_BITS": 0},
}


def vectorised(configuration: str, review_text: str, keywords: Sequence[str],
               works: Sequence[Mapping[str, Any]]) -> list[tuple[float, str]]:
    with mock.patch.multiple(relevance, **CONFIGURATIONS[configuration]):
        return score_works(review_text, keywords, works)


def assert_same(review_text: str, keywords: Sequence[str], works: Sequence[Mapping[str, Any]]) -> None:
    expected = Oracle.score_works(review_text, keywords, works)
    for configuration in CONFIGURATIONS:
        got = vectorised(configuration, review_text, keywords, works)
        assert len(got) == len(expected)
        for index, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
            assert mine == theirs, (configuration, index, works[index])
    # Before rounding too: the cosines are the same floats, summed in the same order.
    cosine, _ = Oracle.tfidf(review_text, [Oracle.doc(Oracle.text(w.get("title")), Oracle.text(w.get("abstract")))
                                           for w in works])
    analysis = relevance._analyse(review_text, [], [relevance._text(w.get("title")) for w in works],
                                  [relevance._text(w.get("abstract")) for w in works], tfidf=True)
    assert analysis.similarity.tobytes() == cosine.tobytes()


# -- generated texts ----------------------------------------------------------------------
VOCABULARY = [
    "peer", "Peer", "PEER", "support", "supports", "workers", "worker", "services", "studies", "study", "crisis",
    "mental", "health", "lived", "experience", "recovery", "addiction", "stress", "status", "analysis",
    "PSSs", "PSS", "NHSs", "Ss", "COVID", "résumé", "naïve", "Zürich", "Łódź", "São", "Paulo", "Ærø", "Dvořák",
    "straße", "İstanbul", "ﬁnding", "Ελλάδα", "москва", "中文", "مرحبا",
    "the", "of", "and", "in", "with", "review", "Literature", "we", "explore", "a", "I",
    "2024", "12", "3rd", "x", "²", "½", "Ⅻ", "co_op", "e\u0301t\u00e9",
]
SEPARATORS = [
    " ", " ", " ", " ", "  ", ", ", ". ", "; ", ": ", "! ", "? ", " (", ") ", "[", "]", "{", "}", '"', " “", "” ",
    "‘", "’", "/", " | ", " • ", "·", " – ", "—", " - ", "-", " -", "- ", "\n", "\t", "\u00a0", "\u2003-\u2003",
    "_", "'", "…", " & ", "\u0301", "😀", "\x00", "\x01", "\x85-\x1c",
]
texts = st.one_of(
    st.lists(st.tuples(st.sampled_from(VOCABULARY), st.sampled_from(SEPARATORS)), max_size=30).map(
        lambda parts: "".join(word + separator for word, separator in parts)),
    st.text(max_size=40),
    st.sampled_from(["", "   ", "The review.", "peer support in mental health"]),
)
works = st.lists(st.fixed_dictionaries({}, optional={"title": st.one_of(st.none(), texts),
                                                     "abstract": st.one_of(st.none(), texts)}),
                 min_size=1, max_size=10)
keywords = st.lists(st.one_of(st.sampled_from(["peer support", "mental health", "PSS", "lived experience",
                                               "the review", "recovery", " addiction ", "peer - support"]), texts),
                    max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(review=texts, keywords=keywords, works=works)
def test_same_as_the_per_word_scorer_on_generated_texts(review, keywords, works):
    assert_same(review, keywords, works)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60))
def test_same_as_the_per_word_scorer_on_overlapping_works(seed, n):
    # Works drawn from the review's own words share many features, with ties in weight:
    # the ranking of reasons and the phrase rules get exercised.
    rng = random.Random(seed)
    pool = ("peer Peers support peer workers worker mental health lived experience PSSs PSS services Service "
            "recovery the of").split()
    review = " ".join(rng.choice(pool) for _ in range(40))

    def text(k: int) -> str:
        return " ".join(rng.choice(pool) + rng.choice(["", "", "", ",", "."]) for _ in range(rng.randint(0, k)))
    works = [{"title": text(8), "abstract": text(40) if rng.random() < 0.7 else None} for _ in range(n)]
    assert_same(review, ["peer support", "lived experience", "services"], works)


# -- the labelled set and a benchmark-like corpus ------------------------------------------
@pytest.fixture(scope="module")
def labelled():
    return load_labelled_set()


@pytest.mark.parametrize("with_keywords", [True, False])
def test_same_as_the_per_word_scorer_on_the_labelled_set(labelled, with_keywords):
    keywords = labelled.scope_keywords if with_keywords else []
    review = relevance.build_review_text(labelled.review_title, labelled.review_abstract, keywords)
    assert_same(review, keywords, labelled.works)
    # Titles only, and the review's title alone (as the processing benchmark scores).
    assert_same(review, keywords, [{"title": w["title"]} for w in labelled.works])
    assert_same(labelled.review_title, keywords, labelled.works)


def test_same_as_the_per_word_scorer_on_a_benchmark_like_corpus(labelled):
    rng = random.Random(11)
    works = [{"title": " ".join(rng.choice(BENCH_WORDS) for _ in range(rng.randint(6, 24))).capitalize() + ".",
              "abstract": " ".join(rng.choice(BENCH_WORDS) for _ in range(rng.randint(120, 260))).capitalize() + "."}
             for _ in range(150)]
    assert_same(labelled.review_text, labelled.scope_keywords, works)


def test_same_as_the_per_word_scorer_on_every_character():
    # Every code point, surrogates included, in runs of 512: what is a word, a space or a
    # break is decided per character exactly as re decides it.
    works = [{"title": "peer " + "".join(map(chr, range(start, start + 512))),
              "abstract": "".join(chr(c) + " -" for c in range(start, start + 512, 7))}
             for start in range(0, 0x110000, 512)]
    assert_same("peer support " + "".join(map(chr, range(0x80, 0x800))), ["peer support"], works[:400])
    assert_same("peer", [], works[400:])


# -- the columnar entry point -------------------------------------------------------------
def test_score_columns_is_score_works_on_columns(labelled):
    titles = [w["title"] for w in labelled.works]
    abstracts = [w.get("abstract") for w in labelled.works]
    assert score_columns(labelled.review_text, labelled.scope_keywords, titles, abstracts) == score_works(
        labelled.review_text, labelled.scope_keywords, labelled.works)
    table = pa.table({"title": titles, "abstract": pa.array(abstracts, pa.string())})
    assert score_columns(labelled.review_text, labelled.scope_keywords, table.column("title"),
                         table.column("abstract").combine_chunks()) == score_works(
        labelled.review_text, labelled.scope_keywords, labelled.works)
    assert score_columns("review", [], [], []) == []
    with pytest.raises(ValueError, match="2 titles but 1 abstracts"):
        score_columns("review", [], ["a", "b"], [None])
    with pytest.raises(ValueError, match="unknown relevance scorer"):
        score_columns("review", [], ["a"], [None], scorer="bm25")


def test_embedding_scorer_combines_keywords_and_reasons_as_before(labelled, monkeypatch):
    # The embedding scorer is optional; a fake encoder stands in for it. What is checked is
    # the glue around it: the keyword part, the reasons and the works without text.
    class FakeEncoder:
        def encode(self, texts, **_):
            vectors = np.array([[len(t) % 7 + 1.0, t.count("e") + 1.0, t.count("peer") + 0.5] for t in texts])
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    monkeypatch.setattr(relevance, "_embedding_model", FakeEncoder)
    works = [*labelled.works, {"title": None}, {"title": "The review."}]
    got = score_works(labelled.review_text, labelled.scope_keywords, works, scorer="embedding")
    titles = [Oracle.text(w.get("title")) for w in works]
    abstracts = [Oracle.text(w.get("abstract")) for w in works]
    similarity, reasons = relevance._embedding(labelled.review_text, titles, abstracts)
    text_part = np.clip((similarity - relevance.EMBEDDING_FLOOR)
                        / (relevance.EMBEDDING_CEILING - relevance.EMBEDDING_FLOOR), 0.0, 1.0)
    for index, (title, abstract) in enumerate(zip(titles, abstracts, strict=True)):
        doc = Oracle.doc(title, abstract)
        if not doc.features:
            assert got[index] == (0.0, NO_TEXT_REASON)
            continue
        keyword_score, names = Oracle.keyword_hits(labelled.scope_keywords, doc)
        score = TEXT_WEIGHT * float(text_part[index]) + KEYWORD_WEIGHT * keyword_score
        reason = "; ".join(p for p in (f"keywords: {', '.join(names)}" if names else "", reasons[index]) if p)
        assert got[index] == (round(min(1.0, max(0.0, score)), 4), reason)
