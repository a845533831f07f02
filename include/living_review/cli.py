"""``python -m include.living_review.cli``: the commands behind ``make run``, ``make quarantine``
and the compose file's config check. Airflow itself is only ever invoked as a subprocess.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from include.living_review import settings
from include.living_review.config import ConfigError, LoadedConfig, load_config
from include.living_review.digest.send import digest_status, status_line
from include.living_review.storage import Layout, committed_manifest, published_dates, read_json, read_parquet

SOURCE_LABELS = settings.SOURCE_LABELS


def load_checked_config() -> LoadedConfig:
    """The config as the DAG files see it: :func:`load_config` with Airflow checking each schedule.

    The one import of ``dags/`` (and so of Airflow) from ``include/``, and lazy: whether a
    schedule is valid is for Airflow's own parser to say, and ``check-config`` must
    refuse what would make a DAG file fail. Wrapping ``load_config`` there, rather than
    copying Airflow's rules here, keeps the answer Airflow's; the other commands and
    this package's tests never import Airflow.
    """
    from dags._lib.config import load_dag_config

    return load_dag_config()


def check_config(_: argparse.Namespace) -> int:
    try:
        loaded = load_checked_config()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    for issue in loaded.issues:
        print(issue, file=sys.stderr)
    print(f"{loaded.path}: {len(loaded.reviews)} review(s) valid, {len(loaded.issues)} problem(s)")
    return 1 if loaded.issues else 0


def summary_lines(review_id: str, snapshot_date: dt.date, data_dir: str | Path) -> list[str]:
    """A short human summary of one run, read from its published manifest."""
    layout = Layout.of(data_dir, review_id, snapshot_date)
    manifest = committed_manifest(layout)
    if not manifest:
        dates = published_dates(data_dir, review_id)
        last = dates[-1].isoformat() if dates else "none"
        lines = [f"{review_id}: nothing published for {snapshot_date} (last good snapshot: {last})"]
        for staged in sorted(layout.staging_root.glob("run=*/source=*.json")):
            stats = read_json(staged, {})
            lines.append(f"  {_source_line(stats)}")
        return lines
    lines = [f"{review_id} ({snapshot_date}):" + (" PARTIAL RUN" if manifest.get("partial") else "")]
    coverage = manifest.get("coverage", {})
    for source, stats in manifest.get("sources", {}).items():
        lines.append(f"  {_source_line({**stats, 'source': source}, coverage.get(source, 0))}")
    counts = manifest.get("counts", {})
    lines.append(f"  union {counts.get('published', 0)} works, {counts.get('new', 0)} new, "
                 f"{counts.get('quarantined', 0)} quarantined")
    probes = [(source, stats["probe"]) for source, stats in manifest.get("sources", {}).items()
              if isinstance(stats.get("probe"), dict)]
    enrichment = manifest.get("enrichment") or {}
    if isinstance(enrichment.get("probe"), dict):
        probes.append((enrichment.get("source", "crossref"), enrichment["probe"]))
    if probes:
        lines.append("  probes     " + ", ".join(
            f"{SOURCE_LABELS.get(source, source)} {probe.get('changed', 0)} of {probe.get('known', 0)} known changed"
            f" ({probe.get('requests', 0)} req)" for source, probe in probes))
    references = manifest.get("references") or {}
    if references.get("status") == "ok":
        lines.append(f"  included   {references.get('studies', 0)} studies watched, "
                     f"{references.get('retracted', 0)} retracted")
    elif references:
        lines.append(f"  included   {str(references.get('status', '?')).upper()}: {references.get('reason')}")
    events = manifest.get("events") or {}
    if events:
        lines.append("  events     " + ", ".join(f"{kind} {n}" for kind, n in sorted(events.items())))
    lines.append(f"  snapshot   {manifest['paths']['snapshot']}")
    if manifest["paths"].get("data_docs"):
        lines.append(f"  data docs  {manifest['paths']['data_docs']}")
    lines.append(f"  digest     {status_line(digest_status(layout))}")
    return lines


def _source_line(stats: dict, in_snapshot: int | None = None) -> str:
    """One line per source: its counts, or why it failed (shortened to the first cause)."""
    label = SOURCE_LABELS.get(stats.get("source", "?"), stats.get("source", "?"))
    if stats.get("status") == "ok":
        shown = f"   in snapshot {in_snapshot:>5}" if in_snapshot is not None else ""
        return (f"{label:<17} found {stats.get('listed', 0):>5}{shown}   requests {stats.get('requests', 0)}"
                f"   ({stats.get('seconds', 0):.1f}s)")
    reason = str(stats.get("reason") or "unknown error")
    reason = reason.split(" (http", 1)[0]  # the URL is in the task log; keep the summary to one line
    if len(reason) > 160:
        reason = reason[:157] + "..."
    return f"{label:<17} {str(stats.get('status', '?')).upper()}: {reason}"


def _airflow(*args: str) -> int:
    return subprocess.call([sys.executable, "-m", "airflow", *args], env=os.environ.copy())


def run(args: argparse.Namespace) -> int:
    """Run every review's pipeline and digest once with ``airflow dags test``; print a summary."""
    try:
        loaded = load_checked_config()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    for issue in loaded.issues:
        print(f"skipping invalid config entry: {issue}", file=sys.stderr)
    day = dt.date.fromisoformat(args.date) if args.date else dt.datetime.now(dt.timezone.utc).date()
    failed = bool(loaded.issues)
    summaries: list[str] = []
    for review in loaded.reviews:
        pipeline_rc = _airflow("dags", "test", f"living_review__{review.dag_suffix}", day.isoformat())
        digest_rc = _airflow("dags", "test", f"living_review_digest__{review.dag_suffix}", day.isoformat())
        failed |= pipeline_rc != 0 or digest_rc != 0
        summaries.extend(summary_lines(review.id, day, settings.data_dir()))
        if pipeline_rc != 0:
            summaries.append(f"  pipeline run FAILED (exit {pipeline_rc}); see the task errors above")
    print("\n== living-review summary ==")
    print("\n".join(summaries))
    return 1 if failed else 0


def quarantine(args: argparse.Namespace) -> int:
    """List the latest quarantine of each review: what was rejected and why."""
    root = Path(settings.data_dir()) / "quarantine"
    if not root.is_dir():
        print(f"no quarantine under {root}")
        return 0
    for review_dir in sorted(root.glob("review_id=*")):
        review_id = review_dir.name.split("=", 1)[1]
        dates = published_dates(settings.data_dir(), review_id)  # committed runs only
        if not dates:
            continue
        latest = Layout.of(settings.data_dir(), review_id, dates[-1]).quarantine_file
        table = read_parquet(latest)
        print(f"{review_id} ({dates[-1]}): {table.num_rows} record(s) in quarantine")
        for row in table.to_pylist():
            print(f"  {row['work_id'] or '(no id)'} [{row['source']}] {row['reason']}")
            if args.verbose and row["raw_payload"]:
                print("    raw: " + row["raw_payload"][:300])
    return 0


def summary(args: argparse.Namespace) -> int:
    day = dt.date.fromisoformat(args.date) if args.date else dt.datetime.now(dt.timezone.utc).date()
    for review in load_config().reviews:
        print("\n".join(summary_lines(review.id, day, settings.data_dir())))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="living-review", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check-config", help="validate the reviews config").set_defaults(func=check_config)
    run_parser = commands.add_parser("run", help="run every review once with `airflow dags test`")
    run_parser.add_argument("--date", help="logical date (YYYY-MM-DD); default today (UTC)")
    run_parser.set_defaults(func=run)
    q = commands.add_parser("quarantine", help="list quarantined records and why")
    q.add_argument("-v", "--verbose", action="store_true", help="show raw payloads")
    q.set_defaults(func=quarantine)
    s = commands.add_parser("summary", help="print the run summary of a date")
    s.add_argument("--date")
    s.set_defaults(func=summary)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
