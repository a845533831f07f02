"""Where every file of a run lives, and how files are written so readers never see half of one.

Layout under the data directory (Hive partitioning, so pandas, DuckDB, pyarrow and
Spark read the partition columns ``review_id`` and ``snapshot_date`` from the path)::

    snapshots/review_id=<id>/snapshot_date=<date>/citing_works.parquet
    quarantine/review_id=<id>/snapshot_date=<date>/rejected.parquet
    changes/review_id=<id>/snapshot_date=<date>/changes.parquet
    runs/review_id=<id>/snapshot_date=<date>/manifest.json, coverage.parquet
    staging/review_id=<id>/snapshot_date=<date>/...   (task hand-offs; never read by analysts)
    digests/review_id=<id>/ledger.json                 (what was delivered, per channel)
    outbox/<id>/...                                    (digests when no SMTP/Slack is configured)
    docs/<id>/...                                      (Great Expectations Data Docs)
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

_DATE_DIR = re.compile(r"^snapshot_date=(\d{4}-\d{2}-\d{2})$")


class StorageError(RuntimeError):
    """Writing to the data directory failed; the published snapshot is untouched."""


class PartitionLocked(RuntimeError):
    """Another run is writing the same review and date."""


@dataclass(frozen=True)
class Layout:
    data_dir: Path
    review_id: str
    snapshot_date: dt.date

    @classmethod
    def of(cls, data_dir: str | Path, review_id: str, snapshot_date: dt.date | str) -> Layout:
        if isinstance(snapshot_date, str):
            snapshot_date = dt.date.fromisoformat(snapshot_date)
        return cls(Path(data_dir).resolve(), review_id, snapshot_date)

    def _partition(self, table: str) -> Path:
        return self.data_dir / table / f"review_id={self.review_id}" / f"snapshot_date={self.snapshot_date.isoformat()}"

    @property
    def snapshot_file(self) -> Path:
        return self._partition("snapshots") / "citing_works.parquet"

    @property
    def quarantine_file(self) -> Path:
        return self._partition("quarantine") / "rejected.parquet"

    @property
    def changes_file(self) -> Path:
        return self._partition("changes") / "changes.parquet"

    @property
    def run_dir(self) -> Path:
        return self._partition("runs")

    @property
    def manifest_file(self) -> Path:
        return self.run_dir / "manifest.json"

    @property
    def coverage_file(self) -> Path:
        return self.run_dir / "coverage.parquet"

    @property
    def staging_dir(self) -> Path:
        return self._partition("staging")

    @property
    def ledger_file(self) -> Path:
        return self.data_dir / "digests" / f"review_id={self.review_id}" / "ledger.json"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def docs_dir(self) -> Path:
        return self.data_dir / "docs" / self.review_id

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "locks" / f"{self.review_id}__{self.snapshot_date.isoformat()}.lock"

    def snapshot_dates(self) -> list[dt.date]:
        """Dates with a *published* snapshot for this review, oldest first."""
        return published_dates(self.data_dir, self.review_id)

    def previous(self) -> Layout | None:
        """The latest published snapshot strictly before this date (reruns stay idempotent)."""
        earlier = [d for d in self.snapshot_dates() if d < self.snapshot_date]
        return Layout(self.data_dir, self.review_id, earlier[-1]) if earlier else None


def published_dates(data_dir: str | Path, review_id: str) -> list[dt.date]:
    root = Path(data_dir) / "snapshots" / f"review_id={review_id}"
    if not root.is_dir():
        return []
    dates = []
    for child in root.iterdir():
        match = _DATE_DIR.match(child.name)
        if match and (child / "citing_works.parquet").is_file():
            dates.append(dt.date.fromisoformat(match.group(1)))
    return sorted(dates)


def _storage_error(action: str, path: Path, exc: OSError) -> StorageError:
    hint = {errno.ENOSPC: "the disk is full; free space and rerun",
            errno.EACCES: "permission denied; make the data directory writable by the Airflow user",
            errno.EROFS: "the file system is read-only; point LIVING_REVIEW_DATA_DIR at a writable place",
            }.get(exc.errno or 0, "check the data directory and rerun")
    return StorageError(f"could not {action} {path}: {exc.strerror or exc}; {hint}. "
                        "The previously published snapshot is unchanged.")


def write_parquet_atomic(table: pa.Table, final: Path) -> Path:
    """Write ``table`` next to ``final`` under a hidden temp name, fsync, then rename over it.

    The temp name starts with ``.`` so pyarrow/pandas dataset discovery skips it, and
    ``os.replace`` is atomic on POSIX: a reader sees the old file or the new one.
    """
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _storage_error("write", final, exc) from exc
    return final


def write_json_atomic(data: Any, final: Path) -> Path:
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True, default=str, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _storage_error("write", final, exc) from exc
    return final


def parquet_file(table: pa.Table) -> Callable[[Path], None]:
    return lambda path: pq.write_table(table, path, compression="zstd")


def json_file(data: Any) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True, default=str, ensure_ascii=False)
            handle.write("\n")
    return write


def publish_files(files: Sequence[tuple[Path, Callable[[Path], None]]]) -> None:
    """Publish several files as one change: all of them, or none.

    Phase 1 writes every file under a hidden temp name (a full disk or a permission
    error leaves nothing visible). Phase 2 renames them into place, keeping a hard-link
    backup of each file it replaces; if a rename fails, the ones already done are rolled
    back, so readers never see half of a run.
    """
    staged: list[tuple[Path, Path]] = []
    current = files[0][0] if files else Path(".")
    try:
        for final, write in files:
            current = final
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
            staged.append((tmp, final))
            write(tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
    except OSError as exc:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise _storage_error("write", current, exc) from exc

    done: list[tuple[Path, Path | None]] = []
    try:
        for tmp, final in staged:
            current = final
            backup = None
            if final.exists():
                backup = final.with_name(f".{final.name}.{uuid.uuid4().hex}.bak")
                os.link(final, backup)
            os.replace(tmp, final)
            done.append((final, backup))
    except OSError as exc:
        for final, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, final)
                else:
                    final.unlink()
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise _storage_error("publish", current, exc) from exc
    finally:
        for _, backup in done:
            if backup is not None:
                with contextlib.suppress(OSError):
                    backup.unlink()


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


@contextlib.contextmanager
def partition_lock(layout: Layout) -> Iterator[None]:
    """Exclusive lock on one review + date, so overlapping runs never interleave writes."""
    try:
        layout.lock_file.parent.mkdir(parents=True, exist_ok=True)
        handle = open(layout.lock_file, "a+")
    except OSError as exc:
        raise _storage_error("create the lock file", layout.lock_file, exc) from exc
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise PartitionLocked(f"another run is writing review {layout.review_id!r} for "
                                  f"{layout.snapshot_date}; wait for it to finish") from exc
        yield
    finally:
        handle.close()
