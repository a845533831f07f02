"""Rule 5b of ``docs/merge-rules.md``: a preprint and its journal version, linked without a relation.

A journal article often arrives with complete metadata from PubMed, Europe PMC and
OpenAlex while its preprint is already known, and no source relation ties the two
(Crossref's ``has-preprint`` is the usual one). The id rule keeps them apart (two
DOIs), so :class:`VersionLinker` joins such a pair when every one of these holds:

- one group's DOIs are all preprint-server DOIs (``preprint_server_doi``: bioRxiv and
  medRxiv 10.1101, Research Square 10.21203, PsyArXiv 10.31234, Preprints.org 10.20944,
  SSRN 10.2139, JMIR Preprints 10.2196/preprints…) and the other's all journal DOIs;
- neither group already holds a version of the other kind;
- the same first-author family and the same title, by the fuzzy joiner's own test
  (rapidfuzz ratio over the threshold, same wording, same numbers and erratum words);
- the journal version is dated no earlier than the preprint's year and at most
  :data:`MAX_YEARS_TO_PUBLICATION` years later;
- a group of this run is involved (two previous works were compared when published);
- the match is unambiguous: a preprint that fits two journal groups (or the other way
  round) is linked to neither, because a wrong link would hide a paper.

Each link is recorded as the work's ``version_evidence`` ``title-author-year``.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from include.living_review.merge.fuzzy import FuzzyJoiner, same_wording
from include.living_review.merge.idgraph import IdGraph
from include.living_review.merge.nodes import Nodes

log = logging.getLogger(__name__)
MAX_YEARS_TO_PUBLICATION = 2
EVIDENCE = "title-author-year"


class VersionLinker:
    """Joins preprint groups to their journal-version groups; see the module docstring."""

    def __init__(self, graph: IdGraph, nodes: Nodes, fuzzy: FuzzyJoiner) -> None:
        self.graph, self.nodes, self.fuzzy = graph, nodes, fuzzy
        self.linked: set[int] = set()  # nodes of groups joined here (for version_evidence)

    def _kind(self, members: list[int]) -> str | None:
        """``preprint`` or ``published`` when every DOI of the group is of that kind, else None."""
        dois = {k[4:] for i in members for k in self.graph.keys[i] if k.startswith("doi:")}
        if not dois:
            return None
        kinds = {self.nodes.is_preprint(d) for d in dois}
        if kinds == {True}:
            return "preprint"
        return "published" if kinds == {False} else None

    def link(self) -> int:
        """Make every unambiguous link; returns how many were made."""
        graph, fuzzy = self.graph, self.fuzzy
        by_block: dict[tuple[str, str], list[tuple[int, Any]]] = defaultdict(list)
        for root, members in graph.groups.items():
            kind = self._kind(members)
            if kind is None:
                continue
            sig = fuzzy.signature(*fuzzy.row_fields(members))
            if sig is None:
                continue
            by_block[(kind, sig[1])].append((root, sig))
        candidates: dict[int, list[int]] = defaultdict(list)
        for (kind, family), preprints in by_block.items():
            if kind != "preprint":
                continue
            for p_root, (p_key, _, p_year) in preprints:
                for j_root, (j_key, _, j_year) in by_block.get(("published", family), []):
                    if not (graph.has_record[p_root] or graph.has_record[j_root]):
                        continue
                    if not p_year <= j_year <= p_year + MAX_YEARS_TO_PUBLICATION:
                        continue
                    if fuzzy.guards[p_key] != fuzzy.guards[j_key]:
                        continue
                    if p_key == j_key or (fuzzy_ratio(p_key, j_key) >= fuzzy.threshold and same_wording(p_key, j_key)):
                        candidates[p_root].append(j_root)
        partners: dict[int, list[int]] = defaultdict(list)
        for p_root, js in candidates.items():
            for j_root in js:
                partners[j_root].append(p_root)
        links = 0
        for p_root, js in sorted(candidates.items(), key=lambda item: graph.names[item[0]]):
            if len(js) != 1 or len(partners[js[0]]) != 1:
                log.info("merge: %s fits %d journal versions (or one of them fits several preprints); not linked",
                         graph.names[p_root], len(js))
                continue
            root = graph.union(p_root, js[0])
            self.linked.update(graph.groups[root])
            links += 1
        return links


def fuzzy_ratio(a: str, b: str) -> float:
    from rapidfuzz.fuzz import ratio

    return ratio(a, b)
