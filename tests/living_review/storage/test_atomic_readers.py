"""The readers of ``storage/atomic.py``: a damaged file names itself and the fix (issue 14, item 3)."""
from __future__ import annotations

import datetime as dt
import errno

import pyarrow as pa
import pytest

from include.living_review.storage import (CorruptFile, Layout, StorageError, parquet_columns, read_json, read_parquet,
                                           write_parquet_atomic)

DAY = dt.date(2026, 3, 2)


def published(tmp_path, cut: int | None) -> Layout:
    """A snapshot of three rows, cut to its first ``cut`` bytes (None: whole)."""
    layout = Layout.of(tmp_path, "r", DAY)
    write_parquet_atomic(pa.table({"work_id": ["a", "b", "c"]}), layout.snapshot_file)
    if cut is not None:
        data = layout.snapshot_file.read_bytes()
        layout.snapshot_file.write_bytes(data[:cut] if cut >= 0 else data[:len(data) // 2])
    return layout


@pytest.mark.parametrize("cut", [-1, 0, 8], ids=["half", "empty", "eight-bytes"])
@pytest.mark.parametrize("reader", [read_parquet, parquet_columns])
def test_a_truncated_snapshot_names_the_file_and_the_fix(tmp_path, cut, reader):
    """pyarrow said only ``ArrowInvalid: Parquet magic bytes not found in footer``, naming no file."""
    layout = published(tmp_path, cut)
    with pytest.raises(CorruptFile) as err:
        reader(layout.snapshot_file)
    text = str(err.value)
    assert str(layout.snapshot_file) in text and "not a readable Parquet file" in text
    assert f"rerun {DAY} to republish it, or delete its partition {layout.snapshot_file.parent}" in text


def test_a_truncated_staged_file_says_to_stage_it_again(tmp_path):
    staged = Layout.of(tmp_path, "r", DAY).staging("manual__1").merged
    write_parquet_atomic(pa.table({"work_id": ["a"]}), staged)
    staged.write_bytes(staged.read_bytes()[:20])
    with pytest.raises(CorruptFile, match="clear the run's tasks from begin_run so they stage it again"):
        read_parquet(staged)


def test_whole_files_still_read_and_a_missing_one_is_still_missing(tmp_path):
    layout = published(tmp_path, None)
    assert read_parquet(layout.snapshot_file, columns=("work_id",)).num_rows == 3
    assert parquet_columns(layout.snapshot_file) == ["work_id"]
    with pytest.raises(FileNotFoundError):
        read_parquet(layout.on(dt.date(2026, 3, 9)).snapshot_file)


def test_an_unreadable_file_is_a_storage_error_with_the_hint(tmp_path, monkeypatch):
    layout = published(tmp_path, None)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(layout.snapshot_file))

    monkeypatch.setattr("pyarrow.parquet.read_table", denied)
    with pytest.raises(StorageError, match="permission denied; make the data directory writable"):
        read_parquet(layout.snapshot_file)


def test_a_truncated_json_file_names_itself(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text('{"run_id": "sched', encoding="utf-8")
    with pytest.raises(CorruptFile, match=f"{path} is not valid JSON"):
        read_json(path)
