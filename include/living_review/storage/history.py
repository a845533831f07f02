"""Reading what earlier runs committed: a snapshot's rows, and other reviews' latest snapshots."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from include.living_review.records import CITING_WORKS_SCHEMA
from include.living_review.storage.atomic import parquet_columns, read_parquet
from include.living_review.storage.committed import committed_dates
from include.living_review.storage.layout import Layout

# The metadata one review's snapshot lends another's works that only have ids.
PORTFOLIO_FIELDS = ("title", "title_is_translated", "authors", "journal", "journal_abbrev", "publication_year",
                    "publication_date", "volume", "issue", "pages", "publication_types", "language", "abstract",
                    "doi", "pmid", "pmcid")


def committed_rows(layout: Layout | None, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """A committed snapshot's rows (only ``columns`` when given: an abstract per row adds up)."""
    if layout is None:
        return []
    return read_parquet(layout.snapshot_file, columns=columns).to_pylist()


def committed_table(layout: Layout | None, columns: Sequence[str]) -> pa.Table:
    """``columns`` of a committed snapshot (empty without one).

    A column an older snapshot lacks (written under an earlier contract) is all nulls,
    so comparing with it reports the field as changed instead of failing the publish.
    """
    if layout is None:
        return CITING_WORKS_SCHEMA.empty_table().select(list(columns))
    present = set(parquet_columns(layout.snapshot_file))
    table = read_parquet(layout.snapshot_file, columns=[name for name in columns if name in present])
    for name in (name for name in columns if name not in present):
        field = CITING_WORKS_SCHEMA.field(name)
        table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table.select(list(columns))


def portfolio_rows(layout: Layout, columns: Sequence[str] = (*PORTFOLIO_FIELDS, "is_retracted")
                   ) -> list[dict[str, Any]]:
    """Rows of every *other* review's latest committed snapshot up to ``layout``'s date."""
    rows: list[dict[str, Any]] = []
    root = layout.data_dir / "snapshots"
    if not root.is_dir():
        return rows
    for review_dir in root.glob("review_id=*"):
        review_id = review_dir.name.split("=", 1)[1]
        if review_id == layout.review_id:
            continue
        dates = [d for d in committed_dates(layout.data_dir, review_id) if d <= layout.snapshot_date]
        if dates:
            rows.extend(read_parquet(Layout(layout.data_dir, review_id, dates[-1]).snapshot_file,
                                     columns=list(columns)).to_pylist())
    return rows


def latest_snapshots(data_dir: Any) -> list[tuple[str, Layout]]:
    """Each review's latest committed snapshot, by review id."""
    root = data_dir / "snapshots"
    out = []
    for review_dir in sorted(root.glob("review_id=*")) if root.is_dir() else []:
        review_id = review_dir.name.split("=", 1)[1]
        dates = committed_dates(data_dir, review_id)
        if dates:
            out.append((review_id, Layout(data_dir, review_id, dates[-1])))
    return out
