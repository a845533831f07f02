"""The typed record every source maps into, and the Parquet data contracts.

``CITING_WORKS_SCHEMA`` is *the* contract analysts rely on; ``docs/data-dictionary.md``
documents it column by column and ``tests/test_models.py`` keeps the two in step.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import pyarrow as pa


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
    # The record exactly as the source sent it (JSON text), kept for quarantine.
    raw: str | None = None

    @property
    def has_metadata(self) -> bool:
        """True when the record is good enough to publish without enrichment."""
        return bool(self.title) and self.publication_year is not None and bool(self.journal)

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


WORK_FIELDS = tuple(f.name for f in fields(Work))

# One version of a work: its DOI (or other id) and whether it is the preprint or the
# published (journal, book, proceedings) version.
VERSION_TYPE = pa.struct([pa.field("id", pa.string()), pa.field("kind", pa.string()),
                          pa.field("date", pa.date32())])

CITING_WORKS_SCHEMA = pa.schema([
    pa.field("work_id", pa.string(), nullable=False),
    pa.field("doi", pa.string()),
    pa.field("pmid", pa.string()),
    pa.field("pmcid", pa.string()),
    pa.field("openalex_id", pa.string()),
    pa.field("s2_paper_id", pa.string()),
    pa.field("title", pa.string(), nullable=False),
    pa.field("title_is_translated", pa.bool_()),
    pa.field("authors", pa.list_(pa.string())),
    pa.field("journal", pa.string()),
    pa.field("journal_abbrev", pa.string()),
    pa.field("publication_year", pa.int32()),
    pa.field("publication_date", pa.date32()),
    pa.field("volume", pa.string()),
    pa.field("issue", pa.string()),
    pa.field("pages", pa.string()),
    pa.field("publication_types", pa.list_(pa.string())),
    pa.field("language", pa.string()),
    pa.field("is_retracted", pa.bool_()),
    pa.field("sources", pa.list_(pa.string())),
    pa.field("source_ids", pa.map_(pa.string(), pa.string())),
    pa.field("first_seen", pa.timestamp("us", tz="UTC")),
    pa.field("last_reported", pa.timestamp("us", tz="UTC")),
    pa.field("abstract", pa.string()),
    pa.field("update_notices", pa.list_(pa.string())),
    pa.field("versions", pa.list_(VERSION_TYPE)),
    pa.field("relevance", pa.float32()),
    pa.field("relevance_reason", pa.string()),
], metadata={"contract": "living-review citing_works v3"})

QUARANTINE_SCHEMA = pa.schema([
    pa.field("work_id", pa.string()),
    pa.field("source", pa.string(), nullable=False),
    pa.field("title", pa.string()),
    pa.field("failed_expectations", pa.list_(pa.string()), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("raw_payload", pa.string()),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("quarantined_at", pa.timestamp("us", tz="UTC"), nullable=False),
])

# Per-source staged records: every Work field, nothing derived yet. Title may be
# null here (OpenCitations lists ids only); the merge and validation decide.
STAGED_SCHEMA = pa.schema(
    [pa.field(f.name, f.type) for f in CITING_WORKS_SCHEMA
     if f.name not in ("work_id", "first_seen", "last_reported", "versions", "relevance", "relevance_reason")]
    + [pa.field("omid", pa.string()), pa.field("related_dois", pa.list_(pa.string())),
       pa.field("is_preprint", pa.bool_()), pa.field("raw", pa.string())]
)


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
        if name in ("is_preprint", "is_retracted", "title_is_translated"):
            return [bool(v) for v in values]
        return values

    return [Work(*row) for row in zip(*(column(name) for name in WORK_FIELDS), strict=True)]
