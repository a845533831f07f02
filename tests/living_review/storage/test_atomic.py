"""The one atomic writer and the readers: a reader sees the old file or the new one, never a part, and no temp file stays."""
from __future__ import annotations

import datetime as dt
import errno
import io
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.living_review.storage import (
    CorruptFile,
    StorageError,
    json_bytes,
    parquet_columns,
    parquet_writer,
    read_json,
    read_parquet,
    write_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from include.living_review.storage.atomic import render, temp_name

TABLE = pa.table({"work_id": ["doi:10.1/a", "doi:10.1/b"], "title": ["A.", "B."], "year": [2024, 2025]})


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_bytes_and_writer_functions_both_land_whole(tmp_path):
    target = tmp_path / "a" / "b" / "file.bin"  # missing folders are made
    assert write_atomic(target, b"bytes") == target and target.read_bytes() == b"bytes"
    assert write_atomic(target, lambda handle: handle.write(b"from a writer")) == target
    assert target.read_bytes() == b"from a writer" and hidden(target.parent) == []


def test_a_path_given_as_text_is_resolved_and_a_relative_path_stays_as_given(tmp_path, monkeypatch):
    assert write_atomic(str(tmp_path / "text.json"), b"{}") == tmp_path / "text.json"
    assert (tmp_path / "text.json").read_bytes() == b"{}"
    monkeypatch.chdir(tmp_path)
    assert write_atomic(Path("rel") / "x.bin", b"x") == Path("rel") / "x.bin"
    assert (tmp_path / "rel" / "x.bin").read_bytes() == b"x"


def test_while_the_new_bytes_are_written_the_old_file_is_whole_and_the_temp_file_hidden(tmp_path):
    target = tmp_path / "citing_works.parquet"
    target.write_bytes(b"old rows")
    seen = {}

    def writer(handle):
        handle.write(b"new ")
        handle.flush()
        seen["target"] = target.read_bytes()
        seen["hidden"] = hidden(tmp_path)
        handle.write(b"rows")

    write_atomic(target, writer)
    assert seen["target"] == b"old rows"  # not written in place
    (temp,) = seen["hidden"]
    assert re.fullmatch(r"\.citing_works\.parquet\.[0-9a-f]{32}\.tmp", temp)
    assert target.read_bytes() == b"new rows" and hidden(tmp_path) == []


def test_temp_names_are_hidden_siblings_that_never_repeat(tmp_path):
    final = tmp_path / "changes.parquet"
    first, second = temp_name(final), temp_name(final)
    assert first.parent == final.parent and first != second
    assert re.fullmatch(r"\.changes\.parquet\.[0-9a-f]{32}\.tmp", first.name)
    assert re.fullmatch(r"\.changes\.parquet\.[0-9a-f]{32}\.bak", temp_name(final, "bak").name)


def test_a_failed_write_keeps_the_old_file_removes_its_temp_file_and_says_what_to_do(tmp_path):
    target = tmp_path / "ledger.json"
    target.write_bytes(b"old")

    def disk_full(handle):
        handle.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError) as err:
        write_atomic(target, disk_full)
    assert str(err.value) == (f"could not write {target}: No space left on device; the disk is full; free space and "
                              "rerun. The previously published snapshot is unchanged.")
    assert isinstance(err.value.__cause__, OSError)
    assert target.read_bytes() == b"old" and hidden(tmp_path) == []


def test_a_write_refused_before_the_temp_file_exists_is_a_storage_error_too(tmp_path):
    (tmp_path / "not-a-folder").write_bytes(b"")
    with pytest.raises(StorageError, match=r"^could not write .*not-a-folder/x\.json: .*; check the data directory"):
        write_atomic(tmp_path / "not-a-folder" / "x.json", b"{}")


def test_json_is_written_sorted_indented_utf8_with_a_final_newline(tmp_path):
    data = {"b": 1, "a": "Résumé ✓", "d": dt.date(2026, 3, 2), "c": [1, {"z": None, "y": True}]}
    expected = ('{\n  "a": "Résumé ✓",\n  "b": 1,\n  "c": [\n    1,\n    {\n      "y": true,\n      "z": null\n'
                '    }\n  ],\n  "d": "2026-03-02"\n}\n').encode()
    assert json_bytes(data) == expected
    path = write_json_atomic(data, tmp_path / "m.json")
    assert path.read_bytes() == expected and read_json(path) == {**data, "d": "2026-03-02"}


def test_read_json_gives_the_default_for_a_missing_file_and_names_a_damaged_one(tmp_path):
    assert read_json(tmp_path / "missing.json") is None
    assert read_json(tmp_path / "missing.json", {"d": 1}) == {"d": 1}
    (tmp_path / "utf8.json").write_bytes('{"title": "Résumé"}'.encode())
    assert read_json(tmp_path / "utf8.json") == {"title": "Résumé"}
    damaged = tmp_path / "state.json"
    damaged.write_text('{"watermark": "2026-0')
    with pytest.raises(CorruptFile) as err:
        read_json(damaged)
    assert str(err.value) == (f"{damaged} is not valid JSON (Unterminated string starting at: line 1 column 15 "
                              "(char 14)); it was truncated or edited by hand. Restore it from a backup or delete it, "
                              "then rerun")


def test_json_is_read_as_utf8_whatever_the_machines_locale(tmp_path, monkeypatch):
    """Python picks a text file's encoding from the locale when none is given: a Latin-1 host must not misread."""
    path = write_json_atomic({"title": "Résumé ✓"}, tmp_path / "m.json")
    monkeypatch.setattr(io, "text_encoding", lambda encoding, stacklevel=2: encoding or "latin-1")
    assert read_json(path) == {"title": "Résumé ✓"}


def test_parquet_is_written_with_zstd_and_read_back_whole_or_by_columns(tmp_path):
    path = tmp_path / "t.parquet"
    assert write_parquet_atomic(TABLE, path) == path
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    assert read_parquet(path).equals(TABLE)
    assert read_parquet(path, columns=("title", "year")).equals(TABLE.select(["title", "year"]))  # a tuple works
    assert read_parquet(path, columns=[]).num_columns == 0
    assert parquet_columns(path) == ["work_id", "title", "year"]
    assert pq.read_table(pa.BufferReader(render(parquet_writer(TABLE)))).equals(TABLE)


def test_render_collects_what_a_writer_writes():
    assert render(lambda handle: (handle.write(b"a"), handle.write(b"b"))) == b"ab"
    assert json.loads(render(lambda handle: handle.write(json_bytes({"k": 1})))) == {"k": 1}
