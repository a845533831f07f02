"""Local paths and object-store URLs behind one API.

The data directory is a local path or an object-store URL (``s3://bucket/prefix``). A URL
becomes a ``UPath`` (universal_pathlib over fsspec/s3fs, what Airflow's ``ObjectStoragePath``
builds on) opened with :func:`settings.storage_options`; a local one stays a ``pathlib.Path``.
Both answer ``/``, ``exists``, ``glob``, ``iterdir``, ``open`` and ``unlink``, so the pipeline
uses one set of calls. What differs (no rename, no flock) is handled in this package.
"""
from __future__ import annotations

import contextlib
import errno
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# A local ``pathlib.Path`` or a ``upath.UPath`` on an object store: both have the same API.
StoragePath = Any


class StorageError(RuntimeError):
    """Writing to the data directory failed; the published snapshot is untouched."""


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


def storage_error(action: str, path: StoragePath, exc: OSError) -> StorageError:
    """A :class:`StorageError` that names the file, the cause and the fix."""
    hint = {errno.ENOSPC: "the disk is full; free space and rerun",
            errno.EACCES: "permission denied; make the data directory writable by the Airflow user",
            errno.EROFS: "the file system is read-only; point LIVING_REVIEW_DATA_DIR at a writable place",
            }.get(exc.errno or 0, "check the data directory and rerun")
    return StorageError(f"could not {action} {path}: {exc.strerror or exc}; {hint}. "
                        "The previously published snapshot is unchanged.")


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
            raise storage_error("upload", target, exc) from exc
