"""The pipeline with ``LIVING_REVIEW_DATA_DIR=s3://bucket/prefix``, against a local S3 server.

moto's ``ThreadedMotoServer`` listens on 127.0.0.1 and speaks the S3 API, so s3fs,
pandas and DuckDB talk to it as to a real bucket. Two weekly runs of the same step
functions the DAG tasks call, then a digest plan, then the reads an analyst would do.
"""
from __future__ import annotations

import datetime as dt
import json
import logging

import pyarrow.parquet as pq
import pytest

from include.living_review import pipeline, settings
from include.living_review.digest.delivery import DeliveryLedger
from include.living_review.digest import write_outbox
from include.living_review.digest.channels import OutboxChannel
from include.living_review.digest.send import digest_status, send_digest
from include.living_review.storage import Layout, is_remote, published_dates
from include.living_review.sources.pubmed import PubMedClient
from tests.fakes.corpus import seed_corpus
from tests.living_review.digest.test_plan import review, untitled

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")

BUCKET = "living-review-test"
TODAY = dt.datetime.now(dt.timezone.utc).date()
WEEK1, WEEK2 = TODAY - dt.timedelta(days=7), TODAY


@pytest.fixture(scope="module")
def s3_server():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", "key": "testing", "secret": "testing",
               "client_kwargs": {"region_name": "us-east-1"}}
    import boto3

    boto3.client("s3", endpoint_url=options["endpoint_url"], aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    try:
        yield options
    finally:
        server.stop()


@pytest.fixture
def s3_data_dir(s3_server, monkeypatch, request):
    monkeypatch.setenv(settings.STORAGE_OPTIONS_ENV, json.dumps(s3_server))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    url = f"s3://{BUCKET}/{request.node.name}"
    monkeypatch.setenv(settings.DATA_DIR_ENV, url)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request
    return url


@pytest.fixture
def eutils():
    from tests.fakes.eutils import FakeEutils

    with FakeEutils(seed_corpus() + [untitled()]) as fake:
        yield fake


def run(conf, data_dir: str, day: dt.date, url: str) -> dict:
    ctx = pipeline.RunContext.create(conf, data_dir, dt.datetime.combine(day, dt.time(), dt.timezone.utc),
                                     f"test__{day}")
    assert is_remote(ctx.layout.data_dir)
    pipeline.fetch_source(ctx, "pubmed", PubMedClient(url))
    pipeline.merge_sources(ctx)
    pipeline.enrich_metadata(ctx, None)
    pipeline.validate(ctx)
    return pipeline.publish(ctx)


def test_pipeline_and_digest_on_an_object_store(s3_data_dir, s3_server, eutils):
    conf = review()
    data_dir = settings.data_dir()
    first = run(conf, data_dir, WEEK1, eutils.url)
    assert first["snapshot"].startswith(f"{s3_data_dir}/snapshots/review_id={conf.id}/snapshot_date={WEEK1}")

    gone = eutils.papers[0]
    fixed = untitled()
    fixed.title = "A now-titled record about peer support in mental health."
    eutils.papers = eutils.papers[1:-1] + [fixed]
    second = run(conf, data_dir, WEEK2, eutils.url)
    assert second["works"] == 21

    fs = s3fs.S3FileSystem(**s3_server, skip_instance_cache=True)
    prefix = s3_data_dir.removeprefix("s3://")
    for day in (WEEK1, WEEK2):
        part = f"review_id={conf.id}/snapshot_date={day}"
        for key in (f"snapshots/{part}/citing_works.parquet", f"quarantine/{part}/rejected.parquet",
                    f"changes/{part}/changes.parquet", f"runs/{part}/manifest.json",
                    f"runs/{part}/coverage.parquet"):
            assert fs.isfile(f"{prefix}/{key}"), key
    assert fs.isfile(f"{prefix}/portfolio/citations_by_review.parquet")
    assert not [p for p in fs.find(f"{prefix}/snapshots") if p.rsplit("/", 1)[-1].startswith(".")]
    assert published_dates(data_dir, conf.id) == [WEEK1, WEEK2]

    layout1, layout2 = Layout.of(data_dir, conf.id, WEEK1), Layout.of(data_dir, conf.id, WEEK2)
    with layout1.quarantine_file.open("rb") as handle:
        assert [r["work_id"] for r in pq.read_table(handle).to_pylist()] == ["doi:10.9999/untitled.2"]
    with layout2.snapshot_file.open("rb") as handle:
        rows = {r["pmid"]: r for r in pq.read_table(handle).to_pylist()}
    assert rows[gone.pmid]["last_reported"].date() == WEEK1
    with layout2.changes_file.open("rb") as handle:
        changes = {(c["work_id"], c["change"]) for c in pq.read_table(handle).to_pylist()}
    assert changes == {(rows[gone.pmid]["work_id"], "no_longer_reported"), ("doi:10.9999/untitled.2", "added")}
    manifest = json.loads(layout2.manifest_file.read_text())
    assert manifest["previous_snapshot_date"] == WEEK1.isoformat()
    assert manifest["paths"]["snapshot"] == str(layout2.snapshot_file)
    assert manifest["data_quality"]["data_docs"].startswith(f"{s3_data_dir}/docs/{conf.id}/")
    assert fs.isfile(manifest["data_quality"]["data_docs"].removeprefix("s3://"))

    # A rerun of week 2 overwrites its partition (no duplicates, same rows).
    again = run(conf, data_dir, WEEK2, eutils.url)
    assert again["works"] == 21 and published_dates(data_dir, conf.id) == [WEEK1, WEEK2]

    outbox = OutboxChannel(layout2.outbox_dir)
    section = send_digest(conf, data_dir, WEEK2, [outbox], today=TODAY)
    assert section["channels"]["outbox"]["status"] == "sent"
    assert section["channels"]["outbox"]["events"] == 21  # the first digest is a baseline of every work
    written = [p for p in fs.find(f"{prefix}/outbox") if p.endswith((".eml", ".json"))]
    assert sorted(p.rsplit(".", 1)[-1] for p in written) == ["eml", "json"]
    assert digest_status(layout2)["status"] == "sent"
    again = send_digest(conf, data_dir, WEEK2, [outbox], today=TODAY)  # once: a rerun sends nothing
    assert again["channels"]["outbox"]["status"] == "sent" and not again["channels"]["outbox"]["by_this_attempt"]
    assert sorted(p for p in fs.find(f"{prefix}/outbox") if p.endswith((".eml", ".json"))) == sorted(written)

    ledger = DeliveryLedger(layout2.ledger_file)
    assert ledger.claim("key-1", "email") is None
    ledger.mark_sent("key-1", "email", "250 OK")
    assert DeliveryLedger(str(layout2.ledger_file)).get("key-1", "email").state == "sent"


def test_a_snapshot_without_its_manifest_is_not_published(s3_data_dir, s3_server, eutils):
    """On an object store the manifest, uploaded last, is the commit marker of a first publish."""
    conf = review()
    run(conf, settings.data_dir(), WEEK1, eutils.url)
    layout = Layout.of(settings.data_dir(), conf.id, WEEK1)
    layout.manifest_file.unlink()
    assert published_dates(settings.data_dir(), conf.id) == []


def test_analysts_read_the_snapshots_from_s3(s3_data_dir, s3_server, eutils):
    """What docs/operations.md tells analysts: pandas and DuckDB straight from the bucket."""
    import duckdb
    import pandas as pd

    conf = review()
    run(conf, settings.data_dir(), WEEK1, eutils.url)
    run(conf, settings.data_dir(), WEEK2, eutils.url)

    frame = pd.read_parquet(f"{s3_data_dir}/snapshots", storage_options=s3_server)
    assert set(frame["snapshot_date"].astype(str)) == {WEEK1.isoformat(), WEEK2.isoformat()}
    assert set(frame["review_id"].astype(str)) == {conf.id}
    assert not frame.duplicated(["snapshot_date", "work_id"]).any()

    # DuckDB's own S3 reader (httpfs) is an extension downloaded on first use; offline,
    # register the same s3fs filesystem with DuckDB instead.
    con = duckdb.connect()
    con.register_filesystem(s3fs.S3FileSystem(**s3_server, skip_instance_cache=True))
    counts = dict(con.sql(
        f"SELECT CAST(snapshot_date AS VARCHAR), count(*) FROM read_parquet('{s3_data_dir}/snapshots/*/*/*.parquet', "
        "hive_partitioning = true) GROUP BY 1").fetchall())
    assert counts == {WEEK1.isoformat(): 20, WEEK2.isoformat(): 20}


def test_a_failed_upload_puts_the_partition_back(s3_data_dir, monkeypatch):
    """The commit on S3: a copy into place that fails restores what it replaced and removes what it added."""
    from include.living_review.storage import StorageError, commit_run, read_json, write_json_atomic

    layout = Layout.of(s3_data_dir, "r", "2026-03-02")
    staging = layout.staging("manual__1")
    kept, added, failing = layout.manifest_file, layout.changes_file, layout.snapshot_file
    write_json_atomic({"v": 1}, kept)
    fs = kept.fs
    real_copy = fs.copy

    def copy(path1, path2, **kwargs):
        if str(path2).endswith("citing_works.parquet"):
            raise PermissionError(13, "Access Denied")
        return real_copy(path1, path2, **kwargs)

    monkeypatch.setattr(fs, "copy", copy)
    with pytest.raises(StorageError, match="could not publish"):
        commit_run(layout, staging, [("changes", added, b"new"), ("snapshot", failing, b"new")], {"run_id": "manual__1"},
               commit_id="c1")
    fs.invalidate_cache()
    assert read_json(kept) == {"v": 1}  # the previous commit record is untouched
    assert not added.exists() and not failing.exists() and not layout.journal_file.exists()
    leftovers = [p for p in fs.find(s3_data_dir.removeprefix("s3://")) if p.rsplit("/", 1)[-1].startswith(".")]
    assert leftovers == []  # no backup or staged copy left behind


def test_the_dag_layer_opens_the_bucket_with_the_aws_connection(s3_server, monkeypatch, eutils):
    """Without LIVING_REVIEW_STORAGE_OPTIONS, dags/_lib/glue.py maps the aws_default connection's fields."""
    from types import SimpleNamespace

    from dags._lib import glue

    monkeypatch.delenv(settings.STORAGE_OPTIONS_ENV, raising=False)
    monkeypatch.setenv(settings.DATA_DIR_ENV, f"s3://{BUCKET}/via-connection/")
    conn = SimpleNamespace(login="testing", password="testing",
                           extra_dejson={"endpoint_url": s3_server["endpoint_url"], "region_name": "us-east-1"})
    monkeypatch.setattr(glue, "get_connection", lambda conn_id: conn if conn_id == "aws_default" else None)
    data_dir = glue.data_dir()
    assert is_remote(data_dir) and str(data_dir) == f"s3://{BUCKET}/via-connection"
    assert data_dir.storage_options["endpoint_url"] == s3_server["endpoint_url"]
    run(review(), data_dir, WEEK1, eutils.url)
    assert published_dates(data_dir, review().id) == [WEEK1]

    monkeypatch.setattr(glue, "get_connection", lambda conn_id: None)
    assert glue.data_dir() == f"s3://{BUCKET}/via-connection/"  # then s3fs's own AWS credential chain
