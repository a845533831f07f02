"""The one atomic writer: readers see the old file or the new one, never a part.

Locally the bytes go to a hidden temp file beside the target (``.name.<uuid>.tmp``: the
leading dot hides it from pyarrow, pandas, DuckDB and Spark discovery), are fsynced, and
``os.replace`` swaps it in. On an object store the object is written with one PUT, which
is atomic per object; the bytes are built in memory first because an fsspec file that
fails mid-write still uploads what it has when closed.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from include.living_review.storage.paths import StoragePath, data_path, is_remote, storage_error

Writer = Callable[[IO[bytes]], None]


def temp_name(final: StoragePath, suffix: str = "tmp") -> StoragePath:
    """A hidden sibling of ``final`` that no dataset reader lists."""
    return final.with_name(f".{final.name}.{uuid.uuid4().hex}.{suffix}")


def write_atomic(final: StoragePath, content: bytes | Writer) -> StoragePath:
    """Write ``content`` (bytes, or a function writing to a binary handle) to ``final`` atomically."""
    final = final if isinstance(final, Path) or is_remote(final) else data_path(final)
    if is_remote(final):
        data = content if isinstance(content, bytes) else render(content)
        try:
            final.write_bytes(data)
        except OSError as exc:
            raise storage_error("write", final, exc) from exc
        return final
    tmp = temp_name(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            if isinstance(content, bytes):
                handle.write(content)
            else:
                content(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise storage_error("write", final, exc) from exc
    return final


def render(write: Writer) -> bytes:
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def parquet_writer(table: pa.Table) -> Writer:
    return lambda handle: pq.write_table(table, handle, compression="zstd")


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n").encode("utf-8")


def write_parquet_atomic(table: pa.Table, final: StoragePath) -> StoragePath:
    return write_atomic(final, parquet_writer(table))


def write_json_atomic(data: Any, final: StoragePath) -> StoragePath:
    return write_atomic(final, json_bytes(data))


class CorruptFile(ValueError):
    """A file of the data directory cannot be parsed (truncated, or written by something else)."""


def read_json(path: StoragePath, default: Any = None) -> Any:
    """A JSON file's content, ``default`` when it does not exist; a damaged one raises :class:`CorruptFile`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CorruptFile(f"{path} is not valid JSON ({exc}); it was truncated or edited by hand. "
                          "Restore it from a backup or delete it, then rerun") from exc


def _parquet_fix(path: StoragePath) -> str:
    """What to do about a damaged Parquet file: stage it again, or republish (or drop) its date."""
    if "staging" in Path(str(path)).parts:
        return "clear the run's tasks from begin_run so they stage it again"
    folder = path.parent
    day = folder.name.removeprefix("snapshot_date=") if folder.name.startswith("snapshot_date=") else "that date"
    return f"rerun {day} to republish it, or delete its partition {folder}"


def _read_parquet_part(path: StoragePath, read: Callable[[Any], Any]) -> Any:
    """``read(path or handle)``; a damaged file raises :class:`CorruptFile`, an I/O error :class:`StorageError`.

    pyarrow says only ``ArrowInvalid: Parquet magic bytes not found in footer`` for a cut
    file, and names neither the file nor a fix. It raises ``OSError`` without an errno for
    data it cannot decode, and with one for a real I/O error.
    """
    try:
        if not is_remote(path):
            return read(path)
        with path.open("rb") as handle:
            return read(handle)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno is not None:
            raise storage_error("read", path, exc) from exc
        problem = exc
    except (pa.ArrowException, ValueError) as exc:  # ArrowInvalid is a ValueError
        problem = exc
    reason = " ".join(str(problem).split()) or type(problem).__name__
    if reason.startswith("Could not open Parquet input source") and "': " in reason:
        reason = reason.split("': ", 1)[1]  # pyarrow's prefix repeats the path
    raise CorruptFile(f"{path} is not a readable Parquet file ({reason[:200]}); it was truncated or "
                      f"overwritten. Fix: {_parquet_fix(path)}") from problem


def read_parquet(path: StoragePath, columns: Sequence[str] | None = None) -> pa.Table:
    """``pq.read_table`` for a local path or an object-store path; see :func:`_read_parquet_part`."""
    columns = list(columns) if columns is not None else None  # pyarrow takes lists, not tuples
    return _read_parquet_part(path, lambda source: pq.read_table(source, columns=columns))


def parquet_columns(path: StoragePath) -> list[str]:
    """The column names of a Parquet file, from its footer only."""
    return _read_parquet_part(path, lambda source: pq.read_schema(source).names)
