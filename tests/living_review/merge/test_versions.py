"""Rule 5b: a preprint and its journal version linked by title, first author and year, guarded."""
from __future__ import annotations

import datetime as dt

import pytest

from include.living_review.merge import merge_works, preprint_server_doi
from tests.living_review.merge.test_merge import RUN1, as_previous, rec

TITLE = "Peer navigators and hospital readmission after a first psychotic episode: a cohort study"
PREPRINT = "10.1101/2025.03.01.25300001"
ARTICLE = "10.1176/appi.ps.20250001"


def preprint(**changes):
    fields = {"doi": PREPRINT, "title": TITLE, "authors": ["Osei K", "Varga L"], "publication_year": 2025,
              "journal": "medRxiv", "publication_types": ["Preprint"]}
    return rec("openalex", **{**fields, **changes})


def article(source="pubmed", **changes):
    fields = {"doi": ARTICLE, "pmid": "41200001", "title": TITLE, "authors": ["Osei K", "Varga L", "Lind A"],
              "publication_year": 2026, "journal": "Psychiatric services", "publication_types": ["Journal Article"]}
    return rec(source, **{**fields, **changes})


def test_a_journal_version_joins_its_known_preprint_and_keeps_its_work_id():
    known = as_previous(merge_works([preprint()]).works)
    [row] = merge_works([article(), article("europepmc"), article("openalex", pmid=None)], known).works
    assert row["work_id"] == f"doi:{PREPRINT}"  # the work announced as a preprint keeps its id
    assert row["doi"] == ARTICLE and {(v["id"], v["kind"]) for v in row["versions"]} == {
        (PREPRINT, "preprint"), (ARTICLE, "published")}
    assert row["version_evidence"] == ["title-author-year"] and row["journal"] == "Psychiatric services"


@pytest.mark.parametrize(("why", "other"), [
    ("another first author", {"authors": ["Okafor C", "Varga L"]}),
    ("published before the preprint's year", {"publication_year": 2024}),
    ("more than two years later", {"publication_year": 2028}),
    ("another number in the title", {"title": TITLE.replace("first", "second") + " 2"}),
    ("a reply to it", {"title": "Reply: " + TITLE}),
])
def test_near_misses_are_not_linked(why, other):
    rows = merge_works([preprint(), article(**other)]).works
    assert len(rows) == 2, why
    assert all(r["version_evidence"] == [] for r in rows)


def test_a_near_identical_title_by_other_authors_stays_apart():
    rows = merge_works([preprint(), article(authors=["Nguyen T", "Ramos D"])]).works
    assert sorted(r["doi"] for r in rows) == sorted([PREPRINT, ARTICLE])


def test_an_ambiguous_match_links_nothing():
    twin = article(doi="10.1186/s12888-026-00777", pmid="41200002")
    rows = merge_works([preprint(), article(), twin]).works
    assert len(rows) == 3  # one preprint fits two journal articles: linking either could hide a paper


def test_two_previous_works_are_not_relinked_without_news():
    previous = as_previous(merge_works([preprint()]).works) + as_previous(merge_works([article()]).works)
    assert len(merge_works([], previous).works) == 2  # they were compared when they were published


def test_two_preprints_or_two_articles_are_never_linked_as_versions():
    other_preprint = preprint(doi="10.21203/rs.3.rs-1234567/v1")
    assert len(merge_works([preprint(), other_preprint]).works) == 2
    assert len(merge_works([article(), article(doi="10.1186/s12888-026-00778", pmid="41200003")]).works) == 2


@pytest.mark.parametrize(("doi", "is_preprint"), [
    ("10.1101/2024.05.01.24306789", True), ("10.21203/rs.3.rs-1/v1", True), ("10.31234/osf.io/abcd", True),
    ("10.20944/preprints202401.0001.v1", True), ("10.2139/ssrn.4567890", True),
    ("10.2196/preprints.53720", True), ("10.2196/53720", False), ("10.1176/appi.ps.1", False),
])
def test_preprint_server_dois(doi, is_preprint):
    assert preprint_server_doi(doi) is is_preprint


def test_evidence_is_carried_forward():
    first = merge_works([preprint(), article()])
    [row] = merge_works([article()], as_previous(first.works, RUN1 + dt.timedelta(days=7))).works
    assert row["version_evidence"] == ["title-author-year"]
