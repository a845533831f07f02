"""Issue 5 §2: the real scheduler on PostgreSQL runs the pipeline, the Asset-triggered digest and a backfill.

Scheduler, dag-processor, api-server and triggerer run as one process group with the
LocalExecutor, against the local fake APIs, SMTP server and Slack sink. The test only
unpauses, triggers and backfills through the ``airflow`` CLI; everything else (the
digest run, the pools, retries, the backfill runs) is the scheduler's doing.

Unpausing a ``@weekly`` DAG with ``catchup=False`` makes the scheduler create a run
for the latest tick (last Sunday) besides the manual one; that is what production
does too, so the test lets it run and counts it.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from include.living_review.digest import digest_status
from include.living_review.storage import Layout, published_dates
from tests.fakes.stack import LocalStack
from tests.scheduler.cluster import AirflowCluster
from tests.scheduler.conftest import REVIEW_ID

pytestmark = pytest.mark.scheduler

SUFFIX = REVIEW_ID.replace("-", "_")
PIPELINE = f"living_review__{SUFFIX}"
DIGEST = f"living_review_digest__{SUFFIX}"
ACTIVE = ("queued", "running")
TERMINAL = ("success", "failed")
PIPELINE_TASKS = {"begin_run", "fetch_pubmed", "fetch_europepmc", "fetch_references", "merge", "enrich", "validate", "publish_snapshot",
                  "end_run"}


def backfill_dates(today: dt.date) -> list[dt.date]:
    """Three consecutive @weekly ticks (Sundays), the latest three weeks before the last one."""
    last_sunday = today - dt.timedelta(days=(today.weekday() + 1) % 7)
    latest = last_sunday - dt.timedelta(weeks=3)
    return [latest - dt.timedelta(weeks=2), latest - dt.timedelta(weeks=1), latest]


def settled(cluster: AirflowCluster) -> bool:
    """No run queued or running, and no Asset event waiting to become a digest run."""
    busy = cluster.query("SELECT count(*) AS n FROM dag_run WHERE dag_id IN (%s, %s) AND state IN %s",
                         (PIPELINE, DIGEST, ACTIVE))[0]["n"]
    waiting = cluster.query("SELECT count(*) AS n FROM asset_dag_run_queue WHERE target_dag_id = %s",
                            (DIGEST,))[0]["n"]
    return busy == 0 and waiting == 0


def digest_runs_for(cluster: AirflowCluster, source_run_id: str) -> list[dict[str, Any]]:
    """The digest runs that consumed the Asset event published by pipeline run ``source_run_id``."""
    return cluster.query(
        "SELECT dr.run_id, dr.run_type, dr.state FROM dag_run dr "
        "JOIN dagrun_asset_event dae ON dae.dag_run_id = dr.id "
        "JOIN asset_event ae ON ae.id = dae.event_id "
        "WHERE dr.dag_id = %s AND ae.source_dag_id = %s AND ae.source_run_id = %s",
        (DIGEST, PIPELINE, source_run_id))


def manifest(data_dir: Path, day: dt.date) -> dict[str, Any]:
    return json.loads(Layout.of(data_dir, REVIEW_ID, day).manifest_file.read_text(encoding="utf-8"))


def describe(cluster: AirflowCluster, stack: LocalStack, data_dir: Path, wall: float,
             phases: dict[str, float]) -> str:
    """The figures for the closing note: wall time, phases, every run the scheduler made."""
    lines = [f"scheduler test wall time {wall:.1f}s (" + ", ".join(f"{k} {v:.1f}s" for k, v in phases.items()) + ")"]
    events = {r["run_id"]: r["sources"] for r in cluster.query(
        "SELECT dr.run_id, string_agg(ae.source_run_id, ' + ' ORDER BY ae.id) AS sources FROM dag_run dr "
        "JOIN dagrun_asset_event dae ON dae.dag_run_id = dr.id JOIN asset_event ae ON ae.id = dae.event_id "
        "WHERE dr.dag_id = %s GROUP BY dr.run_id", (DIGEST,))}
    for dag_id in (PIPELINE, DIGEST):
        for run in cluster.runs(dag_id):
            took = (run["end_date"] - run["start_date"]).total_seconds() if run["end_date"] and run["start_date"] else 0
            kind = "backfill" if run["backfill_id"] else run["run_type"]
            line = f"  {dag_id} {run['run_id']}: {kind} {run['state']} in {took:.1f}s"
            if run["run_id"] in events:
                line += f" (events from {events[run['run_id']]})"
            lines.append(line)
    for day in published_dates(data_dir, REVIEW_ID):
        digest = digest_status(Layout.of(data_dir, REVIEW_ID, day))
        lines.append(f"  snapshot {day}: digest {digest.get('status')} ({digest.get('reason')})")
    lines.append(f"  received: {len(stack.smtp.messages)} email(s), {len(stack.slack.payloads)} Slack post(s)")
    return "\n".join(lines)


def test_scheduler_runs_pipeline_digest_and_backfill(cluster: AirflowCluster, stack: LocalStack, data_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    phases: dict[str, float] = {}
    mark = cluster.started_at

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = now - mark
        mark = now

    # -- the components come up and parse the DAGs ---------------------------------------
    cluster.wait_for(cluster.api_healthy, timeout=120, what="the api-server health endpoint")
    cluster.wait_for(lambda: len(cluster.query("SELECT dag_id FROM dag WHERE dag_id IN (%s, %s)",
                                               (PIPELINE, DIGEST))) == 2,
                     timeout=120, what=f"the dag-processor to parse {PIPELINE} and {DIGEST}")
    assert cluster.query("SELECT filename, stacktrace FROM import_error") == []
    phase("startup")

    # -- trigger the pipeline; the digest must follow by itself -------------------------
    cluster.cli("dags", "unpause", "--treat-dag-id-as-regex", "--yes", f"^({PIPELINE}|{DIGEST})$")
    assert not any(r["is_paused"] for r in cluster.query("SELECT is_paused FROM dag WHERE dag_id IN (%s, %s)",
                                                         (PIPELINE, DIGEST)))
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    triggered = cluster.cli_json("dags", "trigger", PIPELINE, "--logical-date", now.isoformat())
    run_id = triggered[0]["dag_run_id"]

    def manual_run_done() -> dict[str, Any] | None:
        run = next(r for r in cluster.runs(PIPELINE) if r["run_id"] == run_id)
        return run if run["state"] in TERMINAL else None

    run = cluster.wait_for(manual_run_done, timeout=180, what=f"pipeline run {run_id} to finish")
    assert run["state"] == "success", run
    tasks = cluster.query("SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
                          (PIPELINE, run_id))
    assert {t["task_id"]: t["state"] for t in tasks} == {t: "success" for t in PIPELINE_TASKS}

    digests = cluster.wait_for(lambda: [r for r in digest_runs_for(cluster, run_id) if r["state"] in TERMINAL],
                               timeout=90, what="an Asset-triggered digest run for the manual pipeline run")
    assert [(r["run_type"], r["state"]) for r in digests] == [("asset_triggered", "success")]
    cluster.wait_for(lambda: settled(cluster), timeout=120, what="every pipeline and digest run to finish")
    first_runs = cluster.runs(PIPELINE) + cluster.runs(DIGEST)
    assert all(r["state"] == "success" for r in first_runs), first_runs
    assert {r["run_type"] for r in cluster.runs(DIGEST)} == {"asset_triggered"}
    assert len(stack.smtp.messages) == 1, [m.message["Subject"] for m in stack.smtp.messages]
    assert stack.smtp.messages[0].rcpt_tos == ["maintainer@example.org"]
    assert "Peer Support in Mental Health" in stack.smtp.messages[0].message["Subject"]
    assert len(stack.slack.payloads) == 1
    phase("trigger+digest")

    # -- backfill three past weeks: three partitions, no email --------------------------
    weeks = backfill_dates(now.date())
    before = {r["run_id"] for r in cluster.runs(DIGEST)}
    cluster.cli("backfill", "create", "--dag-id", PIPELINE, "--from-date", weeks[0].isoformat(),
                "--to-date", weeks[-1].isoformat(), "--max-active-runs", "1")

    def backfill_done() -> list[dict[str, Any]] | None:
        runs = [r for r in cluster.runs(PIPELINE) if r["backfill_id"] is not None]
        return runs if len(runs) == len(weeks) and all(r["state"] in TERMINAL for r in runs) else None

    backfilled = cluster.wait_for(backfill_done, timeout=240, what="three backfill runs to finish", every=2)
    cluster.wait_for(lambda: settled(cluster), timeout=120, what="the digests of the backfilled weeks")
    assert [r["state"] for r in backfilled] == ["success"] * len(weeks), backfilled
    by_day = {r["logical_date"].astimezone(dt.timezone.utc).date(): r for r in backfilled}
    assert sorted(by_day) == weeks
    assert all(r["logical_date"].astimezone(dt.timezone.utc).time() == dt.time() for r in backfilled)

    for day in weeks:
        layout = Layout.of(data_dir, REVIEW_ID, day)
        assert layout.snapshot_file.is_file(), f"no snapshot partition for {day}"
        found = manifest(data_dir, day)
        assert found["run_id"] == by_day[day]["run_id"]
        assert found["snapshot_date"] == day.isoformat()
        assert dt.datetime.fromisoformat(found["run_timestamp"]) == dt.datetime.combine(day, dt.time(),
                                                                                         dt.timezone.utc)
        works = pq.read_table(layout.snapshot_file, columns=["work_id"]).column("work_id").to_pylist()
        assert len(works) == 20 and len(set(works)) == len(works), f"{day}: duplicate work_id in the snapshot"
    assert manifest(data_dir, weeks[0])["baseline"] is True
    assert [manifest(data_dir, d)["previous_snapshot_date"] for d in weeks[1:]] == [d.isoformat() for d in weeks[:-1]]

    new_digests = [r for r in cluster.runs(DIGEST) if r["run_id"] not in before]
    assert all(r["run_type"] == "asset_triggered" and r["state"] == "success" for r in new_digests), new_digests
    assert len(stack.smtp.messages) == 1, "a backfilled week sent an email digest"
    assert len(stack.slack.payloads) == 1, "a backfilled week posted a Slack digest"
    for day in weeks:
        assert digest_status(Layout.of(data_dir, REVIEW_ID, day))["status"] in ("pending", "skipped")
    phase("backfill")

    # The CLI sees the same runs in the same states as the scheduler's tables.
    listed = cluster.cli_json("dags", "list-runs", PIPELINE)
    assert {r["run_id"]: r["state"] for r in listed} == {r["run_id"]: r["state"] for r in cluster.runs(PIPELINE)}

    wall = time.monotonic() - cluster.started_at
    with capsys.disabled():
        print("\n" + describe(cluster, stack, data_dir, wall, phases))
