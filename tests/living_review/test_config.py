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


# -- hostile YAML: the loader bounds what it reads before anything is converted (issue 14) --
def alias_bomb(levels: int, field: str = "doi") -> str:
    """A billion-laughs config: ``levels`` lists of 9 aliases of the level below, used in ``field``."""
    lines = ['l0: &l0 "lol"']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\nreviews:" + GOOD + f'  - {{id: bomb, title: T, pmid: "1", {field}: *l{levels}}}\n'


@pytest.mark.parametrize("field", ["doi", "pmid", "title", "scope_keywords", "digest"])
def test_an_alias_bomb_is_refused_in_a_short_message_and_the_other_reviews_load(tmp_path, field):
    """Seven levels made ``str(value)`` print a 34 MB message; now the entry is refused unexpanded."""
    path = write(tmp_path, alias_bomb(7, field))
    loaded = load_config(path)
    assert [r.id for r in loaded.reviews] == ["peer-support-mental-health"]
    (issue,) = loaded.issues
    text = str(issue)
    assert len(text) < 400, text[:400]
    assert str(path) in text and "reviews[1] (id 'bomb')" in issue.field
    assert "alias" in text and "Fix: write the values out" in text


def test_a_merge_key_bomb_is_refused_before_the_mappings_are_merged(tmp_path):
    """``<<:`` merges copy the merged pairs: nested merges grow as 9**levels without any ``str()``."""
    lines = ["m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9}"]
    lines += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}]}}" for i in range(1, 6)]
    body = "\n".join(lines) + "\nreviews:" + GOOD + '  - id: merged\n    title: T\n    pmid: "1"\n    digest:\n' \
        "      <<: *m5\n"
    loaded = load_config(write(tmp_path, body))
    assert [r.id for r in loaded.reviews] == ["peer-support-mental-health"]
    (issue,) = loaded.issues
    assert "alias" in str(issue) and len(str(issue)) < 400


def test_a_recursive_alias_is_refused(tmp_path):
    body = "reviews:" + GOOD + '  - {id: loop, title: T, pmid: "1", scope_keywords: &k [a, *k]}\n'
    loaded = load_config(write(tmp_path, body))
    assert [r.id for r in loaded.reviews] == ["peer-support-mental-health"]
    (issue,) = loaded.issues
    assert "refers to itself" in str(issue) and "scope_keywords" not in issue.field  # the entry is refused whole


def test_aliases_within_bounds_still_work(tmp_path):
    """Anchors are a fair way to share settings: a reused ``digest:`` block still loads."""
    body = ("reviews:" + GOOD + "    digest: &d {email: [a@example.org], frequency: weekly}\n"
            '  - {id: other, title: T, pmid: "2", digest: *d}\n')
    loaded = load_config(write(tmp_path, body))
    assert not loaded.issues
    assert [r.digest.email for r in loaded.reviews] == [["a@example.org"], ["a@example.org"]]


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    from include.living_review import settings

    monkeypatch.setattr(settings, "CONFIG_MAX_BYTES", 2_000)
    path = write(tmp_path, "reviews:" + GOOD + "#" + "x" * 3_000 + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text and "over the limit of 2000 bytes" in text and "Fix:" in text and len(text) < 400


@pytest.mark.parametrize(("value", "field", "problem"), [
    ("[10.1234/a, 10.1234/b]", "doi", "must be text, not a list"),
    ("{x: 10.1234/a}", "doi", "must be text, not a mapping"),
    ('"10.1234/' + "x" * 5_000 + '"', "doi", "is too long"),
    ("[1, 2]", "pmid", "must be text, not a list"),
    ('"' + "1" * 5_000 + '"', "pmid", "is too long"),
    ("[PMC1]", "pmcid", "must be text, not a list"),
    ("[a]", "schedule", "Input should be a valid string"),
])
def test_id_fields_are_checked_for_type_and_length_before_they_are_converted(tmp_path, value, field, problem):
    body = "reviews:" + GOOD + f'  - {{id: odd, title: T, pmid: "1", doi: 10.1234/ok, {field}: {value}}}\n'
    path = write(tmp_path, body)
    loaded = load_config(path)
    assert [r.id for r in loaded.reviews] == ["peer-support-mental-health"]
    (issue,) = loaded.issues
    text = str(issue)
    assert problem in text and issue.field.endswith(f".{field}") and str(path) in text and len(text) < 400


@pytest.mark.parametrize(("value", "problem", "fix"), [
    ("[" * 200 + "]" * 200, "nests deeper than", "remove the extra brackets"),
    ("[!!python/object/apply:os.system [echo]]", "could not determine a constructor", "see the example"),
    ("1" * 5_000, "cannot be read", "see the example"),
])
def test_entries_that_cannot_be_built_are_refused_and_the_others_load(tmp_path, value, problem, fix):
    path = write(tmp_path, "reviews:" + GOOD + f'  - {{id: odd, title: T, pmid: "1", scope_keywords: {value}}}\n')
    loaded = load_config(path)
    assert [r.id for r in loaded.reviews] == ["peer-support-mental-health"]
    (issue,) = loaded.issues
    assert problem in str(issue) and fix in str(issue) and "reviews[1] (id 'odd')" in issue.field
    assert len(str(issue)) < 400


# -- the schedule, checked by a parser passed in (Airflow's, from dags/_lib/config.py) --
def test_a_schedule_the_check_refuses_is_reported_and_its_review_not_loaded(tmp_path):
    body = "reviews:" + GOOD + '  - {id: tuesdays, title: T, pmid: "1", schedule: "every tuesday"}\n'
    path = write(tmp_path, body)
    seen: list[str] = []

    def check(schedule: str) -> str | None:
        seen.append(schedule)
        return "Exactly 5, 6 or 7 columns has to be specified" if schedule == "every tuesday" else None

    loaded = load_config(path, check_schedule=check)
    assert seen == ["@weekly", "every tuesday"]
    assert [r.id for r in loaded.reviews] == ["peer-support-mental-health"]
    (issue,) = loaded.issues
    assert issue.field == "reviews[1] (id 'tuesdays').schedule"
    text = str(issue)
    assert str(path) in text and "'every tuesday' is not a schedule Airflow accepts (Exactly 5" in text
    assert "Fix: use a cron preset such as @weekly or a cron expression" in text
    # Without a check (this package never imports Airflow), the string passes as before.
    assert len(load_config(path).reviews) == 2


def test_an_entry_with_thousands_of_bad_values_is_a_few_lines(tmp_path):
    """A list of 20,000 numbers where text belongs was 20,000 issues, one line each."""
    path = write(tmp_path, "reviews:" + GOOD + '  - {id: many, title: T, pmid: "1", scope_keywords: ['
                 + ", ".join(["1"] * 20_000) + "]}\n")
    loaded = load_config(path)
    assert [r.id for r in loaded.reviews] == ["peer-support-mental-health"]
    assert len(loaded.issues) == 4
    assert loaded.issues[-1].problem == "and 19997 more problems in this entry"
    assert len("\n".join(map(str, loaded.issues))) < 1500
