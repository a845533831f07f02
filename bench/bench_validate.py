"""Time ``validate_works`` on synthetic ``citing_works`` rows (not a test; prints timings).

Run from the project root:
``.venv/bin/python bench/bench_validate.py [rows] [--repeat N] [--docs DIR]``.
About 2% of rows break a blocking rule and 10% carry a warning, so the per-row
bookkeeping is exercised too. The GX import is timed apart; the first validation in a
process also pays GX's one-off set-up, hence best and median.
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

from include.living_review.records import CITING_WORKS_SCHEMA  # noqa: E402

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
        "last_reported": [now] * rows, "abstract": [None] * rows, "update_notices": [[]] * rows,
        "versions": [[]] * rows, "relevance": [0.5] * rows, "relevance_reason": ["matches: peer support"] * rows,
    }
    return pa.table(columns, schema=CITING_WORKS_SCHEMA)


def run(rows: int = 100_000, *, repeat: int = 3, docs: Path | None = None) -> dict[str, float]:
    """Validate ``rows`` synthetic rows ``repeat`` times; timings in seconds."""
    started = time.perf_counter()
    import great_expectations  # noqa: F401  (timed apart: it is paid once per process)
    gx_import = time.perf_counter() - started

    from data_quality.validate import validate_works

    df = synthetic_table(rows).to_pandas()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        report = validate_works(df, run_date=RUN_DATE, data_docs_dir=docs)
        times.append(time.perf_counter() - started)
    best = min(times)
    return {"rows": rows, "gx_import_s": gx_import, "best_s": best,
            "median_s": sorted(times)[len(times) // 2], "rows_per_s": rows / best,
            "rejected": len(report.blocking_failures), "warning_rows": len(report.warnings)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rows", nargs="?", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--docs", type=Path, help="also render Data Docs into this folder")
    args = parser.parse_args()
    result = run(args.rows, repeat=args.repeat, docs=args.docs)
    print(f"great_expectations import: {result['gx_import_s']:.2f}s")
    print(f"validate_works on {result['rows']:,} rows: best {result['best_s']:.2f}s, "
          f"median {result['median_s']:.2f}s of {args.repeat} ({result['rows_per_s']:,.0f} rows/s)")
    print(f"rejected {result['rejected']:,} rows, {result['warning_rows']:,} with warnings")


if __name__ == "__main__":
    main()
