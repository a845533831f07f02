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

Who does what (each module documents its rule):

- :mod:`.nodes`: the input as parallel lists indexed by node number, shared by the rest;
- :mod:`.idgraph`: rule 1, the union-find over id keys;
- :mod:`.fuzzy`: rule 2, the guarded title join;
- :mod:`.rows`: rules 3-5, field precedence, ``work_id``, versions;
- this module: :func:`merge_works`, which runs them in that order, and the statistics.

No Airflow imports: this runs in tests and benchmarks as plain Python.
"""
from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from include.living_review.merge.fuzzy import FuzzyJoiner
from include.living_review.merge.idgraph import IdGraph
from include.living_review.merge.nodes import Nodes
from include.living_review.merge.versions import VersionLinker
from include.living_review.merge.rows import Ranking, RowBuilder
from include.living_review.records import Work

log = logging.getLogger(__name__)


@dataclass
class MergeResult:
    """Merged rows sorted by ``work_id`` and the merge's statistics (JSON-ready)."""

    works: list[dict[str, Any]]
    stats: dict[str, Any] = field(default_factory=dict)


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
        return _merge(Nodes(records, previous))
    finally:
        if collecting:
            gc.enable()


def _merge(nodes: Nodes) -> MergeResult:
    started = time.perf_counter()
    ranking = Ranking(nodes)
    graph = IdGraph.from_nodes(nodes, ranking.tiebreak)
    id_seconds = time.perf_counter() - started
    fuzzy = FuzzyJoiner(graph, nodes.works, ranking.text_fields)
    joins = fuzzy.join()
    linker = VersionLinker(graph, nodes, fuzzy)
    version_links = linker.link()

    builder = RowBuilder(nodes, ranking, linker.linked)
    rows: list[dict[str, Any]] = []
    dropped = 0
    for members in graph.groups.values():
        row = builder.row(members)
        if row is None:
            dropped += sum(1 for i in members if i < nodes.n)
            if members[-1] >= nodes.n:
                log.warning("merge: %d previous rows have no work_id and no id; they cannot be kept",
                            sum(1 for i in members if i >= nodes.n))
            continue
        rows.append(row)
    rows.sort(key=lambda r: r["work_id"])
    stats = _stats(nodes, rows, graph.matched_by_id, joins, dropped, builder)
    stats["versions_linked_by_title"] = version_links
    log.info("merge: %d records + %d previous rows -> %d works (%d new, %d not reported this run); "
             "%d records matched by id, %d fuzzy joins, %d previous works merged, %d records without id "
             "dropped; %d works with several versions, %d preprints now published; %.2fs (ids %.2fs)",
             stats["records_in"], stats["previous_in"], stats["works_out"], stats["works_new"],
             stats["works_previous_only"], graph.matched_by_id, joins, len(stats["previous_merged"]), dropped,
             builder.versions_linked, builder.preprints_published, time.perf_counter() - started, id_seconds)
    return MergeResult(works=rows, stats=stats)


def _stats(nodes: Nodes, rows: list[dict[str, Any]], id_matched: int, joins: int, dropped: int,
           builder: RowBuilder) -> dict[str, Any]:
    per_source = Counter(nodes.src[i] or "unknown" for i in range(nodes.n))
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
        "records_in": nodes.n,
        "previous_in": len(nodes) - nodes.n,
        "works_out": len(rows),
        "works_reported": reported,
        "works_new": sum(1 for r in rows if r["is_new"]),
        "works_previous_only": len(rows) - reported,
        "works_without_title": sum(1 for r in rows if not r["title"]),
        "matched_by_id": id_matched,
        "matched_by_fuzzy": joins,
        "records_dropped_no_id": dropped,
        "versions_linked": builder.versions_linked,
        "preprints_published": builder.preprints_published,
        "previous_merged": [[r["work_id"], old] for r in rows for old in r["merged_work_ids"]],
        "records_per_source": dict(sorted(per_source.items())),
        "works_per_source": dict(sorted(works_per_source.items())),
        "unique_to_source": {s: unique.get(s, 0) for s in sorted(works_per_source)},
    }
