"""Every pyarrow schema the project writes: the data contracts, in one place.

``CITING_WORKS_SCHEMA`` is *the* contract analysts rely on; ``docs/data-dictionary.md``
documents each table column by column and ``tests/living_review/records/test_schemas.py``
keeps the two in step.
"""
from __future__ import annotations

import pyarrow as pa

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
    pa.field("version_evidence", pa.list_(pa.string())),
    pa.field("relevance", pa.float32()),
    pa.field("relevance_reason", pa.string()),
], metadata={"contract": "living-review citing_works v4"})

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
     if f.name not in ("work_id", "first_seen", "last_reported", "versions", "version_evidence", "relevance",
                       "relevance_reason")]
    + [pa.field("omid", pa.string()), pa.field("related_dois", pa.list_(pa.string())),
       pa.field("is_preprint", pa.bool_()), pa.field("probe", pa.bool_()), pa.field("raw", pa.string())]
)

# Staged between merge and validate: the snapshot's columns plus the OpenCitations id
# (for the quarantine's raw payload look-up); a title may still be missing (quarantined later).
MERGED_SCHEMA = CITING_WORKS_SCHEMA.append(pa.field("omid", pa.string()))
MERGED_SCHEMA = MERGED_SCHEMA.set(MERGED_SCHEMA.get_field_index("title"), pa.field("title", pa.string()))

# runs/.../coverage.parquet: one row per source (and the enricher) per run.
COVERAGE_SCHEMA = pa.schema([
    pa.field("source", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
    pa.field("reason", pa.string()),
    pa.field("requests", pa.int64()),
    pa.field("metadata_requests", pa.int64()),
    pa.field("listed", pa.int64()),
    pa.field("works", pa.int64()),
    pa.field("unique_to_source", pa.int64()),
    pa.field("new_this_run", pa.int64()),
    pa.field("seconds", pa.float64()),
])

# changes/.../changes.parquet: the snapshot compared with the previous date's.
CHANGES_SCHEMA = pa.schema([
    pa.field("work_id", pa.string(), nullable=False),
    pa.field("change", pa.string(), nullable=False),
    pa.field("changed_fields", pa.list_(pa.string())),
    pa.field("title", pa.string()),
    pa.field("doi", pa.string()),
    pa.field("detail", pa.string()),
])

# events/review_id=<id>/snapshot_date=<date>/events-<run>.parquet: the append-only event
# log. ``event_id`` is the event's stable identity (work, kind, subject): the same change
# seen by two runs is one event, and each digest channel records which ids it delivered.
EVENTS_SCHEMA = pa.schema([
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("work_id", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("subject", pa.string(), nullable=False),
    pa.field("title", pa.string()),
    pa.field("doi", pa.string()),
    pa.field("detail", pa.string()),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("run_timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
], metadata={"contract": "living-review events v1"})

# references/review_id=<id>/snapshot_date=<date>/included_studies.parquet: the review's own
# reference list (its included studies), merged with the same id rules, watched for notices.
INCLUDED_STUDIES_SCHEMA = pa.schema([
    pa.field("work_id", pa.string(), nullable=False),
    pa.field("doi", pa.string()),
    pa.field("pmid", pa.string()),
    pa.field("pmcid", pa.string()),
    pa.field("openalex_id", pa.string()),
    pa.field("title", pa.string()),
    pa.field("authors", pa.list_(pa.string())),
    pa.field("journal", pa.string()),
    pa.field("publication_year", pa.int32()),
    pa.field("is_retracted", pa.bool_()),
    pa.field("update_notices", pa.list_(pa.string())),
    pa.field("sources", pa.list_(pa.string())),
    pa.field("listed_by", pa.list_(pa.string())),
    pa.field("first_seen", pa.timestamp("us", tz="UTC")),
], metadata={"contract": "living-review included_studies v1"})
