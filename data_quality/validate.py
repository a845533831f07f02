"""Record-level validation of the merged ``citing_works`` table with Great Expectations.

The rules live in ``citing_works_suite.yaml``; this module turns them into a GX suite,
runs it on an ephemeral (in-memory) context and reports, per row position, which
blocking and warning expectations failed. GX and pandas are imported inside the
functions: importing this module stays cheap for DAG parsing.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

SUITE_FILE = Path(__file__).with_name("citing_works_suite.yaml")
SEVERITIES = ("blocking", "warning")
DATA_DOCS_SITE = "citing_works_docs"
_PARAMETER_KEY = "$PARAMETER"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class SuiteError(ValueError):
    """The suite YAML is malformed; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class Rule:
    """One expectation as declared in the suite YAML."""

    name: str
    severity: str
    type: str
    kwargs: dict[str, Any]
    description: str

    @property
    def blocking(self) -> bool:
        return self.severity == "blocking"


@dataclass(frozen=True)
class Suite:
    name: str
    rules: tuple[Rule, ...]
    parameters: dict[str, str]
    derived_columns: dict[str, str]


def _list_lengths(series: pd.Series) -> np.ndarray:
    """Entries per list cell, null as 0, without a Python loop over the rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = series.array
    if hasattr(array, "_pa_array"):  # ArrowDtype list column
        arrow = array._pa_array
    else:
        arrow = pa.array(series.to_numpy(dtype=object), type=pa.list_(pa.string()), from_pandas=True)
    return pc.fill_null(pc.list_value_length(arrow), 0).to_numpy(zero_copy_only=False).astype("int64")


# Helper columns the YAML may reference; GX has no expectation for list columns.
DERIVED_COLUMNS: dict[str, Callable[[pd.DataFrame], Any]] = {
    "_sources_count": lambda df: _list_lengths(df["sources"]),
    "_authors_count": lambda df: _list_lengths(df["authors"]),
}


def _parameters_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if _PARAMETER_KEY in value:
            yield str(value[_PARAMETER_KEY])
        else:
            for item in value.values():
                yield from _parameters_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _parameters_in(item)


def load_suite(path: str | Path | None = None) -> Suite:
    """Parse and check the suite YAML (default: ``citing_works_suite.yaml``)."""
    path = Path(path) if path is not None else SUITE_FILE
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    parameters = {str(k): str(v) for k, v in (data.get("parameters") or {}).items()}
    derived = {str(k): str(v) for k, v in (data.get("derived_columns") or {}).items()}
    unknown = sorted(set(derived) - set(DERIVED_COLUMNS))
    if unknown:
        raise SuiteError(f"{path}: derived_columns {unknown} are not implemented; "
                         f"use one of {sorted(DERIVED_COLUMNS)} or add it to data_quality/validate.py")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, entry in enumerate(data.get("expectations") or []):
        where = f"{path}: expectations[{index}]"
        if not isinstance(entry, dict):
            raise SuiteError(f"{where}: expected a mapping with name, severity, type, kwargs, description")
        missing = [k for k in ("name", "severity", "type", "kwargs", "description") if k not in entry]
        if missing:
            raise SuiteError(f"{where} ({entry.get('name', '?')}): missing {', '.join(missing)}")
        name = str(entry["name"])
        if not _NAME_RE.fullmatch(name) or name in seen:
            raise SuiteError(f"{where}: name '{name}' must be unique snake_case")
        seen.add(name)
        if entry["severity"] not in SEVERITIES:
            raise SuiteError(f"{where} ({name}): severity must be one of {SEVERITIES}, "
                             f"not {entry['severity']!r}")
        if not str(entry["type"]).startswith("expect_") or not isinstance(entry["kwargs"], dict):
            raise SuiteError(f"{where} ({name}): type must be a GX expectation (expect_...) "
                             "and kwargs a mapping")
        undeclared = sorted(set(_parameters_in(entry["kwargs"])) - set(parameters))
        if undeclared:
            raise SuiteError(f"{where} ({name}): parameters {undeclared} are not declared under "
                             "'parameters'")
        column = entry["kwargs"].get("column")
        if isinstance(column, str) and column.startswith("_") and column not in derived:
            raise SuiteError(f"{where} ({name}): column '{column}' is not declared under "
                             "'derived_columns'")
        rules.append(Rule(name, entry["severity"], str(entry["type"]), dict(entry["kwargs"]),
                          str(entry["description"])))
    if not rules:
        raise SuiteError(f"{path}: no expectations declared")
    return Suite(str(data.get("suite") or path.stem), tuple(rules), parameters, derived)


def run_parameters(run_date: dt.date) -> dict[str, Any]:
    """Values for the suite's ``$PARAMETER`` placeholders."""
    return {"run_date": run_date, "max_publication_year": run_date.year + 1}


@dataclass
class ValidationReport:
    """What the validation found, keyed by row *position* in the validated DataFrame."""

    blocking_failures: dict[int, list[str]]
    warnings: dict[int, list[str]]
    results: list[dict[str, Any]]
    success: bool
    rows: int
    seconds: float
    data_docs_index: Path | None = None
    # Blocking expectations that failed for the table as a whole (types, columns) or
    # could not run; no row is to blame, so the snapshot must not be published.
    table_failures: list[str] = field(default_factory=list)
    suite: str = "citing_works"

    def split(self, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(passed, rejected)``; rejected rows gain a ``failed_expectations`` list column."""
        import numpy as np
        import pandas as pd

        if len(df) != self.rows:
            raise ValueError(f"split() got {len(df)} rows but the report covers {self.rows}")
        positions = np.fromiter(sorted(self.blocking_failures), dtype=np.int64,
                                count=len(self.blocking_failures))
        failed = np.zeros(len(df), dtype=bool)
        failed[positions] = True
        passed = df.iloc[~failed]
        rejected = df.iloc[positions].copy()
        rejected["failed_expectations"] = pd.Series(
            [self.blocking_failures[p] for p in positions.tolist()], index=rejected.index, dtype=object)
        return passed, rejected

    def counts(self, severity: str = "blocking") -> dict[str, int]:
        """Failing rows per expectation of one severity, most frequent first."""
        counts = {r["name"]: int(r["unexpected_count"] or 0) for r in self.results
                  if r["severity"] == severity and not r["success"] and r["unexpected_count"]}
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable digest for the run manifest."""
        return {
            "suite": self.suite,
            "success": self.success,
            "rows": self.rows,
            "rows_rejected": len(self.blocking_failures),
            "rows_with_warnings": len(self.warnings),
            "blocking_counts": self.counts("blocking"),
            "warning_counts": self.counts("warning"),
            "table_failures": list(self.table_failures),
            "seconds": round(self.seconds, 3),
            "data_docs_index": str(self.data_docs_index) if self.data_docs_index else None,
            "expectations": [dict(r) for r in self.results],
        }


def systemic_failure(report: ValidationReport, *, max_share: float) -> str | None:
    """Why the whole snapshot must not be published, or None.

    Many rows failing at once points at an upstream change rather than bad records,
    so quarantining them one by one would silently empty the snapshot.
    """
    if not 0.0 <= max_share <= 1.0:
        raise ValueError(f"max_share must be within [0, 1], got {max_share}")
    if report.table_failures:
        return (f"table-level blocking expectations failed ({', '.join(report.table_failures)}); "
                "refusing to publish — the table does not match the citing_works contract")
    if not report.rows:
        return None
    share = len(report.blocking_failures) / report.rows
    if share <= max_share:
        return None
    detail = ", ".join(f"{name}: {count}" for name, count in report.counts("blocking").items())
    return (f"{share:.0%} of {report.rows} rows failed blocking expectations ({detail}); "
            "refusing to publish — an upstream format change is likely")


@contextmanager
def _quiet_gx() -> Iterator[None]:
    """GX logs chatty INFO lines per run; keep only its warnings while we validate."""
    gx_log = logging.getLogger("great_expectations")
    previous = gx_log.level
    if gx_log.getEffectiveLevel() < logging.WARNING:
        gx_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        gx_log.setLevel(previous)


def _raised(exception_info: Any) -> str | None:
    """The exception message of a result that errored, whatever the nesting GX used."""
    if not isinstance(exception_info, dict):
        return None
    if exception_info.get("raised_exception"):
        return str(exception_info.get("exception_message") or "error")
    for value in exception_info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "error")
    return None


def _frame_to_validate(df: pd.DataFrame, suite: Suite) -> pd.DataFrame:
    # A RangeIndex makes GX's unexpected_index_list row positions; CoW keeps df untouched.
    frame = df.reset_index(drop=True)
    for name in suite.derived_columns:
        frame[name] = DERIVED_COLUMNS[name](frame)
    return frame


def validate_works(df: pd.DataFrame, *, run_date: dt.date, suite_path: str | Path | None = None,
                   data_docs_dir: str | Path | None = None) -> ValidationReport:
    """Validate ``citing_works`` rows; optionally render GX Data Docs into ``data_docs_dir``."""
    started = time.perf_counter()
    suite = load_suite(suite_path)
    frame = _frame_to_validate(df, suite)
    with _quiet_gx():
        gx_results, docs_index = _run_gx(frame, suite, run_parameters(run_date), data_docs_dir)

    blocking: dict[int, list[str]] = {}
    warnings: dict[int, list[str]] = {}
    table_failures: list[str] = []
    results: list[dict[str, Any]] = []
    by_name = {rule.name: rule for rule in suite.rules}
    for result in gx_results:
        rule = by_name[result.expectation_config.meta["name"]]
        detail = result.result or {}
        error = _raised(result.exception_info)
        indexes = detail.get("unexpected_index_list")
        summary = {
            "name": rule.name,
            "severity": rule.severity,
            "success": bool(result.success) and error is None,
            "unexpected_count": detail.get("unexpected_count"),
            "element_count": detail.get("element_count", len(frame)),
            "description": rule.description,
        }
        if error is not None:
            summary["error"] = error
        results.append(summary)
        if summary["success"]:
            continue
        if indexes is None or error is not None:
            (log.error if rule.blocking else log.warning)(
                "%s expectation %s failed for the whole table: %s", rule.severity, rule.name,
                error or detail.get("observed_value"))
            if rule.blocking:
                table_failures.append(rule.name)
            continue
        target = blocking if rule.blocking else warnings
        for position in indexes:
            target.setdefault(int(position), []).append(rule.name)

    report = ValidationReport(
        blocking_failures=blocking, warnings=warnings, results=results,
        success=not blocking and not table_failures, rows=len(frame),
        seconds=time.perf_counter() - started, data_docs_index=docs_index,
        table_failures=table_failures, suite=suite.name)
    log.info("Validated %d rows against %s in %.2fs: %d rejected, %d with warnings%s",
             report.rows, suite.name, report.seconds, len(blocking), len(warnings),
             f", table failures: {', '.join(table_failures)}" if table_failures else "")
    return report


def _run_gx(frame: pd.DataFrame, suite: Suite, parameters: dict[str, Any],
            data_docs_dir: str | Path | None) -> tuple[list[Any], Path | None]:
    """Run the suite on an ephemeral GX context; returns GX results and the Data Docs index."""
    started = time.perf_counter()
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.metadata_types import FailureSeverity

    log.debug("great_expectations imported in %.2fs", time.perf_counter() - started)
    context = gx.get_context(mode="ephemeral")
    # tqdm bars would land in the task log's stderr once per metric batch.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = (context.data_sources.add_pandas(suite.name)
             .add_dataframe_asset(suite.name)
             .add_batch_definition_whole_dataframe("whole_table"))
    gx_suite = context.suites.add(ExpectationSuite(name=suite.name))
    for rule in suite.rules:
        gx_suite.add_expectation_configuration(ExpectationConfiguration(
            type=rule.type, kwargs=dict(rule.kwargs),
            meta={"name": rule.name, "severity": rule.severity},
            notes=f"**{rule.name}** ({rule.severity}): {rule.description}",
            severity=FailureSeverity.CRITICAL if rule.blocking else FailureSeverity.WARNING))
    gx_suite.save()
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite.name, data=batch, suite=gx_suite))
    outcome = definition.run(batch_parameters={"dataframe": frame},
                             expectation_parameters=parameters,
                             result_format={"result_format": "COMPLETE"})
    docs_index = _build_data_docs(context, Path(data_docs_dir)) if data_docs_dir is not None else None
    return list(outcome.results), docs_index


def _build_data_docs(context: Any, directory: Path) -> Path:
    """Render the suite and this run's results as static HTML under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    context.add_data_docs_site(DATA_DOCS_SITE, {
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                          "base_directory": str(directory.resolve())},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    context.build_data_docs(site_names=[DATA_DOCS_SITE])
    index = directory / "index.html"
    if not index.is_file():
        raise RuntimeError(f"GX did not write Data Docs to {index}")
    log.info("Data Docs written to %s", index)
    return index
