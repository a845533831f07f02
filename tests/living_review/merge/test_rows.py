"""The row builder on its own: one group of nodes in, its output row out."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from include.living_review.merge.nodes import Nodes
from include.living_review.merge.rows import OUTPUT_COLUMNS, PRECEDENCE, Ranking, RowBuilder
from include.living_review.records import Work

RUN1 = dt.datetime(2025, 1, 6, tzinfo=dt.timezone.utc)
PREPRINT_DOI = "10.1101/2024.03.01.24303000"
ARTICLE_DOI = "10.1186/s12888-024-05000-1"


def rec(source: str, **fields: Any) -> Work:
    fields.setdefault("title", None)
    return Work(sources=[source], **fields)


def prev(work_id: str, first_seen: dt.datetime = RUN1, **fields: Any) -> dict[str, Any]:
    return {"work_id": work_id, "title": None, "first_seen": first_seen, "last_reported": first_seen, **fields}


def build(records: Sequence[Work], previous: Sequence[dict[str, Any]] = ()) -> tuple[RowBuilder, dict[str, Any] | None]:
    """The row of all the nodes as one group (the builder does not care how it was formed)."""
    nodes = Nodes(records, previous)
    builder = RowBuilder(nodes, Ranking(nodes))
    return builder, builder.row(list(range(len(nodes))))


def row_of(records: Sequence[Work], previous: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    row = build(records, previous)[1]
    assert row is not None
    return row


# -- precedence --------------------------------------------------------------------------

def test_each_field_comes_from_its_best_source() -> None:
    row = row_of([rec("crossref", doi="10.1000/a", title="Crossref title", journal="BMC Psychiatry", pages="301-309"),
                  rec("pubmed", pmid="1", doi="10.1000/a", title="PubMed title", journal="BMC psychiatry",
                      pages="301-9", journal_abbrev="BMC Psychiatry")])
    assert PRECEDENCE["title"][0] == "pubmed" and PRECEDENCE["journal"][0] == "crossref"
    assert (row["title"], row["journal"], row["pages"], row["journal_abbrev"]) == (
        "PubMed title", "BMC Psychiatry", "301-309", "BMC Psychiatry")
    assert set(row) == set(OUTPUT_COLUMNS)


def test_a_previous_row_ranks_as_its_best_past_source_behind_a_fresh_record_of_it() -> None:
    old = prev("pmid:1", pmid="1", title="Last run's PubMed title", sources=["pubmed"])
    assert row_of([rec("semanticscholar", pmid="1", title="S2 title")], [old])["title"] == "Last run's PubMed title"
    assert row_of([rec("pubmed", pmid="1", title="New PubMed title")], [old])["title"] == "New PubMed title"


def test_empty_values_do_not_win() -> None:
    row = row_of([rec("pubmed", pmid="1", title="T", authors=[], journal=""),
                  rec("crossref", pmid="1", authors=["Xu R"], journal=None),
                  rec("openalex", pmid="1", journal="Journal")])
    assert row["authors"] == ["Xu R"] and row["journal"] == "Journal"


# -- work_id -----------------------------------------------------------------------------

def test_a_new_group_gets_its_id_from_the_chosen_ids() -> None:
    row = row_of([rec("pubmed", pmid="1"), rec("crossref", doi="https://doi.org/10.1000/ABC")])
    assert row["work_id"] == "doi:10.1000/abc" and row["is_new"] and row["previous_work_id"] is None


def test_a_published_work_id_never_changes() -> None:
    row = row_of([rec("crossref", doi="10.1000/late", pmid="1")], [prev("pmid:1", pmid="1", sources=["pubmed"])])
    assert (row["work_id"], row["doi"], row["is_new"], row["previous_work_id"]) == (
        "pmid:1", "10.1000/late", False, "pmid:1")


def test_the_earliest_previous_row_keeps_its_id_and_absorbs_the_others() -> None:
    row = row_of([rec("pubmed", pmid="1", doi="10.1000/a")],
                 [prev("doi:10.1000/a", RUN1 + dt.timedelta(days=7), doi="10.1000/a"),
                  prev("pmid:1", RUN1, pmid="1"),
                  prev("s2:x", RUN1 + dt.timedelta(days=14), s2_paper_id="x")])
    assert row["work_id"] == "pmid:1"
    assert row["merged_work_ids"] == ["doi:10.1000/a", "s2:x"]


def test_a_group_with_only_a_source_id_is_named_by_it_and_one_without_ids_is_dropped() -> None:
    assert row_of([rec("europepmc", source_ids={"europepmc": "PPR/PPR9"})])["work_id"] == "europepmc:PPR/PPR9"
    assert build([rec("europepmc", title="No id at all")])[1] is None


# -- versions ----------------------------------------------------------------------------

def test_preprint_and_article_are_two_versions_and_the_article_is_cited() -> None:
    preprint = rec("europepmc", doi=PREPRINT_DOI, title="Preprint title", publication_types=["Preprint"],
                   publication_date=dt.date(2024, 3, 1), publication_year=2024, related_dois=[ARTICLE_DOI],
                   abstract="Only the preprint has one")
    article = rec("crossref", doi=ARTICLE_DOI, title="Article title", publication_types=["journal-article"],
                  publication_date=dt.date(2024, 9, 12), publication_year=2024)
    builder, row = build([preprint, article])
    assert row is not None
    assert row["versions"] == [{"id": PREPRINT_DOI, "kind": "preprint", "date": dt.date(2024, 3, 1)},
                               {"id": ARTICLE_DOI, "kind": "published", "date": dt.date(2024, 9, 12)}]
    assert row["doi"] == ARTICLE_DOI and row["work_id"] == f"doi:{ARTICLE_DOI}"
    # Europe PMC outranks Crossref for titles, but the published version's records come first.
    assert row["title"] == "Article title" and row["publication_date"] == dt.date(2024, 9, 12)
    assert row["abstract"] == "Only the preprint has one"
    assert row["publication_types"] == ["journal-article"]
    assert builder.versions_linked == 1


def test_a_preprint_that_gets_published_is_counted_and_keeps_its_id() -> None:
    old = prev(f"doi:{PREPRINT_DOI}", doi=PREPRINT_DOI, sources=["europepmc"],
               versions=[{"id": PREPRINT_DOI, "kind": "preprint", "date": None}])
    builder, row = build([rec("crossref", doi=ARTICLE_DOI, related_dois=[PREPRINT_DOI])], [old])
    assert row is not None
    assert (row["work_id"], row["doi"]) == (f"doi:{PREPRINT_DOI}", ARTICLE_DOI)
    assert builder.preprints_published == 1


def test_preprint_kind_is_sticky_across_an_id_only_record() -> None:
    row = row_of([rec("opencitations", doi="10.1000/paper", omid="br/1"),
                  rec("openalex", doi="10.1000/paper", is_preprint=True)])
    assert row["versions"][0]["kind"] == "preprint"


def test_publication_date_is_the_most_precise_then_earliest_within_a_year() -> None:
    row = row_of([rec("pubmed", pmid="1", publication_year=2021, publication_date=dt.date(2021, 1, 1)),
                  rec("crossref", pmid="1", publication_date=dt.date(2021, 6, 14)),
                  rec("openalex", pmid="1", publication_date=dt.date(2021, 8, 2)),
                  rec("semanticscholar", pmid="1", publication_date=dt.date(2015, 5, 5))])
    assert row["publication_date"] == dt.date(2021, 6, 14)
