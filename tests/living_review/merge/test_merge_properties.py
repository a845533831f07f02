"""Properties of the merge: order-free, a fixed point on its own output, total."""
from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from include.living_review.merge import merge_works
from include.living_review.records import CITING_WORKS_SCHEMA, Work

SOURCES = ("pubmed", "europepmc", "openalex", "opencitations", "semanticscholar", "crossref")
# Titles chosen to collide: near-duplicates, one-word swaps, and a short generic one.
TITLES = (
    "Peer support for young people with depression in primary care: a randomised controlled trial",
    "Peer support for older people with depression in primary care: a randomised controlled trial",
    "Peer support for men with depression",
    "Peer support for women with depression",
    "Recovery colleges and peer-led education: a scoping review",
    "Peer support",
)
FAMILIES = ("Xu R", "Müller K", "Nguyễn T", "O'Brien JK")
RUN = dt.datetime(2025, 1, 6, tzinfo=dt.timezone.utc)
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _variant(title: str, how: int) -> str | None:
    return (title, title.upper(), title + ".", title + ": a preprint", title.replace("ise", "ize"), None)[how]


@st.composite
def paper_records(draw: Any) -> list[Work]:
    """Records of a few papers, each source seeing a random subset of the ids in its own spelling."""
    n_papers = draw(st.integers(1, 5))
    papers = [dict(title=draw(st.sampled_from(TITLES)), family=draw(st.sampled_from(FAMILIES)),
                   year=draw(st.integers(2019, 2022))) for _ in range(n_papers)]
    records = []
    for _ in range(draw(st.integers(0, 14))):
        k = draw(st.integers(0, n_papers - 1))
        p = papers[k]
        source = draw(st.sampled_from(SOURCES))
        has = draw(st.lists(st.booleans(), min_size=7, max_size=7))
        # Sometimes a second DOI, sometimes the paper's preprint (a preprint server's DOI).
        doi = draw(st.sampled_from([f"10.1000/p{k}"] * 3 + [f"10.1000/p{k}.v2", f"10.1101/2020.01.0{k}"]))
        # Relations to the paper's other versions, now and then to another paper's DOI.
        other = draw(st.integers(0, n_papers - 1))
        related = draw(st.sampled_from([[]] * 4 + [[f"10.1000/p{k}"], [f"10.1101/2020.01.0{k}"],
                                                   [f"10.1000/p{k}.v2", f"10.1000/p{k}"], [f"10.1000/p{other}"]]))
        title = _variant(p["title"], draw(st.integers(0, 5)))
        records.append(Work(
            title=title,
            doi=(doi.upper() if has[6] else doi) if has[0] else None,
            pmid=str(100 + k) if has[1] else None,
            pmcid=f"PMC{500 + k}" if has[2] else None,
            openalex_id=f"W{900 + k}" if has[3] and source == "openalex" else None,
            s2_paper_id=f"{k:040x}" if has[4] and source == "semanticscholar" else None,
            omid=f"br/06{k}" if has[5] and source == "opencitations" else None,
            authors=[p["family"], "Smith J"] if title and draw(st.booleans()) else [],
            publication_year=p["year"] + draw(st.sampled_from([0, 0, 1])) if title else None,
            publication_date=dt.date(p["year"], draw(st.integers(1, 12)), draw(st.integers(1, 28))),
            journal=draw(st.sampled_from([None, "J A", "J B"])),
            publication_types=draw(st.lists(st.sampled_from(["Journal Article", "Review", "Preprint",
                                                             "posted-content"]), max_size=2)),
            is_retracted=draw(st.booleans()),
            abstract=draw(st.sampled_from([None, None, f"Abstract {k}", f"Other abstract {k}"])),
            update_notices=draw(st.lists(st.sampled_from(["retraction", "correction:10.1000/c", "correction"]),
                                         max_size=2)),
            related_dois=related,
            is_preprint=draw(st.booleans()) and draw(st.booleans()),
            sources=[source],
            source_ids={source: f"{source[:2]}{k}{draw(st.sampled_from(['', '', 'b']))}"},
        ))
    return records


def as_previous(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = set(CITING_WORKS_SCHEMA.names)
    return [{**{k: v for k, v in r.items() if k in names}, "source_ids": list(r["source_ids"].items()),
             "first_seen": RUN, "last_reported": RUN} for r in rows]


STABLE = ("is_new", "previous_work_id", "merged_work_ids")


def _fields(rows: list[dict[str, Any]], drop: tuple[str, ...] = STABLE) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


@PROPS
@given(st.data())
def test_order_of_records_and_previous_rows_does_not_matter(data):
    previous = as_previous(merge_works(data.draw(paper_records())).works)
    records = data.draw(paper_records())
    result = merge_works(records, previous)
    shuffled = merge_works(data.draw(st.permutations(records)), data.draw(st.permutations(previous)))
    assert shuffled.works == result.works
    assert shuffled.stats == result.stats


@PROPS
@given(paper_records())
def test_merging_the_output_again_is_a_fixed_point(records):
    first = merge_works(records)
    ids = [r["work_id"] for r in first.works]
    assert len(ids) == len(set(ids))
    again = merge_works(records, as_previous(first.works))
    assert _fields(again.works) == _fields(first.works)
    assert all(r["previous_work_id"] == r["work_id"] and not r["merged_work_ids"] for r in again.works)
    alone = merge_works([], as_previous(first.works))
    assert [r["work_id"] for r in alone.works] == ids
    assert _fields(alone.works, STABLE + ("reported_this_run", "omid")) == _fields(
        first.works, STABLE + ("reported_this_run", "omid"))


@PROPS
@given(paper_records(), paper_records())
def test_previous_works_never_disappear(earlier, records):
    previous = as_previous(merge_works(earlier).works)
    result = merge_works(records, previous)
    accounted = {r["work_id"] for r in result.works} | {m for r in result.works for m in r["merged_work_ids"]}
    assert {p["work_id"] for p in previous} <= accounted
    assert len(result.works) <= len(records) + len(previous)
    assert result.stats["works_out"] == len(result.works)


text = st.one_of(st.none(), st.text(max_size=30), st.sampled_from(["10.1000/x", "123", "PMC1", "W1", "br/061"]))
any_work = st.builds(
    Work, title=text, doi=text, pmid=text, pmcid=text, openalex_id=text, s2_paper_id=text, omid=text,
    title_is_translated=st.booleans(),
    authors=st.lists(st.one_of(st.text(max_size=12), st.sampled_from(FAMILIES)), max_size=3),
    journal=text, publication_year=st.one_of(st.none(), st.integers(-10**6, 10**6)),
    publication_date=st.one_of(st.none(), st.dates()),
    publication_types=st.lists(st.text(max_size=8), max_size=3), is_retracted=st.booleans(),
    sources=st.lists(st.one_of(st.sampled_from(SOURCES), st.text(max_size=5)), max_size=2),
    source_ids=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
    abstract=text, update_notices=st.lists(text, max_size=2),
    related_dois=st.one_of(st.lists(text, max_size=2), text), is_preprint=st.booleans(),
)
version = st.one_of(
    st.fixed_dictionaries({"id": text, "kind": st.one_of(st.none(), st.sampled_from(["preprint", "published"]), text),
                           "date": st.one_of(st.none(), st.dates(), st.text(max_size=10))}),
    text, st.dictionaries(st.text(max_size=4), text, max_size=2))
any_previous = st.fixed_dictionaries({}, optional={
    "work_id": text, "title": text, "doi": text, "pmid": text, "authors": st.one_of(st.none(), st.lists(text)),
    "publication_year": st.one_of(st.none(), st.integers(), st.floats()),
    "publication_date": st.one_of(st.none(), st.dates(), st.datetimes(), st.text(max_size=10)),
    "sources": st.one_of(st.none(), st.lists(st.sampled_from(SOURCES))),
    "source_ids": st.one_of(st.none(), st.dictionaries(st.text(max_size=5), text),
                            st.lists(st.tuples(st.text(max_size=5), text))),
    "first_seen": st.one_of(st.none(), st.datetimes(timezones=st.just(dt.timezone.utc)), st.datetimes()),
    "publication_types": st.one_of(st.none(), st.lists(st.text(max_size=5))),
    "is_retracted": st.one_of(st.none(), st.booleans()),
    "versions": st.one_of(st.none(), text, st.lists(version, max_size=3)),
    "abstract": text, "update_notices": st.one_of(st.none(), st.lists(text, max_size=2)),
    "relevance": st.one_of(st.none(), st.floats(), st.booleans(), text),
    "relevance_reason": text,
})


@settings(max_examples=300, deadline=None)
@given(st.lists(any_work, max_size=12), st.lists(any_previous, max_size=6), st.randoms())
def test_no_input_crashes_it_and_order_still_does_not_matter(records, previous, rnd):
    result = merge_works(records, previous)
    ids = [r["work_id"] for r in result.works]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert len(result.works) <= len(records) + len(previous)
    rnd.shuffle(records)
    rnd.shuffle(previous)
    assert merge_works(records, previous).works == result.works


@PROPS
@given(paper_records(), paper_records())
def test_versions_are_consistent(earlier, records):
    previous = as_previous(merge_works(earlier).works)
    for row in merge_works(records, previous).works:
        versions = row["versions"]
        ids = [v["id"] for v in versions]
        assert len(ids) == len(set(ids))
        assert versions == sorted(versions, key=lambda v: (v["date"] is None, v["date"] or dt.date.min, v["id"]))
        assert (row["doi"] is None) == (not versions) and (row["doi"] is None or row["doi"] in ids)
        if any(v["kind"] == "published" for v in versions):
            assert next(v["kind"] for v in versions if v["id"] == row["doi"]) == "published"
            assert not {"preprint", "posted-content"} & {t.lower() for t in row["publication_types"]}
        old = next((p for p in previous if p["work_id"] == row["previous_work_id"]), None)
        if old is not None:  # versions only grow, and a preprint stays one
            before = {v["id"]: v["kind"] for v in old["versions"]}
            now = {v["id"]: v["kind"] for v in versions}
            assert before.keys() <= now.keys()
            assert all(now[i] == "preprint" for i, kind in before.items() if kind == "preprint")
