"""Rules 3-5 of ``docs/merge-rules.md``: one output row per group of nodes.

- :data:`PRECEDENCE` is the per-field source order; :class:`Ranking` orders a group's
  nodes by it, published-version nodes first when the group mixes versions.
- :class:`RowBuilder` turns a group into its row: the fields by precedence, the
  ``versions`` and the citable ``doi``, and a ``work_id`` that never changes once
  published.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from include.living_review.merge._values import (
    DOI,
    OMID,
    OPENALEX,
    PMCID,
    PMID,
    PREPRINT,
    PREPRINT_TYPES,
    PUBLISHED,
    S2,
    as_str_list,
    as_text,
    as_year,
)
from include.living_review.merge.nodes import Nodes
from include.living_review.records import CITING_WORKS_SCHEMA
from include.living_review.records.ids import work_id_for
from include.living_review.records.normalize import as_date

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


class Ranking:
    """Orders a group's nodes best-first for a field's source order.

    A record ranks by its source; a previous row as its best past source, just behind
    a record of that source. When the group holds both a published and a preprint
    version, published-version nodes come first. Remaining ties are settled by
    content (:meth:`tiebreak`), never by input order.
    """

    def __init__(self, nodes: Nodes) -> None:
        self.nodes = nodes
        self.works = nodes.works
        self.n = nodes.n
        self._order_keys_by: dict[tuple[str, ...], list[tuple[int, bool, str]]] = {}
        self._tiebreaks: dict[int, str] = {}

    def tiebreak(self, i: int) -> str:
        """A total, input-order-free key between nodes that tie on rank and source."""
        found = self._tiebreaks.get(i)
        if found is None:
            nodes, n = self.nodes, self.n
            w = self.works[i]
            # Previous rows: earliest first_seen, then work_id, first; content settles corrupt duplicates.
            found = f"{nodes.prev_first_seen[i - n]}|{nodes.prev_ids[i - n] or ''}|" if i >= n else ""
            extra = ((nodes.prev_versions[i - n], nodes.prev_scores[i - n]) if i >= n
                     else (nodes.related[i], nodes.flagged[i]))
            found += repr((w.title, nodes.ids[i], w.title_is_translated, w.authors, w.journal, w.journal_abbrev,
                           w.publication_year, w.publication_date, w.volume, w.issue, w.pages,
                           w.publication_types, w.language, w.is_retracted, sorted(nodes.sids[i].items()),
                           w.sources, w.abstract, w.update_notices, extra))
            self._tiebreaks[i] = found
        return found

    def _order_keys(self, order: tuple[str, ...]) -> list[tuple[int, bool, str]]:
        """Per node: (rank, is previous, source) for ``order``; a previous row ranks as its best past source."""
        found = self._order_keys_by.get(order)
        if found is None:
            ranks, worst = _RANKS[order], len(order)
            by_source: dict[str, tuple[int, bool, str]] = {}
            found = [by_source.get(s) or by_source.setdefault(s, (ranks.get(s, worst), False, s))
                     for s in self.nodes.src[:self.n]]
            found += [(min((ranks.get(s, worst) for s in w.sources), default=worst + 1), True, "")
                      for w in self.works[self.n:]]
            self._order_keys_by[order] = found
        return found

    def needs_tiebreak(self, members: list[int]) -> bool:
        """Whether two members could tie on (rank, is previous, source) in some order."""
        src, n = self.nodes.src, self.n
        records = [src[i] for i in members if i < n]
        return len(set(records)) < len(records) or len(records) + 1 < len(members)

    def mixed(self, members: list[int]) -> bool:
        """Whether the nodes hold both a published and a preprint version (then published ranks first)."""
        if len(members) < 2:
            return False
        tier = self.nodes.tier
        tiers = {tier[i] for i in members}
        return 0 in tiers and 2 in tiers

    def ordered(self, members: list[int], order: tuple[str, ...], tiebreak: bool, mixed: bool = False) -> list[int]:
        """Members best-first for ``order``; with ``mixed``, published-version nodes before the others."""
        if len(members) == 1:
            return members
        keys = self._order_keys(order)
        if mixed:
            tier = self.nodes.tier
            if tiebreak:
                return sorted(members, key=lambda i: (tier[i], *keys[i], self.tiebreak(i)))
            return sorted(members, key=lambda i: (tier[i], *keys[i]))
        if tiebreak:
            return sorted(members, key=lambda i: (*keys[i], self.tiebreak(i)))
        return sorted(members, key=keys.__getitem__)

    def best(self, ordered: list[int], attr: str) -> Any:
        """The first value of ``attr`` among ``ordered`` nodes that is set (empty strings and lists are not)."""
        works = self.works
        for i in ordered:
            value = getattr(works[i], attr)
            if value or (value is not None and not isinstance(value, (str, list))):
                return value
        return None

    def text_fields(self, members: list[int]) -> tuple[Any, Any, Any]:
        """The title, authors and publication year the group's row will carry."""
        ordered = self.ordered(members, _TEXT_ORDER, self.needs_tiebreak(members), self.mixed(members))
        return self.best(ordered, "title"), self.best(ordered, "authors"), self.best(ordered, "publication_year")


class RowBuilder:
    """Builds each group's output row (keys: ``OUTPUT_COLUMNS``) and counts version events.

    After building, ``versions_linked`` counts rows with two or more versions and
    ``preprints_published`` rows whose kept previous row had only preprint versions
    and that now have a published one.
    """

    def __init__(self, nodes: Nodes, ranking: Ranking, linked: set[int] | frozenset[int] = frozenset()) -> None:
        self.nodes = nodes
        self.ranking = ranking
        self.linked = linked  # nodes of groups the version linker joined
        self.versions_linked = 0
        self.preprints_published = 0

    def row(self, members: list[int]) -> dict[str, Any] | None:
        """The group's row, or None if it has no id to be tracked by."""
        nodes, ranking = self.nodes, self.ranking
        n, works, ids = nodes.n, nodes.works, nodes.ids
        prev_ids, sids = nodes.prev_ids, nodes.sids
        records = [i for i in members if i < n]
        # Probe and enrichment records refresh fields but do not report the work this run.
        reporting = [i for i in records if not works[i].probe]
        prevs = [i for i in members if i >= n]
        if len(prevs) > 1:
            prevs.sort(key=ranking.tiebreak)
        by: dict[tuple[str, ...], list[int]] = {}
        tiebreak = ranking.needs_tiebreak(members)
        mixed = ranking.mixed(members)
        best = ranking.best

        def ordered(fieldname: str) -> list[int]:
            order = PRECEDENCE[fieldname]
            found = by.get(order)
            if found is None:
                found = by[order] = ranking.ordered(members, order, tiebreak, mixed)
            return found

        # What is computed over this run's records alone is ordered by whether *they* mix
        # versions: the previous row joining in must not reorder them (fixed point).
        records_mixed = mixed and ranking.mixed(records)

        def best_id(fieldname: str, slot: int) -> str | None:
            # This run's records first: a group that relations tied together can hold two ids
            # of one kind, and the previous row (which carries one of them) must not tip the
            # choice, or merging the output again would pick the other one.
            in_records = ranking.ordered(records, PRECEDENCE[fieldname], tiebreak, records_mixed) if records else []
            return next((ids[i][slot] for i in in_records if ids[i][slot]), None) or \
                next((ids[i][slot] for i in ordered(fieldname) if ids[i][slot]), None)

        versions = self.versions(members)
        doi = self.doi(ordered("doi"), versions)
        pmid, pmcid = best_id("pmid", PMID), best_id("pmcid", PMCID)
        openalex_id, s2_paper_id = best_id("openalex_id", OPENALEX), best_id("s2_paper_id", S2)
        omid = best_id("omid", OMID)
        text = ordered("title")
        record_text = ([i for i in text if i < n] if records_mixed == mixed
                       else ranking.ordered(records, _TEXT_ORDER, tiebreak, records_mixed))
        source_ids: dict[str, str] = {}
        for i in prevs:
            for k, v in sids[i].items():
                source_ids.setdefault(k, v)
        record_ids: dict[str, str] = {}
        for i in record_text:
            for k, v in sids[i].items():
                record_ids.setdefault(k, v)
        source_ids.update(record_ids)

        # work_id stability: a group with a previous row keeps its id (prevs are sorted by first_seen).
        previous_work_id = next((prev_ids[i - n] for i in prevs if prev_ids[i - n]), None)
        work_id = previous_work_id or work_id_for(doi, pmid, pmcid, openalex_id, s2_paper_id, omid)
        if work_id is None:
            fallback = sorted(f"{k}:{v}" for k, v in source_ids.items())
            if not fallback:
                return None
            work_id = fallback[0]

        title_node = next((i for i in text if works[i].title), None)
        year = as_year(best(text, "publication_year"))
        date = self.publication_date(members, year, mixed)
        published = any(v["kind"] == PUBLISHED for v in versions)
        types: list[str] = []
        # Previous types stay: PubMed sends only ids for known works, and its types are the useful ones.
        for i in record_text + prevs:
            for t in as_str_list(works[i].publication_types):
                # Once published, "Preprint" describes one of the versions, not the work.
                if t not in types and not (published and t.strip().casefold() in PREPRINT_TYPES):
                    types.append(t)
        if reporting:
            sources = sorted({s for i in reporting for s in as_str_list(works[i].sources)})
        elif records and not prevs:  # only probe/enrichment records (a test, or a dropped listing)
            sources = sorted({s for i in records for s in as_str_list(works[i].sources)})
        else:
            sources = sorted({s for i in prevs for s in works[i].sources})
        merged = sorted({prev_ids[i - n] for i in prevs if prev_ids[i - n]} - {work_id})
        notices = sorted({t for i in members if works[i].update_notices for t in as_str_list(works[i].update_notices)})
        prev_scores = nodes.prev_scores
        relevance, reason = next((prev_scores[i - n] for i in prevs if prev_scores[i - n] != (None, None)),
                                 (None, None))
        if published and previous_work_id is not None:
            kept = next(i for i in prevs if prev_ids[i - n] == previous_work_id)
            before = nodes.prev_versions[kept - n]
            if before and all(pre for _, pre, _ in before):
                self.preprints_published += 1
        if len(versions) > 1:
            self.versions_linked += 1
        return {
            "work_id": work_id,
            "doi": doi, "pmid": pmid, "pmcid": pmcid, "openalex_id": openalex_id, "s2_paper_id": s2_paper_id,
            "title": works[title_node].title if title_node is not None else None,
            "title_is_translated": bool(works[title_node].title_is_translated) if title_node is not None else False,
            "authors": as_str_list(best(ordered("authors"), "authors")),
            "journal": as_text(best(ordered("journal"), "journal")),
            "journal_abbrev": as_text(best(ordered("journal_abbrev"), "journal_abbrev")),
            "publication_year": year,
            "publication_date": date,
            "volume": as_text(best(ordered("volume"), "volume")),
            "issue": as_text(best(ordered("issue"), "issue")),
            "pages": as_text(best(ordered("pages"), "pages")),
            "publication_types": types,
            "language": as_text(best(ordered("language"), "language")),
            "is_retracted": any(bool(works[i].is_retracted) for i in members),
            "sources": sources,
            "source_ids": dict(sorted(source_ids.items())),
            "abstract": (as_text(best(ordered("abstract"), "abstract"))
                         if any(works[i].abstract for i in members) else None),
            "update_notices": notices,
            "versions": versions,
            "version_evidence": self.version_evidence(members, versions),
            "relevance": relevance,
            "relevance_reason": reason,
            "omid": omid,
            "reported_this_run": bool(reporting) or (bool(records) and not prevs),
            "is_new": not prevs,
            "previous_work_id": previous_work_id,
            "merged_work_ids": merged,
        }

    def versions(self, members: list[int]) -> list[dict[str, Any]]:
        """One entry per DOI of the group (own, related or a previous version), by date then DOI."""
        nodes = self.nodes
        n, ids, works, related, prev_versions = nodes.n, nodes.ids, nodes.works, nodes.related, nodes.prev_versions
        dates: dict[str, dt.date | None] = {}
        for i in members:
            if i < n:
                doi = ids[i][DOI]
                if doi:
                    w = works[i]
                    date = as_date(w.publication_date)
                    year = as_year(w.publication_year) if date is not None else None
                    if year is not None and abs(date.year - year) > 1:  # type: ignore[union-attr]
                        date = None  # a date the record's own year contradicts is wrong
                    old = dates.get(doi, date)
                    dates[doi] = date if old is None or (date is not None and date < old) else old
                if related[i]:
                    for vid in related[i]:
                        dates.setdefault(vid, None)
            else:
                for vid, _, date in prev_versions[i - n]:
                    old = dates.get(vid, date)
                    dates[vid] = date if old is None or (date is not None and date < old) else old
        if not dates:
            return []
        is_preprint = nodes.is_preprint
        out = [{"id": vid, "kind": PREPRINT if is_preprint(vid) else PUBLISHED, "date": date}
               for vid, date in dates.items()]
        if len(out) > 1:
            out.sort(key=lambda v: (v["date"] is None, v["date"] or dt.date.min, v["id"]))
        return out

    def version_evidence(self, members: list[int], versions: list[dict[str, Any]]) -> list[str]:
        """What ties a work's versions together (``docs/merge-rules.md``, rule 5): empty for one version."""
        if len(versions) < 2:
            return []
        nodes = self.nodes
        n = nodes.n
        found = {e for i in members if i >= n for e in nodes.prev_evidence[i - n]}
        found.update(f"relation:{nodes.src[i] or 'unknown'}" for i in members if i < n and nodes.related[i])
        if any(i in self.linked for i in members):
            found.add("title-author-year")
        return sorted(found) or ["shared-id"]

    def doi(self, ordered: list[int], versions: list[dict[str, Any]]) -> str | None:
        """The citable DOI: a published version's, from the best source that carries one."""
        if not versions:
            return None
        ids = self.nodes.ids
        if len(versions) == 1:
            return versions[0]["id"]
        is_preprint = self.nodes.is_preprint
        found = next((ids[i][DOI] for i in ordered if ids[i][DOI] and not is_preprint(ids[i][DOI])), None)
        if found is None:  # known only from a relation: the first published version
            found = next((v["id"] for v in versions if v["kind"] == PUBLISHED), None)
        if found is None:
            found = next((ids[i][DOI] for i in ordered if ids[i][DOI]), versions[0]["id"])
        return found

    def publication_date(self, members: list[int], year: int | None, mixed: bool) -> dt.date | None:
        """Most precise, then earliest date within a year of ``year``; the published version's if it has one."""
        works, tier = self.nodes.works, self.nodes.tier

        def sensible(nodes: Iterable[int]) -> list[dt.date]:
            dates = {d for d in (as_date(works[i].publication_date) for i in nodes) if d is not None}
            return [d for d in dates if year is None or abs(d.year - year) <= 1]

        found = sensible(i for i in members if tier[i] != 2) if mixed else []
        if not found:
            found = sensible(members)
        # Most precise first (a real day beats a month beats a bare year), then earliest.
        return min(found, key=lambda d: (-(2 if d.day != 1 else 1 if d.month != 1 else 0), d), default=None)
