"""Small hand-made data dirs for the report's edge cases (the ``history`` fixture is the realistic one)."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from include.living_review.records import CHANGES_SCHEMA, CITING_WORKS_SCHEMA, COVERAGE_SCHEMA
from include.living_review.storage import Layout


def write_config(path: Path, ids: list[str], extra: list[dict] | None = None) -> Path:
    reviews = [{"id": i, "title": f"Review {i}", "doi": "10.1000/x" + i[-1], "sources": ["openalex", "crossref"]}
               for i in ids]
    path.write_text(yaml.safe_dump({"reviews": reviews + (extra or [])}), encoding="utf-8")
    return path


def publish(data_dir: Path, review_id: str, day: dt.date, titles: list[str], *, manifest: bool = True) -> Layout:
    """A snapshot, its changes and coverage ledger, and (unless ``manifest=False``) the manifest that commits it."""
    layout = Layout.of(data_dir, review_id, day)
    ts = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    rows = [{"work_id": f"doi:10.1000/w{i}", "doi": f"10.1000/w{i}", "title": t, "sources": ["openalex"],
             "source_ids": [], "authors": [], "publication_types": [], "is_retracted": False,
             "publication_year": 2020 + i % 5, "first_seen": ts, "last_reported": ts} for i, t in enumerate(titles)]
    layout.snapshot_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=CITING_WORKS_SCHEMA), layout.snapshot_file)
    changes = [{"work_id": r["work_id"], "change": "added", "changed_fields": [], "title": r["title"],
                "doi": r["doi"], "detail": None} for r in rows]
    layout.changes_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(changes, schema=CHANGES_SCHEMA), layout.changes_file)
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{"source": "openalex", "status": "ok", "listed": len(rows),
                                          "works": len(rows)}], schema=COVERAGE_SCHEMA), layout.coverage_file)
    if manifest:
        layout.manifest_file.write_text(json.dumps({"counts": {"new": len(rows)}, "coverage": {"union": len(rows)},
                                                    "data_quality": {"status": "ok", "success": True,
                                                                     "rows": len(rows)}}))
    return layout


def damaged_data_dir(tmp_path: Path) -> tuple[Path, Path]:
    """(data dir, config) with a review never run, a damaged snapshot, a blocked run, an odd manifest,
    an uncommitted snapshot, and one invalid config entry."""
    data = tmp_path / "data"
    bad_entry = {"id": "Not A Slug", "title": "x", "doi": "10.1000/y"}
    config = write_config(tmp_path / "reviews.yaml",
                          ["never-run", "damaged", "blocked", "odd-manifest", "uncommitted"], [bad_entry])
    odd = publish(data, "odd-manifest", dt.date(2026, 1, 5), ["A"])
    odd.manifest_file.write_text(json.dumps({"counts": {"new": "many"}}))
    damaged = publish(data, "damaged", dt.date(2026, 1, 5), ["A"])
    damaged.snapshot_file.write_bytes(b"not parquet")
    publish(data, "blocked", dt.date(2026, 1, 5), ["A", "B"])
    # a snapshot without its manifest (the commit record) is not published
    publish(data, "uncommitted", dt.date(2026, 1, 5), ["A", "B"], manifest=False)
    staging = data / "staging" / "review_id=blocked" / "snapshot_date=2026-01-12" / "run=scheduled-1"
    staging.mkdir(parents=True)
    (staging / "validation.json").write_text(json.dumps({"status": "blocked", "reason": "60% of rows failed"}))
    return data, config
