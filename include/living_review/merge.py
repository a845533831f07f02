"""Merge every source's records (and the previous snapshot) into one row per real paper.

The rules, with the reasons behind them, are in ``docs/merge-rules.md``; in short:

1. Records and previous rows are joined *transitively* on shared ids (DOI, PMID,
   PMCID, OpenAlex, Semantic Scholar, OMID, each source's own id, the previous
   ``work_id``) with a union-find. A record's ``related_dois`` (the other versions of
   the same work, from source relations) and a previous row's ``versions`` are DOI
   keys too, so a preprint and its published version become one work.
2. Groups that share no id may still be one paper: same normalized title
   (rapidfuzz ``ratio`` >= ``settings.FUZZY_TITLE_THRESHOLD``), same first-author
   family name and publication years at most one apart, blocked by
   (family, year) and title length. Two groups that both carry an id of the same
   kind (two different DOIs, two Europe PMC records...) are never joined by title.
3. Each field is taken from the best source that has it (see ``PRECEDENCE``); the
   previous row stands in for the sources that reported it last time, so an
   id-only record keeps the metadata it had.
4. ``work_id`` never changes once published: a group that contains a previous row
   keeps that row's id (the earliest ``first_seen`` if it contains several).
5. Every DOI of a group is one of its ``versions`` (``preprint`` or ``published``);
   metadata prefers the published version's records, and ``doi`` is the published DOI.

No Airflow imports: this runs in tests and benchmarks as plain Python.
"""
from __future__ import annotations

import datetime as dt
import gc
import logging
import math
import re
import time
import unicodedata
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz.distance import OSA
from rapidfuzz.fuzz import ratio

from include.living_review import settings
from include.living_review.normalize import as_date
from include.living_review.ids import (
    normalize_doi,
    normalize_openalex_id,
    normalize_pmcid,
    normalize_pmid,
    work_id_for,
)
from include.living_review.models import CITING_WORKS_SCHEMA, Work

log = logging.getLogger(__name__)

_TEXT_ORDER = ("pubmed", "europepmc", "crossref", "openalex", "semanticscholar", "opencitations")
_PUBLISHER_ORDER = ("crossref", "pubmed", "europepmc", "openalex", "semanticscholar", "opencitations")
_PUBMED_ID_ORDER = ("pubmed", "europepmc", "openalex", "semanticscholar", "opencitations", "crossref")

# Source precedence per output field: the first source in the tuple that has a value wins.
# Sources not listed rank after every listed one (alphabetically among themselves).
PRECEDENCE: dict[str, tuple[str, ...]] = {
    "title": _TEXT_ORDER,
    "authors": _TEXT_ORDER,
    "publication_year": _TEXT_ORDER,
    "journal_abbrev": _TEXT_ORDER,
    "language": _TEXT_ORDER,
    "journal": _PUBLISHER_ORDER,
    "volume": _PUBLISHER_ORDER,
    "issue": _PUBLISHER_ORDER,
    "pages": _PUBLISHER_ORDER,
    "doi": _PUBLISHER_ORDER,
    "pmid": _PUBMED_ID_ORDER,
    "pmcid": _PUBMED_ID_ORDER,
    "openalex_id": ("openalex", "opencitations", "pubmed", "europepmc", "crossref", "semanticscholar"),
    "s2_paper_id": ("semanticscholar", "pubmed", "europepmc", "crossref", "openalex", "opencitations"),
    "omid": ("opencitations", "pubmed", "europepmc", "crossref", "openalex", "semanticscholar"),
    "abstract": ("pubmed", "europepmc", "semanticscholar", "crossref", "openalex"),
}
_RANKS: dict[tuple[str, ...], dict[str, int]] = {
    order: {source: rank for rank, source in enumerate(order)} for order in set(PRECEDENCE.values())
}

# Extra keys on every output row, besides the snapshot columns.
EXTRA_COLUMNS = ("omid", "reported_this_run", "is_new", "previous_work_id", "merged_work_ids")
OUTPUT_COLUMNS = tuple(
    name for name in CITING_WORKS_SCHEMA.names if name not in ("first_seen", "last_reported")
) + EXTRA_COLUMNS

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
_OMID_PREFIX = re.compile(r"^(?:https?://w3id\.org/oc/meta/|omid:)", re.IGNORECASE)

PREPRINT, PUBLISHED = "preprint", "published"
# DOI prefixes only preprint servers use: Research Square, SSRN, PsyArXiv, OSF Preprints,
# Preprints.org, arXiv, ChemRxiv. 10.1101 is shared by bioRxiv/medRxiv (suffix starts with a
# digit: 10.1101/2020.01.01.123456, 10.1101/123456) and Cold Spring Harbor's journals
# (10.1101/gad..., 10.1101/gr...), so only the digit form counts.
PREPRINT_DOI_PREFIXES = ("10.21203/", "10.2139/", "10.31234/", "10.31219/", "10.20944/", "10.48550/", "10.26434/")
_BIORXIV = re.compile(r"^10\.1101/\d")
# Publication types that mark a preprint (Europe PMC, PubMed and OpenAlex "preprint",
# Crossref "posted-content"), compared casefolded.
PREPRINT_TYPES = frozenset({"preprint", "posted-content", "posted_content"})

_Sig = tuple[str, str, int]  # (title key, first-author family, year)


@dataclass
class MergeResult:
    """Merged rows sorted by ``work_id`` and the merge's statistics (JSON-ready)."""

    works: list[dict[str, Any]]
    stats: dict[str, Any] = field(default_factory=dict)


# -- normalizers -------------------------------------------------------------------

def title_key(title: object) -> str:
    """Casefolded title without diacritics, punctuation or preprint decoration."""
    text = unicodedata.normalize("NFKD", str(title))
    text = _NON_WORD.sub(" ", _MARKS.sub("", text).casefold()).strip()
    return _PREPRINT.sub("", text)


def _guard(key: str) -> frozenset[str]:
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


def preprint_server_doi(doi: str) -> bool:
    """True if a normalized DOI belongs to a preprint server."""
    return doi.startswith(PREPRINT_DOI_PREFIXES) or _BIORXIV.match(doi) is not None


def has_preprint_type(types: object) -> bool:
    return any(t.strip().casefold() in PREPRINT_TYPES for t in _str_list(types))


def _omid(value: object) -> str | None:
    text = _text(value)
    return _OMID_PREFIX.sub("", text).strip() or None if text else None


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _year(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None


def _ts_key(value: object) -> str:
    """Sortable text for a ``first_seen`` value; missing sorts last."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value) if value is not None else "~"


def _str_list(value: object) -> list[str]:
    if value is None or isinstance(value, (str, bytes)):
        return [value] if isinstance(value, str) and value else []
    try:
        return [str(v) for v in value if v is not None and str(v)]  # type: ignore[union-attr]
    except TypeError:
        return []


def _score(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return None if math.isnan(score) else score


def _version_date(old: dt.date | None, new: dt.date | None) -> dt.date | None:
    return new if old is None or (new is not None and new < old) else old


def _previous_versions(row: Mapping[str, Any], doi: str | None,
                       cache: dict[tuple[int, object], str | None]) -> list[tuple[str, bool, dt.date | None]]:
    """A previous row's versions as sorted ``(doi, is_preprint, date)``, its ``doi`` always among them.

    A row without versions (written before they existed) gets one for its DOI, a
    preprint if its DOI prefix or its publication types say so. Ids that are not
    DOIs are dropped: the merge writes only DOIs.
    """
    found: dict[str, tuple[bool, dt.date | None]] = {}
    raw = row.get("versions")
    items: list[Any] = []
    if raw is not None and not isinstance(raw, (str, bytes, Mapping)):
        try:
            items = list(raw)
        except TypeError:
            items = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        vid = _normalized(0, item.get("id"), cache)
        if not vid:
            continue
        kind = item.get("kind")
        pre = isinstance(kind, str) and kind.strip().casefold() == PREPRINT
        date = as_date(item.get("date"))
        old = found.get(vid)
        found[vid] = (pre, date) if old is None else (old[0] or pre, _version_date(old[1], date))
    if doi and doi not in found:
        pre = preprint_server_doi(doi) or (not found and has_preprint_type(row.get("publication_types")))
        found[doi] = (pre, as_date(row.get("publication_date")))
    if len(found) == 1:
        return [(vid, pre, date) for vid, (pre, date) in found.items()]
    return [(vid, pre, date) for vid, (pre, date) in sorted(found.items())]


def _id_map(value: object) -> dict[str, str]:
    if not value:
        return {}
    items = value.items() if isinstance(value, Mapping) else value
    out: dict[str, str] = {}
    try:
        for k, v in items:  # type: ignore[union-attr]
            text = _text(v)
            if k is not None and text:
                out[str(k)] = text
    except (TypeError, ValueError):
        return {}
    return out


def _previous_work(row: Mapping[str, Any]) -> tuple[Work, str | None, str]:
    """A previous snapshot row as a :class:`Work`, its work_id and its first_seen sort key."""
    work_id = _text(row.get("work_id"))
    source_ids = _id_map(row.get("source_ids"))
    omid = row.get("omid")
    if not omid and work_id and work_id.startswith("oci:"):
        omid = work_id[4:]
    if not omid and str(source_ids.get("opencitations", "")).startswith("br/"):
        omid = source_ids["opencitations"]
    work = Work(
        title=_text(row.get("title")),
        doi=_text(row.get("doi")), pmid=_text(row.get("pmid")), pmcid=_text(row.get("pmcid")),
        openalex_id=_text(row.get("openalex_id")), s2_paper_id=_text(row.get("s2_paper_id")),
        omid=_text(omid),
        title_is_translated=bool(row.get("title_is_translated")),
        authors=_str_list(row.get("authors")),
        journal=_text(row.get("journal")), journal_abbrev=_text(row.get("journal_abbrev")),
        publication_year=_year(row.get("publication_year")),
        publication_date=as_date(row.get("publication_date")),
        volume=_text(row.get("volume")), issue=_text(row.get("issue")), pages=_text(row.get("pages")),
        publication_types=_str_list(row.get("publication_types")),
        language=_text(row.get("language")),
        is_retracted=bool(row.get("is_retracted")),
        sources=_str_list(row.get("sources")),
        source_ids=source_ids,
        abstract=_text(row.get("abstract")),
        update_notices=_str_list(row.get("update_notices")),
    )
    return work, work_id, _ts_key(row.get("first_seen"))


_NORMALIZERS = (normalize_doi, normalize_pmid, normalize_pmcid, normalize_openalex_id, _text, _omid)


def _normalized(slot: int, value: object, cache: dict[tuple[int, object], str | None]) -> str | None:
    """Normalize one id, memoized: the same PMID or DOI string arrives from several sources."""
    if not value:
        return None
    try:
        return cache[slot, value]
    except KeyError:
        pass
    except TypeError:  # unhashable junk is not an id
        return None
    try:
        found = _NORMALIZERS[slot](value)
    except (TypeError, ValueError, AttributeError):
        found = None
    cache[slot, value] = found
    return found


_ID_PREFIXES = ("doi:", "pmid:", "pmcid:", "openalex:", "s2:", "oci:")


# -- the merge ---------------------------------------------------------------------

class _Merger:
    """One merge run; nodes ``0..n-1`` are this run's records, ``n..`` previous rows."""

    def __init__(self, records: Iterable[Work], previous: Iterable[Mapping[str, Any]]):
        self.works: list[Work] = list(records)
        self.n = len(self.works)
        self.prev_ids: list[str | None] = []
        self.prev_fs: list[str] = []
        # Snapshot columns with no Work field: versions and the relevance the pipeline scored.
        self.prev_scores: list[tuple[float | None, str | None]] = []
        prev_rows: list[Mapping[str, Any]] = []
        for row in previous:
            work, work_id, first_seen = _previous_work(row)
            self.works.append(work)
            self.prev_ids.append(work_id)
            self.prev_fs.append(first_seen)
            self.prev_scores.append((_score(row.get("relevance")), _text(row.get("relevance_reason"))))
            prev_rows.append(row)
        size = len(self.works)
        self.src = [(w.sources[0] if w.sources else "") if i < self.n else "" for i, w in enumerate(self.works)]
        cache: dict[tuple[int, object], str | None] = {}
        self.ids = [(_normalized(0, w.doi, cache), _normalized(1, w.pmid, cache), _normalized(2, w.pmcid, cache),
                     _normalized(3, w.openalex_id, cache), _normalized(4, w.s2_paper_id, cache),
                     _normalized(5, w.omid, cache)) for w in self.works]
        self._versions_init(prev_rows, cache)
        self.parent = list(range(size))
        self.sids: list[dict[str, str]] = []
        self.order_keys: dict[tuple[str, ...], list[tuple[int, bool, str]]] = {}
        self.keys: list[list[str]] = [self._keys(i) for i in range(size)]
        self.type_bits: dict[str, int] = {}
        self.tiebreaks: dict[int, str] = {}

    def _versions_init(self, prev_rows: list[Mapping[str, Any]], cache: dict[tuple[int, object], str | None]) -> None:
        """Related DOIs per record, versions per previous row, which DOIs are preprints, and node tiers."""
        n, works, ids = self.n, self.works, self.ids
        no_dois: tuple[str, ...] = ()
        self.related: list[tuple[str, ...]] = [no_dois] * n
        self.flagged = [False] * n
        preprints: set[str] = set()
        for i in range(n):
            w = works[i]
            if w.related_dois:
                own = ids[i][0]
                self.related[i] = tuple(sorted({d for d in (_normalized(0, r, cache) for r in _str_list(w.related_dois))
                                                if d and d != own}))
            if bool(w.is_preprint) or (w.publication_types and has_preprint_type(w.publication_types)):
                self.flagged[i] = True
                if ids[i][0]:
                    preprints.add(ids[i][0])
        self.prev_versions = [_previous_versions(row, ids[n + k][0], cache) for k, row in enumerate(prev_rows)]
        for versions in self.prev_versions:
            preprints.update(vid for vid, pre, _ in versions if pre)
        self.preprint_dois = preprints
        self.kinds: dict[str, bool] = {}
        is_preprint, flagged = self.is_preprint, self.flagged
        # Tier for "prefer the published version": 0 published, 1 unknown (no DOI), 2 preprint.
        # A previous row is published once any of its versions is.
        self.tier = [(2 if is_preprint(ids[i][0]) else 0) if ids[i][0] else 2 if flagged[i] else 1
                     for i in range(n)]
        self.tier += [(2 if all(is_preprint(vid) for vid, _, _ in versions) else 0) if versions else 1
                      for versions in self.prev_versions]

    def is_preprint(self, doi: str) -> bool:
        """The DOI is a preprint: some record or previous version says so, or its prefix does."""
        found = self.kinds.get(doi)
        if found is None:
            found = self.kinds[doi] = doi in self.preprint_dois or preprint_server_doi(doi)
        return found

    # union-find ------------------------------------------------------------------
    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def _keys(self, i: int) -> list[str]:
        work = self.works[i]
        keys = [p + v for p, v in zip(_ID_PREFIXES, self.ids[i]) if v]
        self.sids.append(_id_map(work.source_ids))
        keys.extend(f"{s}:{v}" for s, v in self.sids[i].items())
        if i < self.n:
            # Another version's DOI links like a shared DOI: that is how a preprint finds its article.
            keys.extend("doi:" + d for d in self.related[i])
        else:
            own = self.ids[i][0]
            keys.extend("doi:" + vid for vid, _, _ in self.prev_versions[i - self.n] if vid != own)
            work_id = self.prev_ids[i - self.n]
            if work_id:
                keys.append(work_id)
        return keys

    def _mask(self, keys: list[str]) -> int:
        mask = 0
        for key in keys:
            kind = key.split(":", 1)[0]
            bit = self.type_bits.get(kind)
            if bit is None:
                bit = self.type_bits[kind] = 1 << len(self.type_bits)
            mask |= bit
        return mask

    # ordering --------------------------------------------------------------------
    def _tiebreak(self, i: int) -> str:
        """A total, input-order-free key between nodes that tie on rank and source."""
        found = self.tiebreaks.get(i)
        if found is None:
            w = self.works[i]
            # Previous rows: earliest first_seen, then work_id, first; content settles corrupt duplicates.
            found = f"{self.prev_fs[i - self.n]}|{self.prev_ids[i - self.n] or ''}|" if i >= self.n else ""
            extra = ((self.prev_versions[i - self.n], self.prev_scores[i - self.n]) if i >= self.n
                     else (self.related[i], self.flagged[i]))
            found += repr((w.title, self.ids[i], w.title_is_translated, w.authors, w.journal, w.journal_abbrev,
                           w.publication_year, w.publication_date, w.volume, w.issue, w.pages,
                           w.publication_types, w.language, w.is_retracted, sorted(self.sids[i].items()),
                           w.sources, w.abstract, w.update_notices, extra))
            self.tiebreaks[i] = found
        return found

    def _order_keys(self, order: tuple[str, ...]) -> list[tuple[int, bool, str]]:
        """Per node: (rank, is previous, source) for ``order``; a previous row ranks as its best past source."""
        found = self.order_keys.get(order)
        if found is None:
            ranks, worst = _RANKS[order], len(order)
            by_source: dict[str, tuple[int, bool, str]] = {}
            found = [by_source.get(s) or by_source.setdefault(s, (ranks.get(s, worst), False, s))
                     for s in self.src[:self.n]]
            found += [(min((ranks.get(s, worst) for s in w.sources), default=worst + 1), True, "")
                      for w in self.works[self.n:]]
            self.order_keys[order] = found
        return found

    def _needs_tiebreak(self, members: list[int]) -> bool:
        """Whether two members could tie on (rank, is previous, source) in some order."""
        records = [self.src[i] for i in members if i < self.n]
        return len(set(records)) < len(records) or len(records) + 1 < len(members)

    def _mixed(self, members: list[int]) -> bool:
        """Whether the nodes hold both a published and a preprint version (then published ranks first)."""
        if len(members) < 2:
            return False
        tiers = {self.tier[i] for i in members}
        return 0 in tiers and 2 in tiers

    def _ordered(self, members: list[int], order: tuple[str, ...], tiebreak: bool, mixed: bool = False) -> list[int]:
        """Members best-first for ``order``; with ``mixed``, published-version nodes before the others."""
        if len(members) == 1:
            return members
        keys = self._order_keys(order)
        if mixed:
            tier = self.tier
            if tiebreak:
                return sorted(members, key=lambda i: (tier[i], *keys[i], self._tiebreak(i)))
            return sorted(members, key=lambda i: (tier[i], *keys[i]))
        if tiebreak:
            return sorted(members, key=lambda i: (*keys[i], self._tiebreak(i)))
        return sorted(members, key=keys.__getitem__)

    def _best(self, ordered: list[int], attr: str) -> Any:
        works = self.works
        for i in ordered:
            value = getattr(works[i], attr)
            if value or (value is not None and not isinstance(value, (str, list))):
                return value
        return None

    # fuzzy -----------------------------------------------------------------------
    def _sig(self, title: Any, authors: Any, year: Any) -> _Sig | None:
        if not title or not authors or _year(year) is None:
            return None
        tkey = self.title_keys.get(title)
        if tkey is None:
            tkey = self.title_keys[title] = title_key(title)
            self.guards.setdefault(tkey, _guard(tkey))
        if len(tkey) < MIN_FUZZY_TITLE_CHARS:
            return None
        first = authors[0]
        if not isinstance(first, str) or not first:  # the row keeps only real names: match on the same one
            names = _str_list(authors)
            if not names:
                return None
            first = names[0]
        fam = self.families.get(first)
        if fam is None:
            fam = self.families[first] = family_key(first)
        return (tkey, fam, _year(year)) if fam else None  # type: ignore[return-value]

    def _combo_sig(self, members: list[int]) -> _Sig | None:
        """The signature the merged row will carry (title, authors, year by precedence)."""
        ordered = self._ordered(members, _TEXT_ORDER, self._needs_tiebreak(members), self._mixed(members))
        return self._sig(self._best(ordered, "title"), self._best(ordered, "authors"),
                         self._best(ordered, "publication_year"))

    def _add_entry(self, sig: _Sig, node: int, *, sort: bool) -> None:
        tkey, fam, year = sig
        entries = self.blocks.setdefault((fam, year), [])
        entry = (len(tkey), tkey, node)
        if sort:
            insort(entries, entry)
        else:
            entries.append(entry)

    def _query(self, root: int, sig: _Sig, edges: dict[tuple[int, int], float]) -> None:
        tkey, fam, year = sig
        threshold = self.threshold
        length = len(tkey)
        # ratio = 200 * matches / (len_a + len_b) bounds the other title's length.
        lo = math.floor(length * threshold / (200 - threshold))
        hi = math.ceil(length * (200 - threshold) / threshold)
        guard = self.guards[tkey]
        masks, find = self.masks, self.find
        for y in (year - 1, year, year + 1):
            entries = self.blocks.get((fam, y))
            if not entries:
                continue
            for k in range(bisect_left(entries, (lo,)), bisect_left(entries, (hi + 1,))):
                _, other, node = entries[k]
                other_root = find(node)
                if other_root == root or masks[root] & masks[other_root] or self.guards[other] != guard:
                    continue
                score = ratio(tkey, other, score_cutoff=threshold)
                if score and same_wording(tkey, other):
                    pair = (root, other_root) if root < other_root else (other_root, root)
                    if score > edges.get(pair, 0.0):
                        edges[pair] = score

    def _union(self, a: int, b: int) -> int:
        if len(self.members[a]) < len(self.members[b]):
            a, b = b, a
        self.parent[b] = a
        self.members[a].extend(self.members.pop(b))
        self.masks[a] |= self.masks[b]
        self.names[a] = min(self.names[a], self.names[b])
        self.queryable[a] = self.queryable[a] or self.queryable[b]
        self.sigsets[a] |= self.sigsets.pop(b, set())
        return a

    def _fuzzy(self) -> int:
        """Join id groups that are the same paper by title, author and year; returns joins made."""
        self.threshold = float(settings.FUZZY_TITLE_THRESHOLD)
        self.title_keys: dict[Any, str] = {}
        self.guards: dict[str, frozenset[str]] = {}
        self.families: dict[Any, str] = {}
        self.blocks: dict[tuple[str, int], list[tuple[int, str, int]]] = {}
        todo: list[tuple[int, _Sig]] = []
        for root, members in self.members.items():
            sigs: set[_Sig] = set()
            for i in members:
                w = self.works[i]
                sig = self._sig(w.title, w.authors, w.publication_year)
                if sig:
                    sigs.add(sig)
            if len(members) > 1:
                combo = self._combo_sig(members)
                if combo:
                    sigs.add(combo)
            self.sigsets[root] = sigs
            for sig in sigs:
                self._add_entry(sig, root, sort=False)
                if self.queryable[root]:
                    todo.append((root, sig))
        for entries in self.blocks.values():
            entries.sort()

        joins = 0
        while todo:
            edges: dict[tuple[int, int], float] = {}
            for root, sig in todo:
                self._query(self.find(root), sig, edges)
            # Best score first, then by group name, so the outcome never depends on input order.
            ranked = sorted(edges.items(), key=lambda e: (-e[1], *sorted((self.names[self.find(e[0][0])],
                                                                           self.names[self.find(e[0][1])]))))
            changed: set[int] = set()
            for (a, b), _score in ranked:
                ra, rb = self.find(a), self.find(b)
                if ra == rb or self.masks[ra] & self.masks[rb]:
                    continue
                changed.discard(ra)
                changed.discard(rb)
                changed.add(self._union(ra, rb))
                joins += 1
            # A joined group's row mixes its members' fields: that combination is matched too,
            # so that feeding the output back in as the previous snapshot finds nothing new.
            todo = []
            for root in sorted(changed, key=lambda r: self.names[r]):
                combo = self._combo_sig(self.members[root])
                if combo and combo not in self.sigsets[root]:
                    self.sigsets[root].add(combo)
                    self._add_entry(combo, root, sort=True)
                    todo.append((root, combo))
        return joins

    # rows ------------------------------------------------------------------------
    def _row(self, members: list[int]) -> dict[str, Any] | None:
        n, works, ids = self.n, self.works, self.ids
        records = [i for i in members if i < n]
        prevs = [i for i in members if i >= n]
        if len(prevs) > 1:
            prevs.sort(key=self._tiebreak)
        by: dict[tuple[str, ...], list[int]] = {}
        tiebreak = self._needs_tiebreak(members)
        mixed = self._mixed(members)

        def ordered(fieldname: str) -> list[int]:
            order = PRECEDENCE[fieldname]
            found = by.get(order)
            if found is None:
                found = by[order] = self._ordered(members, order, tiebreak, mixed)
            return found

        def best_id(fieldname: str, slot: int) -> str | None:
            return next((ids[i][slot] for i in ordered(fieldname) if ids[i][slot]), None)

        versions = self._versions(members)
        doi = self._doi(ordered("doi"), versions)
        pmid, pmcid = best_id("pmid", 1), best_id("pmcid", 2)
        openalex_id, s2_paper_id, omid = best_id("openalex_id", 3), best_id("s2_paper_id", 4), best_id("omid", 5)
        # What is computed over this run's records alone is ordered by whether *they* mix
        # versions: the previous row joining in must not reorder them (fixed point).
        records_mixed = mixed and self._mixed(records)
        text = ordered("title")
        record_text = ([i for i in text if i < n] if records_mixed == mixed
                       else self._ordered(records, _TEXT_ORDER, tiebreak, records_mixed))
        source_ids: dict[str, str] = {}
        for i in prevs:
            for k, v in self.sids[i].items():
                source_ids.setdefault(k, v)
        record_ids: dict[str, str] = {}
        for i in record_text:
            for k, v in self.sids[i].items():
                record_ids.setdefault(k, v)
        source_ids.update(record_ids)

        previous_work_id = next((self.prev_ids[i - n] for i in prevs if self.prev_ids[i - n]), None)
        work_id = previous_work_id or work_id_for(doi, pmid, pmcid, openalex_id, s2_paper_id, omid)
        if work_id is None:
            fallback = sorted(f"{k}:{v}" for k, v in source_ids.items())
            if not fallback:
                return None
            work_id = fallback[0]

        title_node = next((i for i in text if works[i].title), None)
        year = _year(self._best(text, "publication_year"))
        date = self._publication_date(members, year, mixed)
        published = any(v["kind"] == PUBLISHED for v in versions)
        types: list[str] = []
        # Previous types stay: PubMed sends only ids for known works, and its types are the useful ones.
        for i in record_text + prevs:
            for t in _str_list(works[i].publication_types):
                # Once published, "Preprint" describes one of the versions, not the work.
                if t not in types and not (published and t.strip().casefold() in PREPRINT_TYPES):
                    types.append(t)
        if records:
            sources = sorted({s for i in records for s in _str_list(works[i].sources)})
        else:
            sources = sorted({s for i in prevs for s in works[i].sources})
        merged = sorted({self.prev_ids[i - n] for i in prevs if self.prev_ids[i - n]} - {work_id})
        notices = sorted({t for i in members if works[i].update_notices for t in _str_list(works[i].update_notices)})
        relevance, reason = next((self.prev_scores[i - n] for i in prevs if self.prev_scores[i - n] != (None, None)),
                                 (None, None))
        if published and previous_work_id is not None:
            kept = next(i for i in prevs if self.prev_ids[i - n] == previous_work_id)
            before = self.prev_versions[kept - n]
            if before and all(pre for _, pre, _ in before):
                self.preprints_published += 1
        if len(versions) > 1:
            self.versions_linked += 1
        return {
            "work_id": work_id,
            "doi": doi, "pmid": pmid, "pmcid": pmcid, "openalex_id": openalex_id, "s2_paper_id": s2_paper_id,
            "title": works[title_node].title if title_node is not None else None,
            "title_is_translated": bool(works[title_node].title_is_translated) if title_node is not None else False,
            "authors": _str_list(self._best(ordered("authors"), "authors")),
            "journal": _text(self._best(ordered("journal"), "journal")),
            "journal_abbrev": _text(self._best(ordered("journal_abbrev"), "journal_abbrev")),
            "publication_year": year,
            "publication_date": date,
            "volume": _text(self._best(ordered("volume"), "volume")),
            "issue": _text(self._best(ordered("issue"), "issue")),
            "pages": _text(self._best(ordered("pages"), "pages")),
            "publication_types": types,
            "language": _text(self._best(ordered("language"), "language")),
            "is_retracted": any(bool(works[i].is_retracted) for i in members),
            "sources": sources,
            "source_ids": dict(sorted(source_ids.items())),
            "abstract": (_text(self._best(ordered("abstract"), "abstract"))
                         if any(works[i].abstract for i in members) else None),
            "update_notices": notices,
            "versions": versions,
            "relevance": relevance,
            "relevance_reason": reason,
            "omid": omid,
            "reported_this_run": bool(records),
            "is_new": not prevs,
            "previous_work_id": previous_work_id,
            "merged_work_ids": merged,
        }

    def _versions(self, members: list[int]) -> list[dict[str, Any]]:
        """One entry per DOI of the group (own, related or a previous version), by date then DOI."""
        n, ids, works, related = self.n, self.ids, self.works, self.related
        dates: dict[str, dt.date | None] = {}
        for i in members:
            if i < n:
                doi = ids[i][0]
                if doi:
                    w = works[i]
                    date = as_date(w.publication_date)
                    year = _year(w.publication_year) if date is not None else None
                    if year is not None and abs(date.year - year) > 1:  # type: ignore[union-attr]
                        date = None  # a date the record's own year contradicts is wrong
                    old = dates.get(doi, date)
                    dates[doi] = date if old is None or (date is not None and date < old) else old
                if related[i]:
                    for vid in related[i]:
                        dates.setdefault(vid, None)
            else:
                for vid, _, date in self.prev_versions[i - n]:
                    old = dates.get(vid, date)
                    dates[vid] = date if old is None or (date is not None and date < old) else old
        if not dates:
            return []
        is_preprint = self.is_preprint
        out = [{"id": vid, "kind": PREPRINT if is_preprint(vid) else PUBLISHED, "date": date}
               for vid, date in dates.items()]
        if len(out) > 1:
            out.sort(key=lambda v: (v["date"] is None, v["date"] or dt.date.min, v["id"]))
        return out

    def _doi(self, ordered: list[int], versions: list[dict[str, Any]]) -> str | None:
        """The citable DOI: a published version's, from the best source that carries one."""
        if not versions:
            return None
        ids = self.ids
        if len(versions) == 1:
            return versions[0]["id"]
        is_preprint = self.is_preprint
        found = next((ids[i][0] for i in ordered if ids[i][0] and not is_preprint(ids[i][0])), None)
        if found is None:  # known only from a relation: the first published version
            found = next((v["id"] for v in versions if v["kind"] == PUBLISHED), None)
        if found is None:
            found = next((ids[i][0] for i in ordered if ids[i][0]), versions[0]["id"])
        return found

    def _publication_date(self, members: list[int], year: int | None, mixed: bool) -> dt.date | None:
        """Most precise, then earliest date within a year of ``year``; the published version's if it has one."""
        works = self.works

        def sensible(nodes: Iterable[int]) -> list[dt.date]:
            dates = {d for d in (as_date(works[i].publication_date) for i in nodes) if d is not None}
            return [d for d in dates if year is None or abs(d.year - year) <= 1]

        found = sensible(i for i in members if self.tier[i] != 2) if mixed else []
        if not found:
            found = sensible(members)
        # Most precise first (a real day beats a month beats a bare year), then earliest.
        return min(found, key=lambda d: (-(2 if d.day != 1 else 1 if d.month != 1 else 0), d), default=None)

    def run(self) -> MergeResult:
        started = time.perf_counter()
        seen: dict[str, int] = {}
        for i, keys in enumerate(self.keys):
            for key in keys:
                other = seen.setdefault(key, i)
                if other != i:
                    ra, rb = self.find(i), self.find(other)
                    if ra != rb:
                        self.parent[rb] = ra
        self.members: dict[int, list[int]] = {}
        for i in range(len(self.works)):
            self.members.setdefault(self.find(i), []).append(i)
        id_matched = sum(len([i for i in m if i < self.n]) for m in self.members.values() if len(m) > 1)
        self.masks: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.queryable: dict[int, bool] = {}
        self.sigsets: dict[int, set[_Sig]] = {}
        for root, members in self.members.items():
            keys = [k for i in members for k in self.keys[i]]
            self.masks[root] = self._mask(keys)
            # Keyless records sort after every named group, by content.
            self.names[root] = min(keys) if keys else "\x7f" + min(self._tiebreak(i) for i in members)
            self.queryable[root] = members[0] < self.n
        id_seconds = time.perf_counter() - started
        joins = self._fuzzy()

        rows: list[dict[str, Any]] = []
        dropped = 0
        self.versions_linked = self.preprints_published = 0
        for members in self.members.values():
            row = self._row(members)
            if row is None:
                dropped += sum(1 for i in members if i < self.n)
                if members[-1] >= self.n:
                    log.warning("merge: %d previous rows have no work_id and no id; they cannot be kept",
                                sum(1 for i in members if i >= self.n))
                continue
            rows.append(row)
        rows.sort(key=lambda r: r["work_id"])
        stats = self._stats(rows, id_matched, joins, dropped)
        log.info("merge: %d records + %d previous rows -> %d works (%d new, %d not reported this run); "
                 "%d records matched by id, %d fuzzy joins, %d previous works merged, %d records without id "
                 "dropped; %d works with several versions, %d preprints now published; %.2fs (ids %.2fs)",
                 stats["records_in"], stats["previous_in"], stats["works_out"], stats["works_new"],
                 stats["works_previous_only"], id_matched, joins, len(stats["previous_merged"]), dropped,
                 self.versions_linked, self.preprints_published, time.perf_counter() - started, id_seconds)
        return MergeResult(works=rows, stats=stats)

    def _stats(self, rows: list[dict[str, Any]], id_matched: int, joins: int, dropped: int) -> dict[str, Any]:
        per_source = Counter(self.src[i] or "unknown" for i in range(self.n))
        works_per_source: Counter[str] = Counter()
        unique: Counter[str] = Counter()
        for row in rows:
            if not row["reported_this_run"]:
                continue
            works_per_source.update(row["sources"])
            if len(row["sources"]) == 1:
                unique[row["sources"][0]] += 1
        reported = sum(1 for r in rows if r["reported_this_run"])
        return {
            "records_in": self.n,
            "previous_in": len(self.works) - self.n,
            "works_out": len(rows),
            "works_reported": reported,
            "works_new": sum(1 for r in rows if r["is_new"]),
            "works_previous_only": len(rows) - reported,
            "works_without_title": sum(1 for r in rows if not r["title"]),
            "matched_by_id": id_matched,
            "matched_by_fuzzy": joins,
            "records_dropped_no_id": dropped,
            "versions_linked": self.versions_linked,
            "preprints_published": self.preprints_published,
            "previous_merged": [[r["work_id"], old] for r in rows for old in r["merged_work_ids"]],
            "records_per_source": dict(sorted(per_source.items())),
            "works_per_source": dict(sorted(works_per_source.items())),
            "unique_to_source": {s: unique.get(s, 0) for s in sorted(works_per_source)},
        }


def merge_works(records: Iterable[Work], previous: Iterable[Mapping[str, Any]] = ()) -> MergeResult:
    """Merge this run's per-source records with the previous snapshot's rows.

    Returns one row per paper (keys: ``OUTPUT_COLUMNS``), sorted by ``work_id``; the
    caller adds ``first_seen`` and ``last_reported``. Order of the inputs does not matter.
    """
    # The merge allocates millions of small, acyclic objects; the cyclic collector
    # rescanning them again and again costs about a third of the run time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _Merger(records, previous).run()
    finally:
        if collecting:
            gc.enable()
