"""The merge's input as one table of nodes, shared by the id graph, the fuzzy joiner and the row builder.

Nodes ``0..n-1`` are this run's records, ``n..`` the previous snapshot's rows (read
back as :class:`Work`). Every per-node fact lives in a parallel list indexed by node
number rather than on an object per node: the merge touches each fact of ~130k nodes
several times, and list indexing is what keeps it at a few seconds.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from include.living_review.merge._values import (
    DOI,
    OMID,
    OPENALEX,
    PMCID,
    PMID,
    PREPRINT,
    S2,
    IdCache,
    NormalizedIds,
    as_id_map,
    as_score,
    as_str_list,
    as_text,
    as_year,
    earlier_date,
    first_seen_key,
    has_preprint_type,
    normalized_id,
    preprint_server_doi,
)
from include.living_review.records import Work
from include.living_review.records.normalize import as_date

# (doi, is preprint, date) of one version of a previous row.
Version = tuple[str, bool, dt.date | None]


class Nodes:
    """Records and previous rows, their normalized ids and version facts, in parallel lists."""

    def __init__(self, records: Iterable[Work], previous: Iterable[Mapping[str, Any]] = ()) -> None:
        self.works: list[Work] = list(records)
        self.n = len(self.works)
        # Per previous row (index ``i - n``): its work_id, first_seen sort key, and the
        # snapshot columns with no Work field (the relevance the pipeline scored).
        self.prev_ids: list[str | None] = []
        self.prev_first_seen: list[str] = []
        self.prev_scores: list[tuple[float | None, str | None]] = []
        self.prev_evidence: list[tuple[str, ...]] = []
        prev_rows: list[Mapping[str, Any]] = []
        for row in previous:
            work, work_id, first_seen = previous_work(row)
            self.works.append(work)
            self.prev_ids.append(work_id)
            self.prev_first_seen.append(first_seen)
            self.prev_scores.append((as_score(row.get("relevance")), as_text(row.get("relevance_reason"))))
            self.prev_evidence.append(tuple(as_str_list(row.get("version_evidence"))))
            prev_rows.append(row)
        n, works = self.n, self.works
        # A record's reporting source; previous rows have none of their own.
        self.src = [(w.sources[0] if w.sources else "") if i < n else "" for i, w in enumerate(works)]
        cache: IdCache = {}
        self.ids: list[NormalizedIds] = [
            (normalized_id(DOI, w.doi, cache), normalized_id(PMID, w.pmid, cache),
             normalized_id(PMCID, w.pmcid, cache), normalized_id(OPENALEX, w.openalex_id, cache),
             normalized_id(S2, w.s2_paper_id, cache), normalized_id(OMID, w.omid, cache)) for w in works]
        self.sids: list[dict[str, str]] = [as_id_map(w.source_ids) for w in works]
        self._init_versions(prev_rows, cache)

    def __len__(self) -> int:
        return len(self.works)

    def _init_versions(self, prev_rows: list[Mapping[str, Any]], cache: IdCache) -> None:
        """Related DOIs per record, versions per previous row, which DOIs are preprints, and node tiers."""
        n, works, ids = self.n, self.works, self.ids
        no_dois: tuple[str, ...] = ()
        self.related: list[tuple[str, ...]] = [no_dois] * n
        # The record says it is a preprint (flag or publication type), whatever its DOI.
        self.flagged = [False] * n
        preprints: set[str] = set()
        for i in range(n):
            w = works[i]
            if w.related_dois:
                own = ids[i][DOI]
                self.related[i] = tuple(sorted({d for d in (normalized_id(DOI, r, cache)
                                                            for r in as_str_list(w.related_dois))
                                                if d and d != own}))
            if bool(w.is_preprint) or (w.publication_types and has_preprint_type(w.publication_types)):
                self.flagged[i] = True
                if ids[i][DOI]:
                    preprints.add(ids[i][DOI])
        self.prev_versions: list[list[Version]] = [previous_versions(row, ids[n + k][DOI], cache)
                                                   for k, row in enumerate(prev_rows)]
        for versions in self.prev_versions:
            preprints.update(vid for vid, pre, _ in versions if pre)
        self.preprint_dois = preprints
        self._kinds: dict[str, bool] = {}
        is_preprint, flagged = self.is_preprint, self.flagged
        # Tier for "prefer the published version": 0 published, 1 unknown (no DOI), 2 preprint.
        # A previous row is published once any of its versions is.
        self.tier = [(2 if is_preprint(ids[i][DOI]) else 0) if ids[i][DOI] else 2 if flagged[i] else 1
                     for i in range(n)]
        self.tier += [(2 if all(is_preprint(vid) for vid, _, _ in versions) else 0) if versions else 1
                      for versions in self.prev_versions]

    def is_preprint(self, doi: str) -> bool:
        """The DOI is a preprint: some record or previous version says so, or its prefix does."""
        found = self._kinds.get(doi)
        if found is None:
            found = self._kinds[doi] = doi in self.preprint_dois or preprint_server_doi(doi)
        return found


def previous_work(row: Mapping[str, Any]) -> tuple[Work, str | None, str]:
    """A previous snapshot row as a :class:`Work`, its work_id and its first_seen sort key."""
    work_id = as_text(row.get("work_id"))
    source_ids = as_id_map(row.get("source_ids"))
    omid = row.get("omid")
    if not omid and work_id and work_id.startswith("oci:"):
        omid = work_id[4:]
    if not omid and str(source_ids.get("opencitations", "")).startswith("br/"):
        omid = source_ids["opencitations"]
    work = Work(
        title=as_text(row.get("title")),
        doi=as_text(row.get("doi")), pmid=as_text(row.get("pmid")), pmcid=as_text(row.get("pmcid")),
        openalex_id=as_text(row.get("openalex_id")), s2_paper_id=as_text(row.get("s2_paper_id")),
        omid=as_text(omid),
        title_is_translated=bool(row.get("title_is_translated")),
        authors=as_str_list(row.get("authors")),
        journal=as_text(row.get("journal")), journal_abbrev=as_text(row.get("journal_abbrev")),
        publication_year=as_year(row.get("publication_year")),
        publication_date=as_date(row.get("publication_date")),
        volume=as_text(row.get("volume")), issue=as_text(row.get("issue")), pages=as_text(row.get("pages")),
        publication_types=as_str_list(row.get("publication_types")),
        language=as_text(row.get("language")),
        is_retracted=bool(row.get("is_retracted")),
        sources=as_str_list(row.get("sources")),
        source_ids=source_ids,
        abstract=as_text(row.get("abstract")),
        update_notices=as_str_list(row.get("update_notices")),
    )
    return work, work_id, first_seen_key(row.get("first_seen"))


def previous_versions(row: Mapping[str, Any], doi: str | None, cache: IdCache) -> list[Version]:
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
        vid = normalized_id(DOI, item.get("id"), cache)
        if not vid:
            continue
        kind = item.get("kind")
        pre = isinstance(kind, str) and kind.strip().casefold() == PREPRINT
        date = as_date(item.get("date"))
        old = found.get(vid)
        found[vid] = (pre, date) if old is None else (old[0] or pre, earlier_date(old[1], date))
    if doi and doi not in found:
        pre = preprint_server_doi(doi) or (not found and has_preprint_type(row.get("publication_types")))
        found[doi] = (pre, as_date(row.get("publication_date")))
    if len(found) == 1:
        return [(vid, pre, date) for vid, (pre, date) in found.items()]
    return [(vid, pre, date) for vid, (pre, date) in sorted(found.items())]
