"""Works shared by several configured reviews: fetched once, and a table of who cites whom."""
from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from include.living_review.storage import StoragePath, read_parquet, write_parquet_atomic
from include.living_review.storage.history import PORTFOLIO_FIELDS, latest_snapshots

log = logging.getLogger(__name__)


def fill_from_portfolio(rows: list[dict[str, Any]], donors: list[dict[str, Any]]) -> int:
    """Give id-only works the metadata another review already fetched; returns how many."""
    if not donors:
        return 0
    by_key = {f"{c}:{d[c]}": d for d in donors if d.get("title") for c in ("doi", "pmid", "pmcid") if d.get(c)}
    filled = 0
    for row in rows:
        if row.get("title"):
            continue
        donor = next((by_key[f"{c}:{row[c]}"] for c in ("doi", "pmid", "pmcid")
                      if row.get(c) and f"{c}:{row[c]}" in by_key), None)
        if donor is None:
            continue
        for name in PORTFOLIO_FIELDS:
            if not row.get(name) and donor.get(name) is not None:
                row[name] = donor[name]
        row["is_retracted"] = bool(row.get("is_retracted") or donor.get("is_retracted"))
        filled += 1
    if filled:
        log.info("portfolio: %d works took metadata another review had already fetched", filled)
    return filled


def write_portfolio(data_dir: StoragePath) -> StoragePath | None:
    """``portfolio/citations_by_review.parquet``: which citing work cites which configured reviews."""
    tables = []
    for review_id, layout in latest_snapshots(data_dir):
        table = read_parquet(layout.snapshot_file, columns=["work_id", "doi", "pmid", "pmcid", "title", "first_seen"])
        tables.append(table.append_column("review_id", pa.array([review_id] * table.num_rows, pa.string()))
                      .append_column("snapshot_date", pa.array([layout.snapshot_date] * table.num_rows, pa.date32())))
    if not tables:
        return None
    combined = pa.concat_tables(tables)
    keys = [f"doi:{d}" if d else (f"pmid:{p}" if p else (f"pmcid:{c}" if c else f"work:{w}"))
            for d, p, c, w in zip(*(combined.column(n).to_pylist() for n in ("doi", "pmid", "pmcid", "work_id")))]
    counts: dict[str, set[str]] = {}
    for key, review_id in zip(keys, combined.column("review_id").to_pylist()):
        counts.setdefault(key, set()).add(review_id)
    combined = combined.append_column("paper_key", pa.array(keys, pa.string()))
    combined = combined.append_column("n_reviews", pa.array([len(counts[k]) for k in keys], pa.int32()))
    return write_parquet_atomic(combined, data_dir / "portfolio" / "citations_by_review.parquet")
