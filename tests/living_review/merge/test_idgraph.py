"""The id graph on its own: which keys a node has, and which nodes they join."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from include.living_review.merge.idgraph import IdGraph, node_keys
from include.living_review.merge.nodes import Nodes
from include.living_review.records import Work


def rec(source: str, source_id: str | None = None, **fields: Any) -> Work:
    fields.setdefault("title", None)
    return Work(sources=[source], source_ids={source: source_id} if source_id else {}, **fields)


def graph_of(records: list[Work], previous: Sequence[dict[str, Any]] = ()) -> IdGraph:
    return IdGraph.from_nodes(Nodes(records, previous), content_key=str)


def previous_row(**fields: Any) -> dict[str, Any]:
    when = dt.datetime(2025, 1, 6, tzinfo=dt.timezone.utc)
    return {"title": None, "sources": ["crossref"], "first_seen": when, "last_reported": when, **fields}


# -- keys ----------------------------------------------------------------------------

def test_keys_are_normalized_and_include_source_ids() -> None:
    [keys] = node_keys(Nodes([rec("openalex", "W42", doi="https://doi.org/10.1000/ABC", pmid="123",
                                  openalex_id="https://openalex.org/W42")]))
    assert keys == ["doi:10.1000/abc", "pmid:123", "openalex:W42", "openalex:W42"]


def test_related_dois_are_doi_keys_but_not_the_own_doi_twice() -> None:
    [keys] = node_keys(Nodes([rec("crossref", doi="10.1000/article",
                                  related_dois=["10.1101/2024.01.01.1", "https://doi.org/10.1000/ARTICLE"])]))
    assert keys == ["doi:10.1000/article", "doi:10.1101/2024.01.01.1"]


def test_previous_rows_key_on_their_versions_and_work_id() -> None:
    nodes = Nodes([], [previous_row(work_id="pmid:77", doi="10.1000/article",
                                    versions=[{"id": "10.1101/2024.01.01.1", "kind": "preprint", "date": None},
                                              {"id": "10.1000/article", "kind": "published", "date": None}])])
    [keys] = node_keys(nodes)
    assert sorted(keys) == ["doi:10.1000/article", "doi:10.1101/2024.01.01.1", "pmid:77"]


# -- grouping ------------------------------------------------------------------------

def test_union_is_transitive() -> None:
    graph = IdGraph([["doi:a"], ["doi:a", "pmid:1"], ["pmid:1", "s2:x"], ["s2:x"], ["doi:b"]], 5, str)
    assert graph.same_group(0, 3)
    assert not graph.same_group(0, 4)
    assert sorted(map(sorted, graph.groups.values())) == [[0, 1, 2, 3], [4]]
    assert graph.matched_by_id == 4


def test_a_related_doi_joins_preprint_and_article_transitively() -> None:
    preprint = rec("europepmc", "PPR/PPR1", doi="10.1101/2024.01.01.1", related_dois=["10.1000/article"])
    article = rec("crossref", doi="10.1000/ARTICLE", pmid="555")
    pubmed = rec("pubmed", "555", pmid="555")  # knows neither DOI: joins through the article's PMID
    other = rec("crossref", doi="10.1000/other")
    graph = graph_of([preprint, article, pubmed, other])
    assert graph.same_group(0, 2)
    assert not graph.same_group(0, 3)


def test_a_previous_rows_versions_keep_versions_together_without_the_relation() -> None:
    previous = previous_row(work_id="doi:10.1101/2024.01.01.1", doi="10.1000/article",
                            versions=[{"id": "10.1101/2024.01.01.1", "kind": "preprint", "date": None},
                                      {"id": "10.1000/article", "kind": "published", "date": None}])
    preprint_only = rec("europepmc", "PPR/PPR1", doi="10.1101/2024.01.01.1")
    article_only = rec("crossref", doi="10.1000/article")
    graph = graph_of([preprint_only, article_only], [previous])
    assert graph.same_group(0, 1)
    assert graph.same_group(0, 2)


def test_a_previous_work_id_is_a_key() -> None:
    # The snapshot row has no pmid column value, only its work_id says which PMID it was.
    graph = graph_of([rec("pubmed", "9", pmid="9")], [previous_row(work_id="pmid:9", doi="10.1000/x")])
    assert graph.same_group(0, 1)


# -- what the fuzzy joiner relies on -------------------------------------------------

def test_conflict_means_both_groups_carry_an_id_of_the_same_kind() -> None:
    graph = IdGraph([["doi:a"], ["doi:b"], ["pmid:1"], ["s2:x"]], 4, str)
    r = [graph.find(i) for i in range(4)]
    assert graph.conflict(r[0], r[1])
    assert not graph.conflict(r[0], r[2])
    root = graph.union(r[2], r[0])  # the PMID group survives; it gains the DOI kind
    # The joined group now has a DOI and a PMID: it conflicts with the other DOI, not with S2.
    assert graph.conflict(root, r[1])
    assert not graph.conflict(root, r[3])


def test_union_keeps_the_larger_groups_root_and_the_smallest_name() -> None:
    graph = IdGraph([["pmid:2"], ["pmid:2"], ["doi:z"]], 2, str)
    big, small = graph.find(0), graph.find(2)
    root = graph.union(small, big)
    assert root == big
    assert graph.groups == {big: [0, 1, 2]}
    assert graph.names[root] == "doi:z"
    assert graph.find(2) == big


def test_keyless_groups_are_named_by_content_after_every_named_group() -> None:
    graph = IdGraph([[], ["doi:a"]], 2, content_key=lambda i: f"node{i}")
    assert graph.names[graph.find(0)] == "\x7fnode0"
    assert graph.names[graph.find(0)] > graph.names[graph.find(1)]


def test_has_record_tells_groups_of_this_run_from_previous_only_ones() -> None:
    graph = IdGraph([["pmid:1"], ["doi:a"]], 1, str)  # node 1 is a previous row
    record, previous = graph.find(0), graph.find(1)
    assert graph.has_record[record] and not graph.has_record[previous]
    assert graph.has_record[graph.union(previous, record)]
