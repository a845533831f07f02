"""Record-level GX validation of ``citing_works``: each rule catches its row, and only it."""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from data_quality.validate import (
    SUITE_FILE,
    SuiteError,
    ValidationReport,
    load_suite,
    systemic_failure,
    validate_works,
)
from include.living_review.records.ids import normalize_doi, normalize_pmcid, normalize_pmid
from include.living_review.records import CITING_WORKS_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
RUN_DATE = dt.date(2025, 6, 1)
NOW = dt.datetime(2025, 6, 1, 6, tzinfo=dt.timezone.utc)


def work(n: int, **overrides: Any) -> dict[str, Any]:
    """A clean row (passes every expectation), with ``overrides`` applied."""
    doi = f"10.1234/lr.{n}"
    row: dict[str, Any] = {
        "work_id": f"doi:{doi}", "doi": doi, "pmid": str(30_000_000 + n), "pmcid": f"PMC{700_000 + n}",
        "openalex_id": f"W{4_000_000 + n}", "s2_paper_id": None,
        "title": f"Peer support in mental health services, study {n}", "title_is_translated": False,
        "authors": ["Doe J", "Roe R"], "journal": "J Med Internet Res", "journal_abbrev": "JMIR",
        "publication_year": 2024, "publication_date": dt.date(2024, 3, 1), "volume": "26",
        "issue": "1", "pages": "e1", "publication_types": ["journal-article"], "language": "en",
        "is_retracted": False, "sources": ["openalex", "pubmed"],
        "source_ids": [("openalex", f"W{4_000_000 + n}")], "first_seen": NOW, "last_reported": NOW,
    }
    row.update(overrides)
    return row


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """What the pipeline validates: an Arrow table with the contract schema, as pandas."""
    return pa.Table.from_pylist(rows, schema=CITING_WORKS_SCHEMA).to_pandas()


# (label, overrides, the blocking expectations that row must fail, exactly)
BLOCKING_CASES = [
    ("doi_url", {"doi": "https://doi.org/10.1234/x"}, ["doi_format"]),
    ("doi_uppercase", {"doi": "10.1234/ABC"}, ["doi_format"]),
    ("doi_short_prefix", {"doi": "10.12/abc"}, ["doi_format"]),
    ("pmid_leading_zero", {"pmid": "0123"}, ["pmid_format"]),
    ("pmid_letters", {"pmid": "PMID123"}, ["pmid_format"]),
    ("pmcid_no_prefix", {"pmcid": "123456"}, ["pmcid_format"]),
    ("null_title", {"title": None}, ["title_not_null"]),
    ("empty_sources", {"sources": []}, ["sources_not_empty"]),
    ("null_sources", {"sources": None}, ["sources_not_empty"]),
    ("year_1850", {"publication_year": 1850, "publication_date": None}, ["publication_year_in_range"]),
    ("year_run_plus_2", {"publication_year": RUN_DATE.year + 2, "publication_date": None},
     ["publication_year_in_range"]),
    ("work_id_unknown_scheme", {"work_id": "isbn:978-3-16"}, ["work_id_format"]),
    ("work_id_bare_doi", {"work_id": "10.1234/lr.x"}, ["work_id_format"]),
    ("null_work_id", {"work_id": None}, ["work_id_not_null"]),
]
WARNING_CASES = [
    ("missing_doi", {"doi": None, "work_id": "pmid:31000001"}, ["doi_present"]),
    ("missing_journal", {"journal": None}, ["journal_present"]),
    ("short_title", {"title": "Erratum"}, ["title_min_length"]),
    ("future_date", {"publication_date": RUN_DATE + dt.timedelta(days=30)}, ["publication_date_not_future"]),
    ("empty_authors", {"authors": []}, ["authors_not_empty"]),
    ("null_authors", {"authors": None}, ["authors_not_empty"]),
]
# Boundaries that must not block: next year (in press), null year, a date on the run
# date, a work known only to OpenAlex (which only warns about the missing DOI).
BOUNDARY_CASES = [
    ("year_next", {"publication_year": RUN_DATE.year + 1, "publication_date": None}, None),
    ("year_1900", {"publication_year": 1900, "publication_date": None}, None),
    ("year_null", {"publication_year": None, "publication_date": None}, None),
    ("date_is_run_date", {"publication_date": RUN_DATE}, None),
    ("title_10_chars", {"title": "Ten chars!"}, None),
    ("no_ids_but_openalex", {"doi": None, "pmid": None, "pmcid": None, "work_id": "openalex:W1"},
     ["doi_present"]),
]
DUPLICATE_ID = "doi:10.1234/dup"


@pytest.fixture(scope="module")
def mixed() -> tuple[pd.DataFrame, dict[str, int], ValidationReport]:
    """One table holding every case (one GX run for the module); label -> row position."""
    rows, positions = [work(0)], {"clean": 0}
    for label, overrides, *_ in BLOCKING_CASES + WARNING_CASES + BOUNDARY_CASES:
        positions[label] = len(rows)
        rows.append(work(len(rows), **overrides))
    for label in ("duplicate_a", "duplicate_b"):
        positions[label] = len(rows)
        rows.append(work(len(rows), work_id=DUPLICATE_ID))
    df = frame(rows)
    return df, positions, validate_works(df, run_date=RUN_DATE)


def test_clean_table_passes():
    df = frame([work(n) for n in range(5)])
    report = validate_works(df, run_date=RUN_DATE)
    assert report.success
    assert report.blocking_failures == {} and report.warnings == {} and report.table_failures == []
    assert report.rows == 5
    assert all(r["success"] for r in report.results)
    assert systemic_failure(report, max_share=0.0) is None
    assert list(df.columns) == CITING_WORKS_SCHEMA.names  # helper columns stay on the copy


@pytest.mark.parametrize(("label", "overrides", "expected"), BLOCKING_CASES, ids=[c[0] for c in BLOCKING_CASES])
def test_blocking_rule_names_its_row(mixed, label, overrides, expected):
    _, positions, report = mixed
    assert report.blocking_failures.get(positions[label]) == expected
    assert not report.success


def test_duplicate_work_id_flags_both_rows(mixed):
    _, positions, report = mixed
    for label in ("duplicate_a", "duplicate_b"):
        assert report.blocking_failures[positions[label]] == ["work_id_unique"]


@pytest.mark.parametrize(("label", "overrides", "expected"), WARNING_CASES, ids=[c[0] for c in WARNING_CASES])
def test_warning_is_reported_but_does_not_block(mixed, label, overrides, expected):
    _, positions, report = mixed
    assert positions[label] not in report.blocking_failures
    assert report.warnings.get(positions[label]) == expected


@pytest.mark.parametrize(("label", "overrides", "warned"), [("clean", {}, None), *BOUNDARY_CASES],
                         ids=["clean"] + [c[0] for c in BOUNDARY_CASES])
def test_boundaries_do_not_block(mixed, label, overrides, warned):
    _, positions, report = mixed
    assert positions[label] not in report.blocking_failures
    assert report.warnings.get(positions[label]) == warned


def test_short_null_title_is_not_also_a_length_warning(mixed):
    _, positions, report = mixed
    assert positions["null_title"] not in report.warnings


def test_warnings_alone_keep_success():
    df = frame([work(0), *(work(n + 1, **overrides) for n, (_, overrides, _) in enumerate(WARNING_CASES))])
    report = validate_works(df, run_date=RUN_DATE)
    assert report.success and report.blocking_failures == {}
    assert len(report.warnings) == len(WARNING_CASES)
    assert report.counts("warning")["authors_not_empty"] == 2


def test_results_cover_every_expectation_in_suite_order(mixed):
    _, _, report = mixed
    suite = load_suite()
    assert [r["name"] for r in report.results] == [rule.name for rule in suite.rules]
    doi = next(r for r in report.results if r["name"] == "doi_format")
    assert doi == {"name": "doi_format", "severity": "blocking", "success": False, "unexpected_count": 3,
                   "element_count": report.rows, "description": doi["description"]}


def test_split_and_summary(mixed):
    df, positions, report = mixed
    df = df.set_axis([f"r{i}" for i in range(len(df))])  # labels are kept, positions are used
    passed, rejected = report.split(df)
    assert len(passed) + len(rejected) == len(df)
    assert len(rejected) == len(report.blocking_failures) == len(BLOCKING_CASES) + 2
    assert rejected.loc[f"r{positions['pmcid_no_prefix']}", "failed_expectations"] == ["pmcid_format"]
    assert "failed_expectations" not in passed.columns
    assert f"r{positions['missing_doi']}" in passed.index

    summary = json.loads(json.dumps(report.summary()))
    assert summary["rows"] == len(df) and summary["success"] is False
    assert summary["rows_rejected"] == len(rejected)
    assert summary["blocking_counts"]["doi_format"] == 3
    assert summary["blocking_counts"]["work_id_unique"] == 2
    assert summary["warning_counts"]["doi_present"] == 2  # missing_doi and no_ids_but_openalex


def test_split_refuses_another_table(mixed):
    df, _, report = mixed
    with pytest.raises(ValueError, match="rows"):
        report.split(df.iloc[:3])


def _report(rows: int, failing: int) -> ValidationReport:
    return ValidationReport(
        blocking_failures={i: ["doi_format"] for i in range(failing)}, warnings={},
        results=[{"name": "doi_format", "severity": "blocking", "success": failing == 0,
                  "unexpected_count": failing, "element_count": rows, "description": ""}],
        success=failing == 0, rows=rows, seconds=0.1)


def test_systemic_failure_above_share_only():
    message = systemic_failure(_report(200, 126), max_share=0.5)
    assert message is not None
    assert message.startswith("63% of 200 rows failed blocking expectations (doi_format: 126)")
    assert "refusing to publish" in message
    assert systemic_failure(_report(200, 100), max_share=0.5) is None  # exactly the share
    assert systemic_failure(_report(200, 99), max_share=0.5) is None
    assert systemic_failure(_report(0, 0), max_share=0.0) is None


def test_systemic_failure_on_a_real_run():
    rows = [work(n, doi=f"10.1234/LR.{n}") for n in range(7)] + [work(n) for n in range(7, 10)]
    report = validate_works(frame(rows), run_date=RUN_DATE)
    message = systemic_failure(report, max_share=0.5)
    assert message is not None and "70% of 10 rows" in message and "doi_format: 7" in message
    assert systemic_failure(report, max_share=0.8) is None


def test_systemic_failure_rejects_bad_share():
    with pytest.raises(ValueError):
        systemic_failure(_report(1, 0), max_share=1.5)


def test_wrong_column_type_is_a_table_failure():
    df = frame([work(0), work(1)]).astype({"pmid": "int64"})
    report = validate_works(df, run_date=RUN_DATE)
    assert report.table_failures == ["pmid_is_text"]
    assert not report.success and report.blocking_failures == {}
    assert "pmid_is_text" in systemic_failure(report, max_share=1.0)


def test_missing_column_is_a_table_failure():
    df = frame([work(0)]).drop(columns=["sources"])
    report = validate_works(df, run_date=RUN_DATE)
    assert {"columns_match_contract", "sources_not_empty"} <= set(report.table_failures)
    errored = next(r for r in report.results if r["name"] == "sources_not_empty")
    assert errored["success"] is False and "_sources_count" in errored["error"]
    assert systemic_failure(report, max_share=1.0) is not None


def test_other_dtypes_still_validate():
    """Years without nulls (int32), datetime64 dates and a datetime run date."""
    df = frame([work(0), work(1, publication_year=1850), work(2, publication_date=dt.date(2026, 1, 1))])
    df["publication_date"] = pd.to_datetime(df["publication_date"])
    assert df["publication_year"].dtype == "int32"
    report = validate_works(df, run_date=dt.datetime(2025, 6, 1, 12))
    assert report.blocking_failures == {1: ["publication_year_in_range"]}
    assert report.warnings == {2: ["publication_date_not_future"]}


def test_empty_table():
    report = validate_works(frame([]), run_date=RUN_DATE)
    assert report.success and report.rows == 0
    passed, rejected = report.split(frame([]))
    assert passed.empty and rejected.empty and "failed_expectations" in rejected.columns


def test_data_docs_written_offline(tmp_path):
    docs = tmp_path / "docs"
    report = validate_works(frame([work(0), work(1, doi="10.1234/BAD")]), run_date=RUN_DATE,
                            data_docs_dir=docs)
    assert report.data_docs_index == docs / "index.html"
    assert "citing_works" in report.data_docs_index.read_text(encoding="utf-8")
    suite_page = (docs / "expectations" / "citing_works.html").read_text(encoding="utf-8")
    assert "doi_format" in suite_page and "blocking" in suite_page
    assert list((docs / "validations" / "citing_works").rglob("*.html"))
    assert report.summary()["data_docs_index"] == str(docs / "index.html")


def test_no_progress_bars_or_gx_chatter(capfd, caplog):
    caplog.set_level(logging.DEBUG)
    validate_works(frame([work(0), work(1, pmid="0")]), run_date=RUN_DATE)
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in err and "it/s" not in err
    assert err == ""
    gx_records = [r for r in caplog.records
                  if r.name.startswith("great_expectations") and r.levelno < logging.WARNING]
    assert gx_records == []


def test_fresh_process_stderr_is_quiet(tmp_path):
    """GX's import chatter and progress bars stay out of an INFO-level task log."""
    code = (
        "import datetime as dt, logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "from tests.data_quality.test_validate import frame, work\n"
        "from data_quality.validate import validate_works\n"
        "validate_works(frame([work(0), work(1, pmid='0')]), run_date=dt.date(2025, 6, 1))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True, env={"PYTHONPATH": str(ROOT), "PATH": "", "GX_ANALYTICS_ENABLED": "False"})
    lines = done.stderr.splitlines()
    assert [line for line in lines if "great_expectations" in line or "it/s" in line] == []
    assert any(line.startswith("INFO:data_quality.validate:Validated 2 rows") for line in lines)


def test_importing_validate_stays_cheap():
    code = ("import sys, data_quality.validate; "
            "print(sorted(m for m in ('great_expectations', 'pandas', 'pyarrow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.stdout.strip() == "[]"


# -- the suite file ---------------------------------------------------------------------

REQUIRED = {
    "work_id_not_null": "blocking", "work_id_unique": "blocking", "work_id_format": "blocking",
    "doi_format": "blocking", "pmid_format": "blocking", "pmcid_format": "blocking",
    "title_not_null": "blocking", "sources_not_empty": "blocking", "publication_year_in_range": "blocking",
    "doi_present": "warning", "journal_present": "warning", "title_min_length": "warning",
    "publication_date_not_future": "warning", "authors_not_empty": "warning",
}


def test_suite_declares_the_agreed_rules():
    suite = load_suite()
    severities = {rule.name: rule.severity for rule in suite.rules}
    assert {name: severities.get(name) for name in REQUIRED} == REQUIRED
    assert all(rule.description.strip() for rule in suite.rules)
    columns = next(r for r in suite.rules if r.name == "columns_match_contract").kwargs["column_set"]
    assert columns == CITING_WORKS_SCHEMA.names


def _regex(name: str) -> re.Pattern[str]:
    return re.compile(next(r for r in load_suite().rules if r.name == name).kwargs["regex"])


@pytest.mark.parametrize(("rule", "normalize", "raw"), [
    ("doi_format", normalize_doi, ["https://doi.org/10.2196/15572", "doi:10.1000/ABC.def(1)", "10.12345/x-y_z"]),
    ("pmid_format", normalize_pmid, ["32357127", "pmid:1", "https://pubmed.ncbi.nlm.nih.gov/9999999999/"]),
    ("pmcid_format", normalize_pmcid, ["7312261", "PMC2883744.1", "pmcid:PMC1"]),
])
def test_suite_accepts_what_the_normalizers_produce(rule, normalize, raw):
    pattern = _regex(rule)
    for value in raw:
        normalized = normalize(value)
        assert normalized and pattern.search(normalized), (rule, value, normalized)


@pytest.mark.parametrize(("body", "fix"), [
    ("- {name: x, severity: fatal, type: expect_column_values_to_not_be_null, kwargs: {column: a}, "
     "description: d}", "severity must be one of"),
    ("- {name: x, severity: warning, type: expect_column_values_to_be_between, "
     "kwargs: {column: a, max_value: {$PARAMETER: nope}}, description: d}", "not declared under 'parameters'"),
    ("- {name: x, severity: warning, type: expect_column_values_to_be_between, "
     "kwargs: {column: _pages_count, min_value: 1}, description: d}", "derived_columns"),
    ("- {name: x, severity: warning, type: expect_column_values_to_not_be_null, kwargs: {column: a}}",
     "missing description"),
])
def test_suite_errors_name_the_file_and_the_fix(tmp_path, body, fix):
    path = tmp_path / "suite.yaml"
    path.write_text("suite: s\nexpectations:\n" + body + "\n", encoding="utf-8")
    with pytest.raises(SuiteError, match=re.escape(fix)) as caught:
        load_suite(path)
    assert str(path) in str(caught.value)


def test_default_suite_file_is_the_shipped_one():
    assert SUITE_FILE == ROOT / "data_quality" / "citing_works_suite.yaml"
