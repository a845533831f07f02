"""The typed record every source maps into, and its round trip through Arrow."""
from __future__ import annotations

import datetime as dt
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import pyarrow as pa

from include.living_review.records.schemas import STAGED_SCHEMA


@dataclass
class Work:
    """One citing paper as one source (or the merge) sees it."""

    title: str | None
    doi: str | None = None
    pmid: str | None = None
    pmcid: str | None = None
    openalex_id: str | None = None
    s2_paper_id: str | None = None
    omid: str | None = None
    title_is_translated: bool = False
    authors: list[str] = field(default_factory=list)
    journal: str | None = None
    journal_abbrev: str | None = None
    publication_year: int | None = None
    publication_date: dt.date | None = None
    volume: str | None = None
    issue: str | None = None
    pages: str | None = None
    publication_types: list[str] = field(default_factory=list)
    language: str | None = None
    is_retracted: bool = False
    sources: list[str] = field(default_factory=list)
    source_ids: dict[str, str] = field(default_factory=dict)
    abstract: str | None = None
    # Notices the source links to this work: "retraction", "correction", "expression_of_concern",
    # optionally followed by ":<id of the notice>".
    update_notices: list[str] = field(default_factory=list)
    # DOIs of other versions of the same work (preprint <-> published), from source relations.
    related_dois: list[str] = field(default_factory=list)
    is_preprint: bool = False
    # Fetched to refresh a known work (an update probe) or to enrich one, not because the
    # source listed it as citing the review: it adds metadata but does not report the work.
    probe: bool = False
    # The record exactly as the source sent it (JSON text), kept for quarantine.
    raw: str | None = None

    @property
    def has_metadata(self) -> bool:
        """True when the record is good enough to publish without enrichment."""
        return bool(self.title) and self.publication_year is not None and bool(self.journal)

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


WORK_FIELDS = tuple(f.name for f in fields(Work))

def works_to_table(works: list[Work]) -> pa.Table:
    """Staged Works as an Arrow table with :data:`STAGED_SCHEMA`."""
    try:
        # Arrow's row converter reads each Work's own __dict__ (maps from dicts): about half
        # the time of building a Python list per column first.
        return pa.Table.from_pylist([vars(w) for w in works], schema=STAGED_SCHEMA)
    except UnicodeEncodeError:
        columns = {name: [getattr(w, name) for w in works] for name in STAGED_SCHEMA.names}
        # A lone surrogate (from a JSON "\ud83d" escape) cannot be stored as UTF-8; replace
        # it rather than lose the whole source. Only this rare slow path pays the cost.
        return pa.table(_scrub_surrogates(columns), schema=STAGED_SCHEMA)


def _scrub_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {k: _scrub_surrogates(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_scrub_surrogates(v) for v in value)
    if isinstance(value, list):
        return [_scrub_surrogates(v) for v in value]
    return value


def table_to_works(table: pa.Table) -> list[Work]:
    """Inverse of :func:`works_to_table`; columns the table lacks (``raw``) take their defaults.

    Column-wise (``to_pydict``) rather than ``to_pylist``: no dict per row, which at
    100k records is most of the cost of reading a staged file back.
    """
    columns = table.to_pydict()
    n = table.num_rows
    lists = ("authors", "publication_types", "sources", "update_notices", "related_dois")

    def column(name: str) -> list[Any]:
        values = columns.get(name)
        if values is None:
            spec = Work.__dataclass_fields__[name]
            if spec.default_factory is not MISSING:
                return [spec.default_factory() for _ in range(n)]
            return [spec.default] * n
        if name in lists:
            return [v or [] for v in values]
        if name == "source_ids":
            return [dict(v or ()) for v in values]
        if name in ("is_preprint", "is_retracted", "title_is_translated", "probe"):
            return [bool(v) for v in values]
        return values

    return [Work(*row) for row in zip(*(column(name) for name in WORK_FIELDS), strict=True)]
