"""Rule 2 of ``docs/merge-rules.md``: id groups that share no id may still be one paper.

Two groups are joined by :class:`FuzzyJoiner` when all of these hold:

- **no id conflict**: they carry no id of the same kind (two DOIs, two PMIDs, two
  Europe PMC records...), see :meth:`IdGraph.conflict`;
- **same first-author family**, :func:`family_key` (``"van der Berg J"`` → ``berg``);
- **publication years at most one apart**;
- **same title**: the :func:`title_key` s score rapidfuzz ``ratio`` >=
  ``settings.FUZZY_TITLE_THRESHOLD``, differ only in stopwords and spelling
  (:func:`same_wording`), carry the same numbers, roman numerals and
  erratum/reply/protocol words, and are at least ``MIN_FUZZY_TITLE_CHARS`` long.

Candidates are blocked by (family, year) and, inside a block, by title length.
"""
from __future__ import annotations

import math
import re
import unicodedata
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from rapidfuzz.distance import OSA
from rapidfuzz.fuzz import ratio

from include.living_review import settings
from include.living_review.merge._values import as_str_list, as_year
from include.living_review.merge.idgraph import IdGraph
from include.living_review.records import Work

# Normalized titles shorter than this are too generic ("Editorial", "Peer support")
# for a title match to mean the same paper.
MIN_FUZZY_TITLE_CHARS = 20
# Tokens that make a title a different work than one without them (an erratum or
# a reply repeats the original title; "Part I"/"Part II" differ by one character).
_DISTINCT_WORK_TOKENS = frozenset({
    "correction", "corrigendum", "erratum", "errata", "retraction", "retracted", "withdrawn",
    "withdrawal", "reply", "response", "comment", "commentary", "protocol", "addendum",
})
# Words a title may gain or lose between sources without becoming another paper.
_STOPWORDS = frozenset("a an the of and in on for to with by at as or from among".split())
# Words that differ between two titles must be spelling variants (randomised/randomized,
# paediatric/pediatric score 0.9; male/female 0.67, young/older 0).
WORD_VARIANT_SIMILARITY = 0.75
_ROMAN = frozenset("i ii iii iv v vi vii viii ix x xi xii xiii xiv xv xvi xvii xviii xix xx".split())
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_NON_WORD = re.compile(r"[\W_]+")
# A preprint is the same work as its journal version; when both carry their own DOI
# the id rule keeps them apart anyway, so only the decoration is dropped here.
_PREPRINT = re.compile(r"^preprint\s+|\s+(?:a\s+)?preprint$")

Signature = tuple[str, str, int]  # (title key, first-author family, year)
# The (title, authors, publication_year) a group's merged row will carry.
RowFields = Callable[[list[int]], tuple[Any, Any, Any]]


def title_key(title: object) -> str:
    """Casefolded title without diacritics, punctuation or preprint decoration."""
    text = unicodedata.normalize("NFKD", str(title))
    text = _NON_WORD.sub(" ", _MARKS.sub("", text).casefold()).strip()
    return _PREPRINT.sub("", text)


def _guard(key: str) -> frozenset[str]:
    """The tokens two titles must share exactly: numbers, roman numerals, erratum/reply words."""
    return frozenset(t for t in key.split() if t.isdigit() or t in _ROMAN or t in _DISTINCT_WORK_TOKENS)


def same_wording(a: str, b: str) -> bool:
    """True if two title keys differ only in stopwords and spelling of the same words.

    A long title with one word swapped ("young"/"older") still scores ~95 with
    ``ratio``, so the words that differ are compared on their own.
    """
    only_a, only_b = _unmatched(a.split(), b.split()), _unmatched(b.split(), a.split())
    if not only_a and not only_b:
        return True
    return OSA.normalized_similarity("".join(only_a), "".join(only_b)) >= WORD_VARIANT_SIMILARITY


def _unmatched(tokens: list[str], other: list[str]) -> list[str]:
    left = Counter(other)
    out = []
    for token in tokens:
        if left[token] > 0:
            left[token] -= 1
        elif token not in _STOPWORDS:
            out.append(token)
    return out


def family_key(author: object) -> str:
    """Last word of the family name, folded: ``"van der Berg J"`` and ``"Berg, Jan"`` → ``berg``."""
    text = str(author).strip()
    if "," in text:
        parts = text.split(",", 1)[0].split()
    else:
        parts = text.split()
        if len(parts) > 1:
            tail = parts[-1].replace(".", "")
            if tail.isalpha() and tail.isupper() and len(tail) <= 4:
                parts.pop()
    if not parts:
        return ""
    text = _MARKS.sub("", unicodedata.normalize("NFKD", parts[-1])).casefold()
    return "".join(ch for ch in text if ch.isalnum())


class FuzzyJoiner:
    """Joins the groups of an :class:`IdGraph` that are one paper by title, first author and year.

    ``works[i]`` is node ``i``'s record; ``row_fields(members)`` gives the title,
    authors and year the group's merged row will carry (by field precedence), so a
    joined group is matched again on that combination.
    """

    def __init__(self, graph: IdGraph, works: Sequence[Work], row_fields: RowFields,
                 threshold: float | None = None) -> None:
        self.graph = graph
        self.works = works
        self.row_fields = row_fields
        self.threshold = float(settings.FUZZY_TITLE_THRESHOLD if threshold is None else threshold)
        # Memos: the same title and author strings come from several sources.
        self.title_keys: dict[Any, str] = {}
        self.guards: dict[str, frozenset[str]] = {}
        self.families: dict[Any, str] = {}
        # (family, year) -> sorted (title length, title key, root) entries.
        self.blocks: dict[tuple[str, int], list[tuple[int, str, int]]] = {}
        self.sigsets: dict[int, set[Signature]] = {}

    def signature(self, title: Any, authors: Any, year: Any) -> Signature | None:
        """What the title rule compares, or None if these fields cannot match anything by title."""
        if not title or not authors or as_year(year) is None:
            return None
        tkey = self.title_keys.get(title)
        if tkey is None:
            tkey = self.title_keys[title] = title_key(title)
            self.guards.setdefault(tkey, _guard(tkey))
        if len(tkey) < MIN_FUZZY_TITLE_CHARS:
            return None
        first = authors[0]
        if not isinstance(first, str) or not first:  # the row keeps only real names: match on the same one
            names = as_str_list(authors)
            if not names:
                return None
            first = names[0]
        fam = self.families.get(first)
        if fam is None:
            fam = self.families[first] = family_key(first)
        return (tkey, fam, as_year(year)) if fam else None  # type: ignore[return-value]

    def join(self) -> int:
        """Join every matching pair of groups in ``graph``; returns the number of joins made."""
        graph, works = self.graph, self.works
        todo: list[tuple[int, Signature]] = []
        for root, members in graph.groups.items():
            sigs: set[Signature] = set()
            for i in members:
                w = works[i]
                sig = self.signature(w.title, w.authors, w.publication_year)
                if sig:
                    sigs.add(sig)
            if len(members) > 1:
                combo = self._combo_signature(members)
                if combo:
                    sigs.add(combo)
            self.sigsets[root] = sigs
            for sig in sigs:
                self._add_entry(sig, root, sort=False)
                # Two previous works were compared when they were published: only groups
                # with a record of this run ask for candidates.
                if graph.has_record[root]:
                    todo.append((root, sig))
        for entries in self.blocks.values():
            entries.sort()

        joins = 0
        find, names = graph.find, graph.names
        while todo:
            edges: dict[tuple[int, int], float] = {}
            for root, sig in todo:
                self._query(find(root), sig, edges)
            # Best score first, then by group name, so the outcome never depends on input order.
            ranked = sorted(edges.items(), key=lambda e: (-e[1], *sorted((names[find(e[0][0])],
                                                                           names[find(e[0][1])]))))
            changed: set[int] = set()
            for (a, b), _score in ranked:
                ra, rb = find(a), find(b)
                if ra == rb or graph.conflict(ra, rb):
                    continue
                changed.discard(ra)
                changed.discard(rb)
                changed.add(self._union(ra, rb))
                joins += 1
            # A joined group's row mixes its members' fields: that combination is matched too,
            # so that feeding the output back in as the previous snapshot finds nothing new.
            todo = []
            for root in sorted(changed, key=lambda r: names[r]):
                combo = self._combo_signature(graph.groups[root])
                if combo and combo not in self.sigsets[root]:
                    self.sigsets[root].add(combo)
                    self._add_entry(combo, root, sort=True)
                    todo.append((root, combo))
        return joins

    def _combo_signature(self, members: list[int]) -> Signature | None:
        """The signature the merged row will carry (title, authors, year by precedence)."""
        return self.signature(*self.row_fields(members))

    def _add_entry(self, sig: Signature, node: int, *, sort: bool) -> None:
        tkey, fam, year = sig
        entries = self.blocks.setdefault((fam, year), [])
        entry = (len(tkey), tkey, node)
        if sort:
            insort(entries, entry)
        else:
            entries.append(entry)

    def _query(self, root: int, sig: Signature, edges: dict[tuple[int, int], float]) -> None:
        """Record in ``edges`` the best title score between ``root`` and each group it may join."""
        tkey, fam, year = sig
        threshold = self.threshold
        length = len(tkey)
        # ratio = 200 * matches / (len_a + len_b) bounds the other title's length.
        lo = math.floor(length * threshold / (200 - threshold))
        hi = math.ceil(length * (200 - threshold) / threshold)
        guards = self.guards
        guard = guards[tkey]
        # The hot loop: IdGraph.conflict inlined as the mask test.
        masks, find = self.graph.masks, self.graph.find
        for y in (year - 1, year, year + 1):
            entries = self.blocks.get((fam, y))
            if not entries:
                continue
            for k in range(bisect_left(entries, (lo,)), bisect_left(entries, (hi + 1,))):
                _, other, node = entries[k]
                other_root = find(node)
                if other_root == root or masks[root] & masks[other_root] or guards[other] != guard:
                    continue
                score = ratio(tkey, other, score_cutoff=threshold)
                if score and same_wording(tkey, other):
                    pair = (root, other_root) if root < other_root else (other_root, root)
                    if score > edges.get(pair, 0.0):
                        edges[pair] = score

    def _union(self, a: int, b: int) -> int:
        root = self.graph.union(a, b)
        gone = b if root == a else a
        self.sigsets[root] |= self.sigsets.pop(gone, set())
        return root
