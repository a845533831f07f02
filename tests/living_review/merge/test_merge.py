"""The merge: id matching, title fallback, work_id stability and field precedence."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pytest
from rapidfuzz.fuzz import ratio

from include.living_review import settings
from include.living_review.merge import OUTPUT_COLUMNS, family_key, merge_works, same_wording, title_key
from include.living_review.records import CITING_WORKS_SCHEMA, Work

RUN1 = dt.datetime(2025, 1, 6, tzinfo=dt.timezone.utc)
RUN2 = dt.datetime(2025, 1, 13, tzinfo=dt.timezone.utc)


def rec(source: str, source_id: str | None = None, **fields: Any) -> Work:
    """A record as a source mapper would emit it (one source, its own id)."""
    fields.setdefault("title", None)
    sid = source_id or fields.get("pmid") or fields.get("doi") or fields.get("s2_paper_id") or fields.get("omid")
    return Work(sources=[source], source_ids={source: sid} if sid else {}, **fields)


def as_previous(rows: list[dict[str, Any]], first_seen: dt.datetime = RUN1) -> list[dict[str, Any]]:
    """Merged rows as the published snapshot holds them (source_ids as a list of pairs)."""
    names = set(CITING_WORKS_SCHEMA.names)
    out = []
    for row in rows:
        snap = {k: v for k, v in row.items() if k in names}
        snap["source_ids"] = list(row["source_ids"].items())
        snap["first_seen"] = first_seen
        snap["last_reported"] = first_seen
        out.append(snap)
    return out


def by_id(result: Any) -> dict[str, dict[str, Any]]:
    return {row["work_id"]: row for row in result.works}


# -- the 10-paper fixture ----------------------------------------------------------

PAPERS = [
    dict(title="Peer support workers in community mental health teams: a qualitative study",
         authors=["Xu R", "Smith J"], year=2021, doi="10.2196/20001", pmid="33000001", pmcid="PMC8000001",
         openalex="W4300000001", s2="a1" * 20, omid="br/0610000001"),
    dict(title="Online peer support for young people with depression: randomised controlled trial",
         authors=["Müller K", "Ødegård A"], year=2022, doi="10.1186/s12888-022-00002", pmid="35000002",
         pmcid="PMC9000002", openalex="W4300000002", s2="b2" * 20, omid="br/0610000002"),
    dict(title="Recovery colleges and peer-led education: a scoping review",
         authors=["García López M"], year=2020, doi="10.1016/j.psychres.2020.00003", pmid=None, pmcid=None,
         openalex="W4300000003", s2="c3" * 20, omid="br/0610000003"),
    dict(title="Lived experience workforce development in Zürich and São Paulo",
         authors=["O'Brien JK"], year=2023, doi="10.3389/fpsyt.2023.00004", pmid="37000004",
         pmcid="PMC10000004", openalex="W4300000004", s2="d4" * 20, omid="br/0610000004"),
    dict(title="Stigma reduction through peer contact: a cluster randomized trial",
         authors=["Nguyễn T", "Cohen L"], year=2021, doi="10.1001/jamapsychiatry.2021.00005", pmid="34000005",
         pmcid=None, openalex="W4300000005", s2="e5" * 20, omid="br/0610000005"),
    dict(title="Peer support in inpatient psychiatric wards: a mixed methods evaluation",
         authors=["Kowalski P"], year=2019, doi=None, pmid="31000006", pmcid="PMC6000006",
         openalex="W4300000006", s2="f6" * 20, omid="br/0610000006"),
    dict(title="Digital peer support platforms: usage patterns and outcomes",
         authors=["李 X", "Smith J"], year=2024, doi="10.2196/50007", pmid=None, pmcid=None,
         openalex="W4300000007", s2="a7" * 20, omid="br/0610000007"),
    dict(title="Peer mentoring for university students with anxiety: a pilot study",
         authors=["Cohen L"], year=2022, doi="10.1080/07448481.2022.00008", pmid=None, pmcid=None,
         openalex=None, s2="b8" * 20, omid=None),
    dict(title="Peer support for carers of people with psychosis: a preprint analysis",
         authors=["Smith J"], year=2024, doi="10.1101/2024.01.00009", pmid=None, pmcid=None,
         openalex=None, s2=None, omid=None),
    dict(title="Effectiveness of peer navigation for homeless adults with serious mental illness",
         authors=["Ødegård A", "Xu R"], year=2020, doi=None, pmid="32000010", pmcid=None,
         openalex=None, s2="c0" * 20, omid=None),
]


def meta(p: dict[str, Any], **over: Any) -> dict[str, Any]:
    fields = dict(title=p["title"], authors=list(p["authors"]), publication_year=p["year"])
    fields.update(over)
    return fields


def fixture_records() -> list[Work]:
    p = PAPERS
    journal = dict(journal="J Psych", journal_abbrev="J Psych")
    pubmed = lambda q, **kw: rec("pubmed", **{**meta(q, **journal), **kw})  # noqa: E731
    epmc = lambda q, sid, **kw: rec("europepmc", sid, **{**meta(q), **kw})  # noqa: E731
    openalex = lambda q, **kw: rec("openalex", q["openalex"], **{**meta(q), **kw})  # noqa: E731
    s2 = lambda q, **kw: rec("semanticscholar", q["s2"], **{**meta(q), **kw})  # noqa: E731
    oc = lambda q, **kw: rec("opencitations", **kw)  # noqa: E731
    return [
        # P0 everywhere, each source with its own subset and spelling of the ids
        pubmed(p[0], pmid=p[0]["pmid"], pmcid=p[0]["pmcid"], doi=p[0]["doi"]),
        epmc(p[0], f"MED/{p[0]['pmid']}", pmid=p[0]["pmid"], doi=p[0]["doi"].upper()),
        openalex(p[0], doi="https://doi.org/" + p[0]["doi"], openalex_id=p[0]["openalex"], pmid=p[0]["pmid"]),
        oc(p[0], doi=p[0]["doi"]),
        s2(p[0], doi=p[0]["doi"].upper(), pmcid=p[0]["pmcid"][3:], s2_paper_id=p[0]["s2"],
           authors=["Ruth Xu", "John Smith"]),
        # P1: PubMed, Europe PMC, S2 (S2 spells the title in title case)
        pubmed(p[1], pmid=p[1]["pmid"], pmcid=p[1]["pmcid"], doi=p[1]["doi"]),
        epmc(p[1], f"MED/{p[1]['pmid']}", pmid=p[1]["pmid"], doi=p[1]["doi"].upper()),
        s2(p[1], doi=p[1]["doi"].upper(), pmcid=p[1]["pmcid"][3:], s2_paper_id=p[1]["s2"],
           title=p[1]["title"].title() + "."),
        # P2: no PubMed id at all; OpenAlex URL-shaped DOI, OpenCitations DOI only
        openalex(p[2], doi="https://doi.org/" + p[2]["doi"], openalex_id=p[2]["openalex"]),
        oc(p[2], doi=p[2]["doi"], omid=p[2]["omid"]),
        s2(p[2], doi=p[2]["doi"].upper(), s2_paper_id=p[2]["s2"]),
        # P3: S2 carries a preprint-like title variant but shares the DOI
        pubmed(p[3], pmid=p[3]["pmid"], pmcid=p[3]["pmcid"], doi=p[3]["doi"]),
        s2(p[3], doi=p[3]["doi"], s2_paper_id=p[3]["s2"], title=p[3]["title"] + ": a preprint"),
        # P4: transitive: Europe PMC pmid+doi, OpenCitations pmid+omid, OpenAlex W+pmid only
        epmc(p[4], f"MED/{p[4]['pmid']}", pmid=p[4]["pmid"], doi=p[4]["doi"].upper()),
        oc(p[4], pmid=p[4]["pmid"], omid=p[4]["omid"]),
        openalex(p[4], openalex_id=p[4]["openalex"], pmid=p[4]["pmid"]),
        # P5: no DOI; S2 knows it only by its PubMed Central number
        pubmed(p[5], pmid=p[5]["pmid"], pmcid=p[5]["pmcid"]),
        s2(p[5], pmcid=p[5]["pmcid"][3:], s2_paper_id=p[5]["s2"]),
        # P6: OpenCitations doi+omid, OpenAlex by URL DOI
        oc(p[6], doi=p[6]["doi"], omid=p[6]["omid"]),
        openalex(p[6], doi="https://doi.org/" + p[6]["doi"].upper(), openalex_id=p[6]["openalex"]),
        # P7 only in S2, P8 (a preprint) only in Europe PMC
        s2(p[7], doi=p[7]["doi"], s2_paper_id=p[7]["s2"]),
        epmc(p[8], "PPR/PPR700009", doi=p[8]["doi"]),
        # P9 shares no id between its sources: only title + year + first author join them
        pubmed(p[9], pmid=p[9]["pmid"]),
        s2(p[9], s2_paper_id=p[9]["s2"], title=p[9]["title"].upper() + ".", authors=["Anne Ødegård", "R Xu"]),
    ]


EXPECTED_SOURCES = {
    "doi:10.2196/20001": ["europepmc", "openalex", "opencitations", "pubmed", "semanticscholar"],
    "doi:10.1186/s12888-022-00002": ["europepmc", "pubmed", "semanticscholar"],
    "doi:10.1016/j.psychres.2020.00003": ["openalex", "opencitations", "semanticscholar"],
    "doi:10.3389/fpsyt.2023.00004": ["pubmed", "semanticscholar"],
    "doi:10.1001/jamapsychiatry.2021.00005": ["europepmc", "openalex", "opencitations"],
    "pmid:31000006": ["pubmed", "semanticscholar"],
    "doi:10.2196/50007": ["openalex", "opencitations"],
    "doi:10.1080/07448481.2022.00008": ["semanticscholar"],
    "doi:10.1101/2024.01.00009": ["europepmc"],
    "pmid:32000010": ["pubmed", "semanticscholar"],
}


def test_fixture_merges_to_exactly_ten_works_with_their_sources():
    result = merge_works(fixture_records())
    assert {w: r["sources"] for w, r in by_id(result).items()} == EXPECTED_SOURCES
    assert [r["work_id"] for r in result.works] == sorted(EXPECTED_SOURCES)
    stats = result.stats
    assert stats["records_in"] == 24 and stats["works_out"] == 10
    assert stats["matched_by_fuzzy"] == 1  # P9 only
    assert stats["unique_to_source"] == {"europepmc": 1, "openalex": 0, "opencitations": 0, "pubmed": 0,
                                         "semanticscholar": 1}
    assert stats["works_per_source"]["semanticscholar"] == 7
    assert stats["records_per_source"]["opencitations"] == 4


def test_fixture_rows_carry_normalized_ids_and_the_preferred_title():
    works = by_id(merge_works(fixture_records()))
    p0 = works["doi:10.2196/20001"]
    assert (p0["doi"], p0["pmid"], p0["pmcid"], p0["openalex_id"], p0["s2_paper_id"]) == (
        "10.2196/20001", "33000001", "PMC8000001", "W4300000001", "a1" * 20)
    assert p0["authors"] == ["Xu R", "Smith J"]  # PubMed's form beats S2's display names
    assert p0["source_ids"] == {"europepmc": "MED/33000001", "openalex": "W4300000001", "opencitations":
                                "10.2196/20001", "pubmed": "33000001", "semanticscholar": "a1" * 20}
    assert works["doi:10.3389/fpsyt.2023.00004"]["title"] == PAPERS[3]["title"]  # not the preprint variant
    assert works["doi:10.1186/s12888-022-00002"]["title"] == PAPERS[1]["title"]
    p9 = works["pmid:32000010"]
    assert (p9["pmid"], p9["s2_paper_id"], p9["title"]) == ("32000010", "c0" * 20, PAPERS[9]["title"])
    assert works["doi:10.1001/jamapsychiatry.2021.00005"]["omid"] == "br/0610000005"
    assert all(r["is_new"] and r["reported_this_run"] and r["previous_work_id"] is None for r in works.values())


def test_rows_have_the_output_columns_and_fit_the_snapshot_schema():
    result = merge_works(fixture_records())
    assert all(tuple(row) == OUTPUT_COLUMNS for row in result.works)
    rows = [{**row, "first_seen": RUN1, "last_reported": RUN1} for row in result.works]
    table = pa.Table.from_pylist(rows, schema=CITING_WORKS_SCHEMA)
    assert table.num_rows == 10


def test_order_of_records_does_not_matter():
    records = fixture_records()
    assert merge_works(records).works == merge_works(records[::-1]).works


# -- id matching -------------------------------------------------------------------

def test_ids_match_transitively():
    records = [
        rec("crossref", title="A", doi="10.1000/a1"),
        rec("europepmc", "MED/11", doi="10.1000/A1", pmid="11"),
        rec("pubmed", pmid="11", pmcid="PMC22"),
        rec("semanticscholar", "s2x", pmcid="22", s2_paper_id="s2x"),
        rec("openalex", "W33", openalex_id="https://openalex.org/W33", s2_paper_id="s2x"),
        rec("opencitations", "br/0601", openalex_id="W33", omid="omid:br/0601"),
    ]
    result = merge_works(records)
    assert [r["work_id"] for r in result.works] == ["doi:10.1000/a1"]
    row = result.works[0]
    assert (row["pmid"], row["pmcid"], row["openalex_id"], row["omid"]) == ("11", "PMC22", "W33", "br/0601")
    assert result.stats["matched_by_id"] == 6


def test_new_work_ids_follow_the_id_ladder():
    records = [
        rec("pubmed", pmid="5", pmcid="PMC5"),
        rec("europepmc", "PMC/PMC6", pmcid="PMC6"),
        rec("openalex", "W7", openalex_id="W7"),
        rec("semanticscholar", "s2z", s2_paper_id="s2z"),
        rec("opencitations", "br/069", omid="br/069"),
        rec("europepmc", "PPR/PPR1"),
    ]
    assert [r["work_id"] for r in merge_works(records).works] == [
        "europepmc:PPR/PPR1", "oci:br/069", "openalex:W7", "pmcid:PMC6", "pmid:5", "s2:s2z"]


def test_record_without_any_id_or_match_is_dropped_and_counted():
    result = merge_works([Work(title="An orphan record with no identifier at all", authors=["Xu R"],
                               publication_year=2020, sources=["crossref"])])
    assert result.works == [] and result.stats["records_dropped_no_id"] == 1


# -- work_id stability and the previous snapshot -----------------------------------

def test_work_id_stays_when_a_doi_appears_later():
    title = "Peer support in mental health: a realist evaluation of three services"
    first = merge_works([rec("pubmed", pmid="36000001", title=title, authors=["Xu R"], publication_year=2022)])
    assert [r["work_id"] for r in first.works] == ["pmid:36000001"]
    second = merge_works([
        rec("pubmed", pmid="36000001"),  # id-only: PubMed skips metadata for known works
        rec("crossref", doi="10.1000/realist", title=title, authors=["Xu R"], publication_year=2022),
        rec("europepmc", "MED/36000001", pmid="36000001", doi="10.1000/REALIST"),
    ], as_previous(first.works))
    [row] = second.works
    assert row["work_id"] == "pmid:36000001" and row["previous_work_id"] == "pmid:36000001"
    assert row["doi"] == "10.1000/realist" and not row["is_new"]
    third = merge_works([rec("crossref", doi="10.1000/realist")], as_previous(second.works, RUN2))
    assert [r["work_id"] for r in third.works] == ["pmid:36000001"]


def test_previous_works_not_reported_are_kept():
    first = merge_works(fixture_records())
    second = merge_works([r for r in fixture_records() if r.sources == ["pubmed"]], as_previous(first.works))
    assert [r["work_id"] for r in second.works] == [r["work_id"] for r in first.works]
    gone = by_id(second)["doi:10.2196/50007"]
    assert not gone["reported_this_run"] and gone["sources"] == ["openalex", "opencitations"]
    assert gone["title"] == PAPERS[6]["title"] and gone["previous_work_id"] == "doi:10.2196/50007"
    kept = by_id(second)["doi:10.2196/20001"]
    assert kept["reported_this_run"] and kept["sources"] == ["pubmed"]
    assert second.stats["works_previous_only"] == 5 and second.stats["works_new"] == 0


def test_id_only_records_take_metadata_from_the_previous_row():
    full = rec("pubmed", pmid="30000001", title="Peer support and loneliness in older adults: a cohort study",
               authors=["Cohen L"], publication_year=2019, journal="Aging & Mental Health",
               journal_abbrev="Aging Ment Health",
               publication_date=dt.date(2019, 3, 14), volume="23", issue="3", pages="301-9",
               publication_types=["Journal Article"], language="eng")
    first = merge_works([full])
    second = merge_works([rec("pubmed", pmid="30000001"), rec("opencitations", "br/065", pmid="30000001")],
                         as_previous(first.works))
    [row] = second.works
    for name in ("title", "authors", "journal", "journal_abbrev", "publication_year", "publication_date",
                 "volume", "issue", "pages", "publication_types", "language"):
        assert row[name] == first.works[0][name], name
    assert row["sources"] == ["opencitations", "pubmed"]


def test_previous_row_stands_in_for_its_sources():
    """PubMed's title from last run beats an S2 title this run, when PubMed only sends the id."""
    first = merge_works([rec("pubmed", pmid="30000002", doi="10.1000/stand",
                             title="Peer workers and coercion: a national survey", authors=["Xu R"],
                             publication_year=2020)])
    second = merge_works([
        rec("pubmed", pmid="30000002"),
        rec("semanticscholar", "s2q", doi="10.1000/STAND", s2_paper_id="s2q",
            title="Peer Workers And Coercion - A National Survey", authors=["R. Xu"], publication_year=2020),
    ], as_previous(first.works))
    [row] = second.works
    assert row["title"] == "Peer workers and coercion: a national survey" and row["authors"] == ["Xu R"]
    assert row["s2_paper_id"] == "s2q"


def test_two_previous_works_found_to_be_one_keep_the_earliest():
    old = merge_works([rec("pubmed", pmid="30000003", title="Peer support A", authors=["Xu R"])]).works
    newer = merge_works([rec("crossref", doi="10.1000/same", title="Peer support A", authors=["Xu R"])]).works
    previous = as_previous(old, RUN1) + as_previous(newer, RUN2)
    result = merge_works([rec("europepmc", "MED/30000003", pmid="30000003", doi="10.1000/same")], previous)
    [row] = result.works
    assert row["work_id"] == "pmid:30000003" and row["merged_work_ids"] == ["doi:10.1000/same"]
    assert result.stats["previous_merged"] == [["pmid:30000003", "doi:10.1000/same"]]
    # With the first_seen order reversed the DOI row is the elder and wins.
    previous = as_previous(old, RUN2) + as_previous(newer, RUN1)
    assert merge_works([rec("europepmc", "MED/30000003", pmid="30000003", doi="10.1000/same")],
                       previous).works[0]["work_id"] == "doi:10.1000/same"


def test_omid_only_work_is_found_again_by_its_work_id():
    first = merge_works([rec("opencitations", omid="br/0699")])
    assert [r["work_id"] for r in first.works] == ["oci:br/0699"]
    again = merge_works([rec("opencitations", "br/0699", omid="br/0699", doi="10.1000/late")],
                        as_previous(first.works))
    assert [r["work_id"] for r in again.works] == ["oci:br/0699"]


def test_previous_source_ids_may_be_a_dict_or_pairs():
    first = merge_works([rec("pubmed", pmid="30000004", title="X" * 30)])
    previous = as_previous(first.works)
    previous[0]["source_ids"] = dict(previous[0]["source_ids"])
    previous[0]["work_id"] = "pmid:30000004"
    assert merge_works([rec("pubmed", pmid="30000004")], previous).works[0]["title"] == "X" * 30


def test_fuzzy_joined_record_is_matched_by_id_next_run():
    records = [rec("pubmed", pmid="30000005", title="Peer support and employment outcomes: a cohort",
                   authors=["Xu R"], publication_year=2021),
               rec("semanticscholar", "s2e", s2_paper_id="s2e", title="Peer Support and Employment Outcomes: A Cohort.",
                   authors=["Ruth Xu"], publication_year=2021)]
    first = merge_works(records)
    assert first.stats["matched_by_fuzzy"] == 1
    second = merge_works(records, as_previous(first.works))
    assert second.stats["matched_by_fuzzy"] == 0 and [r["work_id"] for r in second.works] == ["pmid:30000005"]


# -- field precedence --------------------------------------------------------------

def _one(*records: Work, previous: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    [row] = merge_works(records, previous or []).works
    return row


def test_field_precedence():
    doi = "10.1000/prec"
    row = _one(
        rec("semanticscholar", "s2p", doi=doi, s2_paper_id="s2p", title="S2 title", authors=["S2 A"],
            journal="S2 journal", publication_year=2021),
        rec("openalex", "W9", doi=doi, openalex_id="W9", title="OpenAlex title", authors=["OA A"],
            journal="OpenAlex journal", journal_abbrev="OA J", language="en", volume="9"),
        rec("crossref", doi=doi, title="Crossref title", authors=["CR A"], journal="Journal of Crossref",
            journal_abbrev="CR J", volume="12", issue="3", pages="100-120"),
        rec("europepmc", "MED/9", doi=doi.upper(), pmid="9", title="EPMC title", authors=["EPMC A"],
            journal="EPMC journal", journal_abbrev="EPMC J"),
        rec("pubmed", pmid="9", doi=doi, title="PubMed title", authors=["PM A"], journal="PubMed journal",
            journal_abbrev="PM J", pages="100-20", language="eng", publication_year=2020),
    )
    assert row["title"] == "PubMed title" and row["authors"] == ["PM A"]
    assert row["journal"] == "Journal of Crossref" and row["journal_abbrev"] == "PM J"
    assert (row["volume"], row["issue"], row["pages"]) == ("12", "3", "100-120")
    assert row["language"] == "eng" and row["publication_year"] == 2020
    assert row["sources"] == ["crossref", "europepmc", "openalex", "pubmed", "semanticscholar"]


def test_lower_sources_fill_fields_the_better_ones_lack():
    row = _one(rec("pubmed", pmid="8", title="PubMed title"),
               rec("openalex", "W8", pmid="8", openalex_id="W8", authors=["OA A"], journal="OA journal",
                   publication_year=2019))
    assert (row["title"], row["authors"], row["journal"], row["publication_year"]) == (
        "PubMed title", ["OA A"], "OA journal", 2019)


def test_title_is_translated_comes_with_the_winning_title():
    row = _one(rec("pubmed", pmid="7", title="Peer support in Norway.", title_is_translated=True),
               rec("crossref", doi="10.1000/no", pmid="7", title="Likepersonstøtte i Norge"))
    assert row["title"] == "Peer support in Norway." and row["title_is_translated"] is True
    row = _one(rec("pubmed", pmid="7"), rec("crossref", doi="10.1000/no", pmid="7", title="Likepersonstøtte i Norge"))
    assert row["title_is_translated"] is False


def test_retraction_is_an_or_and_types_are_an_ordered_union():
    row = _one(rec("semanticscholar", "s2r", pmid="6", s2_paper_id="s2r", publication_types=["JournalArticle"]),
               rec("europepmc", "MED/6", pmid="6", is_retracted=True,
                   publication_types=["Retracted Publication", "Journal Article"]),
               rec("pubmed", pmid="6", publication_types=["Journal Article", "Review"]))
    assert row["is_retracted"] is True
    assert row["publication_types"] == ["Journal Article", "Review", "Retracted Publication", "JournalArticle"]


def test_publication_date_prefers_precise_then_earliest_and_sensible():
    row = _one(rec("pubmed", pmid="4", publication_year=2021, publication_date=dt.date(2021, 1, 1)),
               rec("crossref", doi="10.1000/d", pmid="4", publication_date=dt.date(2021, 2, 1)),
               rec("europepmc", "MED/4", pmid="4", publication_date=dt.date(2020, 12, 15)),
               rec("openalex", "W4", pmid="4", publication_date=dt.date(2021, 3, 20)),
               rec("semanticscholar", "s", pmid="4", publication_date=dt.date(1900, 5, 5)))
    assert row["publication_date"] == dt.date(2020, 12, 15)
    assert _one(rec("pubmed", pmid="4", publication_year=2021, publication_date=dt.date(2021, 1, 1)),
                rec("crossref", doi="10.1000/d", pmid="4", publication_date=dt.date(2021, 6, 1))
                )["publication_date"] == dt.date(2021, 6, 1)


def test_doi_prefers_crossref_and_source_ids_keep_history():
    first = _one(rec("openalex", "W5", openalex_id="W5", doi="10.1000/oa-version"))
    first["source_ids"]["europepmc"] = "MED/1"  # reported by Europe PMC once, not this run
    row = _one(rec("openalex", "W5", openalex_id="W5", doi="10.1000/oa-version"),
               rec("crossref", doi="10.1000/cr-version", source_id="10.1000/cr-version", openalex_id="W5"),
               previous=as_previous([first]))
    assert row["doi"] == "10.1000/cr-version" and row["work_id"] == "doi:10.1000/oa-version"
    assert row["source_ids"] == {"crossref": "10.1000/cr-version", "europepmc": "MED/1", "openalex": "W5"}
    assert row["sources"] == ["crossref", "openalex"]


# -- title fallback: what matches and what stays apart -----------------------------

BASE = "Peer support for young people with depression in primary care: a randomised controlled trial"

SAME_PAPER = [
    BASE.upper(),
    BASE + ".",
    BASE.replace(":", " -").replace("randomised", "randomized"),
    "Peer-support for young people with depression in primary care - a randomised, controlled trial",
    BASE + ": a preprint",
    "Peer support for young people with depression in primary care: a randomised controlled trial (preprint)",
    BASE.replace("Peer", "Péer"),
    "Peer support for young people with depression in primary care: randomised controlled trial",
]
OTHER_PAPER = [
    "Peer support for young people with anxiety in primary care: a randomised controlled trial",
    "Peer support for older people with depression in primary care: a randomised controlled trial",
    "Peer support for young people with depression in primary care: a randomised controlled trial protocol",
    "Correction: " + BASE,
    BASE + ", part II",
    "Peer support for young people with depression in secondary care: a randomised controlled trial",
]


def _pair(title_a: str, title_b: str, *, family_b: str = "Xu R", year_b: int = 2021,
          doi_b: str | None = None) -> list[dict[str, Any]]:
    return merge_works([
        rec("pubmed", pmid="39000001", title=title_a, authors=["Xu R", "Smith J"], publication_year=2021),
        rec("semanticscholar", "s2b", s2_paper_id="s2b", doi=doi_b, title=title_b, authors=[family_b],
            publication_year=year_b),
    ]).works


@pytest.mark.parametrize("variant", SAME_PAPER)
def test_near_duplicate_titles_match(variant):
    assert len(_pair(BASE, variant)) == 1


@pytest.mark.parametrize("variant", OTHER_PAPER)
def test_similar_titles_of_other_papers_stay_apart(variant):
    assert len(_pair(BASE, variant)) == 2


# Realistic worst cases on both sides, with their ratio() scores on title keys.
SAME_PAPER_PAIRS = [  # spelling and stopword differences between sources: 96.0-98.8
    ("Paediatric peer support programmes in schools", "Pediatric peer support programs in schools"),
    ("Peer support for the carers of people with psychosis", "Peer support for carers of people with psychosis"),
    ("Peer support and behaviour change: a randomised trial", "Peer support and behavior change: a randomized trial"),
    ("Peer support and wellbeing in older adults", "Peer support and well-being in older adults"),
]
OTHER_PAPER_PAIRS = [  # one word or number swapped: 79.5-98.9, so the score alone cannot tell
    ("Peer support for youth with depression", "Peer support for youth with anxiety"),
    ("Peer support in primary care: a randomised trial", "Peer support in secondary care: a randomised trial"),
    ("Peer support for men with depression", "Peer support for women with depression"),
    ("Peer support for young adults with psychosis: a cohort study",
     "Peer support for older adults with psychosis: a cohort study"),
    ("Peer support for male veterans with PTSD: a mixed-methods evaluation of a national programme",
     "Peer support for female veterans with PTSD: a mixed-methods evaluation of a national programme"),
    ("Peer support and recovery in first-episode psychosis: 12-month outcomes",
     "Peer support and recovery in first-episode psychosis: 24-month outcomes"),
    ("Effects of exercise on depression in adolescents with obesity",
     "Effects of depression on exercise in adolescents with obesity"),
]


@pytest.mark.parametrize(("title_a", "title_b"), SAME_PAPER_PAIRS)
def test_spelling_variants_match(title_a, title_b):
    assert len(_pair(title_a, title_b)) == 1


@pytest.mark.parametrize(("title_a", "title_b"), OTHER_PAPER_PAIRS)
def test_one_word_apart_stays_apart(title_a, title_b):
    assert len(_pair(title_a, title_b)) == 2


def test_threshold_sits_below_every_same_paper_variant_with_margin():
    """Why 93: the lowest same-paper score is 96; a swapped word can score 99, which the word check catches."""
    threshold = settings.FUZZY_TITLE_THRESHOLD
    same = [ratio(title_key(a), title_key(b)) for a, b in SAME_PAPER_PAIRS]
    same += [ratio(title_key(BASE), title_key(t)) for t in SAME_PAPER]
    assert min(same) >= threshold + 3
    other = [(ratio(title_key(a), title_key(b)), same_wording(title_key(a), title_key(b)))
             for a, b in OTHER_PAPER_PAIRS]
    assert max(score for score, _ in other) > 98  # the score alone would merge these...
    assert not any(same for score, same in other if score >= threshold)  # ...the word check does not


def test_same_title_needs_same_first_author_and_close_year():
    assert len(_pair(BASE, BASE, family_b="Ruth Xu")) == 1
    assert len(_pair(BASE, BASE, family_b="Kowalski P")) == 2
    assert len(_pair(BASE, BASE, year_b=2022)) == 1  # e-pub vs print year
    assert len(_pair(BASE, BASE, year_b=2023)) == 2


def test_same_title_with_different_dois_stays_apart():
    rows = merge_works([
        rec("crossref", doi="10.1000/journal-version", title=BASE, authors=["Xu R"], publication_year=2021),
        rec("europepmc", "PPR/PPR9", doi="10.1101/preprint-version", title=BASE, authors=["Xu R"],
            publication_year=2021),
    ]).works
    assert len(rows) == 2


def test_short_generic_titles_do_not_match_by_title():
    assert len(_pair("Peer support.", "Peer support")) == 2


def test_record_without_id_joins_by_title():
    rows = merge_works([
        rec("pubmed", pmid="39000002", title=BASE, authors=["Xu R"], publication_year=2021),
        Work(title=BASE.lower(), authors=["Xu R"], publication_year=2021, sources=["crossref"]),
    ]).works
    assert len(rows) == 1 and rows[0]["sources"] == ["crossref", "pubmed"]


def test_title_match_does_not_chain_two_conflicting_groups():
    rows = merge_works([
        rec("crossref", doi="10.1000/one", title=BASE, authors=["Xu R"], publication_year=2021),
        rec("crossref", doi="10.1000/two", title=BASE + ".", authors=["Xu R"], publication_year=2021),
        rec("semanticscholar", "s2c", s2_paper_id="s2c", title=BASE.upper(), authors=["Xu R"], publication_year=2021),
    ]).works
    assert len(rows) == 2 and sorted(len(r["sources"]) for r in rows) == [1, 2]


def test_normalizers():
    assert title_key("  Ångström-résumé:  A Study of X (Preprint)") == "angstrom resume a study of x"
    assert family_key("van der Berg J") == family_key("Berg, Jan") == family_key("Jan van der Berg") == "berg"
    assert family_key("Nguyễn T") == family_key("Nguyen") == "nguyen"
    assert family_key("O'Brien JK") == family_key("O’Brien") == "obrien"
    assert family_key("WHO") == "who"


def test_merge_rules_doc_lists_the_precedence_in_code():
    from include.living_review.merge import PRECEDENCE

    doc = (settings.PROJECT_ROOT / "docs" / "merge-rules.md").read_text(encoding="utf-8")
    for name, order in PRECEDENCE.items():
        assert f"| `{name}`" in doc and " > ".join(order) in doc.split(f"| `{name}`", 1)[1].split("\n", 1)[0], name


# -- versions: a preprint and its published article are one work -------------------

PREPRINT_DOI = "10.1101/2025.01.01.123456"
ARTICLE_DOI = "10.1186/s12888-025-00042"
RUN3 = dt.datetime(2025, 1, 20, tzinfo=dt.timezone.utc)
PP_TITLE = "Peer support for carers of people with first-episode psychosis: a randomised trial"


def preprint_record(source: str = "openalex", **over: Any) -> Work:
    fields = dict(doi=PREPRINT_DOI, title=PP_TITLE + " (preprint)", authors=["Xu R", "Smith J"],
                  publication_year=2025, publication_date=dt.date(2025, 1, 2), journal="medRxiv",
                  publication_types=["preprint"], is_preprint=True, abstract="Preprint abstract.")
    if source == "openalex":
        fields.update(openalex_id="W4400000001")
    fields.update(over)
    return rec(source, "W4400000001" if source == "openalex" else None, **fields)


def article_record(source: str = "crossref", **over: Any) -> Work:
    fields = dict(doi=ARTICLE_DOI, title=PP_TITLE, authors=["Xu R", "Smith J", "Cohen L"], publication_year=2025,
                  publication_date=dt.date(2025, 6, 10), journal="BMC Psychiatry", volume="25", pages="42",
                  publication_types=["journal-article"])
    fields.update(over)
    return rec(source, **fields)


def test_versions_of_a_work_with_one_doi_and_with_none():
    works = by_id(merge_works(fixture_records()))
    assert works["doi:10.2196/20001"]["versions"] == [{"id": "10.2196/20001", "kind": "published", "date": None}]
    assert works["doi:10.1101/2024.01.00009"]["versions"] == [
        {"id": "10.1101/2024.01.00009", "kind": "preprint", "date": None}]  # bioRxiv/medRxiv prefix
    assert works["pmid:31000006"]["versions"] == [] and works["pmid:31000006"]["doi"] is None
    assert all(r["doi"] == (r["versions"][0]["id"] if r["versions"] else None) for r in works.values())


def test_preprint_published_a_run_later_becomes_one_work_with_a_stable_id():
    first = merge_works([preprint_record()])
    [row] = first.works
    assert row["work_id"] == f"doi:{PREPRINT_DOI}" and row["doi"] == PREPRINT_DOI
    assert row["versions"] == [{"id": PREPRINT_DOI, "kind": "preprint", "date": dt.date(2025, 1, 2)}]
    assert first.stats["versions_linked"] == 0 and first.stats["preprints_published"] == 0

    # Crossref's journal article says is-preprint-of/has-preprint: related_dois carries the preprint.
    second = merge_works([preprint_record(), article_record(related_dois=[PREPRINT_DOI.upper()])],
                         as_previous(first.works))
    [row] = second.works
    assert row["work_id"] == f"doi:{PREPRINT_DOI}" and row["previous_work_id"] == f"doi:{PREPRINT_DOI}"
    assert row["doi"] == ARTICLE_DOI  # the citable version
    assert row["versions"] == [{"id": PREPRINT_DOI, "kind": "preprint", "date": dt.date(2025, 1, 2)},
                               {"id": ARTICLE_DOI, "kind": "published", "date": dt.date(2025, 6, 10)}]
    assert row["sources"] == ["crossref", "openalex"] and row["openalex_id"] == "W4400000001"
    assert second.stats["versions_linked"] == 1 and second.stats["preprints_published"] == 1
    assert second.stats["works_new"] == 0


def test_published_version_wins_the_metadata():
    # Europe PMC outranks Crossref for titles, but its record is the preprint's.
    row = _one(preprint_record("europepmc", publication_types=["Preprint"], is_preprint=False),
               article_record(related_dois=[PREPRINT_DOI]))
    assert row["work_id"] == f"doi:{ARTICLE_DOI}"  # a new work with both: named after the published DOI
    assert (row["title"], row["journal"], row["volume"], row["authors"]) == (
        PP_TITLE, "BMC Psychiatry", "25", ["Xu R", "Smith J", "Cohen L"])
    assert row["publication_date"] == dt.date(2025, 6, 10)
    assert row["publication_types"] == ["journal-article"]  # "Preprint" describes a version, not the work
    assert row["abstract"] == "Preprint abstract."  # the article record has none: the preprint's fills in
    assert [v["kind"] for v in row["versions"]] == ["preprint", "published"]


def test_the_preprint_record_may_carry_the_relation():
    """has-version / is-preprint-of on the preprint side links the same way."""
    first = merge_works([article_record("pubmed", pmid="40000001", journal_abbrev="BMC Psychiatry")])
    assert [r["work_id"] for r in first.works] == [f"doi:{ARTICLE_DOI}"]
    second = merge_works([rec("pubmed", pmid="40000001"),
                          preprint_record("europepmc", related_dois=[f"https://doi.org/{ARTICLE_DOI}"])],
                         as_previous(first.works))
    [row] = second.works
    assert row["work_id"] == f"doi:{ARTICLE_DOI}" and row["doi"] == ARTICLE_DOI
    assert [(v["id"], v["kind"]) for v in row["versions"]] == [(PREPRINT_DOI, "preprint"), (ARTICLE_DOI, "published")]
    assert row["title"] == PP_TITLE and row["journal"] == "BMC Psychiatry"  # still the article's
    assert second.stats["preprints_published"] == 0  # it was published already


def test_a_relation_seen_once_persists_through_the_versions():
    first = merge_works([preprint_record()])
    second = merge_works([preprint_record(), article_record(related_dois=[PREPRINT_DOI])], as_previous(first.works))
    # Run 3: no record carries the relation any more; the previous row's versions still link them.
    third = merge_works([preprint_record(), article_record()], as_previous(second.works, RUN2))
    assert [r["work_id"] for r in third.works] == [f"doi:{PREPRINT_DOI}"]
    assert third.works[0]["versions"] == second.works[0]["versions"] and third.works[0]["doi"] == ARTICLE_DOI
    assert third.stats["preprints_published"] == 0
    # Either version alone is still found as that work.
    for alone in (preprint_record("europepmc"), article_record("semanticscholar", s2_paper_id="s2pp")):
        [row] = merge_works([alone], as_previous(third.works, RUN3)).works
        assert row["work_id"] == f"doi:{PREPRINT_DOI}" and row["doi"] == ARTICLE_DOI


def test_a_relation_to_a_doi_no_record_carries_is_kept():
    """The preprint announces its article before any source lists the article as citing."""
    first = merge_works([preprint_record()])
    second = merge_works([preprint_record(related_dois=[ARTICLE_DOI])], as_previous(first.works))
    [row] = second.works
    assert row["work_id"] == f"doi:{PREPRINT_DOI}" and row["doi"] == ARTICLE_DOI
    assert row["versions"][1] == {"id": ARTICLE_DOI, "kind": "published", "date": None}
    assert row["journal"] == "medRxiv"  # no metadata of the article yet
    assert second.stats["preprints_published"] == 1
    third = merge_works([article_record()], as_previous(second.works, RUN2))
    [row] = third.works
    assert row["work_id"] == f"doi:{PREPRINT_DOI}" and row["journal"] == "BMC Psychiatry"
    assert row["versions"][1]["date"] == dt.date(2025, 6, 10)


def test_an_explicit_relation_joins_two_records_of_one_source():
    preprint = rec("crossref", doi=PREPRINT_DOI, title=PP_TITLE, authors=["Xu R"], publication_year=2025,
                   publication_types=["posted-content"], related_dois=[ARTICLE_DOI])
    article = rec("crossref", doi=ARTICLE_DOI, title=PP_TITLE, authors=["Xu R"], publication_year=2025,
                  publication_types=["journal-article"])
    # without the relation the version rule joins them by title, first author and year
    [by_title] = merge_works([replace(preprint, related_dois=[]), article]).works
    assert by_title["doi"] == ARTICLE_DOI and by_title["version_evidence"] == ["title-author-year"]
    [row] = merge_works([preprint, article]).works
    assert row["doi"] == ARTICLE_DOI and row["source_ids"] == {"crossref": ARTICLE_DOI}
    assert row["version_evidence"] == ["relation:crossref"]


def test_two_ids_of_one_kind_in_a_group_keep_their_choice_when_merged_again():
    """Found by Hypothesis: relations tie two OpenCitations records (two OMIDs) into one work; the
    previous row carrying one of them must not tip the choice when the output is merged again."""
    title, day = "Peer support for young people with depression in primary care: a randomised controlled trial", \
        dt.date(2019, 1, 1)
    common = {"title": title, "publication_year": 2019, "publication_date": day}
    records = [Work(pmcid="PMC500", sources=["pubmed"], source_ids={"pubmed": "pu0"}, **common),
               Work(pmcid="PMC500", omid="br/060", sources=["opencitations"], source_ids={"opencitations": "op0"},
                    **common),
               Work(sources=["pubmed"], source_ids={"pubmed": "pu0"}, **common),
               Work(doi="10.1000/p1", omid="br/061", publication_types=["Preprint"], sources=["opencitations"],
                    source_ids={"opencitations": "op1"}, **common),
               Work(sources=["pubmed"], source_ids={"pubmed": "pu0"}, related_dois=["10.1000/p0"], **common),
               Work(sources=["pubmed"], source_ids={"pubmed": "pu0"}, related_dois=["10.1000/p1"], **common)]
    first = merge_works(records)
    again = merge_works(records, as_previous(first.works))
    assert [(r["work_id"], r["omid"]) for r in again.works] == [(r["work_id"], r["omid"]) for r in first.works]


def test_version_kinds():
    rows = by_id(merge_works([
        rec("crossref", doi="10.1101/gad.123.4", title="A Cold Spring Harbor journal article"),
        rec("openalex", "W1", doi="10.5555/zenodo.1", openalex_id="W1", is_preprint=True),
        rec("europepmc", "PPR/PPR2", doi="10.5555/osf.2", publication_types=["Preprint"]),
        rec("crossref", doi="10.2139/ssrn.3"),
        rec("crossref", doi="10.48550/arxiv.2501.00001"),
    ]))
    kinds = {r["doi"]: r["versions"][0]["kind"] for r in rows.values()}
    assert kinds == {"10.1101/gad.123.4": "published", "10.5555/zenodo.1": "preprint", "10.5555/osf.2": "preprint",
                     "10.2139/ssrn.3": "preprint", "10.48550/arxiv.2501.00001": "preprint"}


def test_preprint_kind_is_sticky():
    first = merge_works([rec("openalex", "W2", doi="10.5555/zenodo.2", openalex_id="W2", is_preprint=True)])
    second = merge_works([rec("opencitations", "br/062", doi="10.5555/zenodo.2")], as_previous(first.works))
    assert second.works[0]["versions"][0]["kind"] == "preprint"


def test_previous_row_without_versions_still_counts_as_a_preprint():
    """Snapshots written before the versions column existed."""
    first = as_previous(merge_works([preprint_record()]).works)
    for row in first:
        del row["versions"]
    result = merge_works([article_record(related_dois=[PREPRINT_DOI])], first)
    [row] = result.works
    assert row["work_id"] == f"doi:{PREPRINT_DOI}" and result.stats["preprints_published"] == 1
    assert [v["kind"] for v in row["versions"]] == ["preprint", "published"]


def test_update_notices_are_a_sticky_union():
    first = merge_works([
        rec("crossref", doi="10.1000/n1", title="Noticed", update_notices=["correction:10.1000/c1"]),
        rec("pubmed", pmid="40000002", doi="10.1000/n1", update_notices=["retraction", "correction:10.1000/c1"]),
    ])
    assert first.works[0]["update_notices"] == ["correction:10.1000/c1", "retraction"]
    second = merge_works([rec("crossref", doi="10.1000/n1", update_notices=["expression_of_concern"])],
                         as_previous(first.works))
    assert second.works[0]["update_notices"] == ["correction:10.1000/c1", "expression_of_concern", "retraction"]
    third = merge_works([rec("openalex", "W3", doi="10.1000/n1", openalex_id="W3")], as_previous(second.works))
    assert third.works[0]["update_notices"] == second.works[0]["update_notices"]


def test_abstract_precedence_and_fallback():
    doi = "10.1000/abs"
    sources = ("openalex", "crossref", "semanticscholar", "europepmc", "pubmed")
    records = [rec(s, f"{s}-id", doi=doi, abstract=f"{s} abstract") for s in sources]
    for k in range(len(sources)):  # drop the best one each time: the next in PRECEDENCE wins
        assert _one(*records[: len(sources) - k])["abstract"] == f"{sources[len(sources) - k - 1]} abstract"
    first = merge_works([rec("pubmed", pmid="40000003", doi=doi, abstract="PubMed abstract")])
    row = _one(rec("pubmed", pmid="40000003"), rec("openalex", "W4", doi=doi, abstract="OpenAlex abstract"),
               previous=as_previous(first.works))
    assert row["abstract"] == "PubMed abstract"  # last run's PubMed abstract outranks OpenAlex's
    row = _one(rec("openalex", "W4", doi=doi), previous=as_previous(first.works))
    assert row["abstract"] == "PubMed abstract"


def test_relevance_passes_through_from_the_previous_row():
    first = merge_works([rec("pubmed", pmid="40000004", title="Scored")])
    assert (first.works[0]["relevance"], first.works[0]["relevance_reason"]) == (None, None)
    previous = as_previous(first.works)
    previous[0].update(relevance=0.75, relevance_reason="peer support; carers")
    row = _one(rec("pubmed", pmid="40000004"), previous=previous)
    assert (row["relevance"], row["relevance_reason"]) == (0.75, "peer support; carers")


def test_version_date_is_the_earliest_sensible_one():
    row = _one(rec("crossref", doi="10.1000/vd", publication_year=2021, publication_date=dt.date(2021, 3, 1)),
               rec("openalex", "W5", doi="10.1000/vd", publication_year=2021, publication_date=dt.date(2021, 2, 14)),
               rec("semanticscholar", "s2vd", doi="10.1000/vd", publication_year=2021,
                   publication_date=dt.date(1900, 1, 1)))
    assert row["versions"] == [{"id": "10.1000/vd", "kind": "published", "date": dt.date(2021, 2, 14)}]
