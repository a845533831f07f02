"""How a run's files are published: the mechanisms compared on the same files, in the same run.

``python -m bench.bench_commit [--rows 30000] [--repeat 5]`` prints a table and a JSON line.

Each mechanism publishes the files of one run (quarantine, changes, events, coverage,
snapshot, then the manifest) over a date that already has a commit, as a rerun does:

- ``journal`` (what ``storage.commit_run`` does): render each file into the run's
  staging, write a redo journal, hard-link a backup of each file it replaces, rename the
  staged file into place, write the manifest last;
- ``in place`` (what ``publish_files`` did before): write a temp file beside each target,
  then hard-link backups and rename; rollback only on an exception (nothing after a kill);
- ``dir swap`` (a what-if): write each table's partition as a new hidden folder and swap
  folders with two renames each (move the old one aside, move the new one in).

Figures per mechanism, medians of ``--repeat`` runs: wall and CPU seconds of the
commit, bytes written, the *exposure window* (from the first published change a reader
could see to the commit point: how long a plain glob reader can see a mix), and what a
kill -9 in that window leaves behind (can the next run finish or undo it without a
human?). With ``--s3``, the journal's object-store path (staged PUT + server-side copy)
against re-uploading each object directly, on a local moto server.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from include.living_review.storage import Layout, commit_run, parquet_writer  # noqa: E402
from include.living_review.storage.atomic import json_bytes, render  # noqa: E402


def synthetic_files(rows: int, layout: Layout) -> list[tuple[str, Path, bytes]]:
    import datetime as dt

    from include.living_review.records import CITING_WORKS_SCHEMA

    import random

    from bench.bench_merge import WORDS

    rng = random.Random(7)
    ts = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)

    def words(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    snapshot = pa.Table.from_pylist([{
        "work_id": f"doi:10.1234/w.{i}", "doi": f"10.1234/w.{i}", "title": words(12).capitalize() + ".",
        "authors": [f"{words(1).title()} {chr(65 + i % 26)}" for _ in range(4)], "journal": words(3).title(),
        "publication_year": 2000 + i % 26, "abstract": words(180), "sources": ["pubmed", "openalex"], "source_ids": [],
        "publication_types": ["Journal Article"], "first_seen": ts, "last_reported": ts} for i in range(rows)],
        schema=CITING_WORKS_SCHEMA)
    small = pa.table({"work_id": [f"w{i}" for i in range(rows // 100)], "n": list(range(rows // 100))})
    return [("quarantine", layout.quarantine_file, render(parquet_writer(small))),
            ("changes", layout.changes_file, render(parquet_writer(small))),
            ("events", layout.events_file("bench"), render(parquet_writer(small))),
            ("coverage", layout.coverage_file, render(parquet_writer(small.slice(0, 5)))),
            ("snapshot", layout.snapshot_file, render(parquet_writer(snapshot)))]


class Exposure:
    """When the first published change and the commit point happened."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.commit: float | None = None

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        if step.startswith(("move:", "swap:")) and self.first is None:
            self.first = now
        if step == "manifest":
            self.commit = now

    @property
    def window(self) -> float:
        return (self.commit or 0) - (self.first or self.commit or 0)


def journal(layout: Layout, files: list[tuple[str, Path, bytes]], exposure: Exposure) -> None:
    from include.living_review.storage import commit

    commit.after_step = exposure.mark
    try:
        commit_run(layout, layout.staging("bench"), files, {"run_id": "bench"}, commit_id=uuid.uuid4().hex[:12])
    finally:
        commit.after_step = lambda step: None


def in_place(layout: Layout, files: list[tuple[str, Path, bytes]], exposure: Exposure) -> None:
    """The publish_files of before: temp beside the target, backups, renames (see the module docstring)."""
    everything = [*files, ("manifest", layout.manifest_file, json_bytes({"run_id": "bench"}))]
    staged = []
    for _, final, data in everything:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        staged.append((tmp, final))
    backups = []
    for (name, _, _), (tmp, final) in zip(everything, staged):
        if final.exists():
            backup = final.with_name(f".{final.name}.{uuid.uuid4().hex}.bak")
            os.link(final, backup)
            backups.append(backup)
        os.replace(tmp, final)
        exposure.mark("manifest" if name == "manifest" else f"move:{name}")
    for backup in backups:
        backup.unlink()


def dir_swap(layout: Layout, files: list[tuple[str, Path, bytes]], exposure: Exposure) -> None:
    """Each partition folder written anew beside the old one, then swapped in with two renames."""
    everything = [*files, ("manifest", layout.manifest_file, json_bytes({"run_id": "bench"}))]
    folders: dict[Path, list[tuple[str, Path, bytes]]] = {}
    for name, final, data in everything:
        folders.setdefault(final.parent, []).append((name, final, data))
    fresh = {}
    for folder, members in folders.items():
        new = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.new")
        if folder.exists():
            shutil.copytree(folder, new)  # keep what this run does not rewrite (e.g. older event files)
        new.mkdir(parents=True, exist_ok=True)
        for _, final, data in members:
            with open(new / final.name, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        fresh[folder] = new
    for folder, new in fresh.items():  # the runs/ folder (with the manifest) goes last
        old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.old")
        if folder.exists():
            os.rename(folder, old)
        os.rename(new, folder)
        exposure.mark("manifest" if folder == layout.run_dir else f"swap:{folder}")
        shutil.rmtree(old, ignore_errors=True)


MECHANISMS: dict[str, tuple[Callable[..., None], str]] = {
    "journal": (journal, "yes: the journal rolls it forward (staged copies) or back (backups)"),
    "in place": (in_place, "no: a mix of old and new files, and no record of which"),
    "dir swap": (dir_swap, "no: a table folder may be missing (moved aside), or old and new folders mixed"),
}


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def measure(rows: int, repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, (publish, kill_outcome) in MECHANISMS.items():
        walls, cpus, windows, written = [], [], [], []
        for _ in range(repeat):
            with tempfile.TemporaryDirectory(prefix="bench-commit-") as tmp:
                layout = Layout.of(tmp, "r", "2026-03-02")
                files = synthetic_files(rows, layout)
                publish(layout, files, Exposure())  # the commit the rerun replaces
                before_io = resource.getrusage(resource.RUSAGE_SELF).ru_oublock
                exposure = Exposure()
                started, started_cpu = time.perf_counter(), cpu()
                publish(layout, files, exposure)
                walls.append(time.perf_counter() - started)
                cpus.append(cpu() - started_cpu)
                windows.append(exposure.window)
                written.append((resource.getrusage(resource.RUSAGE_SELF).ru_oublock - before_io) * 512)
                published = disk_bytes(Path(tmp)) - disk_bytes(Path(tmp) / "staging") \
                    if (Path(tmp) / "staging").exists() else disk_bytes(Path(tmp))
        results[name] = {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus),
                         "exposure_ms": statistics.median(windows) * 1000, "written_bytes": statistics.median(written),
                         "published_bytes": published, "after_kill_9": kill_outcome}
    return results


def measure_s3(rows: int, repeat: int) -> dict[str, Any]:
    """On a local moto S3 server: the journal's staged PUT + copy, against a direct PUT of each object."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer
    from upath import UPath

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", "key": "testing", "secret": "testing",
               "client_kwargs": {"region_name": "us-east-1"}}
    boto3.client("s3", endpoint_url=options["endpoint_url"], aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket="bench")
    out: dict[str, Any] = {}
    try:
        for name in ("journal (PUT to staging + server-side copy)", "direct PUT of each object"):
            walls = []
            for i in range(repeat):
                root = UPath(f"s3://bench/{uuid.uuid4().hex}", **options)
                layout = Layout(root, "r", Layout.of("/tmp", "r", "2026-03-02").snapshot_date)
                files = synthetic_files(rows, layout)
                started = time.perf_counter()
                if name.startswith("journal"):
                    commit_run(layout, layout.staging("bench"), files, {"run_id": "bench"}, commit_id=f"c{i}")
                else:
                    for _, final, data in files:
                        final.write_bytes(data)
                    layout.manifest_file.write_bytes(json_bytes({"run_id": "bench"}))
                walls.append(time.perf_counter() - started)
            out[name] = {"wall_s": statistics.median(walls)}
    finally:
        server.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--s3", action="store_true", help="also measure on a local moto S3 server")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here (bench.run_all does)")
    args = parser.parse_args(argv)
    results = {"rows": args.rows, "local": measure(args.rows, args.repeat)}
    if args.s3:
        with contextlib.suppress(ImportError):
            results["s3"] = measure_s3(args.rows, args.repeat)
    snapshot_mb = len(synthetic_files(args.rows, Layout.of("/tmp", "r", "2026-03-02"))[-1][2]) / 1e6
    print(f"COMMIT - a rerun over a committed date, {args.rows:,} rows ({snapshot_mb:.1f} MB snapshot), "
          f"median of {args.repeat}")
    print(f"{'mechanism':<10} {'wall s':>7} {'cpu s':>6} {'written MB':>10} {'exposure ms':>11}  after kill -9")
    for name, r in results["local"].items():
        print(f"{name:<10} {r['wall_s']:>7.3f} {r['cpu_s']:>6.3f} {r['written_bytes'] / 1e6:>10.1f} "
              f"{r['exposure_ms']:>11.2f}  {r['after_kill_9']}")
    for name, r in results.get("s3", {}).items():
        print(f"s3: {name}: {r['wall_s']:.3f} s")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    else:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
