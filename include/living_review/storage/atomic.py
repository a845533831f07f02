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
