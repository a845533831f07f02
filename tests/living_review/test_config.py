"""Config validation: every error names the file, the field and the fix; good reviews still load."""
from __future__ import annotations

from pathlib import Path

import pytest

from include.living_review.config import ConfigError, load_config

GOOD = """
  - id: peer-support-mental-health
    title: "Peer Support in Mental Health: Literature Review"
    doi: https://doi.org/10.2196/15572
    pmid: "32357127"
    pmcid: "7312261"
"""


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "reviews.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_shipped_config_is_valid():
    loaded = load_config(Path(__file__).parents[2] / "include" / "reviews.yaml")
    assert not loaded.issues
    assert [r.id for r in loaded.reviews] == ["peer-support-mental-health"]


def test_ids_are_normalized(tmp_path):
    (review,) = load_config(write(tmp_path, "reviews:" + GOOD)).reviews
    assert (review.doi, review.pmid, review.pmcid) == ("10.2196/15572", "32357127", "PMC7312261")
    assert review.sources == ["pubmed"] and review.schedule == "@weekly"
    assert review.dag_suffix == "peer_support_mental_health"


@pytest.mark.parametrize(("entry", "field", "fix"), [
    ('  - {id: "../../etc", title: T, pmid: "1"}', "id", "slug"),
    ('  - {id: ok, title: T, pmid: "1", doi: "not-a-doi"}', "doi", "bare DOI"),
    ('  - {id: ok, title: T, pmid: "12x"}', "pmid", "digits"),
    ('  - {id: ok, title: T, pmid: "1", sources: [pubmed, scopus]}', "sources", "choose from"),
    ('  - {id: ok, title: T, pmid: "1", colour: red}', "colour", "example"),
    ('  - {id: ok, title: T, doi: "10.1234/x", sources: [pubmed]}', "(entry)", "example"),
])
def test_bad_entry_names_file_field_and_fix_while_others_load(tmp_path, entry, field, fix):
    path = write(tmp_path, "reviews:" + GOOD + entry + "\n")
    loaded = load_config(path)
    assert [r.id for r in loaded.reviews] == ["peer-support-mental-health"]
    (issue,) = loaded.issues
    text = str(issue)
    assert str(path) in text and field in issue.field and fix in text and "Fix:" in text


def test_duplicate_id(tmp_path):
    loaded = load_config(write(tmp_path, "reviews:" + GOOD + GOOD))
    assert len(loaded.reviews) == 1
    assert "duplicates the id" in str(loaded.issues[0]) and "unique" in str(loaded.issues[0])


@pytest.mark.parametrize(("body", "needle"), [
    ("reviews: []\n", "non-empty list"),
    ("reviews:\n  - id: [unclosed\n", "not valid YAML"),
    ("something_else: 1\n", "non-empty list"),
])
def test_unusable_file(tmp_path, body, needle):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, body))
    assert needle in str(err.value) and str(tmp_path) in str(err.value)


def test_missing_file_names_the_env_var(tmp_path):
    with pytest.raises(ConfigError, match="LIVING_REVIEW_CONFIG"):
        load_config(tmp_path / "nope.yaml")


def test_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(write(tmp_path, "reviews:" + GOOD.replace("peer-support", "other"))))
    assert [r.id for r in load_config().reviews] == ["other-mental-health"]


@pytest.mark.parametrize(("spelling", "sources", "enrich"), [
    ("sources: [pubmed, europepmc, crossref]", ["pubmed", "europepmc"], ["crossref"]),
    ("sources: [pubmed, crossref]\n    enrich: [crossref]", ["pubmed"], ["crossref"]),
    ("sources: [pubmed]\n    enrich: [crossref]", ["pubmed"], ["crossref"]),
    ("sources: [pubmed]", ["pubmed"], []),
])
def test_crossref_is_an_enricher_and_the_older_spelling_still_loads(tmp_path, spelling, sources, enrich):
    (review,) = load_config(write(tmp_path, "reviews:" + GOOD + f"    {spelling}\n")).reviews
    assert review.sources == sources and review.enrich == enrich


def test_an_unknown_enricher_names_the_choices(tmp_path):
    loaded = load_config(write(tmp_path, "reviews:" + GOOD.replace(
        'pmcid: "7312261"', 'pmcid: "7312261"\n    enrich: [scopus]') ))
    (issue,) = loaded.issues
    assert "enrich" in issue.field and "crossref" in str(issue)
