"""What every source shares: the raw-payload encoding and the raw contract check."""
from __future__ import annotations

import copy
import gc
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_quality import raw_contracts
from include.living_review.sources.base import RawContractError, check_raw_contract, collector_paused, raw_json
from include.living_review.sources.pubmed import entrez_read

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("record", [
    {"title": "Peer support: résumé of ærø", "n": 3, "x": 2.5, "ok": True, "none": None, "list": [1, "a", {}]},
    {"title": "Half an emoji \ud83d here"},  # a lone surrogate from a "\ud83d" escape: msgspec refuses it
    {"big": 123456789012345678901234567890},
    [],
])
def test_raw_json_is_json_of_the_same_record(record):
    assert json.loads(raw_json(record)) == record


def test_raw_json_keeps_a_lone_surrogate_for_the_staging_scrub():
    assert raw_json({"title": "a\ud83db"}) == '{"title": "a\ud83db"}'


@pytest.mark.parametrize("name", ["pubmed1.xml", "pubmed4.xml", "pubmed7.xml"])
def test_raw_json_of_bio_entrez_records_matches_json_dumps_with_default_str(name):
    body = (FIXTURES / "pubmed" / name).read_bytes()
    articles = entrez_read(body, "https://eutils.example/efetch.fcgi")["PubmedArticle"]
    assert articles
    for article in articles:
        assert json.loads(raw_json(article)) == json.loads(json.dumps(article, default=str, ensure_ascii=False))


def test_collector_paused_restores_the_collector_even_after_an_error():
    assert gc.isenabled()
    with pytest.raises(ValueError):
        with collector_paused():
            assert not gc.isenabled()
            raise ValueError("mapping failed")
    assert gc.isenabled()


def test_collector_paused_leaves_a_disabled_collector_disabled():
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def plain_check(source: str, payload: Any) -> None:
    """The contract check as it was before its one-pass fast path: path by path, in file order."""
    for path, type_spec in raw_contracts.contracts()[source].items():
        allowed = tuple(t for name in type_spec.split("|") for t in raw_contracts._TYPES[name.strip()])
        for where, value, present in raw_contracts._walk(payload, path.split("."), ""):
            if not present:
                raise RawContractError(source, path, f"field missing at {where or 'top level'}")
            if isinstance(value, bool) and bool not in allowed:
                raise RawContractError(source, path, f"expected {type_spec}, got bool at {where}")
            if not isinstance(value, allowed):
                raise RawContractError(source, path, f"expected {type_spec}, got {type(value).__name__} at {where}")


def outcome(check: Any, source: str, payload: Any) -> str | None:
    try:
        check(source, payload)
    except RawContractError as exc:
        return str(exc)
    return None


VALID = {
    "semanticscholar": {"data": [{"citingPaper": {
        "paperId": "p1", "externalIds": {"DOI": "10.1/x"}, "title": "T", "authors": [], "year": 2020,
        "publicationDate": "2020-01-02", "journal": None, "venue": "V", "publicationTypes": None}}] * 3},
    "openalex": {"meta": {"count": 2}, "results": [{"id": "W1", "ids": {}, "doi": None, "title": "T",
                                                    "publication_year": 2020, "authorships": []}] * 2},
    "opencitations": [{"citing": "omid:br/061 doi:10.1/x", "oci": "061-062", "creation": "2020"}] * 2,
    "europepmc": {"hitCount": 1, "resultList": {"result": [{"id": "1", "source": "MED", "title": None}]}},
    "crossref": {"status": "ok", "message-type": "work", "message": {"DOI": "10.1/x", "title": ["T"], "type": "x"}},
}
JUNK = st.sampled_from([None, True, False, 0, 1.5, "s", [], {}, [{}], {"x": 1}]).map(copy.deepcopy)


@st.composite
def mutated(draw: Any) -> tuple[str, Any]:
    """A valid payload with a few values replaced by junk or keys deleted, anywhere in it."""
    source = draw(st.sampled_from(sorted(VALID)))
    payload = copy.deepcopy(VALID[source])
    for _ in range(draw(st.integers(0, 3))):
        node, parent, key = payload, None, None
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            parent = node
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            node = node[key]
        if parent is None:
            continue
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = draw(JUNK)
    return source, payload


@PROPS
@given(case=mutated())
def test_contract_check_names_the_same_first_break_as_the_plain_walk(case):
    source, payload = case
    assert outcome(check_raw_contract, source, payload) == outcome(plain_check, source, payload)


def test_contract_check_passes_the_valid_payloads():
    for source, payload in VALID.items():
        check_raw_contract(source, payload)


def test_a_bool_is_not_an_int_in_a_contract():
    payload = copy.deepcopy(VALID["openalex"])
    payload["meta"]["count"] = True
    with pytest.raises(RawContractError, match="expected int, got bool at meta.count"):
        check_raw_contract("openalex", payload)
