"""Time ``validate_works`` on synthetic ``citing_works`` rows (not a test; prints timings).

Run from the project root: ``.venv/bin/python bench/bench_validate.py [rows] [--docs DIR]``.
About 2% of rows break a blocking rule and 10% carry a warning, so the per-row
bookkeeping is exercised too.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from include.living_review.models import CITING_WORKS_SCHEMA  # noqa: E402

RUN_DATE = dt.date(2025, 6, 1)


def synthetic_table(rows: int, seed: int = 7) -> pa.Table:
    """Rows with realistic ids; a few deliberately bad ones."""
    rng = np.random.default_rng(seed)
    n = np.arange(rows)
    doi = np.char.add("10.1234/lr.", n.astype(str)).astype(object)
    doi[rng.random(rows) < 0.05] = None
    pmid = np.char.add("", (n + 1_000_000).astype(str)).astype(object)
    pmcid = np.char.add("PMC", (n + 5_000_000).astype(str)).astype(object)
    work_id = np.where(doi != None, np.char.add("doi:", doi.astype(str)),  # noqa: E711
                       np.char.add("pmid:", pmid.astype(str))).astype(object)
    title = np.char.add("A study of citing behaviour, part ", n.astype(str)).astype(object)
    journal = np.full(rows, "Journal of Living Reviews", dtype=object)
    journal[rng.random(rows) < 0.05] = None
    year = rng.integers(1990, 2026, rows).astype(np.int32)

    bad = rng.random(rows) < 0.02
    bad_kind = rng.integers(0, 4, rows)
    doi[bad & (bad_kind == 0)] = "https://doi.org/10.1234/X"
    pmid[bad & (bad_kind == 1)] = "0042"
    pmcid[bad & (bad_kind == 2)] = "12345"
    year[bad & (bad_kind == 3)] = 1850

    now = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
    columns = {
        "work_id": work_id, "doi": doi, "pmid": pmid, "pmcid": pmcid,
        "openalex_id": [None] * rows, "s2_paper_id": [None] * rows, "title": title,
        "title_is_translated": [False] * rows, "authors": [["Doe J", "Roe R"]] * rows,
        "journal": journal, "journal_abbrev": [None] * rows, "publication_year": year,
        "publication_date": ((year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
                             + np.timedelta64(14, "D")),
        "volume": ["1"] * rows, "issue": ["2"] * rows, "pages": ["3-4"] * rows,
        "publication_types": [["article"]] * rows, "language": ["en"] * rows,
        "is_retracted": [False] * rows, "sources": [["openalex", "pubmed"]] * rows,
        "source_ids": [[("openalex", "W1")]] * rows, "first_seen": [now] * rows,
        "last_reported": [now] * rows,
    }
    return pa.table(columns, schema=CITING_WORKS_SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rows", nargs="?", type=int, default=100_000)
    parser.add_argument("--docs", type=Path, help="also render Data Docs into this folder")
    args = parser.parse_args()

    df = synthetic_table(args.rows).to_pandas()
    started = time.perf_counter()
    import great_expectations  # noqa: F401
    gx_import = time.perf_counter() - started

    from data_quality.validate import systemic_failure, validate_works

    report = validate_works(df, run_date=RUN_DATE, data_docs_dir=args.docs)
    print(f"great_expectations import: {gx_import:.2f}s")
    print(f"validate_works: {args.rows} rows in {report.seconds:.2f}s "
          f"({args.rows / report.seconds:,.0f} rows/s)")
    print(f"rejected {len(report.blocking_failures)}, warnings {len(report.warnings)}, "
          f"blocking counts {report.counts('blocking')}")
    print(f"systemic (max_share=0.1): {systemic_failure(report, max_share=0.1)}")
    if report.data_docs_index:
        print(f"data docs: {report.data_docs_index}")


if __name__ == "__main__":
    main()
