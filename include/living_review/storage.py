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

The data directory is a local path or an object-store URL (``s3://bucket/prefix``). A URL
becomes a ``UPath`` (universal_pathlib over fsspec/s3fs, what Airflow's ``ObjectStoragePath``
builds on) opened with :func:`settings.storage_options`; a local one stays a ``pathlib.Path``.
Both answer ``/``, ``exists``, ``glob``, ``iterdir``, ``open`` and ``unlink``, so the pipeline
uses one set of calls. What differs (no rename, no flock) is handled here, see
:func:`is_remote`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)
_DATE_DIR = re.compile(r"^snapshot_date=(\d{4}-\d{2}-\d{2})$")


class StorageError(RuntimeError):
    """Writing to the data directory failed; the published snapshot is untouched."""


class PartitionLocked(RuntimeError):
    """Another run is writing the same review and date."""


# A local ``pathlib.Path`` or a ``upath.UPath`` on an object store: both have the same API.
StoragePath = Any


def is_remote(path: Any) -> bool:
    """True for a path on an object store (a ``UPath`` whose protocol is not the local disk)."""
    return not isinstance(path, Path) and getattr(path, "protocol", "") not in ("", "file", "local")


def data_path(data_dir: str | Path | Any) -> StoragePath:
    """``data_dir`` as a path: a ``UPath`` for ``scheme://...`` URLs, else a resolved ``Path``."""
    if isinstance(data_dir, Path):
        return data_dir.resolve()
    if is_remote(data_dir):
        return data_dir
    text = str(data_dir)
    if "://" in text and not text.startswith("file://"):
        from upath import UPath

        from include.living_review import settings

        return UPath(text.rstrip("/"), **settings.storage_options())
    return Path(text.removeprefix("file://")).resolve()


@dataclass(frozen=True)
class Layout:
    data_dir: StoragePath
    review_id: str
    snapshot_date: dt.date

    @classmethod
    def of(cls, data_dir: str | Path, review_id: str, snapshot_date: dt.date | str) -> Layout:
        if isinstance(snapshot_date, str):
            snapshot_date = dt.date.fromisoformat(snapshot_date)
        return cls(data_path(data_dir), review_id, snapshot_date)

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


def published_dates(data_dir: str | Path | Any, review_id: str) -> list[dt.date]:
    """Dates whose snapshot is published.

    On an object store a date also needs its manifest: :func:`publish_files` writes the
    manifest last, as the commit marker of a first publish (see there).
    """
    base = data_path(data_dir)
    root = base / "snapshots" / f"review_id={review_id}"
    if not root.is_dir():
        return []
    dates = []
    for child in root.iterdir():
        match = _DATE_DIR.match(child.name)
        if match and (child / "citing_works.parquet").is_file():
            day = dt.date.fromisoformat(match.group(1))
            if is_remote(base) and not Layout(base, review_id, day).manifest_file.is_file():
                continue
            dates.append(day)
    return sorted(dates)


def read_parquet(path: StoragePath, columns: Sequence[str] | None = None) -> pa.Table:
    """``pq.read_table`` for a local path or an object-store path."""
    columns = list(columns) if columns is not None else None  # pyarrow takes lists, not tuples
    if not is_remote(path):
        return pq.read_table(path, columns=columns)
    with path.open("rb") as handle:
        return pq.read_table(handle, columns=columns)


def parquet_columns(path: StoragePath) -> list[str]:
    """The column names of a Parquet file, from its footer only."""
    if not is_remote(path):
        return pq.read_schema(path).names
    with path.open("rb") as handle:
        return pq.read_schema(handle).names


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _put_object(final: StoragePath, data: bytes) -> StoragePath:
    """One PUT: an object store shows the whole new object or the old one, never a part.

    The bytes are built in memory first because an fsspec file that fails mid-write
    still uploads what it has when closed.
    """
    try:
        final.write_bytes(data)
    except OSError as exc:
        raise _storage_error("write", final, exc) from exc
    return final


@contextlib.contextmanager
def local_mirror(target: StoragePath) -> Iterator[Path]:
    """A local directory for tools that only write to disk (GX Data Docs), uploaded to ``target``."""
    if not is_remote(target):
        yield target
        return
    with tempfile.TemporaryDirectory(prefix="living-review-") as tmp:
        yield Path(tmp)
        try:
            for local in sorted(Path(tmp).rglob("*")):
                if local.is_file():
                    remote = target.joinpath(*local.relative_to(tmp).parts)
                    remote.fs.put_file(str(local), remote.path)
        except OSError as exc:
            raise _storage_error("upload", target, exc) from exc


def _storage_error(action: str, path: StoragePath, exc: OSError) -> StorageError:
    hint = {errno.ENOSPC: "the disk is full; free space and rerun",
            errno.EACCES: "permission denied; make the data directory writable by the Airflow user",
            errno.EROFS: "the file system is read-only; point LIVING_REVIEW_DATA_DIR at a writable place",
            }.get(exc.errno or 0, "check the data directory and rerun")
    return StorageError(f"could not {action} {path}: {exc.strerror or exc}; {hint}. "
                        "The previously published snapshot is unchanged.")


def write_parquet_atomic(table: pa.Table, final: StoragePath) -> StoragePath:
    """Write ``table`` next to ``final`` under a hidden temp name, fsync, then rename over it.

    The temp name starts with ``.`` so pyarrow/pandas dataset discovery skips it, and
    ``os.replace`` is atomic on POSIX: a reader sees the old file or the new one.
    On an object store the object is written with one PUT, which is atomic per object.
    """
    if is_remote(final):
        return _put_object(final, _parquet_bytes(table))
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


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"


def write_json_atomic(data: Any, final: StoragePath) -> StoragePath:
    if is_remote(final):
        return _put_object(final, _json_text(data).encode("utf-8"))
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
    if any(is_remote(final) for final, _ in files):
        _publish_objects(files)
        return
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


def _publish_objects(files: Sequence[tuple[StoragePath, Callable[[Path], None]]]) -> None:
    """:func:`publish_files` on an object store, which has no rename.

    Phase 1 renders every file to a local temp directory (a writer that fails leaves
    nothing in the bucket). Phase 2 uploads them in the given order, each with one
    atomic PUT, after a server-side copy of the object it replaces; an upload that
    fails restores those copies and deletes new objects. The manifest comes last in
    the list, so it is the commit marker: :func:`published_dates` ignores a first
    publish without it. What is *not* guaranteed (unlike a POSIX rename): a reader
    listing the partition during phase 2 of a rerun may see some tables of the new run
    beside some of the old one for the seconds the uploads take, and a worker killed
    mid-phase-2 leaves that mix (the manifest's ``run_id`` tells, a rerun repairs it).
    """
    with tempfile.TemporaryDirectory(prefix="living-review-") as tmp:
        staged: list[tuple[Path, StoragePath]] = []
        current = files[0][0]
        try:
            for i, (final, write) in enumerate(files):
                current = final
                local = Path(tmp) / f"{i}-{final.name}"
                write(local)
                staged.append((local, final))
        except OSError as exc:
            raise _storage_error("write", current, exc) from exc

        done: list[tuple[StoragePath, StoragePath | None]] = []
        try:
            for local, final in staged:
                current = final
                backup = None
                if final.exists():
                    backup = final.with_name(f".{final.name}.{uuid.uuid4().hex}.bak")
                    final.fs.copy(final.path, backup.path)
                done.append((final, backup))
                final.fs.put_file(str(local), final.path)
        except OSError as exc:
            for final, backup in reversed(done):
                with contextlib.suppress(OSError):
                    if backup is not None:
                        final.fs.copy(backup.path, final.path)
                    else:
                        final.unlink(missing_ok=True)
            raise _storage_error("publish", current, exc) from exc
        finally:
            for _, backup in done:
                if backup is not None:
                    with contextlib.suppress(OSError):
                        backup.unlink(missing_ok=True)


def read_json(path: StoragePath, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


@contextlib.contextmanager
def partition_lock(layout: Layout) -> Iterator[None]:
    """Exclusive lock on one review + date, so overlapping runs never interleave writes.

    Object stores have no ``flock``: there the lock is a no-op, and the DAG's
    ``max_active_runs=1`` (one run per review at a time) is the guard.
    """
    if is_remote(layout.lock_file):
        log.info("%s is on an object store: no partition lock (max_active_runs=1 keeps runs apart)",
                 layout.data_dir)
        yield
        return
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
