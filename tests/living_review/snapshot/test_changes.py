"""The change feed against hand-computed results: both implementations, one week and three weeks in a row.

``test_changes_between.py`` checks that the Arrow pre-selection agrees with the
row-by-row comparison; a rule both get wrong passes there. Here every expected row
is written out by hand, and each test runs against :func:`compute_changes` (Python
rows) and :func:`changes_between` (Arrow tables) alike.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from include.living_review.records import CITING_WORKS_SCHEMA
from include.living_review.snapshot import changes as changes_module
from include.living_review.snapshot.changes import CHANGE_COLUMNS, TRACKED_FIELDS, changes_between, compute_changes

UTC = dt.timezone.utc
WEEK1 = dt.datetime(2026, 11, 9, tzinfo=UTC)
WEEK2 = WEEK1 + dt.timedelta(days=7)
WEEK3 = WEEK2 + dt.timedelta(days=7)
SCHEMA = pa.schema([CITING_WORKS_SCHEMA.field(name) for name in CHANGE_COLUMNS])
PREPRINT = {"id": "10.31234/abcd", "kind": "preprint", "date": dt.date(2026, 1, 5)}
PUBLISHED = {"id": "10.1000/pub.1", "kind": "published", "date": dt.date(2026, 6, 1)}
# A correction notice whose id has a colon in it (as many old Wiley DOIs do).
COLON_NOTICE = "correction:10.1002/(sici)1097-4636(199706)35:4<405::aid-jbm1>3.0.co;2-i"

Rows = list[dict[str, Any]]
Feed = Callable[[Rows, Rows, dt.datetime], Rows]


def work(key: str, reported: dt.datetime = WEEK1, **fields: Any) -> dict[str, Any]:
    row = {"work_id": f"doi:10.1000/{key}", "first_seen": WEEK1, "last_reported": reported,
           "sources": ["pubmed", "openalex"], "doi": f"10.1000/{key}", "pmid": "31452104", "pmcid": None,
           "title": f"Peer support study {key}.", "journal": "J Ment Health", "publication_year": 2025,
           "publication_date": dt.date(2025, 3, 1), "publication_types": ["Journal Article", "Review"],
           "is_retracted": False, "authors": ["Xu R", "Lee K"], "update_notices": [], "versions": []}
    row.update(fields)
    return row


def by_rows(previous: Rows, current: Rows, run_ts: dt.datetime) -> Rows:
    return compute_changes(previous, current, run_ts)


def by_tables(previous: Rows, current: Rows, run_ts: dt.datetime) -> Rows:
    return changes_between(pa.Table.from_pylist(previous, schema=SCHEMA),
                           pa.Table.from_pylist(current, schema=SCHEMA), run_ts)


FEEDS = pytest.mark.parametrize("feed", [by_rows, by_tables], ids=["compute_changes", "changes_between"])


def change(row: dict[str, Any], kind: str, fields: list[str] | None = None, detail: Any = None) -> dict[str, Any]:
    return {"work_id": row["work_id"], "change": kind, "changed_fields": fields or [], "title": row["title"],
            "doi": row["doi"], "detail": None if detail is None else json.dumps(detail, default=str)}


@FEEDS
def test_a_new_work_is_added_with_no_detail(feed):
    old, new = work("a", WEEK1), work("b", WEEK2)
    assert feed([old], [{**old, "last_reported": WEEK2}, new], WEEK2) == [change(new, "added")]


@FEEDS
def test_an_empty_previous_snapshot_adds_every_work(feed):
    rows = [work("a", WEEK1), work("b", WEEK1)]
    assert feed([], rows, WEEK1) == [change(rows[0], "added"), change(rows[1], "added")]


@FEEDS
def test_an_empty_current_snapshot_has_no_changes(feed):
    assert feed([work("a", WEEK1, versions=[PREPRINT])], [], WEEK2) == []


@FEEDS
def test_a_work_reported_again_unchanged_is_no_change(feed):
    old = work("a", WEEK1, versions=[PREPRINT])
    assert feed([old], [{**old, "last_reported": WEEK2}], WEEK2) == []


# One tracked field at a time: (field, old value, new value).
EACH_FIELD = [
    ("doi", "10.1000/a", "10.1000/a.v2"),
    ("pmid", "31452104", "31452105"),
    ("pmcid", None, "PMC2883744"),
    ("title", "Peer support study a.", "Peer support study a (revised)."),
    ("journal", "J Ment Health", None),
    ("publication_year", 2025, 2026),
    ("publication_date", dt.date(2025, 3, 1), dt.date(2025, 3, 2)),
    ("publication_types", ["Journal Article", "Review"], ["Journal Article"]),
    ("is_retracted", False, None),
    ("authors", ["Xu R", "Lee K"], ["Xu R", "Lee K", "Roe J"]),
    ("update_notices", [], ["expression_of_concern:10.9/e"]),
    ("versions", [PREPRINT], [{**PREPRINT, "id": "10.31234/efgh"}]),
]


def test_every_tracked_field_has_a_case():
    assert sorted(name for name, _, _ in EACH_FIELD) == sorted(TRACKED_FIELDS)


@FEEDS
@pytest.mark.parametrize(("field", "before", "after"), EACH_FIELD, ids=[f for f, _, _ in EACH_FIELD])
def test_a_change_to_any_tracked_field_is_an_update_naming_it_with_both_values(feed, field, before, after):
    old = work("a", WEEK1, **{field: before})
    new = {**old, field: after, "last_reported": WEEK2}
    assert feed([old], [new], WEEK2) == [change(new, "updated", [field], {field: [before, after]})]


@FEEDS
def test_an_update_lists_every_changed_field_in_the_tracked_order(feed):
    old = work("a", WEEK1)
    new = {**old, "title": "New title.", "doi": "10.1000/a.v2", "authors": ["Lee K", "Xu R"], "last_reported": WEEK2}
    assert feed([old], [new], WEEK2) == [change(new, "updated", ["doi", "title", "authors"], {
        "doi": ["10.1000/a", "10.1000/a.v2"], "title": ["Peer support study a.", "New title."],
        "authors": [["Xu R", "Lee K"], ["Lee K", "Xu R"]]})]  # the order of authors means something


@FEEDS
def test_lists_whose_order_means_nothing_are_compared_as_sets(feed):
    old = work("a", WEEK1, update_notices=["correction:10.9/c1", "expression_of_concern:10.9/e"])
    new = {**old, "publication_types": ["Review", "Journal Article"], "sources": ["openalex", "pubmed"],
           "update_notices": ["expression_of_concern:10.9/e", "correction:10.9/c1"], "last_reported": WEEK2}
    assert feed([old], [new], WEEK2) == []


@FEEDS
def test_a_version_changing_kind_is_an_update(feed):
    old = work("a", WEEK1, versions=[PREPRINT])
    new = {**old, "versions": [{**PREPRINT, "kind": "published"}], "last_reported": WEEK2}
    assert feed([old], [new], WEEK2) == [
        change(new, "updated", ["versions"], {"versions": [[PREPRINT], [{**PREPRINT, "kind": "published"}]]}),
        change(new, "preprint_published", detail={"versions": [{**PREPRINT, "kind": "published"}]}),
    ]


@FEEDS
def test_a_versions_date_firming_up_or_its_order_is_no_update(feed):
    old = work("a", WEEK1, versions=[PREPRINT, {**PUBLISHED, "date": None}])
    new = {**old, "versions": [{**PUBLISHED, "date": dt.date(2026, 6, 3)}, PREPRINT], "last_reported": WEEK2}
    assert feed([old], [new], WEEK2) == []


def test_rows_given_as_tuples_compare_by_value():
    old = work("a", WEEK1, authors=("Xu R", "Lee K"), publication_types=("Review", "Journal Article"))
    new = {**old, "authors": ["Xu R", "Lee K"], "publication_types": ["Journal Article", "Review"],
           "last_reported": WEEK2}
    assert compute_changes([old], [new], WEEK2) == []
    moved = {**new, "authors": ("Lee K", "Xu R")}
    assert compute_changes([old], [moved], WEEK2) == [
        change(moved, "updated", ["authors"], {"authors": [["Xu R", "Lee K"], ["Lee K", "Xu R"]]})]


@FEEDS
def test_a_retraction_is_an_update_and_a_retracted_event_with_its_notices(feed):
    old = work("a", WEEK1, update_notices=["correction:10.9/c1"])
    notices = ["correction:10.9/c1", "retraction:10.9/r2", "retraction:10.9/r1"]
    new = {**old, "is_retracted": True, "update_notices": notices, "last_reported": WEEK2}
    assert feed([old], [new], WEEK2) == [
        change(new, "updated", ["is_retracted", "update_notices"],
               {"is_retracted": [False, True], "update_notices": [["correction:10.9/c1"], notices]}),
        change(new, "retracted", detail={"notices": ["retraction:10.9/r1", "retraction:10.9/r2"]}),
    ]


@FEEDS
def test_a_new_correction_is_an_event_naming_only_the_new_notices(feed):
    old = work("a", WEEK1, update_notices=["correction:10.9/c1", "retraction:10.9/r1"], is_retracted=True)
    notices = [*old["update_notices"], "correction:10.9/c2", COLON_NOTICE]
    new = {**old, "update_notices": notices, "last_reported": WEEK2}
    assert feed([old], [new], WEEK2) == [
        change(new, "updated", ["update_notices"], {"update_notices": [old["update_notices"], notices]}),
        change(new, "corrected", detail={"notices": sorted(["correction:10.9/c2", COLON_NOTICE])}),
    ]


@FEEDS
def test_a_preprint_gaining_its_published_version_is_an_event(feed):
    old = work("a", WEEK1, doi="10.31234/abcd", versions=[PREPRINT])
    new = {**old, "versions": [PREPRINT, PUBLISHED], "last_reported": WEEK2}
    assert feed([old], [new], WEEK2) == [
        change(new, "updated", ["versions"], {"versions": [[PREPRINT], [PREPRINT, PUBLISHED]]}),
        change(new, "preprint_published", detail={"versions": [PREPRINT, PUBLISHED]}),
    ]


@FEEDS
def test_without_versions_a_preprint_servers_doi_tells_the_kind(feed):
    """Snapshots written before ``versions`` existed: a bioRxiv DOI giving way to a journal's is a publication."""
    old = work("a", WEEK1, doi="10.1101/2025.01.02.123456", versions=None)
    published = {**old, "doi": "10.1000/pub.1", "last_reported": WEEK2}
    assert feed([old], [published], WEEK2) == [
        change(published, "updated", ["doi"], {"doi": ["10.1101/2025.01.02.123456", "10.1000/pub.1"]}),
        change(published, "preprint_published", detail={"versions": None}),
    ]
    # a journal article's DOI changing is no publication, nor is a preprint moving to another server
    journal = work("b", WEEK1, versions=None)
    other = {**journal, "doi": "10.1000/b.v2", "last_reported": WEEK2}
    server = {**old, "doi": "10.31234/abcd", "last_reported": WEEK2}
    assert [c["change"] for c in feed([journal], [other], WEEK2)] == ["updated"]
    assert [c["change"] for c in feed([old], [server], WEEK2)] == ["updated"]


@FEEDS
def test_a_published_version_alone_or_a_new_published_version_is_not_a_publication(feed):
    journal = work("a", WEEK1, versions=[PUBLISHED])
    both = {**journal, "versions": [PUBLISHED, {**PUBLISHED, "id": "10.1000/pub.2"}], "last_reported": WEEK2}
    assert [c["change"] for c in feed([journal], [both], WEEK2)] == ["updated"]
    mixed = work("b", WEEK1, versions=[PREPRINT, PUBLISHED])
    more = {**mixed, "versions": [PREPRINT, PUBLISHED, {**PUBLISHED, "id": "10.1000/pub.2"}], "last_reported": WEEK2}
    assert [c["change"] for c in feed([mixed], [more], WEEK2)] == ["updated"]


@FEEDS
def test_a_work_no_source_reports_any_more_is_no_longer_reported_once(feed):
    kept, gone = work("a", WEEK1), work("b", WEEK1)
    current = [{**kept, "last_reported": WEEK2}, gone]  # the snapshot keeps it, with its old last_reported
    assert feed([kept, gone], current, WEEK2) == [
        change(gone, "no_longer_reported", detail={"last_reported": str(WEEK1)})]


def test_the_arrow_pre_selection_turns_only_rows_that_may_change_into_python_rows(monkeypatch):
    """Week to week most works are unchanged: those must never become Python rows."""
    seen: list[tuple[Rows, Rows]] = []

    def spy(previous, current, run_ts, prev_run):
        seen.append((previous, current))
        return compute_changes(previous, current, run_ts, prev_run)

    monkeypatch.setattr(changes_module, "compute_changes", spy)
    unchanged = [work(f"same{i}", WEEK1, versions=[PREPRINT], publication_types=["Review", "Journal Article"])
                 for i in range(3)] + [work("nulls", WEEK1, publication_types=None, update_notices=None, authors=None)]
    retitled, gone, old_gone = work("retitled", WEEK1), work("gone", WEEK1), work("old-gone", WEEK1 - dt.timedelta(7))
    never = work("never", None)  # never reported by a citing source (merge leaves last_reported empty)
    previous = [*unchanged, retitled, gone, old_gone, never]
    current = [*({**r, "last_reported": WEEK2} for r in unchanged), {**retitled, "title": "New.", "last_reported": WEEK2},
               gone, old_gone, never, work("new", WEEK2)]
    found = by_tables(previous, current, WEEK2)
    assert [(c["work_id"], c["change"]) for c in found] == [
        ("doi:10.1000/retitled", "updated"), ("doi:10.1000/gone", "no_longer_reported"), ("doi:10.1000/new", "added")]
    ((olds, rows),) = seen
    assert [r["work_id"] for r in rows] == ["doi:10.1000/retitled", "doi:10.1000/gone", "doi:10.1000/new"]
    assert [r["work_id"] for r in olds] == ["doi:10.1000/retitled", "doi:10.1000/gone"]


@FEEDS
def test_three_weekly_snapshots_announce_each_change_once(feed):
    """Week 1 -> 2: a retraction, a publication, a work dropped by its sources, an added work.
    Week 2 -> 3: nothing of that is announced again; only what is new in week 3 is."""
    retracted, preprint, dropped, steady = work("r", WEEK1), work("p", WEEK1, versions=[PREPRINT]), \
        work("d", WEEK1), work("s", WEEK1)
    week1 = [retracted, preprint, dropped, steady]

    week2 = [{**retracted, "is_retracted": True, "update_notices": ["retraction:10.9/r"], "last_reported": WEEK2},
             {**preprint, "versions": [PREPRINT, PUBLISHED], "last_reported": WEEK2},
             dropped,  # no source reported it in week 2
             {**steady, "last_reported": WEEK2},
             work("n", WEEK2, first_seen=WEEK2)]
    assert feed(week1, week2, WEEK2) == [
        change(week2[0], "updated", ["is_retracted", "update_notices"],
               {"is_retracted": [False, True], "update_notices": [[], ["retraction:10.9/r"]]}),
        change(week2[0], "retracted", detail={"notices": ["retraction:10.9/r"]}),
        change(week2[1], "updated", ["versions"], {"versions": [[PREPRINT], [PREPRINT, PUBLISHED]]}),
        change(week2[1], "preprint_published", detail={"versions": [PREPRINT, PUBLISHED]}),
        change(dropped, "no_longer_reported", detail={"last_reported": str(WEEK1)}),
        change(week2[4], "added"),
    ]

    # Week 3: the same facts reported again (the published version's date firms up), the
    # dropped work still not reported, and one new correction.
    week3 = [{**week2[0], "last_reported": WEEK3},
             {**week2[1], "versions": [PREPRINT, {**PUBLISHED, "date": dt.date(2026, 6, 2)}], "last_reported": WEEK3},
             {**dropped, "title": "Peer support study d (corrected)."},
             {**week2[3], "update_notices": ["correction:10.9/c1"], "last_reported": WEEK3},
             {**week2[4], "last_reported": WEEK3}]
    assert feed(week2, week3, WEEK3) == [
        change(week3[2], "updated", ["title"], {"title": ["Peer support study d.", "Peer support study d (corrected)."]}),
        change(week3[3], "updated", ["update_notices"], {"update_notices": [[], ["correction:10.9/c1"]]}),
        change(week3[3], "corrected", detail={"notices": ["correction:10.9/c1"]}),
    ]


@FEEDS
def test_a_work_dropped_weeks_ago_and_edited_since_is_not_announced_as_dropped_again(feed):
    steady, dropped = work("s", WEEK2), work("d", WEEK1)  # dropped: last reported in week 1
    current = [{**steady, "last_reported": WEEK3}, {**dropped, "journal": "J Psychiatr Res"}]
    assert feed([steady, dropped], current, WEEK3) == [
        change(current[1], "updated", ["journal"], {"journal": ["J Ment Health", "J Psychiatr Res"]})]
