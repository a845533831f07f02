"""The fuzzy joiner on its own: which id groups it joins by title, first author and year."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from rapidfuzz.fuzz import ratio

from include.living_review import settings
from include.living_review.merge.fuzzy import FuzzyJoiner, family_key, same_wording, title_key
from include.living_review.merge.idgraph import IdGraph
from include.living_review.merge.nodes import Nodes
from include.living_review.merge.rows import Ranking
from include.living_review.records import Work

TITLE = "Peer support for young adults with psychosis in community mental health services: a randomised trial"
SPELLED = "Peer support for young adults with psychosis in community mental health services: a randomized trial"


def rec(source: str, source_id: str, title: str = TITLE, authors: Sequence[str] = ("Xu R",), year: int = 2021,
        **ids: Any) -> Work:
    return Work(title=title, authors=list(authors), publication_year=year, sources=[source],
                source_ids={source: source_id}, **ids)


def joined(records: Sequence[Work], previous: Sequence[dict[str, Any]] = (), **kw: Any) -> tuple[IdGraph, int]:
    """The id graph after the title join, and the number of joins."""
    nodes = Nodes(records, previous)
    ranking = Ranking(nodes)
    graph = IdGraph.from_nodes(nodes, ranking.tiebreak)
    return graph, FuzzyJoiner(graph, nodes.works, ranking.text_fields, **kw).join()


def score(a: str, b: str) -> float:
    return ratio(title_key(a), title_key(b))


# -- helpers ---------------------------------------------------------------------------

def test_title_key_folds_case_marks_punctuation_and_preprint_decoration() -> None:
    assert title_key("Zürich's  Peer-Support: a Preprint") == "zurich s peer support"


def test_family_key_is_the_folded_last_family_word() -> None:
    assert {family_key(a) for a in ("van der Berg J", "Berg, Jan", "Jan van der Berg", "BERG JM")} == {"berg"}
    assert family_key("Nguyễn T") == "nguyen"


def test_same_wording_allows_spelling_and_stopwords_not_other_words() -> None:
    assert same_wording(title_key(TITLE), title_key(SPELLED))
    assert same_wording("peer support for the carers", "peer support for carers")
    assert not same_wording(title_key(TITLE), title_key(TITLE.replace("young", "older")))


# -- joins -----------------------------------------------------------------------------

def test_a_bare_record_joins_the_identified_group_with_the_same_paper() -> None:
    pubmed = rec("pubmed", "33000001", pmid="33000001", doi="10.1000/a")
    bare_s2 = rec("semanticscholar", "a1" * 20, title=SPELLED, authors=["Xu"], year=2022, s2_paper_id="a1" * 20)
    graph, joins = joined([pubmed, bare_s2])
    assert joins == 1
    assert graph.same_group(0, 1)


def test_two_groups_with_different_dois_are_never_joined() -> None:
    graph, joins = joined([rec("crossref", "10.1000/a", doi="10.1000/a"),
                           rec("crossref", "10.1000/b", doi="10.1000/b"),
                           rec("openalex", "W1", doi="10.1000/c", openalex_id="W1")])
    assert joins == 0
    assert len(graph.groups) == 3


def test_two_records_of_the_same_source_are_never_joined() -> None:
    _, joins = joined([rec("europepmc", "PPR/PPR1"), rec("europepmc", "PPR/PPR2")])
    assert joins == 0


def test_a_near_identical_title_by_another_first_author_is_not_joined() -> None:
    _, joins = joined([rec("pubmed", "1", pmid="1"), rec("semanticscholar", "s", title=SPELLED,
                                                          authors=["Smith J", "Xu R"], s2_paper_id="s")])
    assert joins == 0


def test_years_more_than_one_apart_are_not_joined() -> None:
    graph, joins = joined([rec("pubmed", "1", pmid="1", year=2021),
                           rec("semanticscholar", "s", year=2023, s2_paper_id="s")])
    assert joins == 0
    _, joins = joined([rec("pubmed", "1", pmid="1", year=2021),
                       rec("semanticscholar", "s", year=2020, s2_paper_id="s")])
    assert joins == 1


def test_one_swapped_word_is_another_paper_even_above_the_threshold() -> None:
    other = TITLE.replace("young", "older")
    assert score(TITLE, other) >= settings.FUZZY_TITLE_THRESHOLD
    _, joins = joined([rec("pubmed", "1", pmid="1"), rec("semanticscholar", "s", title=other, s2_paper_id="s")])
    assert joins == 0


def test_an_erratum_repeating_the_title_is_another_work() -> None:
    erratum = "Correction: " + TITLE
    assert score(TITLE, erratum) >= settings.FUZZY_TITLE_THRESHOLD
    _, joins = joined([rec("pubmed", "1", pmid="1"), rec("semanticscholar", "s", title=erratum, s2_paper_id="s")])
    assert joins == 0


def test_short_generic_titles_do_not_join() -> None:
    _, joins = joined([rec("pubmed", "1", title="Peer support", pmid="1"),
                       rec("semanticscholar", "s", title="Peer support", s2_paper_id="s")])
    assert joins == 0


def test_the_threshold_is_a_parameter() -> None:
    records = [rec("pubmed", "1", pmid="1"), rec("semanticscholar", "s", title=SPELLED, s2_paper_id="s")]
    assert joined(records)[1] == 1
    assert joined(records, threshold=100)[1] == 0


def test_a_bare_record_between_two_dois_joins_one_side_only() -> None:
    graph, joins = joined([rec("crossref", "10.1000/a", doi="10.1000/a"),
                           rec("semanticscholar", "s", title=SPELLED, s2_paper_id="s"),
                           rec("openalex", "W1", doi="10.1000/b", openalex_id="W1")])
    assert joins == 1
    assert graph.same_group(0, 1) != graph.same_group(2, 1)
    assert not graph.same_group(0, 2)


def test_two_previous_works_are_not_compared_again() -> None:
    when = dt.datetime(2025, 1, 6, tzinfo=dt.timezone.utc)
    previous = [{"work_id": "pmid:1", "pmid": "1", "title": TITLE, "authors": ["Xu R"], "publication_year": 2021,
                 "sources": ["pubmed"], "first_seen": when},
                {"work_id": "s2:s", "s2_paper_id": "s", "title": SPELLED, "authors": ["Xu R"],
                 "publication_year": 2021, "sources": ["semanticscholar"], "first_seen": when}]
    _, joins = joined([], previous)
    assert joins == 0
    # A record of this run is still joined to a previous work.
    graph, joins = joined([rec("semanticscholar", "s", title=SPELLED, s2_paper_id="s")], previous[:1])
    assert joins == 1 and graph.same_group(0, 1)


def test_a_group_matches_on_the_fields_its_row_will_carry() -> None:
    # Neither id-joined record has a signature of its own (PubMed's lacks authors, OpenAlex's
    # title is another wording); the row takes PubMed's title and OpenAlex's authors.
    pubmed = rec("pubmed", "1", authors=(), pmid="1")
    openalex = rec("openalex", "W1", title="Something else entirely about peer support", pmid="1", openalex_id="W1")
    bare = rec("semanticscholar", "s", title=SPELLED, s2_paper_id="s")
    graph, joins = joined([pubmed, openalex, bare])
    assert joins == 1
    assert graph.same_group(0, 2)


def test_a_joined_group_is_matched_again_on_its_new_row_fields() -> None:
    other = "Digital peer support platforms: usage patterns and outcomes in rural areas"
    records = [rec("pubmed", "1", pmid="1"), rec("semanticscholar", "s", title=SPELLED, s2_paper_id="s"),
               rec("openalex", "W1", title=other, openalex_id="W1")]

    def row_fields(members: list[int]) -> tuple[Any, Any, Any]:
        # Stand-in for the precedence rules: the joined pair's row carries the third title.
        if sorted(members) == [0, 1]:
            return other, ["Xu R"], 2021
        w = records[members[0]]
        return w.title, w.authors, w.publication_year

    graph = IdGraph.from_nodes(Nodes(records), str)
    assert FuzzyJoiner(graph, records, row_fields).join() == 2
    assert len(graph.groups) == 1
