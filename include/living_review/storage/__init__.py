"""The ground floor's storage: where files live, the one atomic writer, the run commit, the lease.

- :mod:`.layout`: every path of the data directory (published, staging, ledgers);
- :mod:`.atomic`: the one atomic writer and the readers;
- :mod:`.commit`: one atomic commit per run, and recovery of an interrupted one;
- :mod:`.committed`: which dates are committed, and the commit a run builds on;
- :mod:`.locks`: the run lease and the date lock;
- :mod:`.paths`: local paths and ``s3://`` URLs behind one API.
"""
from __future__ import annotations

from include.living_review.storage.atomic import (
    CorruptFile,
    json_bytes,
    parquet_columns,
    parquet_writer,
    read_json,
    read_parquet,
    write_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from include.living_review.storage.commit import commit_run, recover, verify
from include.living_review.storage.committed import (
    base_commit,
    committed_dates,
    committed_manifest,
    pending_dates,
    previous_commit,
    uncommitted_dates,
)
from include.living_review.storage.layout import Layout, Staging, run_key
from include.living_review.storage.locks import PartitionLocked, date_lock, hold_lease, read_lease, release_lease
from include.living_review.storage.paths import StorageError, StoragePath, data_path, is_remote, local_mirror

# What the digest, the report and the CLI call it: a date is published once it is committed.
published_dates = committed_dates

__all__ = ["CorruptFile", "Layout", "PartitionLocked", "Staging", "StorageError", "StoragePath", "base_commit",
           "commit_run", "previous_commit",
           "committed_dates", "committed_manifest", "data_path", "date_lock", "hold_lease", "is_remote",
           "json_bytes", "local_mirror", "parquet_columns", "parquet_writer", "pending_dates", "published_dates",
           "read_json", "read_lease", "read_parquet", "recover", "release_lease", "run_key", "uncommitted_dates", "verify",
           "write_atomic", "write_json_atomic", "write_parquet_atomic"]
