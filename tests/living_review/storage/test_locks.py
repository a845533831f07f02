"""The run lease: one run per review and date, re-entrant for its own tasks, expiring when abandoned."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from include.living_review.storage import Layout, PartitionLocked, hold_lease, read_lease, release_lease

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
