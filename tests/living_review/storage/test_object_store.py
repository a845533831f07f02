"""The storage API on an object store, where there is no rename and no flock.

fsspec's in-memory file system stands in for ``s3://``: a ``UPath`` whose protocol is
not the local disk takes the same object-store branches (one PUT per write, server-side
copies for backups and moves, the lease read back). The moto-backed runs in
``tests/reliability/test_storage_faults.py`` cover real S3 calls; these are fast.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import uuid

import pyarrow as pa
import pytest
from upath import UPath

from include.living_review.storage import (
    Layout,
    PartitionLocked,
    StorageError,
    commit_run,
    committed_dates,
    date_lock,
    hold_lease,
    is_remote,
    parquet_columns,
    parquet_writer,
    read_json,
    read_lease,
    read_parquet,
    recover,
    release_lease,
    verify,
    write_atomic,
)
from include.living_review.storage import commit as commit_module
from include.living_review.storage import locks as locks_module

DAY = dt.date(2026, 3, 2)


@pytest.fixture
def root():
    path = UPath(f"memory://lr-test-{uuid.uuid4().hex}/data")
    assert is_remote(path)
    yield path
    with contextlib.suppress(FileNotFoundError):  # nothing was written
        path.fs.rm(path.path, recursive=True)


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_an_object_is_written_whole_from_bytes_or_a_writer(root):
    target = root / "a" / "ledger.json"
    assert write_atomic(target, b'{"k": 1}') == target and read_json(target) == {"k": 1}
    write_atomic(target, lambda handle: handle.write(b'{"k": 2}'))
    assert read_json(target) == {"k": 2} and names(target.parent) == ["ledger.json"]  # no temp object


def test_a_refused_put_is_a_storage_error_naming_the_object(root, monkeypatch):
    target = root / "x.json"

    def refuse(self, data):
        raise OSError(errno.EACCES, "Access Denied")
    monkeypatch.setattr(type(root), "write_bytes", refuse)
    with pytest.raises(StorageError) as err:
        write_atomic(target, b"{}")
    assert str(err.value) == (f"could not write {target}: Access Denied; permission denied; make the data directory "
                              "writable by the Airflow user. The previously published snapshot is unchanged.")


def test_parquet_reads_back_from_an_object(root):
    table = pa.table({"work_id": ["a", "b"], "title": ["A.", "B."]})
    path = write_atomic(root / "t.parquet", parquet_writer(table))
    assert read_parquet(path).equals(table)
    assert read_parquet(path, columns=("title",)).equals(table.select(["title"]))
    assert parquet_columns(path) == ["work_id", "title"]


def commit(layout: Layout, snapshot: bytes, commit_id: str) -> dict:
    return commit_run(layout, layout.staging(commit_id), [("changes", layout.changes_file, b"changes " + snapshot),
                                                          ("snapshot", layout.snapshot_file, snapshot)],
                      {"run_id": commit_id}, commit_id=commit_id)


def test_a_commit_and_a_rerun_on_an_object_store(root):
    layout = Layout.of(root, "r", DAY)
    commit(layout, b"old rows", "c1")
    commit(layout, b"new rows", "c2")
    assert layout.snapshot_file.read_bytes() == b"new rows" and layout.changes_file.read_bytes() == b"changes new rows"
    assert json.loads(layout.manifest_file.read_text())["commit_id"] == "c2"
    assert verify(layout) == [] and committed_dates(root, "r") == [DAY]
    assert names(layout.snapshot_file.parent) == ["citing_works.parquet"]  # backups removed
    assert names(layout.staging("c2").commit_dir) == []


def test_a_refused_rerun_on_an_object_store_is_copied_back_from_its_backups(root, monkeypatch):
    layout = Layout.of(root, "r", DAY)
    commit(layout, b"old rows", "c1")

    def after_step(step):
        if step == "move:citing_works.parquet":
            raise OSError(errno.ENOSPC, "quota exceeded")
    monkeypatch.setattr(commit_module, "after_step", after_step)
    with pytest.raises(StorageError, match="could not publish"):
        commit(layout, b"new rows", "c2")
    assert layout.snapshot_file.read_bytes() == b"old rows" and layout.changes_file.read_bytes() == b"changes old rows"
    assert json.loads(layout.manifest_file.read_text())["commit_id"] == "c1" and verify(layout) == []
    assert names(layout.snapshot_file.parent) == ["citing_works.parquet"]


class Killed(BaseException):
    pass


def test_a_killed_rerun_on_an_object_store_is_rolled_forward_or_back(root, monkeypatch):
    for damaged, action, expected in ((False, "rolled forward", b"new rows"), (True, "rolled back", b"old rows")):
        layout = Layout.of(root, "r", DAY + dt.timedelta(days=7 if damaged else 0))
        commit(layout, b"old rows", "c1")

        def after_step(step):
            if step == "move:changes.parquet":
                raise Killed(step)
        monkeypatch.setattr(commit_module, "after_step", after_step)
        with pytest.raises(Killed):
            commit(layout, b"new rows", "c2")
        monkeypatch.setattr(commit_module, "after_step", lambda step: None)
        if damaged:
            (layout.staging("c2").commit_dir / "1-citing_works.parquet").write_bytes(b"torn")
        assert recover(layout) == action
        assert layout.snapshot_file.read_bytes() == expected
        assert layout.changes_file.read_bytes() == b"changes " + expected and verify(layout) == []
        assert not layout.journal_file.exists()


def test_the_lease_on_an_object_store_is_read_back_and_the_loser_stops(root, monkeypatch):
    layout = Layout.of(root, "r", DAY)
    assert hold_lease(layout, "scheduled__1", ttl_seconds=600)["run_id"] == "scheduled__1"
    assert read_lease(layout)["run_id"] == "scheduled__1"
    assert release_lease(layout, "scheduled__1") and read_lease(layout) is None

    real_write = locks_module.write_json_atomic

    def and_a_rival_writes_just_after(data, path):
        real_write(data, path)
        real_write({**data, "run_id": "manual__rival", "host": "other-host", "pid": 7}, path)
    monkeypatch.setattr(locks_module, "write_json_atomic", and_a_rival_writes_just_after)
    with pytest.raises(PartitionLocked) as err:
        hold_lease(layout, "scheduled__2", ttl_seconds=600)
    lease = read_lease(layout)
    assert str(err.value) == (f"review 'r' for 2026-03-02 was taken by run 'manual__rival' (host other-host, pid 7, "
                              f"since {lease['acquired_at']}, renewed {lease['renewed_at']}) at the same moment; "
                              "this run stops")


def test_the_date_lock_is_a_no_op_on_an_object_store(root):
    layout = Layout.of(root, "r", DAY)
    with date_lock(layout), date_lock(layout):  # no flock to conflict with
        pass
    assert not (root / "locks").exists()
