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
from collections.abc import Iterator
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
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(series.dtype, pd.ArrowDtype):
        arrow = series.array.__arrow_array__()
    else:
        arrow = pa.array(series.to_numpy(dtype=object), type=pa.list_(pa.string()), from_pandas=True)
    return pc.fill_null(pc.list_value_length(arrow), 0).to_numpy(zero_copy_only=False).astype("int64")


# Helper columns the YAML may reference, each the length of a list column: GX has no
# expectation for list columns.
DERIVED_COLUMNS: dict[str, str] = {"_sources_count": "sources", "_authors_count": "authors"}


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
    """Keep only GX's warnings for the duration.

    Some GX modules pin their own logger to INFO (one line per context created), so
    the parent logger's level alone does not silence them; those are lowered too.
    """
    names = ["great_expectations"] + [name for name in logging.root.manager.loggerDict
                                      if name.startswith("great_expectations.")]
    previous: dict[str, int] = {}
    for name in names:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING and (logger.level or name == "great_expectations"):
            previous[name] = logger.level
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)


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


def _prepare_columns(frame: pd.DataFrame) -> None:
    """Give contract columns the dtypes GX checks fastest, in place.

    - list and map columns become Arrow arrays: GX fingerprints every batch, cells holding
      numpy arrays make pandas' hash fail, and GX then pickles the whole frame (~2 s per
      100k rows); Arrow columns pickle as buffers.
    - integer columns without int64/float64 dtype (int32 years) become int64, or float64
      when they hold nulls: GX's be_between is vectorised only for those two dtypes.
    - datetime64 date columns become Arrow date32 so they compare with the run date.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from include.living_review.records import CITING_WORKS_SCHEMA

    for contract_field in CITING_WORKS_SCHEMA:
        name, kind = contract_field.name, contract_field.type
        if name not in frame.columns:
            continue
        column = frame[name]
        try:
            if (pa.types.is_list(kind) or pa.types.is_map(kind)) and column.dtype == object:
                arrow = pa.array(column.to_numpy(dtype=object), type=kind, from_pandas=True)
                frame[name] = pd.Series(pd.arrays.ArrowExtensionArray(arrow), index=frame.index)
            elif pa.types.is_integer(kind) and pd.api.types.is_numeric_dtype(column) \
                    and column.dtype not in (np.int64, np.float64):
                frame[name] = column.astype("float64" if column.hasnans else "int64")
            elif pa.types.is_date(kind) and pd.api.types.is_datetime64_any_dtype(column):
                arrow = pa.array(column, from_pandas=True).cast(pa.date32())
                frame[name] = pd.Series(pd.arrays.ArrowExtensionArray(arrow), index=frame.index)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            # Left as is: the type expectations or GX itself report what is wrong.
            log.debug("Column %s kept as %s: %s", name, column.dtype, exc)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _frame_to_validate(df: pd.DataFrame, suite: Suite) -> pd.DataFrame:
    """A shallow copy with a RangeIndex (GX's unexpected_index_list = row positions)."""
    frame = df.reset_index(drop=True)  # copy-on-write: df itself is never modified
    _prepare_columns(frame)
    for name in suite.derived_columns:
        source = DERIVED_COLUMNS[name]
        if source in frame.columns:
            frame[name] = _list_lengths(frame[source])
        else:  # GX then reports the missing helper column as a table-level failure
            log.warning("Cannot derive %s: column %s is missing", name, source)
    return frame


def validate_works(df: pd.DataFrame, *, run_date: dt.date, suite_path: str | Path | None = None,
                   data_docs_dir: str | Path | None = None) -> ValidationReport:
    """Validate ``citing_works`` rows; optionally render GX Data Docs into ``data_docs_dir``."""
    started = time.perf_counter()
    if isinstance(run_date, dt.datetime):  # a datetime does not compare with date cells
        run_date = run_date.date()
    suite = load_suite(suite_path)
    frame = _frame_to_validate(df, suite)
    gx_results, docs_index = _run_gx(frame, suite, run_parameters(run_date), data_docs_dir)

    blocking: dict[int, list[str]] = {}
    warnings: dict[int, list[str]] = {}
    table_failures: list[str] = []
    results: list[dict[str, Any]] = []
    by_name = {result.expectation_config.meta["name"]: result for result in gx_results}
    for rule in suite.rules:  # suite order, so names per row read like the YAML
        result = by_name[rule.name]
        detail = result.result or {}
        error = _raised(result.exception_info)
        indexes = detail.get("unexpected_index_list")
        summary = {
            "name": rule.name,
            "severity": rule.severity,
            "success": bool(result.success) and error is None,
            "unexpected_count": _int_or_none(detail.get("unexpected_count")),
            "element_count": _int_or_none(detail.get("element_count", len(frame))),
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
                error or detail.get("details") or detail.get("observed_value"))
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
    log.info("Validated %d rows against %s in %.2fs: %d rejected, %d with warnings, "
             "table-level failures: %s", report.rows, suite.name, report.seconds, len(blocking),
             len(warnings), ", ".join(table_failures) or "none")
    return report


def _run_gx(frame: pd.DataFrame, suite: Suite, parameters: dict[str, Any],
            data_docs_dir: str | Path | None) -> tuple[list[Any], Path | None]:
    """Run the suite on an ephemeral GX context; returns GX results and the Data Docs index."""
    started = time.perf_counter()
    with _quiet_gx():  # the import alone logs ~200 INFO lines
        import great_expectations as gx
    log.debug("great_expectations imported in %.2fs", time.perf_counter() - started)
    with _quiet_gx():  # again: modules imported above pinned their own loggers to INFO
        return _run_suite(gx, frame, suite, parameters, data_docs_dir)


def _run_suite(gx: Any, frame: pd.DataFrame, suite: Suite, parameters: dict[str, Any],
               data_docs_dir: str | Path | None) -> tuple[list[Any], Path | None]:
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.metadata_types import FailureSeverity

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
