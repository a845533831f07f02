"""Scale of reviews: how long filling a DagBag from ``dags/`` takes with many reviews configured.

``python -m bench.bench_dag_parse [--reviews 200] [--repeat 3] [--out FILE]``

Each measurement is a fresh process that imports Airflow (not timed), then fills a
``DagBag`` from a folder. The baseline is an empty folder, so Airflow's own DagBag
overhead cancels. Memory per DAG is the RSS growth during the fill divided by the
DAGs it produced (each review gives a pipeline and a digest DAG).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, airflow_env, remove_tree, rss_mb, run_child, write_json


def write_config(path: Path, reviews: int) -> Path:
    import yaml

    entries = [{
        "id": f"bench-review-{i:03d}", "title": f"Benchmark review {i}: peer support in mental health",
        "doi": f"10.5555/bench.review.{i}", "pmid": str(30_000_000 + i), "pmcid": f"PMC{7_000_000 + i}",
        "schedule": "@weekly",
        "sources": ["pubmed", "europepmc", "openalex", "opencitations", "semanticscholar", "crossref"],
        "digest": {"email": [f"maintainer{i}@example.org"], "slack": True},
    } for i in range(reviews)]
    path.write_text(yaml.safe_dump({"reviews": entries}, sort_keys=False), encoding="utf-8")
    return path


def fill(folder: str, *, pure_yaml: bool = False) -> dict[str, Any]:
    """In this process: import Airflow, then time one DagBag fill of ``folder``.

    ``pure_yaml`` is a what-if: the config parsed with PyYAML's pure-Python
    ``SafeLoader`` (as on an install whose PyYAML lacks libyaml) instead of ``CSafeLoader``.
    """
    started = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag
    import_seconds = time.perf_counter() - started
    if pure_yaml:
        import yaml

        from include.living_review import config

        config._YAML_LOADER = yaml.SafeLoader

    before = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    bag = DagBag(folder)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    after = rss_mb()
    config_seconds = None
    if os.environ.get("LIVING_REVIEW_CONFIG"):
        from include.living_review.config import load_config

        started = time.perf_counter()
        load_config()
        config_seconds = time.perf_counter() - started
    return {"seconds": seconds, "config_load_seconds": config_seconds, "cpu_seconds": cpu_seconds, "dags": len(bag.dags),
            "tasks": sum(len(d.tasks) for d in bag.dags.values()), "import_errors": len(bag.import_errors),
            "rss_before_mb": before, "rss_after_mb": after, "import_seconds": import_seconds}


def measure(folder: Path, config: Path | None, repeat: int, home: Path, *, pure_yaml: bool = False
            ) -> dict[str, Any]:
    env = airflow_env(home)
    if config is not None:
        env["LIVING_REVIEW_CONFIG"] = str(config)
    args = ["--child", str(folder)] + (["--pure-yaml"] if pure_yaml else [])
    runs = [run_child("bench.bench_dag_parse", args, env=env) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "median_seconds": statistics.median(r["seconds"] for r in runs),
            "all_seconds": [r["seconds"] for r in runs],
            "rss_delta_mb": statistics.median(r["rss_after_mb"] - r["rss_before_mb"] for r in runs)}


def run(reviews: int = 200, repeat: int = 3) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="lr-bench-parse-"))
    try:
        empty = work / "empty-dags"
        empty.mkdir()
        home = work / "airflow-home"  # DagBag needs no metadata DB
        home.mkdir()
        many = write_config(work / f"reviews-{reviews}.yaml", reviews)
        one = write_config(work / "reviews-1.yaml", 1)
        # The empty folder costs well under a millisecond: one run is enough there.
        baseline = measure(empty, None, 1, home)
        single = measure(ROOT / "dags", one, max(1, repeat - 1), home)
        full = measure(ROOT / "dags", many, repeat, home)
        what_if = measure(ROOT / "dags", many, max(1, repeat - 1), home, pure_yaml=True)
        extra = full["seconds"] - baseline["seconds"]
        rss = full["rss_delta_mb"] - baseline["rss_delta_mb"]
        return {
            "reviews": reviews, "repeat": repeat, "baseline": baseline, "one_review": single, "all_reviews": full,
            "seconds_over_baseline": extra,
            "cpu_seconds_over_baseline": full["cpu_seconds"] - baseline["cpu_seconds"],
            "ms_per_review": 1000 * (full["seconds"] - single["seconds"]) / max(reviews - 1, 1),
            "ms_per_dag": 1000 * extra / max(full["dags"], 1),
            "rss_mb_over_baseline": rss, "mb_per_dag": rss / max(full["dags"], 1),
            "target_seconds": 1.0, "target_met": extra <= 1.0,
            # Every DAG file calls load_config(): three YAML parses + validations per fill.
            "config_loads_per_fill": 3, "config_load_seconds": full["config_load_seconds"],
            "what_if_pure_yaml": what_if,
            "what_if_pure_yaml_seconds_over_baseline": what_if["seconds"] - baseline["seconds"],
        }
    finally:
        remove_tree(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--pure-yaml", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = fill(args.child, pure_yaml=args.pure_yaml) if args.child else run(args.reviews, args.repeat)
    if args.out:
        write_json(result, args.out)
    else:
        json.dump(result, sys.stdout, indent=2, default=str)
        print()


if __name__ == "__main__":
    main()
