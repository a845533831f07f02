"""The Arrow pre-selection of the change feed finds exactly what the row-by-row comparison finds."""
from __future__ import annotations

import datetime as dt
import random

import pyarrow as pa
import pytest

from include.living_review.records import CITING_WORKS_SCHEMA
from include.living_review.snapshot.changes import CHANGE_COLUMNS, changes_between, compute_changes

WEEK1 = dt.datetime(2026, 11, 9, tzinfo=dt.timezone.utc)
WEEK2 = WEEK1 + dt.timedelta(days=7)
SCHEMA = pa.schema([CITING_WORKS_SCHEMA.field(name) for name in CHANGE_COLUMNS])


def row(i: int, rng: random.Random) -> dict:
    return {
        "work_id": f"doi:10.1/{i:05d}", "first_seen": WEEK1, "last_reported": WEEK1,
        "sources": rng.sample(["pubmed", "europepmc", "openalex"], rng.randint(1, 3)),
        "doi": f"10.1/{i:05d}", "pmid": str(1000 + i) if rng.random() < 0.7 else None, "pmcid": None,
        "title": f"Peer support study {i}", "journal": rng.choice(["J A", "J B", None]),
        "publication_year": rng.choice([2024, 2025, None]),
        "publication_date": rng.choice([dt.date(2025, 1, 2), None]),
        "publication_types": rng.choice([["Journal Article"], ["Review", "Journal Article"], [], None]),
        "is_retracted": False, "authors": rng.choice([["Xu R", "Lee K"], ["Roe J"], []]),
        "update_notices": rng.choice([[], ["correction:10.9/c1"]]),
        "versions": rng.choice([[], [{"id": f"10.1/{i:05d}", "kind": "published", "date": dt.date(2025, 1, 2)}],
                                [{"id": f"10.31234/{i}", "kind": "preprint", "date": None}]]),
    }


def perturb(old: dict, i: int, rng: random.Random) -> dict:
    new = {**old, "last_reported": WEEK2}
    pick = rng.randrange(16)
    if pick == 0:
        new["title"] = old["title"] + " (revised)"
    elif pick == 1:
        new["authors"] = [*old["authors"], "New A"]
    elif pick == 2 and old["sources"]:
        new["sources"] = list(reversed(old["sources"]))  # order only: not an update
    elif pick == 3:
        new["is_retracted"] = True
        new["update_notices"] = [*old["update_notices"], "retraction:10.9/r"]
    elif pick == 4:
        new["update_notices"] = [*old["update_notices"], "correction:10.9/c2"]
    elif pick == 5:
        new["versions"] = [{"id": f"10.31234/{i}", "kind": "preprint", "date": None},
                           {"id": f"10.1/{i:05d}", "kind": "published", "date": dt.date(2025, 3, 4)}]
    elif pick == 6:
        new["last_reported"] = WEEK1  # no longer reported this week
    elif pick == 7:
        new["publication_types"] = None if old["publication_types"] == [] else []
    elif pick == 8:
        new["authors"] = ["Xu R", None]  # a null inside a list
    elif pick == 9:
        new["publication_year"] = None if old["publication_year"] else 2026
    elif pick == 10 and old["versions"]:
        new["versions"] = [{**old["versions"][0], "date": dt.date(2020, 1, 1)}]  # a date alone: not an update
    return new


@pytest.mark.parametrize("seed", range(6))
def test_same_changes_as_comparing_every_row(seed):
    rng = random.Random(seed)
    previous = [row(i, rng) for i in range(300)]
    current = [perturb(r, i, rng) for i, r in enumerate(previous) if rng.random() > 0.05]
    current += [{**row(i, rng), "first_seen": WEEK2, "last_reported": WEEK2} for i in range(300, 320)]
    current.sort(key=lambda r: r["work_id"])
    expected = compute_changes(previous, current, WEEK2)

    found = changes_between(pa.Table.from_pylist(previous, schema=SCHEMA),
                            pa.Table.from_pylist(current, schema=SCHEMA), WEEK2)

    assert found == expected
    assert {c["change"] for c in expected} >= {"added", "updated", "no_longer_reported", "retracted", "corrected"}


def test_an_empty_previous_snapshot_makes_every_row_added():
    rng = random.Random(1)
    current = [row(i, rng) for i in range(5)]
    found = changes_between(SCHEMA.empty_table(), pa.Table.from_pylist(current, schema=SCHEMA), WEEK1)
    assert [c["change"] for c in found] == ["added"] * 5
    assert found == compute_changes([], current, WEEK1)
