"""Issue 14: a hostile or wrong ``reviews.yaml`` and damaged files of the data directory.

Each failure names the file, the field (or the run) and the fix, at the level an
operator meets it: the DAG folder as the DAG processor fills it (a ``DagBag``, in a
child process whose heap is capped where the failure used to be a memory blow-up),
``check-config``, and the real DAGs through ``dag.test()``.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.corpus import Paper, seed_corpus
from tests.living_review.test_config import GOOD, alias_bomb
from tests.reliability.conftest import DIGEST, PIPELINE, TODAY, LogTap, Scenario, digest_emails

ROOT = Path(__file__).resolve().parents[2]
GOOD_DAGS = {"living_review__peer_support_mental_health", "living_review_digest__peer_support_mental_health"}

DAGBAG_CHILD = textwrap.dedent("""
    import json, resource, sys
    # A regression dies of MemoryError here instead of eating the machine (the bomb reached 2.2 GB).
    resource.setrlimit(resource.RLIMIT_DATA, (1536 * 1024 * 1024, resource.RLIM_INFINITY))
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(sys.argv[1])
    print(json.dumps({"dag_ids": sorted(bag.dag_ids), "import_errors": bag.import_errors}))
""")


def fill_dagbag(config: Path) -> dict[str, Any]:
    """Fill a DagBag from ``dags/`` in a child process with ``config``; its DAG ids and import errors."""
    done = subprocess.run([sys.executable, "-c", DAGBAG_CHILD, str(ROOT / "dags")], cwd=ROOT, capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "LIVING_REVIEW_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- item 1: a YAML alias bomb ---------------------------------------------------------
def test_an_alias_bomb_is_one_short_import_error_and_the_other_reviews_dags_load(tmp_path):
    """Nine levels of aliases in ``doi:`` (733 bytes) timed out all three DAG files; now only the bomb is refused."""
    config = tmp_path / "reviews.yaml"
    config.write_text(alias_bomb(9), encoding="utf-8")
    bag = fill_dagbag(config)
    assert GOOD_DAGS <= set(bag["dag_ids"])
    assert not [d for d in bag["dag_ids"] if "bomb" in d]
    (path, message), = bag["import_errors"].items()
    assert path.endswith("living_review_config_check.py")
    assert len(message) < 2000, message[:2000]
    assert f"{config}: reviews[1] (id 'bomb'): expands to more than" in message
    assert "Fix: write the values out" in message


# -- item 2: a schedule Airflow cannot parse -------------------------------------------
def test_a_bad_schedule_is_an_import_error_naming_the_review_and_neither_of_its_dags_loads(tmp_path, monkeypatch):
    """``schedule: "every tuesday"`` failed living_review.py with a bare AirflowTimetableInvalid naming nothing,
    while that review's digest DAG still loaded."""
    from airflow.dag_processing.dagbag import DagBag

    config = tmp_path / "reviews.yaml"
    config.write_text("reviews:" + GOOD + '  - {id: tuesdays, title: T, pmid: "1", schedule: "every tuesday"}\n'
                      '  - {id: mondays, title: M, pmid: "2", schedule: "0 6 * * 1"}\n', encoding="utf-8")
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config))
    bag = DagBag(str(ROOT / "dags"))
    assert GOOD_DAGS | {"living_review__mondays", "living_review_digest__mondays"} <= set(bag.dag_ids)
    assert not [d for d in bag.dag_ids if "tuesdays" in d]
    (path, message), = bag.import_errors.items()
    assert path.endswith("living_review_config_check.py")
    assert (f"{config}: reviews[1] (id 'tuesdays').schedule: 'every tuesday' is not a schedule Airflow "
                       "accepts (Exactly 5, 6 or 7 columns has to be specified for iterator expression.). "
                       "Fix: use a cron preset such as @weekly or a cron expression.") in message
    assert bag.dags["living_review__mondays"].timetable.expression == "0 6 * * 1"


# -- item 3: damaged files of the data directory, through the real DAGs -----------------
WEEK1, WEEK2 = TODAY - dt.timedelta(days=14), TODAY - dt.timedelta(days=7)
NEW_PAPER = Paper(title="Peer support workers on acute wards: a stepped-wedge trial.", authors=[("Okafor", "N")],
                  journal_abbrev="Psychiatr Serv", journal="Psychiatric services", year=TODAY.year, month=TODAY.month,
                  day=1, pmid="42200001", pmcid="PMC12200001", doi="10.1176/appi.ps.20260101")


@contextlib.contextmanager
def own_filesystem(path: Path) -> Iterator[bool]:
    """``path`` as its own tmpfs (so it can be remounted read-only), when this machine allows mounting."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, mode: str) -> bool:
    return subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], capture_output=True).returncode == 0


@contextlib.contextmanager
def damaged(path: Path, data: bytes) -> Iterator[None]:
    """``path`` holds ``data`` for the block, then what it held before (or nothing)."""
    before = path.read_bytes() if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    try:
        yield
    finally:
        if before is None:
            path.unlink()
        else:
            path.write_bytes(before)


def run_logged(sc: Scenario, dag_id: str, day: dt.date) -> dict[str, Any]:
    with LogTap() as tap:
        states = sc.run(dag_id, day)
    return {"states": states, "log": tap.text}


@pytest.fixture(scope="module")
def files(tmp_path_factory, module_mp, airflow_db) -> dict[str, Any]:
    """One week published and announced, then each file damaged in turn (and put back) for the next run."""
    out: dict[str, Any] = {}
    root = tmp_path_factory.mktemp("damaged-files")
    with own_filesystem(root / "data") as mounted, Scenario(root, module_mp, seed_corpus(), ["pubmed"]) as sc:
        out["scenario"], out["mounted"] = sc, mounted
        out["week1"] = sc.run(PIPELINE, WEEK1), sc.run(DIGEST, WEEK1)
        layout = sc.layout(WEEK1)
        snapshot = layout.snapshot_file.read_bytes()
        out["snapshot_file"], out["state_file"], out["ledger_file"] = (
            layout.snapshot_file, layout.ledger_file.with_name("state.json"), layout.ledger_file)
        with damaged(layout.snapshot_file, snapshot[:len(snapshot) // 2]):
            out["truncated_snapshot"] = run_logged(sc, PIPELINE, WEEK2)
        with damaged(out["state_file"], b'{"watermark": "2026-01-0'):
            out["truncated_state"] = run_logged(sc, DIGEST, WEEK1)
        ledger = layout.ledger_file.read_bytes()
        with damaged(layout.ledger_file, ledger[:len(ledger) // 2]):
            out["truncated_ledger"] = run_logged(sc, DIGEST, WEEK1)
        # Week 2, repaired, finds one more paper; its digest then meets a read-only data dir, and
        # once the file system is writable again it delivers that paper.
        sc.stack.set_papers([*seed_corpus(), NEW_PAPER])
        out["week2"] = sc.run(PIPELINE, WEEK2)
        out["read_only"] = None
        if mounted and remount(sc.data_dir, "ro"):
            try:
                out["read_only"] = run_logged(sc, DIGEST, WEEK2)
            finally:
                remount(sc.data_dir, "rw")
        out["afterwards"] = sc.run(DIGEST, WEEK2)
        out["emails"] = [m.message.get_body(("plain",)).get_content() for m in digest_emails(sc.stack)]
    return out


def test_the_scenario_published_and_recovered(files):
    """Guards the tests below against a vacuous pass: week 1 ran clean, and so did week 2 once repaired."""
    pipeline_states, digest_states = files["week1"]
    assert set(pipeline_states.values()) == {"success"} and digest_states == {"send_digest": "success"}
    assert set(files["week2"].values()) == {"success"} and files["afterwards"] == {"send_digest": "success"}
    assert [NEW_PAPER.title in text for text in files["emails"]] == [False, True]  # week 2's paper, once


def test_a_truncated_previous_snapshot_fails_the_run_naming_the_file_and_the_fix(files):
    """It failed every fetch task with ``ArrowInvalid: Parquet magic bytes not found in footer``, naming no file."""
    run = files["truncated_snapshot"]
    assert run["states"]["fetch_pubmed"] == "failed"
    assert run["states"]["publish_snapshot"] != "success"
    week1 = files["snapshot_file"]
    assert (f"CorruptFile: {week1} is not a readable Parquet file (Parquet magic bytes not found in footer"
            in run["log"])
    assert f"Fix: rerun {WEEK1} to republish it, or delete its partition {week1.parent}" in run["log"]


def test_a_truncated_state_json_fails_the_digest_naming_the_file_and_the_fix(files):
    run = files["truncated_state"]
    assert run["states"] == {"send_digest": "failed"}
    assert f"CorruptFile: {files['state_file']} is not valid JSON (Unterminated string" in run["log"]
    assert 'Fix: restore it from a backup, or write {"watermark": "<the time of the last digest sent>"}' in run["log"]


def test_a_truncated_ledger_fails_the_digest_naming_the_file_and_sends_nothing(files):
    run = files["truncated_ledger"]
    assert run["states"] == {"send_digest": "failed"}
    assert f"LedgerError: cannot read the delivery ledger {files['ledger_file']}" in run["log"]
    assert "Repair or restore it; deleting it makes already-sent digests eligible to be sent again" in run["log"]


def test_a_read_only_data_dir_fails_the_digest_saying_what_to_do(files):
    """It failed with a bare ``OSError: [Errno 30] Read-only file system``."""
    if files["read_only"] is None:
        pytest.skip("cannot mount and remount a tmpfs here; tests/living_review/digest/test_delivery.py simulates it")
    run = files["read_only"]
    assert run["states"] == {"send_digest": "failed"}
    hint = "the file system is read-only; point LIVING_REVIEW_DATA_DIR at a writable place"
    for channel in ("email", "slack"):  # each channel's own error (the ledger's lock file), then the task's
        assert f"on {channel} failed: StorageError: could not open the delivery ledger's lock file" in run["log"]
        assert f"on {channel} failed: OSError" not in run["log"]
    assert f"StorageError: could not write {files['state_file'].parents[2]}" in run["log"] and hint in run["log"]
