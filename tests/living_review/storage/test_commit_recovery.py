"""The run commit when it is interrupted: killed at every step, refused by the disk, or left with damaged copies.

``commit.after_step`` is the seam the kill -9 tests of ``tests/reliability`` use in a
child process; here it raises :class:`Killed`, which nothing in the commit catches, so
the data directory is left as a kill at that step leaves it. Then :func:`recover`
(what the next run and a retried task call first) must settle it.
"""
from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import pathlib
from typing import Any

import pytest

from include.living_review.storage import (
    Layout,
    StorageError,
    commit_run,
    committed_dates,
    parquet_writer,
    read_parquet,
    recover,
    verify,
)
from include.living_review.storage import commit as commit_module

DAY = dt.date(2026, 3, 2)
OLD = {"changes": b"old changes", "snapshot": b"old rows"}
NEW = {"changes": b"new changes!", "snapshot": b"new rows!"}
STEPS = ["render:changes.parquet", "render:citing_works.parquet", "journal", "backup:changes.parquet",
         "move:changes.parquet", "backup:citing_works.parquet", "move:citing_works.parquet", "manifest", "finish"]


class Killed(BaseException):
    """Stands in for kill -9: no ``except`` of the commit catches it."""


@pytest.fixture
def layout(tmp_path) -> Layout:
    return Layout.of(tmp_path, "r", DAY)


def files_of(layout: Layout, contents: dict[str, bytes]) -> list[tuple[str, Any, bytes]]:
    return [("changes", layout.changes_file, contents["changes"]), ("snapshot", layout.snapshot_file,
                                                                      contents["snapshot"])]


def commit(layout: Layout, contents: dict[str, bytes], commit_id: str, run_id: str = "manual__1") -> dict:
    return commit_run(layout, layout.staging(run_id), files_of(layout, contents), {"run_id": run_id},
                      commit_id=commit_id)


def seam(monkeypatch, step: str, error: BaseException) -> list[str]:
    """Raise ``error`` right after ``step``; returns the steps seen, in order."""
    seen: list[str] = []

    def after_step(name: str) -> None:
        seen.append(name)
        if name == step:
            raise error
    monkeypatch.setattr(commit_module, "after_step", after_step)
    return seen


def killed_rerun(layout: Layout, monkeypatch, step: str) -> None:
    """Commit OLD, then kill the rerun committing NEW right after ``step``; the seam is harmless again after."""
    commit(layout, OLD, "c1")
    seam(monkeypatch, step, Killed())
    with pytest.raises(Killed):
        commit(layout, NEW, "c2", "manual__2")
    monkeypatch.setattr(commit_module, "after_step", lambda name: None)


def state(layout: Layout) -> dict[str, Any]:
    """What a reader of the date finds: each published file's bytes and the manifest's commit id."""
    found: dict[str, Any] = {name: (path.read_bytes() if path.exists() else None)
                             for name, path in (("changes", layout.changes_file), ("snapshot", layout.snapshot_file))}
    found["commit"] = json.loads(layout.manifest_file.read_text())["commit_id"] if layout.manifest_file.exists() \
        else None
    return found


def leftovers(layout: Layout) -> list[str]:
    """Hidden files in the published folders, and staged copies: none may outlive a settled commit."""
    hidden = [p.name for folder in layout.published_partitions() if folder.is_dir()
              for p in folder.iterdir() if p.name.startswith(".")]
    staged = [p.name for p in layout.staging_root.rglob("*") if p.is_file()] if layout.staging_root.exists() else []
    return sorted(hidden + staged)


def test_a_commit_goes_through_its_steps_in_order(layout, monkeypatch):
    seen = seam(monkeypatch, "never", Killed())
    commit(layout, OLD, "c1")
    assert seen == ["render:changes.parquet", "render:citing_works.parquet", "journal", "move:changes.parquet",
                    "move:citing_works.parquet", "manifest", "finish"]  # nothing to back up the first time
    seen.clear()
    commit(layout, NEW, "c2", "manual__2")
    assert seen == STEPS


def test_the_journal_records_the_plan_before_anything_moves(layout, monkeypatch):
    killed_rerun(layout, monkeypatch, "journal")
    journal = json.loads(layout.journal_file.read_text())
    started = dt.datetime.fromisoformat(journal.pop("started_at"))
    assert started.tzinfo is not None and started.utcoffset() == dt.timedelta(0)
    staged = layout.staging("manual__2").commit_dir
    partition = "review_id=r/snapshot_date=2026-03-02"

    def entry(rel: str, staged_name: str, data: bytes) -> dict:
        folder, name = rel.rsplit("/", 1)
        return {"final": rel, "staged": str(staged / staged_name)[len(str(layout.data_dir)) + 1:],
                "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "replaces": True,
                "backup": f"{folder}/.{name}.c2.bak"}

    files = [entry(f"changes/{partition}/changes.parquet", "0-changes.parquet", NEW["changes"]),
             entry(f"snapshots/{partition}/citing_works.parquet", "1-citing_works.parquet", NEW["snapshot"])]
    manifest = {"run_id": "manual__2", "commit_id": "c2", "files": {
        name: {"path": e["final"], "bytes": e["bytes"], "sha256": e["sha256"]}
        for name, e in zip(("changes", "snapshot"), files, strict=True)}}
    assert journal == {"journal_version": 1, "commit_id": "c2", "run_id": "manual__2", "files": files,
                       "manifest": manifest}
    assert state(layout) == {**OLD, "commit": "c1"}  # nothing moved yet


def test_a_writer_function_is_rendered_once_and_committed_with_its_size_and_hash(layout):
    import pyarrow as pa

    table = pa.table({"work_id": ["a", "b"]})
    manifest = commit_run(layout, layout.staging("manual__1"), [("snapshot", layout.snapshot_file,
                                                                 parquet_writer(table))], {}, commit_id="c1")
    data = layout.snapshot_file.read_bytes()
    assert read_parquet(layout.snapshot_file).equals(table)
    assert manifest["files"]["snapshot"] == {"path": "snapshots/review_id=r/snapshot_date=2026-03-02/citing_works.parquet",
                                             "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize(("step", "action", "expected"), [
    ("render:changes.parquet", None, OLD),
    ("render:citing_works.parquet", None, OLD),
    ("journal", "rolled forward", NEW),
    ("backup:changes.parquet", "rolled forward", NEW),
    ("move:changes.parquet", "rolled forward", NEW),
    ("backup:citing_works.parquet", "rolled forward", NEW),
    ("move:citing_works.parquet", "rolled forward", NEW),
    ("manifest", "finished", NEW),
    ("finish", None, NEW),
])
def test_a_rerun_killed_at_any_step_is_settled_by_recovery(layout, monkeypatch, step, action, expected):
    killed_rerun(layout, monkeypatch, step)
    assert recover(layout) == action
    assert state(layout) == {**expected, "commit": "c2" if expected is NEW else "c1"}
    assert verify(layout) == [] and committed_dates(layout.data_dir, "r") == [DAY]
    assert leftovers(layout) == [] or step.startswith("render")  # a killed render's staging is the run's own
    assert not layout.journal_file.exists() and recover(layout) is None


@pytest.mark.parametrize("step", ["journal", "backup:changes.parquet", "move:changes.parquet",
                                  "backup:citing_works.parquet"])
def test_a_killed_rerun_whose_staged_copy_is_damaged_is_rolled_back_to_the_previous_commit(layout, monkeypatch,
                                                                                          step):
    killed_rerun(layout, monkeypatch, step)
    staged = layout.staging("manual__2").commit_dir / "1-citing_works.parquet"
    staged.write_bytes(b"new row")  # torn: shorter than the journal says
    monkeypatch.setattr(commit_module, "after_step", lambda name: None)
    assert recover(layout) == "rolled back"
    assert state(layout) == {**OLD, "commit": "c1"} and verify(layout) == []
    assert leftovers(layout) == [] and not layout.journal_file.exists()


def test_a_killed_rerun_whose_staged_copy_is_gone_is_rolled_back(layout, monkeypatch):
    killed_rerun(layout, monkeypatch, "move:changes.parquet")
    (layout.staging("manual__2").commit_dir / "1-citing_works.parquet").unlink()
    assert recover(layout) == "rolled back"
    assert state(layout) == {**OLD, "commit": "c1"} and leftovers(layout) == []


def test_a_same_size_copy_with_other_bytes_is_not_rolled_forward(layout, monkeypatch):
    killed_rerun(layout, monkeypatch, "journal")
    (layout.staging("manual__2").commit_dir / "0-changes.parquet").write_bytes(b"NEW CHANGES!")  # same size
    assert recover(layout) == "rolled back"
    assert state(layout) == {**OLD, "commit": "c1"}


def test_a_first_commit_killed_and_rolled_back_leaves_no_file_of_the_date(layout, monkeypatch):
    seam(monkeypatch, "move:changes.parquet", Killed())
    with pytest.raises(Killed):
        commit(layout, NEW, "c1")
    (layout.staging("manual__1").commit_dir / "1-citing_works.parquet").write_bytes(b"torn")
    assert layout.changes_file.read_bytes() == NEW["changes"]  # moved before the kill
    assert recover(layout) == "rolled back"
    assert state(layout) == {"changes": None, "snapshot": None, "commit": None}
    assert committed_dates(layout.data_dir, "r") == [] and leftovers(layout) == []


def test_a_recovery_killed_in_turn_is_settled_by_the_next_one(layout, monkeypatch):
    """A first commit killed after its first move; the roll forward killed too; then the files are damaged."""
    seam(monkeypatch, "move:changes.parquet", Killed())
    with pytest.raises(Killed):
        commit(layout, NEW, "c1")
    seam(monkeypatch, "move:citing_works.parquet", Killed())
    with pytest.raises(Killed):
        recover(layout)
    monkeypatch.setattr(commit_module, "after_step", lambda name: None)
    assert [name for name in leftovers(layout) if name.endswith(".bak")] == []  # none of its own new files
    layout.snapshot_file.write_bytes(b"damaged")
    assert recover(layout) == "rolled back"
    assert state(layout) == {"changes": None, "snapshot": None, "commit": None} and leftovers(layout) == []


def test_a_published_file_deleted_by_hand_after_a_kill_is_restored_from_its_backup(layout, monkeypatch):
    killed_rerun(layout, monkeypatch, "move:citing_works.parquet")
    layout.snapshot_file.unlink()  # somebody tidying up the half-published date
    layout.changes_file.write_bytes(b"edited")  # and another file no longer what the commit wrote
    assert recover(layout) == "rolled back"
    assert state(layout) == {**OLD, "commit": "c1"} and leftovers(layout) == []


def test_a_backup_made_before_the_kill_is_not_made_again(layout, monkeypatch):
    killed_rerun(layout, monkeypatch, "backup:citing_works.parquet")
    backup = layout.snapshot_file.with_name(".citing_works.parquet.c2.bak")
    assert backup.read_bytes() == OLD["snapshot"] and backup.samefile(layout.snapshot_file)  # a hard link
    assert recover(layout) == "rolled forward"
    assert state(layout) == {**NEW, "commit": "c2"} and not backup.exists()


def test_a_rerun_refused_by_the_disk_puts_the_previous_commit_back_and_says_so(layout, monkeypatch):
    commit(layout, OLD, "c1")
    seam(monkeypatch, "move:citing_works.parquet", OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(StorageError) as err:
        commit(layout, NEW, "c2", "manual__2")
    assert str(err.value) == (f"could not publish {layout.manifest_file}: No space left on device; the disk is full; "
                              "free space and rerun. The previously published snapshot is unchanged.")
    assert isinstance(err.value.__cause__, OSError)
    assert state(layout) == {**OLD, "commit": "c1"} and verify(layout) == []
    assert leftovers(layout) == [] and not layout.journal_file.exists()
    assert committed_dates(layout.data_dir, "r") == [DAY]


def test_a_storage_error_while_publishing_is_raised_as_it_is_after_the_roll_back(layout, monkeypatch):
    commit(layout, OLD, "c1")
    refused = StorageError("could not write the manifest")
    seam(monkeypatch, "move:changes.parquet", refused)
    with pytest.raises(StorageError) as err:
        commit(layout, NEW, "c2", "manual__2")
    assert err.value is refused
    assert state(layout) == {**OLD, "commit": "c1"} and leftovers(layout) == []


def test_a_refused_first_commit_leaves_nothing_published(layout, monkeypatch):
    seam(monkeypatch, "move:citing_works.parquet", OSError(errno.EROFS, "Read-only file system"))
    with pytest.raises(StorageError, match="read-only; point LIVING_REVIEW_DATA_DIR at a writable place"):
        commit(layout, NEW, "c1")
    assert state(layout) == {"changes": None, "snapshot": None, "commit": None} and leftovers(layout) == []


def test_a_file_that_cannot_be_staged_fails_before_anything_is_published(layout):
    commit(layout, OLD, "c1")

    def refused(handle):
        raise OSError(errno.EACCES, "Permission denied")
    with pytest.raises(StorageError) as err:
        commit_run(layout, layout.staging("manual__2"), [("snapshot", layout.snapshot_file, refused)], {},
                   commit_id="c2")
    assert str(err.value) == (f"could not stage {layout.staging('manual__2').commit_dir}: Permission denied; "
                              "permission denied; make the data directory writable by the Airflow user. "
                              "The previously published snapshot is unchanged.")
    assert state(layout) == {**OLD, "commit": "c1"} and not layout.journal_file.exists()


def test_a_restore_that_fails_does_not_stop_the_others(layout, monkeypatch):
    """Roll back is best effort file by file: one refused restore must not leave the other files new."""
    killed_rerun(layout, monkeypatch, "manifest")
    layout.manifest_file.unlink()  # as if the kill came just before the commit point
    layout.changes_file.write_bytes(b"x")  # no longer what the commit wrote, and its staged copy is gone
    real_link = commit_module.os.link

    def link(source, target):
        if "citing_works" in str(source):
            raise OSError(errno.EIO, "Input/output error")
        real_link(source, target)
    monkeypatch.setattr(commit_module.os, "link", link)
    assert recover(layout) == "rolled back"
    assert layout.changes_file.read_bytes() == OLD["changes"]  # restored although the snapshot's restore failed
    assert layout.snapshot_file.read_bytes() == NEW["snapshot"] and not layout.journal_file.exists()


def test_cleanup_that_fails_after_the_commit_point_does_not_fail_the_commit(layout, monkeypatch):
    commit(layout, OLD, "c1")
    real_unlink = pathlib.Path.unlink

    def unlink(self, missing_ok=False):
        if self.name.endswith(".bak") or self.name == ".commit.json":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)
    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    manifest = commit(layout, NEW, "c2", "manual__2")
    assert manifest["commit_id"] == "c2" and state(layout) == {**NEW, "commit": "c2"}
    assert layout.journal_file.exists()  # a date with a journal is pending, not yet trusted
    assert committed_dates(layout.data_dir, "r") == []
    monkeypatch.setattr(pathlib.Path, "unlink", real_unlink)
    assert recover(layout) == "finished"  # the next run tidies up
    assert committed_dates(layout.data_dir, "r") == [DAY] and leftovers(layout) == []


def test_a_leftover_that_cannot_be_removed_does_not_stop_recovery(layout, monkeypatch):
    commit(layout, OLD, "c1")
    stuck = layout.snapshot_file.with_name(".citing_works.parquet.123.tmp")
    other = layout.changes_file.with_name(".changes.parquet.456.tmp")
    stuck.write_bytes(b"x")
    other.write_bytes(b"x")
    real_unlink = pathlib.Path.unlink

    def unlink(self, missing_ok=False):
        if self == stuck:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)
    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    assert recover(layout) is None
    assert stuck.exists() and not other.exists()


def test_recovery_removes_only_hidden_temp_and_backup_files(layout):
    commit(layout, OLD, "c1")
    folder = layout.snapshot_file.parent
    for name in (".citing_works.parquet.1.tmp", ".citing_works.parquet.c0.bak", ".keep", "notes.tmp", "old.bak"):
        (folder / name).write_bytes(b"x")
    assert recover(layout) is None
    assert sorted(p.name for p in folder.iterdir()) == [".keep", "citing_works.parquet", "notes.tmp", "old.bak"]


def test_a_journal_whose_manifest_is_damaged_is_not_taken_as_finished(layout, monkeypatch):
    killed_rerun(layout, monkeypatch, "manifest")
    layout.manifest_file.write_text('{"commit_id": "c2"')  # torn
    assert recover(layout) == "rolled forward"  # every new file is in place: the manifest is written again
    assert state(layout) == {**NEW, "commit": "c2"} and verify(layout) == []
