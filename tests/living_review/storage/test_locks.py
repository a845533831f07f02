"""The run lease: one run per review and date, re-entrant for its own tasks, expiring when abandoned."""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import threading
import time

import pytest

from include.living_review.storage import Layout, PartitionLocked, date_lock, hold_lease, read_lease, release_lease
from include.living_review.storage import locks as locks_module

DAY = dt.date(2026, 3, 9)


def test_the_runs_own_tasks_renew_the_lease(tmp_path):
    layout = Layout.of(tmp_path, "r", DAY)
    first = hold_lease(layout, "scheduled__1", ttl_seconds=600, task="begin_run")
    again = hold_lease(layout, "scheduled__1", ttl_seconds=600, task="merge")
    assert again["acquired_at"] == first["acquired_at"] and again["task"] == "merge"
    assert read_lease(layout)["run_id"] == "scheduled__1"


def test_another_run_is_refused_with_the_holder_named_and_the_way_out(tmp_path):
    layout = Layout.of(tmp_path, "r", DAY)
    hold_lease(layout, "scheduled__1", ttl_seconds=600, task="fetch_pubmed")
    with pytest.raises(PartitionLocked) as err:
        hold_lease(layout, "manual__2", ttl_seconds=600)
    message = str(err.value)
    assert "review 'r' for 2026-03-09 is held by run 'scheduled__1' (host" in message
    assert "this run ('manual__2') stops" in message and str(layout.lease_file) in message
    assert read_lease(layout)["run_id"] == "scheduled__1"  # the refused run changed nothing


def test_an_abandoned_lease_expires_and_is_taken_over(tmp_path):
    layout = Layout.of(tmp_path, "r", DAY)
    hold_lease(layout, "scheduled__dead", ttl_seconds=600)
    lease = json.loads(layout.lease_file.read_text())
    lease["expires_at"] = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)).isoformat()
    layout.lease_file.write_text(json.dumps(lease))
    taken = hold_lease(layout, "manual__2", ttl_seconds=600)
    assert taken["run_id"] == "manual__2" and read_lease(layout)["run_id"] == "manual__2"


def test_only_the_holder_releases(tmp_path):
    layout = Layout.of(tmp_path, "r", DAY)
    hold_lease(layout, "scheduled__1", ttl_seconds=600)
    assert release_lease(layout, "manual__2") is False and layout.lease_file.exists()
    assert release_lease(layout, "scheduled__1") is True and not layout.lease_file.exists()
    assert release_lease(layout, "scheduled__1") is False


def test_a_torn_lease_file_protects_nothing_and_is_rewritten(tmp_path):
    layout = Layout.of(tmp_path, "r", DAY)
    layout.lease_file.parent.mkdir(parents=True)
    layout.lease_file.write_text('{"run_id": "sched')
    assert hold_lease(layout, "manual__2", ttl_seconds=600)["run_id"] == "manual__2"


@pytest.mark.parametrize("body", ["[]", '{"run_id": "scheduled__1"}', '{"run_id": "s", "expires_at": "soon"}'],
                         ids=["a-list", "no-expiry", "bad-expiry"])
def test_a_lease_file_of_the_wrong_shape_is_rewritten_with_a_warning_naming_it(tmp_path, caplog, body):
    """Valid JSON that is not a lease failed the run's first task with a bare KeyError or AttributeError."""
    layout = Layout.of(tmp_path, "r", DAY)
    layout.lease_file.parent.mkdir(parents=True)
    layout.lease_file.write_text(body)
    assert hold_lease(layout, "manual__2", ttl_seconds=600)["run_id"] == "manual__2"
    assert f"{layout.lease_file} is not a run lease" in caplog.text and "rewritten" in caplog.text
    assert read_lease(layout)["run_id"] == "manual__2"


T1 = dt.datetime(2026, 3, 9, 6, 0, tzinfo=dt.timezone.utc)


def at(monkeypatch, when: dt.datetime) -> None:
    monkeypatch.setattr(locks_module, "_now", lambda: when)


def test_a_lease_names_its_holder_and_a_renewal_keeps_its_start(tmp_path, monkeypatch):
    layout = Layout.of(tmp_path, "r", DAY)
    at(monkeypatch, T1)
    first = hold_lease(layout, "scheduled__1", ttl_seconds=600)
    assert first == {"run_id": "scheduled__1", "host": socket.gethostname(), "pid": os.getpid(), "task": "",
                     "acquired_at": "2026-03-09T06:00:00+00:00", "renewed_at": "2026-03-09T06:00:00+00:00",
                     "expires_at": "2026-03-09T06:10:00+00:00"}
    assert json.loads(layout.lease_file.read_text()) == first
    at(monkeypatch, T1 + dt.timedelta(minutes=5))
    again = hold_lease(layout, "scheduled__1", ttl_seconds=600, task="merge")
    assert again == {**first, "task": "merge", "renewed_at": "2026-03-09T06:05:00+00:00",
                     "expires_at": "2026-03-09T06:15:00+00:00"}


def test_lease_times_are_whole_seconds():
    now = locks_module._now()
    assert now.microsecond == 0 and now.tzinfo is not None


def test_a_lease_expires_at_its_expiry_time_and_is_taken_over_as_a_new_lease(tmp_path, monkeypatch):
    layout = Layout.of(tmp_path, "r", DAY)
    at(monkeypatch, T1 - dt.timedelta(hours=3))
    hold_lease(layout, "scheduled__dead", ttl_seconds=3 * 3600)
    at(monkeypatch, T1 - dt.timedelta(seconds=1))
    with pytest.raises(PartitionLocked) as err:
        hold_lease(layout, "manual__2", ttl_seconds=600)
    assert str(err.value) == (
        f"review 'r' for 2026-03-09 is held by run 'scheduled__dead' (host {socket.gethostname()}, pid "
        f"{os.getpid()}, since 2026-03-09T03:00:00+00:00, renewed 2026-03-09T03:00:00+00:00); this run "
        "('manual__2') stops so the two cannot mix their files. Wait for that run to finish, or, if it is dead, "
        f"wait until its lease expires at 2026-03-09T06:00:00+00:00 or delete {layout.lease_file}")
    at(monkeypatch, T1)  # exactly at expiry: expired
    taken = hold_lease(layout, "manual__2", ttl_seconds=600)
    assert taken["run_id"] == "manual__2" and taken["acquired_at"] == "2026-03-09T06:00:00+00:00"


def hold_then_release(path, released: threading.Event, ready: threading.Event) -> threading.Thread:
    """Another process's lock on ``path``: held until a moment after ``ready`` is set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    fcntl.flock(handle, fcntl.LOCK_EX)

    def release() -> None:
        ready.wait(10)
        time.sleep(0.3)  # long enough for a caller that does not wait to return first
        released.set()
        handle.close()
    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_taking_the_lease_waits_for_another_process_reading_or_writing_it(tmp_path):
    layout = Layout.of(tmp_path, "r", DAY)
    released, ready = threading.Event(), threading.Event()
    thread = hold_then_release(tmp_path / "locks" / "r__2026-03-09.json.lock", released, ready)
    ready.set()
    hold_lease(layout, "scheduled__1", ttl_seconds=600)
    assert released.is_set()  # it returned only once the other holder let go
    thread.join()


def test_the_date_lock_refuses_or_waits_while_another_process_writes_the_date(tmp_path):
    layout = Layout.of(tmp_path, "r", DAY)
    released, ready = threading.Event(), threading.Event()
    thread = hold_then_release(layout.lock_file, released, ready)
    ready.set()
    with pytest.raises(PartitionLocked) as err:
        with date_lock(layout):
            pass
    assert str(err.value) == "another process is writing review 'r' for 2026-03-09; wait for it to finish"
    with date_lock(layout, wait=True):
        assert released.is_set()
    thread.join()
    with date_lock(layout), pytest.raises(PartitionLocked):  # one process, two handles: still exclusive
        with date_lock(layout):
            pass
