"""The id normalizers recognise each id in the forms real sources write it, and refuse what is not one."""
from __future__ import annotations

import pytest

from include.living_review.records.ids import (
    normalize_doi,
    normalize_openalex_id,
    normalize_pmcid,
    normalize_pmid,
    work_id_for,
)


@pytest.mark.parametrize(("raw", "expected"), [
    ("10.1000/abc", "10.1000/abc"),
    ("10.2196/15572", "10.2196/15572"),
    ("10.1000/ABC.Def", "10.1000/abc.def"),  # DOIs are case-insensitive: one spelling, lower case
    ("https://doi.org/10.1000/abc", "10.1000/abc"),
    ("http://doi.org/10.1000/abc", "10.1000/abc"),
    ("https://dx.doi.org/10.1000/abc", "10.1000/abc"),  # Crossref's older resolver
    ("HTTPS://DX.DOI.ORG/10.1000/ABC", "10.1000/abc"),
    ("doi:10.1000/abc", "10.1000/abc"),
    ("DOI: 10.1000/abc", "10.1000/abc"),  # PubMed's ELocationID text
    ("10.1000/abc.", "10.1000/abc"),  # a DOI at the end of a sentence or a reference
    ("10.1000/abc...", "10.1000/abc"),
    ("  https://doi.org/10.1000/abc  ", "10.1000/abc"),
    ("https://doi.org/ 10.1000/abc", "10.1000/abc"),
    ("https://doi.org/10.1000/abc. ", "10.1000/abc"),
    ("10.1000%2Fabc", "10.1000/abc"),  # a URL-encoded slash (Semantic Scholar, some OpenAlex links)
    ("10.1000%2fabc", "10.1000/abc"),
    ("https://dx.doi.org/10.1000%2Fabc.", "10.1000/abc"),  # all of the above at once
    ("10.1016/S0140-6736(20)30183-5", "10.1016/s0140-6736(20)30183-5"),
    ("10.1002/(SICI)1097-4636(199706)35:4<405::AID-JBM1>3.0.CO;2-I",
     "10.1002/(sici)1097-4636(199706)35:4<405::aid-jbm1>3.0.co;2-i"),
    ("10.123456789/x", "10.123456789/x"),  # a registrant code of nine digits
    ("10.1002/1097-0142(19940101)73:1<1::AID-CNCR2820730102>3.0.CO;2-X",  # ends in an ISSN-style check "X"
     "10.1002/1097-0142(19940101)73:1<1::aid-cncr2820730102>3.0.co;2-x"),
])
def test_a_doi_in_each_real_form_is_recognised(raw, expected):
    assert normalize_doi(raw) == expected
    assert normalize_doi(expected) == expected


@pytest.mark.parametrize("raw", [
    None, "", "   ", ".", "abc", "10.1000", "10.1000/", "10.123/abc", "10.1234567890/abc", "11.1000/abc",
    "https://example.org/10.1000/abc", "10.1000/a b", "10.1000/a\u202eb", "10.1000/a\u200bb", "10.1000/a\x00b",
    "urn:10.1000/abc", "10.١٢٣٤/abc",
])
def test_what_is_not_a_doi_gives_none(raw):
    assert normalize_doi(raw) is None


@pytest.mark.parametrize(("raw", "expected"), [
    ("31452104", "31452104"),
    (31452104, "31452104"),  # E-utilities JSON gives numbers
    (" 31452104 ", "31452104"),
    ("pmid:31452104", "31452104"),
    ("PMID: 31452104", "31452104"),
    ("https://pubmed.ncbi.nlm.nih.gov/31452104/", "31452104"),
    ("https://pubmed.ncbi.nlm.nih.gov/31452104", "31452104"),
    ("https://www.ncbi.nlm.nih.gov/pubmed/31452104", "31452104"),
    ("https://www.ncbi.nlm.nih.gov/pubmed/?term=31452104", "31452104"),
    ("1", "1"),
    ("1234567890", "1234567890"),
])
def test_a_pmid_in_each_real_form_is_recognised(raw, expected):
    assert normalize_pmid(raw) == expected


@pytest.mark.parametrize("raw", [
    None, "", 0, "0", "031452104", "12345678901", "pmid:", "PMC31452104", "31452104a", "١٢٣", "-1", "3145 2104",
    "https://pubmed.ncbi.nlm.nih.gov/", "abc/",
    "term=31452104",  # a query-string fragment is read as one only inside a URL
])
def test_what_is_not_a_pmid_gives_none(raw):
    """A leading zero is refused: PubMed never writes one, and "0123" and "123" must not be two works."""
    assert normalize_pmid(raw) is None


@pytest.mark.parametrize(("raw", "expected"), [
    ("PMC2883744", "PMC2883744"),
    ("pmc2883744", "PMC2883744"),
    ("2883744", "PMC2883744"),  # Semantic Scholar's PubMedCentral id
    (2883744, "PMC2883744"),
    (" PMC2883744 ", "PMC2883744"),
    ("PMCID: PMC2883744", "PMC2883744"),
    ("pmcid:PMC2883744", "PMC2883744"),
    ("PMC2883744.1", "PMC2883744"),  # a versioned id
    ("https://www.ncbi.nlm.nih.gov/pmc/articles/PMC2883744/", "PMC2883744"),
    ("https://www.ncbi.nlm.nih.gov/pmc/articles/2883744", "PMC2883744"),  # OpenAlex's ids.pmcid
    ("https://europepmc.org/article/PMC/PMC2883744", "PMC2883744"),
    ("https://pmc.ncbi.nlm.nih.gov/articles/PMC2883744/", "PMC2883744"),
])
def test_a_pmcid_in_each_real_form_is_recognised(raw, expected):
    assert normalize_pmcid(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "PMC", "PMCX1", "PMC12345678901", "PM2883744", "2883744x", "PMC-1",
                                 "pmcid=2883744"])
def test_what_is_not_a_pmcid_gives_none(raw):
    assert normalize_pmcid(raw) is None


@pytest.mark.parametrize(("raw", "expected"), [
    ("W2741809807", "W2741809807"),
    ("w2741809807", "W2741809807"),  # OpenAlex accepts either case; the key has one
    ("https://openalex.org/W2741809807", "W2741809807"),
    ("https://openalex.org/w2741809807", "W2741809807"),
    ("https://openalex.org/W2741809807/", "W2741809807"),
    ("https://api.openalex.org/works/W2741809807", "W2741809807"),
    (" W2741809807 ", "W2741809807"),
])
def test_an_openalex_work_id_in_each_real_form_is_recognised(raw, expected):
    assert normalize_openalex_id(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "W", "A5023888391", "https://openalex.org/A5023888391", "W12x",
                                 "W12X", "https://openalex.org/W12X/", "https://openalex.org/"])
def test_what_is_not_an_openalex_work_id_gives_none(raw):
    assert normalize_openalex_id(raw) is None


def test_the_work_id_takes_the_first_id_in_the_contracts_order():
    ids = ["10.1/a", "123", "PMC4", "W5", "s2hash", "br/06"]
    expected = ["doi:10.1/a", "pmid:123", "pmcid:PMC4", "openalex:W5", "s2:s2hash", "oci:br/06"]
    for start, key in enumerate(expected):
        present = [None] * start + ids[start:]
        assert work_id_for(*present) == key
    assert work_id_for(None, None, None) is None
    assert work_id_for("", "", "", "", "", "") is None
    assert work_id_for(None, None, None, omid="br/06") == "oci:br/06"
    assert work_id_for(None, None, None, s2_paper_id="s2hash", omid="br/06") == "s2:s2hash"
