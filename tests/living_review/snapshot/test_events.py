"""The event log: stable identities, one event per notice, and only committed files read."""
from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.living_review.records import CHANGES_SCHEMA, EVENTS_SCHEMA
from include.living_review.snapshot.events import event_id, events_from_changes, legacy_watermark, read_log
from include.living_review.storage import CorruptFile, Layout, commit_run, parquet_writer

TS = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)


def change(work: str, kind: str, detail: dict | None = None) -> dict:
    return {"work_id": work, "change": kind, "changed_fields": [], "title": "T", "doi": None,
            "detail": json.dumps(detail) if detail is not None else None}


def test_the_same_change_seen_by_two_runs_is_one_event():
    first = events_from_changes([change("doi:10.1/a", "added")], run_id="r1", run_ts=TS)
    second = events_from_changes([change("doi:10.1/a", "added")], run_id="r2", run_ts=TS + dt.timedelta(hours=12))
    assert first.column("event_id").to_pylist() == second.column("event_id").to_pylist()
    assert first.schema.equals(EVENTS_SCHEMA)


def test_each_correction_notice_is_its_own_event_and_a_new_one_is_new():
    one = events_from_changes([change("w", "corrected", {"notices": ["correction:10.1/c1"]})], run_id="r", run_ts=TS)
    two = events_from_changes([change("w", "corrected", {"notices": ["correction:10.1/c1", "correction:10.1/c2"]})],
                              run_id="r", run_ts=TS)
    assert two.column("subject").to_pylist() == ["correction:10.1/c1", "correction:10.1/c2"]
    assert set(one.column("event_id").to_pylist()) < set(two.column("event_id").to_pylist())


def test_what_an_event_is_about_is_part_of_its_identity():
    kinds = {
        "published_a": change("w", "preprint_published", {"versions": [{"id": "10.1/a", "kind": "published"}]}),
        "published_b": change("w", "preprint_published", {"versions": [{"id": "10.1/b", "kind": "published"}]}),
        "gone_march": change("w", "no_longer_reported", {"last_reported": "2026-03-02"}),
        "gone_may": change("w", "no_longer_reported", {"last_reported": "2026-05-04"}),
        "title_x": change("w", "updated", {"title": ["old", "x"]}),
        "title_y": change("w", "updated", {"title": ["old", "y"]}),
    }
    ids = {name: events_from_changes([c], run_id="r", run_ts=TS).column("event_id")[0].as_py()
           for name, c in kinds.items()}
    assert len(set(ids.values())) == len(ids)
    assert ids["title_x"] == events_from_changes([change("w", "updated", {"title": ["older", "x"]})], run_id="r",
                                                 run_ts=TS).column("event_id")[0].as_py()  # the new value decides
    assert event_id("w", "added", "") != event_id("w2", "added", "")


def publish_events(tmp_path, day: dt.date, changes: list[dict], commit_id: str, *, keep: list[str] = ()) -> Layout:
    layout = Layout.of(tmp_path, "r", day)
    events = events_from_changes(changes, run_id=commit_id, run_ts=dt.datetime.combine(day, dt.time(),
                                                                                        dt.timezone.utc))
    layout.snapshot_file.parent.mkdir(parents=True, exist_ok=True)
    commit_run(layout, layout.staging(commit_id), [("events", layout.events_file(commit_id), parquet_writer(events)),
                                                   ("snapshot", layout.snapshot_file, b"x")],
               {"event_files": [*keep, layout.events_file(commit_id).name]}, commit_id=commit_id)
    return layout


def test_the_log_reads_committed_files_once_and_ignores_a_stray_file(tmp_path):
    day1, day2 = dt.date(2026, 3, 2), dt.date(2026, 3, 9)
    publish_events(tmp_path, day1, [change("a", "added"), change("b", "added")], "c1")
    layout2 = publish_events(tmp_path, day2, [change("c", "added"), change("a", "added")], "c2")
    # a file a killed commit left behind, listed by no manifest
    pq.write_table(events_from_changes([change("zzz", "added")], run_id="killed", run_ts=TS),
                   layout2.events_file("killed"))
    log = read_log(tmp_path, "r")
    assert log.column("work_id").to_pylist() == ["a", "b", "c"]  # "a" seen twice, kept once (the first)
    assert log.column("snapshot_date").to_pylist() == [day1, day1, day2]
    assert read_log(tmp_path, "r", upto=day1).num_rows == 2
    assert read_log(tmp_path, "r", kinds=["retracted"]).num_rows == 0


def test_a_run_from_before_the_event_log_is_read_from_its_changes_table(tmp_path):
    layout = Layout.of(tmp_path, "r", dt.date(2026, 1, 5))
    layout.changes_file.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([change("old", "added")], schema=CHANGES_SCHEMA), layout.changes_file)
    layout.snapshot_file.parent.mkdir(parents=True)
    layout.snapshot_file.write_bytes(b"x")
    layout.run_dir.mkdir(parents=True)
    layout.manifest_file.write_text(json.dumps({"manifest_version": "1.0", "run_id": "scheduled__old",
                                                "run_timestamp": "2026-01-05T00:00:00+00:00"}))
    log = read_log(tmp_path, "r").to_pylist()
    assert [(e["work_id"], e["kind"], e["run_id"]) for e in log] == [("old", "added", "scheduled__old")]


@pytest.mark.parametrize("body", ['{"watermark": "2026-01-0', "[]", '{"watermark": "last tuesday"}'],
                         ids=["truncated", "a-list", "not-a-time"])
def test_a_damaged_state_json_names_the_file_and_the_fix(tmp_path, body):
    """A truncated ``state.json`` failed the digest with ``Unterminated string starting at...``, naming no file."""
    layout = Layout.of(tmp_path, "r", dt.date(2026, 1, 5))
    state = layout.ledger_file.with_name("state.json")
    state.parent.mkdir(parents=True)
    state.write_text(body, encoding="utf-8")
    with pytest.raises(CorruptFile) as err:
        legacy_watermark(layout)
    text = str(err.value)
    assert str(state) in text
    assert 'restore it from a backup, or write {"watermark": "<the time of the last digest sent>"} into it' in text
    assert "deleting it makes every event from before the event log count as not yet delivered" in text


def test_a_missing_state_json_means_no_watermark(tmp_path):
    assert legacy_watermark(Layout.of(tmp_path, "r", dt.date(2026, 1, 5))) is None


# -- identities: stored in every channel's delivery ledger, so they must never drift ------
VERSIONS = [{"id": "10.31234/abcd", "kind": "preprint", "date": "2026-01-05"},
            {"id": "10.1000/pub.1", "kind": "published", "date": "2026-06-01"}]


def one_event(kind: str, detail: dict | None, work: str = "doi:10.1000/a") -> dict:
    (row,) = events_from_changes([change(work, kind, detail)], run_id="r", run_ts=TS).to_pylist()
    return row


def test_event_ids_are_the_same_from_release_to_release():
    """A changed identity would make every channel announce every event again."""
    assert event_id("doi:10.1000/a", "added", "") == "bd51ea747d40e6802cd848318aeefbcf"
    assert one_event("added", None)["event_id"] == "bd51ea747d40e6802cd848318aeefbcf"
    assert one_event("corrected", {"notices": ["correction:10.9/c1"]})["event_id"] == \
        "fd1a0cb4b3af8792288d1c4b8cb64a08"
    update = one_event("updated", {"versions": [VERSIONS[:1], VERSIONS], "title": ["Old.", "New."]})
    assert (update["subject"], update["event_id"]) == ("b9da62283b02c6a2", "fe5bbd20021cacf9c142e531e24a5952")


@pytest.mark.parametrize(("kind", "detail", "subject"), [
    ("added", None, ""),
    ("corrected", {"notices": []}, "correction"),
    ("corrected", None, "correction"),
    ("retracted", {"notices": ["retraction:10.9/r2", "retraction:10.9/r1"]}, "retraction:10.9/r1|retraction:10.9/r2"),
    ("retracted", {"notices": []}, "retraction"),
    ("retracted", None, "retraction"),
    ("preprint_published", {"versions": [*VERSIONS, {"id": "10.1000/pub.0", "kind": "published"}, "junk"]},
     "10.1000/pub.0|10.1000/pub.1"),
    ("preprint_published", {"versions": VERSIONS[:1]}, "published"),
    ("preprint_published", {"versions": None}, "published"),
    ("no_longer_reported", {"last_reported": "2026-03-02 00:00:00+00:00"}, "2026-03-02 00:00:00+00:00"),
])
def test_what_each_kind_of_event_is_about(kind, detail, subject):
    assert one_event(kind, detail)["subject"] == subject


def test_an_event_row_carries_the_changes_title_doi_detail_and_run():
    source = {"work_id": "doi:10.1000/a", "change": "retracted", "changed_fields": [], "title": "A trial.",
              "doi": "10.1000/a", "detail": json.dumps({"notices": ["retraction:10.9/r"]})}
    assert events_from_changes([source], run_id="scheduled__1", run_ts=TS).to_pylist() == [{
        "event_id": event_id("doi:10.1000/a", "retracted", "retraction:10.9/r"), "work_id": "doi:10.1000/a",
        "kind": "retracted", "subject": "retraction:10.9/r", "title": "A trial.", "doi": "10.1000/a",
        "detail": source["detail"], "run_id": "scheduled__1", "run_timestamp": TS}]


def test_a_notice_seen_again_in_a_later_change_row_is_skipped_but_the_rows_new_notices_are_kept():
    rows = [change("w", "corrected", {"notices": ["correction:10.9/c1"]}),
            change("w", "corrected", {"notices": ["correction:10.9/c1", "correction:10.9/c2"]}),
            change("w", "retracted", {"notices": ["correction:10.9/c1"]})]  # another kind: another event
    events = events_from_changes(rows, run_id="r", run_ts=TS).to_pylist()
    assert [(e["kind"], e["subject"]) for e in events] == [
        ("corrected", "correction:10.9/c1"), ("corrected", "correction:10.9/c2"), ("retracted", "correction:10.9/c1")]


def test_a_legacy_run_without_a_timestamp_or_run_id_is_dated_by_its_snapshot(tmp_path):
    layout = Layout.of(tmp_path, "r", dt.date(2026, 1, 5))
    layout.changes_file.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([change("old", "added")], schema=CHANGES_SCHEMA), layout.changes_file)
    layout.snapshot_file.parent.mkdir(parents=True)
    layout.snapshot_file.write_bytes(b"x")
    layout.run_dir.mkdir(parents=True)
    layout.manifest_file.write_text(json.dumps({"manifest_version": "1.0"}))
    (event,) = read_log(tmp_path, "r").to_pylist()
    assert (event["run_id"], event["run_timestamp"]) == ("legacy", dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc))
    layout.manifest_file.write_text(json.dumps({"run_id": "manual__x", "run_timestamp": "2026-01-05T06:30:00"}))
    (event,) = read_log(tmp_path, "r").to_pylist()  # a naive timestamp is UTC
    assert (event["run_id"], event["run_timestamp"]) == ("manual__x",
                                                         dt.datetime(2026, 1, 5, 6, 30, tzinfo=dt.timezone.utc))
    layout.manifest_file.write_text(json.dumps({"run_id": "manual__y", "run_timestamp": "2026-01-05T06:30:00+01:00"}))
    (event,) = read_log(tmp_path, "r").to_pylist()  # an aware one keeps its instant
    assert event["run_timestamp"] == dt.datetime(2026, 1, 5, 5, 30, tzinfo=dt.timezone.utc)
    layout.changes_file.unlink()  # a legacy run without a changes table has no events
    assert read_log(tmp_path, "r").num_rows == 0


LOG_SCHEMA = EVENTS_SCHEMA.append(pa.field("snapshot_date", pa.date32()))


def test_the_log_has_one_schema_with_no_events_at_all_or_a_commit_without_any(tmp_path):
    assert read_log(tmp_path, "r").schema.equals(LOG_SCHEMA)
    publish_events(tmp_path, dt.date(2026, 3, 2), [], "c1")  # a run that found no change
    layout = Layout.of(tmp_path, "r", dt.date(2026, 3, 9))
    commit_run(layout, layout.staging("c2"), [("snapshot", layout.snapshot_file, b"x")], {"event_files": []},
               commit_id="c2")
    log = read_log(tmp_path, "r")
    assert log.num_rows == 0 and log.schema.equals(LOG_SCHEMA)


def test_an_event_file_from_before_a_column_existed_reads_with_nulls_there(tmp_path):
    day1, day2 = dt.date(2026, 3, 2), dt.date(2026, 3, 9)
    layout1 = publish_events(tmp_path, day1, [change("a", "added")], "c1")
    older = pq.read_table(layout1.events_file("c1")).drop_columns(["doi"])
    pq.write_table(older, layout1.events_file("c1"))
    publish_events(tmp_path, day2, [change("b", "added")], "c2")
    log = read_log(tmp_path, "r")
    assert log.column("work_id").to_pylist() == ["a", "b"] and log.column("doi").to_pylist() == [None, None]
    assert log.column("snapshot_date").to_pylist() == [day1, day2]


def test_the_legacy_watermark_reads_state_json_as_an_aware_time(tmp_path):
    layout = Layout.of(tmp_path, "r", dt.date(2026, 3, 2))
    state = layout.ledger_file.with_name("state.json")
    assert legacy_watermark(layout) is None  # no file
    state.parent.mkdir(parents=True)
    for content in ("{}", "null", '{"watermark": null}', '{"watermark": ""}'):
        state.write_text(content)
        assert legacy_watermark(layout) is None, content
    state.write_text('{"watermark": "2026-03-02T08:00:00"}')
    assert legacy_watermark(layout) == dt.datetime(2026, 3, 2, 8, tzinfo=dt.timezone.utc)
    state.write_text('{"watermark": "2026-03-02T08:00:00+01:00"}')
    assert legacy_watermark(layout).utcoffset() == dt.timedelta(hours=1)
