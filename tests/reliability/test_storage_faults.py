"""Storage rows of the fault matrix: kill -9 mid-write, disk full, permission denied, overlapping runs.

``pipeline.publish`` is driven directly (the honest level: the DAG task is a one-line
call into it) with staged inputs written here, so no Great Expectations run is needed.
Disk full and a read-only data directory are real where the machine allows mounting
a tiny tmpfs (the suite runs as root, so ``chmod`` would not stop a write), and are
simulated everywhere by raising ``OSError(errno.ENOSPC/EACCES/EROFS)`` from the
write path.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.living_review import pipeline, storage
from include.living_review.config import ReviewConfig
from include.living_review.records import CITING_WORKS_SCHEMA, QUARANTINE_SCHEMA
from include.living_review.pipeline import RunContext
from include.living_review.storage import Layout, PartitionLocked, StorageError, published_dates, write_json_atomic
from tests.fakes.corpus import REVIEW

ROOT = Path(__file__).resolve().parents[2]
REVIEW_CONF = ReviewConfig(id="peer-support-mental-health", title=REVIEW["title"], doi=REVIEW["doi"],
                           pmid=REVIEW["pmid"], sources=["pubmed"])
DAY1, DAY2 = dt.date(2026, 3, 2), dt.date(2026, 3, 9)


def rows(n: int, day: dt.date, *, title: str = "Peer support outcomes") -> list[dict[str, Any]]:
    ts = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    return [{"work_id": f"doi:10.1234/w.{i}", "doi": f"10.1234/w.{i}", "pmid": str(30_000_000 + i), "pmcid": None,
             "openalex_id": None, "s2_paper_id": None, "title": f"{title} {i}.", "title_is_translated": False,
             "authors": ["Xu R", "Müller K"], "journal": "J Peer Support", "journal_abbrev": "J Peer Support",
             "publication_year": 2025, "publication_date": dt.date(2025, 1, 1), "volume": "1", "issue": "1",
             "pages": "1-9", "publication_types": ["Journal Article"], "language": "eng", "is_retracted": False,
             "sources": ["pubmed"], "source_ids": [("pubmed", str(30_000_000 + i))], "first_seen": ts,
             "last_reported": ts} for i in range(n)]


def context(data_dir: Path, day: dt.date, run_id: str = "manual__reliability") -> RunContext:
    return RunContext.create(REVIEW_CONF, data_dir, dt.datetime.combine(day, dt.time(), dt.timezone.utc), run_id)


def stage(ctx: RunContext, works: list[dict[str, Any]]) -> None:
    """What fetch/merge/enrich/validate leave in staging for ``publish``."""
    storage.write_parquet_atomic(pa.Table.from_pylist(works, schema=CITING_WORKS_SCHEMA),
                                 ctx.staging.validated)
    storage.write_parquet_atomic(QUARANTINE_SCHEMA.empty_table(), ctx.staging.rejected)
    write_json_atomic({"source": "pubmed", "status": "ok", "reason": None, "listed": len(works),
                       "works": len(works), "requests": 1}, ctx.staging.source_stats('pubmed'))
    write_json_atomic({"records_in": len(works), "works_out": len(works)}, ctx.staging.merge_stats)
    write_json_atomic({"status": "ok"}, ctx.staging.validation)


def publish_day(data_dir: Path, day: dt.date, works: list[dict[str, Any]]) -> dict[str, Any]:
    ctx = context(data_dir, day)
    stage(ctx, works)
    return pipeline.publish(ctx)


def fingerprint(data_dir: Path) -> dict[str, str]:
    """Every published (non-staging) file and its hash."""
    out = {}
    for path in sorted(data_dir.rglob("*")):
        rel = path.relative_to(data_dir)
        if path.is_file() and rel.parts[0] not in ("staging", "locks"):
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def new_date_files(data_dir: Path, day: dt.date) -> list[str]:
    """Files of ``day`` outside staging: what a reader could see of that run."""
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*")
                  if p.is_file() and f"snapshot_date={day.isoformat()}" in str(p) and "staging" not in p.parts)


def temp_files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*.tmp") if "staging" not in p.parts]


# -- kill -9 while the snapshot is written ---------------------------------------------
CHILD = textwrap.dedent("""
    import datetime as dt, pathlib, sys, time
    from include.living_review import pipeline
    from include.living_review.config import ReviewConfig
    from include.living_review.storage import atomic

    data_dir, day, marker = sys.argv[1], dt.date.fromisoformat(sys.argv[2]), pathlib.Path(sys.argv[3])
    real_open = open

    class HalfWrite:
        # Writes half of what it is given, makes it reach the disk, then hangs: SIGKILL lands mid-file.
        def __init__(self, handle, path):
            self.handle, self.path = handle, path
        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            marker.write_text(str(self.path))
            time.sleep(600)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.handle.close()

    def slow_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return HalfWrite(handle, path) if "citing_works" in str(path) and "w" in mode else handle

    atomic.open = slow_open  # the module's own name shadows the builtin for write_atomic only
    review = ReviewConfig(id="peer-support-mental-health", title="T", doi="10.2196/15572", pmid="32357127",
                          sources=["pubmed"])
    ctx = pipeline.RunContext.create(review, data_dir, dt.datetime.combine(day, dt.time(), dt.timezone.utc),
                                     "manual__reliability")
    pipeline.publish(ctx)
""")


def kill_mid_snapshot_write(data_dir: Path, day: dt.date, tmp_path: Path) -> Path:
    """Run ``publish`` for ``day`` in a child, SIGKILL it half-way through the snapshot; the temp file's path."""
    marker = tmp_path / "mid-write"
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    child = subprocess.Popen([sys.executable, str(script), str(data_dir), day.isoformat(), str(marker)], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if child.poll() is not None:
                raise AssertionError(f"the child exited early: {child.communicate()}")
            assert time.monotonic() < deadline, "the child never started writing the snapshot"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    return Path(marker.read_text())


@pytest.mark.parametrize("target", ["a new date", "a rerun of the published date"])
def test_kill_9_while_the_snapshot_is_written_leaves_the_previous_one_published(tmp_path, target):
    """Row 7: SIGKILL mid-write; the old snapshot stays readable, nothing partial is visible, the rerun works."""
    data_dir = tmp_path / "data"
    old = rows(30, DAY1)
    publish_day(data_dir, DAY1, old)
    before = fingerprint(data_dir)
    day = DAY2 if target == "a new date" else DAY1
    new = rows(4000, day, title="A much longer replacement title that makes the snapshot several row groups")
    stage(context(data_dir, day), new)

    temp = kill_mid_snapshot_write(data_dir, day, tmp_path)

    # the half-written file is a hidden temp file in the run's staging, never in a published folder
    assert temp.exists() and temp.name.startswith(".") and "citing_works" in temp.name and temp.suffix == ".tmp"
    assert "staging" in temp.parts
    with pytest.raises(Exception):
        pq.read_table(temp)  # it really is a partial file
    frame = pd.read_parquet(data_dir / "snapshots")
    assert len(frame) == len(old) and set(frame["snapshot_date"].astype(str)) == {DAY1.isoformat()}
    assert sorted(frame["work_id"]) == sorted(r["work_id"] for r in old)
    assert published_dates(data_dir, REVIEW_CONF.id) == [DAY1]
    snapshot_key = str(Layout.of(data_dir, REVIEW_CONF.id, DAY1).snapshot_file.relative_to(data_dir.resolve()))
    assert fingerprint(data_dir)[snapshot_key] == before[snapshot_key]  # byte for byte the previous snapshot
    manifest_key = snapshot_key.replace("snapshots", "runs").replace("citing_works.parquet", "manifest.json")
    assert fingerprint(data_dir)[manifest_key] == before[manifest_key]

    # the next run (the task's retry) publishes normally, and readers still never see the stale temp file
    summary = pipeline.publish(context(data_dir, day))
    assert summary["works"] == len(new)
    frame = pd.read_parquet(data_dir / "snapshots")
    expected = len(old) + len(new) if target == "a new date" else len(new)
    assert len(frame) == expected
    assert pq.read_table(Layout.of(data_dir, REVIEW_CONF.id, day).snapshot_file).num_rows == len(new)


# -- disk full, permission denied, read-only ---------------------------------------------
# The writes of a commit, in order: each file rendered into staging, the journal, then
# (after the moves into place) the manifest.
WRITE_POINTS = ["quarantine", "changes", "events", "coverage", "snapshot", "journal", "manifest"]
MOVE_POINTS = ["quarantine", "changes", "events", "coverage", "snapshot"]


def _failing_writes(monkeypatch: pytest.MonkeyPatch, point: str, code: int) -> None:
    """Raise ``OSError(code)`` at the ``point`` of publish's commit: opening a file to write it (disk
    full, permission denied) or moving a staged file into place (read-only)."""
    from include.living_review.storage import atomic, commit

    calls = {"write": 0, "move": 0}
    real_open, real_replace = open, commit._replace

    def gate(kind: str, index: int) -> None:
        calls[kind] += 1
        if calls[kind] == index + 1:
            raise OSError(code, os.strerror(code))

    def opener(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" in mode and code != errno.EROFS and "locks" not in Path(path).parts:
            gate("write", WRITE_POINTS.index(point))
        return real_open(path, mode, *args, **kwargs)

    def replace(source: Any, final: Any, *, keep_source: bool) -> None:
        if code == errno.EROFS and not keep_source:  # not the roll-back of a backup
            gate("move", MOVE_POINTS.index(point))
        real_replace(source, final, keep_source=keep_source)

    monkeypatch.setattr(atomic, "open", opener, raising=False)
    monkeypatch.setattr(commit, "_replace", replace)


FAULTS = [(point, code) for point in WRITE_POINTS for code in (errno.ENOSPC,)] + \
    [(point, errno.EACCES) for point in ("quarantine", "snapshot", "manifest")] + \
    [(point, errno.EROFS) for point in ("quarantine", "events", "snapshot")]
HINTS = {errno.ENOSPC: "the disk is full; free space and rerun",
         errno.EACCES: "permission denied; make the data directory writable by the Airflow user",
         errno.EROFS: "the file system is read-only"}


@pytest.mark.parametrize("target", ["new date", "rerun"])
@pytest.mark.parametrize(("point", "code"), [
    pytest.param(p, c, id=f"{errno.errorcode[c]}-at-{p}")
    for p, c in FAULTS])
def test_disk_full_or_permission_denied_publishes_nothing(tmp_path, monkeypatch, point, code, target):
    """Row 8 (simulated): a clear StorageError; nothing of the new run published, the previous commit intact
    byte for byte (also when the run replaces that very date); the retry publishes."""
    data_dir = tmp_path / "data"
    publish_day(data_dir, DAY1, rows(30, DAY1))
    before = {k: v for k, v in fingerprint(data_dir).items() if DAY1.isoformat() in k}
    day = DAY2 if target == "new date" else DAY1
    ctx = context(data_dir, day)
    stage(ctx, rows(40, day))
    _failing_writes(monkeypatch, point, code)

    with pytest.raises(StorageError) as err:
        pipeline.publish(ctx)

    message = str(err.value)
    assert HINTS[code] in message and "The previously published snapshot is unchanged" in message
    assert str(data_dir.resolve()) in message  # names the file it could not write
    assert temp_files(data_dir) == []  # no half-written temp file or backup is left
    assert published_dates(data_dir, REVIEW_CONF.id) == [DAY1]
    assert {k: v for k, v in fingerprint(data_dir).items() if DAY1.isoformat() in k} == before
    assert storage.verify(Layout.of(data_dir, REVIEW_CONF.id, DAY1)) == []
    assert new_date_files(data_dir, DAY2) == []
    monkeypatch.undo()  # the disk has space again: the retry publishes
    assert pipeline.publish(ctx)["works"] == 40
    assert storage.verify(Layout.of(data_dir, REVIEW_CONF.id, day)) == []


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); the simulated cases cover it")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_really_full_disk_gives_a_clear_error_and_keeps_the_previous_snapshot(tmp_path):
    """Row 8 (real): the data directory's file system (a tmpfs) fills up while the next week is published."""
    with tiny_tmpfs(tmp_path / "fs", "4m") as data_dir:
        publish_day(data_dir, DAY1, rows(30, DAY1))
        before = fingerprint(data_dir)
        ctx = context(data_dir, DAY2)
        stage(ctx, rows(3000, DAY2))
        fs = os.statvfs(data_dir)
        with open(data_dir / "filler", "wb") as filler:  # leave 8 KiB: the first sizeable write fails
            filler.write(b"\0" * (fs.f_bavail * fs.f_frsize - 8192))
        with pytest.raises(StorageError, match="No space left on device; the disk is full; free space and rerun"):
            pipeline.publish(ctx)
        assert temp_files(data_dir) == []
        assert published_dates(data_dir, REVIEW_CONF.id) == [DAY1]
        assert {k: v for k, v in fingerprint(data_dir).items() if k in before} == before
        assert len(pd.read_parquet(data_dir / "snapshots")) == 30
        (data_dir / "filler").unlink()  # space freed: the rerun publishes
        assert pipeline.publish(ctx)["works"] == 3000


def test_a_read_only_data_dir_gives_a_clear_error_and_keeps_the_previous_snapshot(tmp_path):
    """Row 8 (real): the data directory's file system is remounted read-only (root cannot write either)."""
    with tiny_tmpfs(tmp_path / "fs", "4m") as data_dir:
        publish_day(data_dir, DAY1, rows(30, DAY1))
        ctx = context(data_dir, DAY2)
        stage(ctx, rows(40, DAY2))
        before = fingerprint(data_dir)
        if subprocess.run(["mount", "-o", "remount,ro", str(data_dir)], capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only here; the simulated EROFS cases cover it")
        with pytest.raises(StorageError, match="read-only; point LIVING_REVIEW_DATA_DIR at a writable place"):
            pipeline.publish(ctx)
        assert fingerprint(data_dir) == before
        assert new_date_files(data_dir, DAY2) == []
        assert len(pd.read_parquet(data_dir / "snapshots")) == 30


# -- two runs at once -------------------------------------------------------------------
LEASE_HOLDER = textwrap.dedent("""
    import sys
    from include.living_review.storage import Layout, date_lock, hold_lease
    layout = Layout.of(sys.argv[1], sys.argv[2], sys.argv[3])
    if sys.argv[4] == "lease":
        hold_lease(layout, "scheduled__2026-03-09T00:00:00+00:00", ttl_seconds=3600, task="fetch_pubmed")
        print("locked", flush=True)
        sys.stdin.read()
    else:
        with date_lock(layout):
            print("locked", flush=True)
            sys.stdin.read()  # hold the lock until the parent closes our stdin
""")


@pytest.mark.parametrize("held", ["lease", "date lock"])
def test_an_overlapping_run_cannot_publish_the_same_partition(tmp_path, held):
    """Row 11: another run holds the date (its lease, or the commit's flock) -> PartitionLocked naming it,
    nothing written; once it is gone the run publishes."""
    data_dir = tmp_path / "data"
    publish_day(data_dir, DAY1, rows(30, DAY1))
    ctx = context(data_dir, DAY2, run_id="manual__second")
    stage(ctx, rows(40, DAY2))
    holder = subprocess.Popen([sys.executable, "-c", LEASE_HOLDER, str(data_dir), REVIEW_CONF.id, DAY2.isoformat(),
                               "lease" if held == "lease" else "flock"],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        expected = (r"review 'peer-support-mental-health' for 2026-03-09 is held by run "
                    r"'scheduled__2026-03-09T00:00:00\+00:00' \(host .*, pid \d+" if held == "lease" else
                    "another process is writing review 'peer-support-mental-health' for 2026-03-09; wait for it")
        with pytest.raises(PartitionLocked, match=expected):
            pipeline.publish(ctx)
        assert new_date_files(data_dir, DAY2) == []
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    if held == "lease":  # a dead run's lease is broken by hand (or expires)
        Layout.of(data_dir, REVIEW_CONF.id, DAY2).lease_file.unlink()
    assert pipeline.publish(ctx)["works"] == 40
    assert published_dates(data_dir, REVIEW_CONF.id) == [DAY1, DAY2]
