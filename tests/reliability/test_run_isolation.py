"""Run isolation: one run at a time per review and date, its own staging, one run timestamp.

Two real processes run the pipeline's steps for the same review and date, as the DAG's
tasks do (each step first renews the run's lease), against one local E-utilities
server: run A (the scheduled 00:00 run) and run B (a manual trigger at 12:00). While A
holds the date, B stops at its first step with a message naming A, and writes nothing;
A's commit is consistent (one run timestamp in every row, no false
``no_longer_reported``). Once A is done, B runs as the day's second run and builds on A's
commit. Then, through the real DAG, a run that finds the date held fails at
``begin_run`` without touching the published partition.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from include.living_review.storage import Layout, hold_lease, release_lease, verify
from tests.fakes.corpus import seed_corpus
from tests.fakes.eutils import FakeEutils
from tests.reliability.conftest import PIPELINE, REVIEW_ID, TODAY, Scenario

ROOT = Path(__file__).resolve().parents[2]
DAY = TODAY

STEPS = textwrap.dedent("""
    import datetime as dt, json, pathlib, sys, time
    from include.living_review import pipeline
    from include.living_review.config import ReviewConfig
    from include.living_review.sources.pubmed import PubMedClient
    from include.living_review.storage import PartitionLocked

    data_dir, url, run_id, when, first_step, marker = sys.argv[1:7]
    review = ReviewConfig(id="peer-support-mental-health", title="T", doi="10.2196/15572", pmid="32357127",
                          sources=["pubmed"])
    ctx = pipeline.RunContext.create(review, data_dir, dt.datetime.fromisoformat(when), run_id)

    def step(name, call):
        ctx.hold(name)  # what every task of the DAG does first (dags/_lib/tasks.py)
        return call()

    steps = [("begin_run", lambda: pipeline.begin_run(ctx)),
             ("fetch_pubmed", lambda: pipeline.fetch_source(ctx, "pubmed", PubMedClient(url))),
             ("merge", lambda: pipeline.merge_sources(ctx)),
             ("enrich", lambda: pipeline.enrich_metadata(ctx, None)),
             ("validate", lambda: pipeline.validate(ctx)),
             ("publish_snapshot", lambda: pipeline.publish(ctx)),
             ("end_run", lambda: pipeline.end_run(ctx))]
    names = [n for n, _ in steps]
    try:
        for name, call in steps[names.index(first_step):]:
            step(name, call)
            if name == "begin_run" and marker != "-":
                pathlib.Path(marker + ".begun").write_text("1")
                while not pathlib.Path(marker + ".go").exists():  # hold the date until the parent says go
                    time.sleep(0.05)
    except PartitionLocked as exc:
        print(f"LOCKED at {name}: {exc}", flush=True)
        sys.exit(3)
    print("DONE", flush=True)
""")


def start(data_dir: Path, url: str, run_id: str, when: dt.datetime, first_step: str = "begin_run",
          marker: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", STEPS, str(data_dir), url, run_id, when.isoformat(), first_step,
                             str(marker) if marker else "-"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("isolation")
    data_dir, marker = root / "data", root / "run-a"
    midnight = dt.datetime.combine(DAY, dt.time(), dt.timezone.utc)
    noon = midnight + dt.timedelta(hours=12)
    out: dict[str, Any] = {"data_dir": data_dir, "midnight": midnight, "noon": noon}
    with FakeEutils(seed_corpus()) as eutils:
        a = start(data_dir, eutils.url, "scheduled__a", midnight, marker=marker)
        wait_for(Path(f"{marker}.begun"), a)
        # B starts while A holds the date: at its first task, and as a stray task mid-run
        for first_step in ("begin_run", "fetch_pubmed", "publish_snapshot"):
            b = start(data_dir, eutils.url, "manual__b", noon, first_step=first_step)
            out[f"b_{first_step}"] = (b.wait(timeout=120), *b.communicate())
        out["files_while_a_held"] = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*")
                                           if p.is_file() and "run=manual__b" in str(p))
        Path(f"{marker}.go").write_text("1")
        out["a"] = (a.wait(timeout=180), *a.communicate())
        layout = Layout.of(data_dir, REVIEW_ID, DAY)
        out["a_manifest"] = json.loads(layout.manifest_file.read_text())
        out["a_rows"] = pq.read_table(layout.snapshot_file).to_pylist()
        out["a_changes"] = pq.read_table(layout.changes_file).to_pylist()
        b = start(data_dir, eutils.url, "manual__b", noon)  # A is done: B is the day's second run
        out["b_after"] = (b.wait(timeout=180), *b.communicate())
        out["b_manifest"] = json.loads(layout.manifest_file.read_text())
        out["b_rows"] = pq.read_table(layout.snapshot_file).to_pylist()
        out["verify"] = verify(layout)
    return out


@pytest.mark.parametrize("first_step", ["begin_run", "fetch_pubmed", "publish_snapshot"])
def test_a_second_run_of_the_same_date_stops_at_once_naming_the_holder(two_runs, first_step):
    code, stdout, stderr = two_runs[f"b_{first_step}"]
    assert code == 3, (stdout, stderr)
    assert f"LOCKED at {first_step}" in stdout
    assert "is held by run 'scheduled__a' (host" in stdout and "this run ('manual__b') stops" in stdout
    assert "delete" in stdout and "lease" in stdout  # and says what to do if the holder is dead


def test_the_stopped_run_wrote_nothing_and_the_holders_commit_is_consistent(two_runs):
    assert two_runs["files_while_a_held"] == []
    assert two_runs["a"][0] == 0, two_runs["a"]
    manifest, rows = two_runs["a_manifest"], two_runs["a_rows"]
    assert manifest["run_id"] == "scheduled__a"
    assert manifest["run_timestamp"] == two_runs["midnight"].isoformat()
    assert {r["last_reported"] for r in rows} == {two_runs["midnight"]}  # one timestamp, A's, in every row
    assert [c for c in two_runs["a_changes"] if c["change"] == "no_longer_reported"] == []


def test_after_the_holder_the_second_run_builds_on_its_commit(two_runs):
    assert two_runs["b_after"][0] == 0, two_runs["b_after"]
    manifest, rows = two_runs["b_manifest"], two_runs["b_rows"]
    assert manifest["run_id"] == "manual__b" and manifest["base"]["run_id"] == "scheduled__a"
    assert {r["last_reported"] for r in rows} == {two_runs["noon"]}
    assert {r["first_seen"] for r in rows} == {two_runs["midnight"]}  # first seen by A, still
    assert manifest["events"] == {} and manifest["changes"]["no_longer_reported"] == 0
    assert two_runs["verify"] == []
    staging = two_runs["data_dir"] / "staging" / f"review_id={REVIEW_ID}" / f"snapshot_date={DAY}"
    assert not staging.exists() or list(staging.iterdir()) == []  # committed runs leave no staging


def test_through_the_dag_a_held_date_fails_begin_run_and_keeps_the_partition(tmp_path, monkeypatch, airflow_db):
    with Scenario(tmp_path, monkeypatch, seed_corpus(), ["pubmed"]) as sc:
        sc.run(PIPELINE, DAY)
        before = sc.layout(DAY).manifest_file.read_bytes()
        layout = sc.layout(DAY)
        hold_lease(layout, "manual__someone-else", ttl_seconds=600, task="merge")
        try:
            states = sc.run(PIPELINE, DAY)
        finally:
            release_lease(layout, "manual__someone-else")
        assert states["begin_run"] == "failed"
        assert states["fetch_pubmed"] == "upstream_failed" and states["publish_snapshot"] == "upstream_failed"
        assert layout.manifest_file.read_bytes() == before
        assert set(sc.run(PIPELINE, DAY).values()) == {"success"}  # once released, the run goes through
