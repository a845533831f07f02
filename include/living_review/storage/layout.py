"""Where every file lives: the published layout, a run's staging files, the review's ledgers.

Published (Hive partitioning, so pandas, DuckDB, pyarrow and Spark read the partition
columns ``review_id`` and ``snapshot_date`` from the path; ``docs/data-dictionary.md``)::

    snapshots/review_id=<id>/snapshot_date=<date>/citing_works.parquet
    quarantine/review_id=<id>/snapshot_date=<date>/rejected.parquet
    changes/review_id=<id>/snapshot_date=<date>/changes.parquet
    events/review_id=<id>/snapshot_date=<date>/events-<commit>.parquet  (append-only)
    references/review_id=<id>/snapshot_date=<date>/included_studies.parquet
    runs/review_id=<id>/snapshot_date=<date>/manifest.json, coverage.parquet
    runs/review_id=<id>/snapshot_date=<date>/digest.json               (what the digest did)

Internal (never read by analysts)::

    staging/review_id=<id>/snapshot_date=<date>/run=<run key>/...   (one folder per run)
    runs/review_id=<id>/snapshot_date=<date>/.commit.json            (a commit in progress)
    digests/review_id=<id>/ledger.json                               (deliveries, per channel)
    locks/<id>__<date>.json                                          (the run lease)
    outbox/<id>/...                                                  (digests without SMTP/Slack)
    docs/<id>/...                                                    (Great Expectations Data Docs)

Every file name is here and nowhere else: call sites ask a :class:`Layout` or a
:class:`Staging` for a path.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from include.living_review.storage.paths import StoragePath, data_path

_DATE_DIR = re.compile(r"^snapshot_date=(\d{4}-\d{2}-\d{2})$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def run_key(run_id: str) -> str:
    """A file-name-safe, unique form of an Airflow run id (``manual__2026-03-09T00:00:00+00:00``)."""
    readable = _UNSAFE.sub("-", run_id).strip("-.")[:60] or "run"
    return f"{readable}-{hashlib.sha1(run_id.encode('utf-8')).hexdigest()[:8]}"


@dataclass(frozen=True)
class Layout:
    """The files of one review and one snapshot date."""

    data_dir: StoragePath
    review_id: str
    snapshot_date: dt.date

    @classmethod
    def of(cls, data_dir: str | Path, review_id: str, snapshot_date: dt.date | str) -> Layout:
        if isinstance(snapshot_date, str):
            snapshot_date = dt.date.fromisoformat(snapshot_date)
        return cls(data_path(data_dir), review_id, snapshot_date)

    def on(self, snapshot_date: dt.date) -> Layout:
        """The same review on another date."""
        return Layout(self.data_dir, self.review_id, snapshot_date)

    def review_root(self, table: str) -> StoragePath:
        return self.data_dir / table / f"review_id={self.review_id}"

    def _partition(self, table: str) -> StoragePath:
        return self.review_root(table) / f"snapshot_date={self.snapshot_date.isoformat()}"

    # -- published ---------------------------------------------------------------
    @property
    def snapshot_file(self) -> StoragePath:
        return self._partition("snapshots") / "citing_works.parquet"

    @property
    def quarantine_file(self) -> StoragePath:
        return self._partition("quarantine") / "rejected.parquet"

    @property
    def changes_file(self) -> StoragePath:
        return self._partition("changes") / "changes.parquet"

    @property
    def events_dir(self) -> StoragePath:
        return self._partition("events")

    def events_file(self, commit_id: str) -> StoragePath:
        return self.events_dir / f"events-{commit_id}.parquet"

    @property
    def references_file(self) -> StoragePath:
        return self._partition("references") / "included_studies.parquet"

    @property
    def run_dir(self) -> StoragePath:
        return self._partition("runs")

    @property
    def manifest_file(self) -> StoragePath:
        return self.run_dir / "manifest.json"

    @property
    def coverage_file(self) -> StoragePath:
        return self.run_dir / "coverage.parquet"

    @property
    def digest_status_file(self) -> StoragePath:
        return self.run_dir / "digest.json"

    def published_partitions(self) -> list[StoragePath]:
        """Every published folder of this date (where a killed writer may leave temp files)."""
        return [self._partition(t) for t in ("snapshots", "quarantine", "changes", "events", "references", "runs")]

    # -- internal ----------------------------------------------------------------
    @property
    def journal_file(self) -> StoragePath:
        """A commit in progress (see :mod:`include.living_review.storage.commit`)."""
        return self.run_dir / ".commit.json"

    @property
    def staging_root(self) -> StoragePath:
        return self._partition("staging")

    def staging(self, run_id: str) -> Staging:
        return Staging(self.staging_root / f"run={run_key(run_id)}")

    @property
    def ledger_file(self) -> StoragePath:
        return self.data_dir / "digests" / f"review_id={self.review_id}" / "ledger.json"

    @property
    def outbox_dir(self) -> StoragePath:
        return self.data_dir / "outbox"

    @property
    def alerts_dir(self) -> StoragePath:
        return self.outbox_dir / "alerts" / self.review_id

    @property
    def docs_dir(self) -> StoragePath:
        return self.data_dir / "docs" / self.review_id

    @property
    def lease_file(self) -> StoragePath:
        return self.data_dir / "locks" / f"{self.review_id}__{self.snapshot_date.isoformat()}.json"

    @property
    def lock_file(self) -> StoragePath:
        return self.data_dir / "locks" / f"{self.review_id}__{self.snapshot_date.isoformat()}.lock"

    # -- history -----------------------------------------------------------------
    def all_dates_on_disk(self) -> list[dt.date]:
        """Every date with a snapshot folder, committed or not."""
        root = self.review_root("snapshots")
        if not root.is_dir():
            return []
        return sorted(dt.date.fromisoformat(m.group(1)) for child in root.iterdir()
                      if (m := _DATE_DIR.match(child.name)))


@dataclass(frozen=True)
class Staging:
    """One run's hand-off files. Scoped to the run, so two runs never share a file."""

    dir: StoragePath

    def source_records(self, source: str) -> StoragePath:
        return self.dir / f"source={source}.parquet"

    def source_stats(self, source: str) -> StoragePath:
        return self.dir / f"source={source}.json"

    def enrichment_records(self, enricher: str) -> StoragePath:
        return self.dir / f"enrich={enricher}.parquet"

    def enrichment_stats(self, enricher: str) -> StoragePath:
        return self.dir / f"enrich={enricher}.json"

    @property
    def references(self) -> StoragePath:
        return self.dir / "references.parquet"

    @property
    def references_stats(self) -> StoragePath:
        return self.dir / "references.json"

    @property
    def merged(self) -> StoragePath:
        return self.dir / "merged.parquet"

    @property
    def merge_stats(self) -> StoragePath:
        return self.dir / "merge.json"

    @property
    def validated(self) -> StoragePath:
        return self.dir / "validated.parquet"

    @property
    def rejected(self) -> StoragePath:
        return self.dir / "rejected.parquet"

    @property
    def validation(self) -> StoragePath:
        return self.dir / "validation.json"

    @property
    def commit_dir(self) -> StoragePath:
        """Where publish renders the files of the commit before they move into place."""
        return self.dir / "commit"
