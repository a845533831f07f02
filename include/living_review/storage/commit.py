"""One atomic commit per run: every file of a run is published, or none is, whatever is killed.

A run publishes five kinds of file for its date (quarantine, changes, coverage, events
and the snapshot) and then ``manifest.json``, the **commit record**. The layout and
names are fixed (analysts read them with plain Parquet readers and globs), so the
files cannot appear with one rename; the commit is a redo journal instead:

1. *render*: every file is written whole into the run's staging folder, and its size
   and SHA-256 go into the manifest (``files``);
2. *journal*: ``runs/.../.commit.json`` records the plan (each file's staged copy, its
   place and whether it replaces an older file) and the manifest to write;
3. *apply*: each file that replaces one gets a backup (a hard link; a server-side copy
   on an object store), then moves into place (``os.replace``; a copy on an object
   store, which has no rename). Each published file is always whole;
4. *commit point*: the manifest is written atomically. Then the journal, backups and
   staged copies are removed.

:func:`recover` runs before anything else in the next run (and in a retried task):
a journal whose manifest was written is finished; otherwise the commit rolls
*forward* from its staged copies when they are intact, and *back* from its backups
when they are not. So the last good snapshot is never lost: until the commit point
the previous manifest and (through its backups) its files stay recoverable.

Readers in this project trust only committed dates (:func:`committed_dates`: a
manifest that parses and no journal pending). A plain glob reader can, for the
microseconds between two renames (or until recovery after a kill there), see a
new table of a date beside an old one; every file it reads is whole.
``docs/DEVELOPING.md`` has the measurements behind this choice.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from include.living_review.storage.atomic import (
    CorruptFile,
    Writer,
    json_bytes,
    read_json,
    render,
    write_atomic,
)
from include.living_review.storage.committed import committed_manifest
from include.living_review.storage.layout import Layout, Staging
from include.living_review.storage.paths import StorageError, StoragePath, is_remote, storage_error

log = logging.getLogger(__name__)
JOURNAL_VERSION = 1

# A test seam: called after each step of a commit ("render:<file>", "journal", "backup:<file>",
# "move:<file>", "manifest", "finish"). The kill -9 tests replace it in a child process.
after_step: Callable[[str], None] = lambda step: None


def _rel(layout: Layout, path: StoragePath) -> str:
    return str(path)[len(str(layout.data_dir)):].lstrip("/")


def _abs(layout: Layout, rel: str) -> StoragePath:
    return layout.data_dir.joinpath(*rel.split("/"))


def _sha256(path: StoragePath) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _matches(path: StoragePath, size: int, sha256: str) -> bool:
    try:
        return path.stat().st_size == size and _sha256(path) == sha256
    except FileNotFoundError:
        return False


def _fsync_dir(path: StoragePath) -> None:
    """Make a rename durable (a rename is in the directory, not in the file)."""
    if is_remote(path):
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _replace(source: StoragePath, final: StoragePath, *, keep_source: bool) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(final):
        final.fs.copy(source.path, final.path)
    elif keep_source:
        # Renaming a hard link over another link of the same file does nothing and leaves
        # the source name behind (POSIX rename): a backup of a file never replaced is in place.
        if final.exists() and os.path.samefile(source, final):
            return
        tmp = final.with_name(f".{final.name}.restore.tmp")
        tmp.unlink(missing_ok=True)
        os.link(source, tmp)
        os.replace(tmp, final)
    else:
        os.replace(source, final)
    _fsync_dir(final.parent)


def _backup(final: StoragePath, backup: StoragePath) -> None:
    if backup.exists():  # made by an earlier attempt of this commit
        return
    if is_remote(final):
        final.fs.copy(final.path, backup.path)
    else:
        os.link(final, backup)


def commit_run(layout: Layout, staging: Staging, files: Sequence[tuple[str, StoragePath, bytes | Writer]],
           manifest: dict[str, Any], *, commit_id: str) -> dict[str, Any]:
    """Publish ``files`` (name, place, content), in order, then ``manifest``, as one commit.

    Returns the manifest as written: with ``commit_id`` and ``files`` (each file's path,
    size and SHA-256, so a reader can check that what it read is what was committed).
    """
    entries = []
    file_info = {}
    try:
        for index, (name, final, content) in enumerate(files):
            data = content if isinstance(content, bytes) else render(content)
            staged = staging.commit_dir / f"{index}-{final.name}"
            write_atomic(staged, data)
            sha = hashlib.sha256(data).hexdigest()
            entries.append({"final": _rel(layout, final), "staged": _rel(layout, staged), "bytes": len(data),
                            "sha256": sha, "replaces": final.exists(),
                            "backup": _rel(layout, final.with_name(f".{final.name}.{commit_id}.bak"))})
            file_info[name] = {"path": _rel(layout, final), "bytes": len(data), "sha256": sha}
            after_step(f"render:{final.name}")
    except OSError as exc:
        raise storage_error("stage", staging.commit_dir, exc) from exc
    manifest = {**manifest, "commit_id": commit_id, "files": file_info}
    journal = {"journal_version": JOURNAL_VERSION, "commit_id": commit_id, "run_id": manifest.get("run_id"),
               "started_at": dt.datetime.now(dt.timezone.utc).isoformat(), "files": entries, "manifest": manifest}
    write_atomic(layout.journal_file, json_bytes(journal))
    after_step("journal")
    try:
        _apply(layout, journal)
    except (OSError, StorageError) as exc:
        # Not killed, but refused (disk full, read-only): put the previous commit back now.
        log.error("commit %s of %s %s failed (%s); rolling back", commit_id, layout.review_id,
                  layout.snapshot_date, exc)
        _roll_back(layout, journal)
        _finish(layout, journal)
        if isinstance(exc, StorageError):
            raise
        raise storage_error("publish", layout.manifest_file, exc) from exc
    _finish(layout, journal)
    return manifest


def _apply(layout: Layout, journal: dict[str, Any]) -> None:
    for entry in journal["files"]:
        final, staged = _abs(layout, entry["final"]), _abs(layout, entry["staged"])
        if entry["replaces"] and final.exists():
            _backup(final, _abs(layout, entry["backup"]))
            after_step(f"backup:{final.name}")
        if staged.exists():
            _replace(staged, final, keep_source=False)
        elif not _matches(final, entry["bytes"], entry["sha256"]):
            raise FileNotFoundError(f"the staged copy {staged} of {final} is gone")
        after_step(f"move:{final.name}")
    write_atomic(layout.manifest_file, json_bytes(journal["manifest"]))
    after_step("manifest")


def _roll_back(layout: Layout, journal: dict[str, Any]) -> None:
    for entry in reversed(journal["files"]):
        final, backup = _abs(layout, entry["final"]), _abs(layout, entry["backup"])
        with contextlib.suppress(OSError):
            if backup.exists():
                _replace(backup, final, keep_source=True)
            elif not entry["replaces"]:
                final.unlink(missing_ok=True)


def _finish(layout: Layout, journal: dict[str, Any]) -> None:
    """Remove what only the commit needed: backups, staged copies, then the journal."""
    for entry in journal["files"]:
        for rel in (entry["backup"], entry["staged"]):
            with contextlib.suppress(OSError):
                _abs(layout, rel).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        layout.journal_file.unlink(missing_ok=True)
    after_step("finish")


def _can_roll_forward(layout: Layout, journal: dict[str, Any]) -> bool:
    for entry in journal["files"]:
        staged, final = _abs(layout, entry["staged"]), _abs(layout, entry["final"])
        if not (_matches(staged, entry["bytes"], entry["sha256"]) or _matches(final, entry["bytes"], entry["sha256"])):
            return False
    return True


def recover(layout: Layout) -> str | None:
    """Finish, roll forward or roll back a commit of this date that did not end; tidy leftovers.

    Returns what was done (``"finished"``, ``"rolled forward"``, ``"rolled back"``) or None.
    The caller holds the date's lock.
    """
    journal = read_json(layout.journal_file)
    if journal is None:
        _remove_temp_files(layout)
        return None
    try:
        manifest = read_json(layout.manifest_file)
    except CorruptFile:
        manifest = None
    if manifest and manifest.get("commit_id") == journal["commit_id"]:
        action = "finished"
    elif _can_roll_forward(layout, journal):
        _apply(layout, journal)
        action = "rolled forward"
    else:
        _roll_back(layout, journal)
        action = "rolled back"
    _finish(layout, journal)
    _remove_temp_files(layout)
    log.warning("recovered an interrupted commit of %s %s (run %s): %s", layout.review_id,
                layout.snapshot_date, journal.get("run_id"), action)
    return action


def _remove_temp_files(layout: Layout) -> None:
    """Hidden temp and backup files a killed writer left (no journal needs them any more)."""
    for folder in layout.published_partitions():
        if not folder.is_dir():
            continue
        for child in folder.iterdir():
            if child.name.startswith(".") and child.name.endswith((".tmp", ".bak")):
                with contextlib.suppress(OSError):
                    child.unlink()
                    log.info("removed the leftover %s", child)


def verify(layout: Layout) -> list[str]:
    """What is wrong with a date's committed files (empty when each matches its manifest entry)."""
    manifest = committed_manifest(layout)
    if manifest is None:
        return [f"snapshot_date={layout.snapshot_date} is not committed (no valid manifest, or a commit pending)"]
    problems = []
    for name, entry in (manifest.get("files") or {}).items():
        path = _abs(layout, entry["path"])
        if not path.exists():
            problems.append(f"{name}: {path} is missing")
        elif not _matches(path, entry["bytes"], entry["sha256"]):
            problems.append(f"{name}: {path} differs from what the commit wrote")
    return problems
