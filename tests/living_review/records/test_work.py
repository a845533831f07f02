"""Staged tables: Works round-trip through Arrow, and text Arrow cannot store is scrubbed, not lost."""
from __future__ import annotations

import datetime as dt

from include.living_review.records import STAGED_SCHEMA, Work, table_to_works, works_to_table


def test_works_round_trip_through_the_staged_table():
    works = [
        Work(title="A trial.", doi="10.1/a", pmid="1", authors=["Xu R", "Lee K"], publication_year=2024,
             publication_date=dt.date(2024, 3, 1), publication_types=["Journal Article"], sources=["pubmed"],
             source_ids={"pubmed": "1"}, update_notices=["retraction:10.1/r"], related_dois=["10.2/p"],
             is_preprint=True, is_retracted=True, raw='{"pmid": "1"}'),
        Work(title=None, omid="br/5", sources=["opencitations"]),
    ]
    table = works_to_table(works)
    assert table.schema == STAGED_SCHEMA
    assert table_to_works(table) == works


def test_a_column_the_table_lacks_takes_the_fields_default():
    table = works_to_table([Work(title="T", raw="{}")]).drop_columns(["raw", "related_dois"])
    (work,) = table_to_works(table)
    assert work.raw is None and work.related_dois == []


def test_a_lone_surrogate_is_replaced_and_the_record_kept():
    table = works_to_table([Work(title="Half \ud83d an emoji", authors=["\ud83d"], source_ids={"x": "y\ud83d"})])
    row = table.to_pylist()[0]
    assert row["title"] == "Half ? an emoji" and row["authors"] == ["?"] and row["source_ids"] == [("x", "y?")]
