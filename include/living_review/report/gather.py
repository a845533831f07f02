"""Reading one deployment's committed data into the numbers the living-review page shows.

:func:`gather` reads the published files of every configured review (latest snapshot,
changes, quarantine, coverage ledger, manifest and digest status; see
:mod:`include.living_review.storage`) into :class:`ReviewReport` objects. Only
committed dates count (:func:`~include.living_review.storage.published_dates`), and a
missing or damaged file becomes a listed problem on the page, never an exception.

No markup here: :mod:`.charts` draws and :mod:`.page` renders.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from include.living_review import settings
from include.living_review.config import ConfigError, ReviewConfig, load_config
from include.living_review.storage import Layout, Staging, published_dates, read_json

log = logging.getLogger(__name__)

LISTING_ORDER = ("pubmed", "europepmc", "openalex", "opencitations", "semanticscholar")
SOURCE_LABELS = settings.SOURCE_LABELS
# Change kinds, most important first: a retraction matters more than one more citer.
CHANGE_ORDER = ("retracted", "corrected", "preprint_published", "no_longer_reported", "updated", "added")
CHANGE_LABELS: dict[str, str] = {
    "retracted": "Retracted",
    "corrected": "Corrected",
    "preprint_published": "Preprint published",
    "no_longer_reported": "No longer reported",
    "updated": "Metadata updated",
    "added": "New",
}
MAX_CHANGES = 12
MAX_CHANGE_SNAPSHOTS = 8  # how far back "latest changes" looks when recent runs changed nothing
MAX_QUARANTINE_ROWS = 5


# -- the data -----------------------------------------------------------------------
@dataclass(frozen=True)
class SourceCoverage:
    """One row of the run's coverage ledger (``coverage.parquet``)."""

    source: str
    label: str
    status: str
    reason: str | None
    listed: int
    works: int  # works this source reported in this run that are in the snapshot
    unique: int
    new: int
    requests: int


@dataclass(frozen=True)
class SnapshotPoint:
    day: dt.date
    total: int
    new: int


@dataclass(frozen=True)
class ChangeRow:
    snapshot_date: dt.date
    kind: str
    label: str
    title: str
    url: str | None
    work_id: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class QuarantineRow:
    work_id: str
    title: str
    source: str
    reason: str


@dataclass(frozen=True)
class Link:
    label: str
    href: str | None  # None: the target does not exist (shown as text)
    note: str = ""


@dataclass
class ReviewReport:
    """Everything the page shows for one review; numbers only, no markup."""

    review_id: str
    title: str
    review_url: str | None
    sources: list[str]
    snapshot_date: dt.date | None = None
    snapshot_dates: list[dt.date] = field(default_factory=list)
    total_works: int = 0
    reported_this_run: int | None = None  # the manifest's coverage union
    new_this_run: int = 0
    quarantined: int = 0
    quarantine_reasons: list[tuple[str, int]] = field(default_factory=list)
    quarantine_rows: list[QuarantineRow] = field(default_factory=list)
    partial: bool = False
    coverage: list[SourceCoverage] = field(default_factory=list)
    set_sizes: dict[str, int] = field(default_factory=dict)  # works per source in the snapshot
    intersections: list[tuple[tuple[str, ...], int]] = field(default_factory=list)
    timeline: list[SnapshotPoint] = field(default_factory=list)
    by_publication_month: list[tuple[dt.date, int]] = field(default_factory=list)  # cumulative
    undated: int = 0
    changes: list[ChangeRow] = field(default_factory=list)
    change_counts: dict[str, int] = field(default_factory=dict)  # latest snapshot only
    more_changes: int = 0
    dq_status: str = "unknown"  # passed | warnings | quarantined | unknown
    dq_label: str = "No validation result"
    dq_rows: int = 0
    dq_failed: list[tuple[str, str, int]] = field(default_factory=list)  # name, severity, unexpected rows
    dq_seconds: float | None = None
    digest: str = ""
    unpublished: list[tuple[dt.date, str]] = field(default_factory=list)  # later runs that did not publish
    data_docs: Path | None = None
    manifest: Path | None = None
    latency: list[tuple[str, float, float]] = field(default_factory=list)  # source, median, p90 days
    problems: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"review-{self.review_id}"

    @property
    def has_snapshot(self) -> bool:
        return self.snapshot_date is not None

    @property
    def sources_ok(self) -> int:
        return sum(1 for c in self.coverage if c.status == "ok" and c.source != "crossref")

    @property
    def sources_listing(self) -> int:
        return sum(1 for c in self.coverage if c.source != "crossref")


@dataclass
class Report:
    reviews: list[ReviewReport]
    config_path: str
    config_issues: list[str]
    data_dir: Path
    generated_at: dt.datetime
    notices: list[str] = field(default_factory=list)


# -- gathering ---------------------------------------------------------------------
def gather(data_dir: str | Path | None = None, config_path: str | Path | None = None) -> Report:
    """Read every configured review's published data. Never raises for missing or bad files."""
    raw = str(data_dir if data_dir is not None else settings.data_dir())
    notices = []
    if "://" in raw:
        notices.append(f"The data directory {raw} is a URL; this page reads a local or mounted data directory "
                       "(point LIVING_REVIEW_DATA_DIR at a mount of the bucket for the page).")
    data_path = Path(raw).resolve()
    issues: list[str] = []
    reviews: list[ReviewConfig] = []
    where = str(config_path or settings.config_path())
    try:
        loaded = load_config(config_path)
        reviews, where = loaded.reviews, str(loaded.path)
        issues = [str(issue) for issue in loaded.issues]
    except ConfigError as exc:
        issues = [str(issue) for issue in exc.issues]
    return Report(reviews=[_gather_safely(review, data_path) for review in reviews], config_path=where,
                  config_issues=issues, data_dir=data_path, notices=notices,
                  generated_at=dt.datetime.now(dt.timezone.utc).replace(microsecond=0))


def _gather_safely(review: ReviewConfig, data_dir: Path) -> ReviewReport:
    try:
        return gather_review(review, data_dir)
    except Exception as exc:  # one review's odd files must not hide the other reviews
        log.exception("report: cannot gather review %s", review.id)
        report = ReviewReport(review_id=review.id, title=review.title, review_url=None, sources=list(review.sources))
        report.problems.append(f"cannot read this review's data: {type(exc).__name__}: {exc}")
        return report


def gather_review(review: ReviewConfig, data_dir: Path) -> ReviewReport:
    """One review's :class:`ReviewReport`; an unreadable file becomes a listed problem, not an error."""
    from include.living_review.digest import digest_status, review_url

    report = ReviewReport(review_id=review.id, title=review.title, review_url=review_url(review),
                          sources=list(review.sources))
    dates = published_dates(data_dir, review.id)
    report.snapshot_dates = dates
    report.unpublished = _unpublished_runs(data_dir, review.id, dates[-1] if dates else None)
    if not dates:
        return report
    latest = Layout.of(data_dir, review.id, dates[-1])
    report.snapshot_date = latest.snapshot_date
    manifest = _guard(report, "manifest", lambda: read_json(latest.manifest_file, {})) or {}
    report.manifest = latest.manifest_file if latest.manifest_file.is_file() else None
    report.data_docs = _data_docs(latest, manifest)
    rows = _guard(report, "snapshot", lambda: _read_rows(latest.snapshot_file, (
        "work_id", "sources", "first_seen", "publication_date", "publication_year"))) or []
    report.total_works = len(rows)
    report.partial = bool(manifest.get("partial"))
    counts = manifest.get("counts") or {}
    report.new_this_run = int(counts.get("new") or sum(
        1 for r in rows if _day(r.get("first_seen")) == latest.snapshot_date))
    union = (manifest.get("coverage") or {}).get("union")
    report.reported_this_run = int(union) if isinstance(union, int) else None
    _gather_coverage(report, latest, manifest, rows)
    report.timeline = _guard(report, "snapshot history", lambda: _timeline(data_dir, review.id, dates, rows)) or []
    report.by_publication_month, report.undated = _by_publication_month(rows)
    _guard(report, "changes", lambda: _gather_changes(report, data_dir, review.id, dates))
    _guard(report, "quarantine", lambda: _gather_quarantine(report, latest, counts))
    _gather_quality(report, manifest.get("data_quality") or {})
    report.digest = _digest_line(digest_status(latest))
    report.latency = _latency(manifest.get("latency"))
    return report


def _guard(report: ReviewReport, what: str, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception as exc:  # a damaged file must not take the page (or the other reviews) down
        log.warning("report: cannot read the %s of %s: %s", what, report.review_id, exc)
        report.problems.append(f"cannot read the {what}: {type(exc).__name__}: {exc}")
        return None


def _read_rows(path: Path, columns: Sequence[str]) -> list[dict[str, Any]]:
    from include.living_review.storage import parquet_columns, read_parquet  # a damaged file names the fix

    if not path.is_file():
        return []
    present = set(parquet_columns(path))
    return read_parquet(path, columns=[c for c in columns if c in present]).to_pylist()


def _day(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).date() if value.tzinfo else value.date()
    if isinstance(value, dt.date):
        return value
    return None


def _data_docs(layout: Layout, manifest: Mapping[str, Any]) -> Path | None:
    index = layout.docs_dir / "index.html"
    if index.is_file():
        return index
    recorded = (manifest.get("paths") or {}).get("data_docs")
    return Path(recorded) if recorded and Path(recorded).is_file() else None


def _unpublished_runs(data_dir: Path, review_id: str, last: dt.date | None) -> list[tuple[dt.date, str]]:
    """Runs after the last published snapshot that left staging files but no snapshot."""
    root = data_dir / "staging" / f"review_id={review_id}"
    found = []
    for child in sorted(root.glob("snapshot_date=*")) if root.is_dir() else []:
        try:
            day = dt.date.fromisoformat(child.name.split("=", 1)[1])
        except ValueError:
            continue
        if last is not None and day <= last:
            continue
        # Each run stages in its own folder; the newest tells what happened last.
        runs = sorted((r for r in child.glob("run=*") if r.is_dir()), key=lambda r: r.stat().st_mtime)
        validation = read_json(Staging(runs[-1]).validation, {}) or {} if runs else {}
        if validation.get("status") == "blocked":
            reason = f"publishing was blocked: {validation.get('reason') or 'data quality'}"
        else:
            reason = "not published (still running, or a task failed: see the DAG run)"
        found.append((day, reason))
    return found


def _source_order(sources: Iterable[str]) -> list[str]:
    sources = list(dict.fromkeys(sources))
    return [s for s in (*LISTING_ORDER, "crossref") if s in sources] + sorted(
        s for s in sources if s not in LISTING_ORDER and s != "crossref")


def _label(source: str) -> str:
    return SOURCE_LABELS.get(source, source)


def _gather_coverage(report: ReviewReport, latest: Layout, manifest: Mapping[str, Any],
                     rows: list[dict[str, Any]]) -> None:
    ledger = _guard(report, "coverage ledger", lambda: _read_rows(latest.coverage_file, (
        "source", "status", "reason", "listed", "works", "unique_to_source", "new_this_run", "requests"))) or []
    if not ledger:  # an older run without a ledger: fall back to the manifest
        stats = manifest.get("sources") or {}
        cover = manifest.get("coverage") or {}
        ledger = [{"source": s, "status": st.get("status", "?"), "reason": st.get("reason"),
                   "listed": st.get("listed"), "works": cover.get(s), "requests": st.get("requests")}
                  for s, st in stats.items()]
    by_source = {r["source"]: r for r in ledger}
    report.coverage = [SourceCoverage(
        source=s, label=_label(s), status=str(by_source[s].get("status") or "?"), reason=by_source[s].get("reason"),
        listed=int(by_source[s].get("listed") or 0), works=int(by_source[s].get("works") or 0),
        unique=int(by_source[s].get("unique_to_source") or 0), new=int(by_source[s].get("new_this_run") or 0),
        requests=int(by_source[s].get("requests") or 0)) for s in _source_order(by_source)]
    combos: Counter[tuple[str, ...]] = Counter()
    sizes: Counter[str] = Counter()
    for row in rows:
        found = tuple(_source_order(str(s) for s in (row.get("sources") or []) if s))
        combos[found] += 1
        sizes.update(found)
    listing = [s for s in _source_order([*report.sources, *sizes]) if s != "crossref"]
    report.set_sizes = {s: sizes.get(s, 0) for s in listing}
    report.intersections = sorted(combos.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0]))


def _timeline(data_dir: Path, review_id: str, dates: list[dt.date],
              rows: list[dict[str, Any]]) -> list[SnapshotPoint]:
    """Works in each published snapshot and how many of them were new that run."""
    import pyarrow.parquet as pq

    first_seen = Counter(_day(r.get("first_seen")) for r in rows)
    points = []
    for day in dates:
        layout = Layout.of(data_dir, review_id, day)
        total = pq.read_metadata(layout.snapshot_file).num_rows  # the footer only, not the data
        counts = (read_json(layout.manifest_file, {}) or {}).get("counts") or {}
        new = counts.get("new")
        points.append(SnapshotPoint(day, total, int(new) if isinstance(new, int) else first_seen.get(day, 0)))
    return points


def _by_publication_month(rows: list[dict[str, Any]]) -> tuple[list[tuple[dt.date, int]], int]:
    """Cumulative citing works by publication month; year-only dates count from January."""
    months: Counter[dt.date] = Counter()
    undated = 0
    for row in rows:
        day = _day(row.get("publication_date"))
        year = row.get("publication_year")
        if day is not None:
            months[day.replace(day=1)] += 1
        elif isinstance(year, int) and 1000 < year < 10000:
            months[dt.date(year, 1, 1)] += 1
        else:
            undated += 1
    if not months:
        return [], undated
    first, last = min(months), max(months)
    series, total, month = [], 0, first
    while month <= last:
        total += months.get(month, 0)
        series.append((month, total))
        month = _next_month(month)
    return series, undated


def _next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def _gather_changes(report: ReviewReport, data_dir: Path, review_id: str, dates: list[dt.date]) -> None:
    from include.living_review.digest import clean, work_url

    collected: list[ChangeRow] = []
    total = 0
    for index, day in enumerate(reversed(dates[-MAX_CHANGE_SNAPSHOTS:])):
        rows = _read_rows(Layout.of(data_dir, review_id, day).changes_file,
                          ("work_id", "change", "changed_fields", "title", "doi"))
        if index == 0:
            report.change_counts = dict(Counter(str(r["change"]) for r in rows))
        rows.sort(key=lambda r: (_change_rank(r["change"]), clean(r.get("title")).lower()))
        total += len(rows)
        for row in rows:
            if len(collected) < MAX_CHANGES:
                work_id = str(row.get("work_id") or "")
                pmid = work_id.split(":", 1)[1] if work_id.startswith("pmid:") else None
                collected.append(ChangeRow(
                    snapshot_date=day, kind=str(row["change"]),
                    label=CHANGE_LABELS.get(str(row["change"]), str(row["change"]).replace("_", " ")),
                    title=clean(row.get("title"), 300) or work_id, url=work_url(row.get("doi"), pmid, None),
                    work_id=work_id, fields=tuple(row.get("changed_fields") or ())))
        if len(collected) >= MAX_CHANGES:
            break
    report.changes = collected
    report.more_changes = max(0, total - len(collected))


def _change_rank(kind: object) -> int:
    return CHANGE_ORDER.index(kind) if kind in CHANGE_ORDER else len(CHANGE_ORDER) - 1


def _gather_quarantine(report: ReviewReport, latest: Layout, counts: Mapping[str, Any]) -> None:
    from include.living_review.digest import clean

    rows = _read_rows(latest.quarantine_file, ("work_id", "source", "title", "failed_expectations", "reason"))
    report.quarantined = len(rows) if latest.quarantine_file.is_file() else int(counts.get("quarantined") or 0)
    reasons: Counter[str] = Counter()
    for row in rows:
        reasons.update(row.get("failed_expectations") or ["(no reason recorded)"])
    report.quarantine_reasons = reasons.most_common()
    report.quarantine_rows = [QuarantineRow(
        work_id=str(r.get("work_id") or "(no id)"), title=clean(r.get("title"), 200) or "(no title)",
        source=", ".join(_label(s) for s in str(r.get("source") or "").split(",") if s),
        reason=clean(r.get("reason"), 300)) for r in rows[:MAX_QUARANTINE_ROWS]]


def _gather_quality(report: ReviewReport, quality: Mapping[str, Any]) -> None:
    if not quality:
        return
    report.dq_rows = int(quality.get("rows") or 0)
    report.dq_seconds = quality.get("seconds") if isinstance(quality.get("seconds"), (int, float)) else None
    for result in quality.get("expectations") or []:
        if result.get("success") is False:
            report.dq_failed.append((str(result.get("name")), str(result.get("severity") or ""),
                                     int(result.get("unexpected_count") or 0)))
    rejected = int(quality.get("rows_rejected") or quality.get("quarantined") or 0)
    warned = int(quality.get("rows_with_warnings") or quality.get("warning_rows") or 0)
    if quality.get("status") == "blocked":
        report.dq_status, report.dq_label = "failed", "Blocked"
    elif rejected:
        report.dq_status, report.dq_label = "quarantined", f"{rejected} row{'s' * (rejected != 1)} quarantined"
    elif warned:
        report.dq_status, report.dq_label = "warnings", f"Passed, {warned} row{'s' * (warned != 1)} with warnings"
    elif quality.get("success") is not False:
        report.dq_status, report.dq_label = "passed", "Passed"
    else:
        report.dq_status, report.dq_label = "failed", "Failed"


def _digest_line(digest: Mapping[str, Any]) -> str:
    from include.living_review.digest.send import status_line

    return status_line(dict(digest))


def _latency(value: object) -> list[tuple[str, float, float]]:
    """``{source: {"median": days, "p90": days}}`` from the manifest, when a run records it."""
    if not isinstance(value, Mapping):
        return []
    per_source = value.get("per_source", value)
    out = []
    for source, stats in (per_source.items() if isinstance(per_source, Mapping) else []):
        if isinstance(stats, Mapping):
            median, p90 = stats.get("median", stats.get("median_days")), stats.get("p90", stats.get("p90_days"))
            if isinstance(median, (int, float)) and isinstance(p90, (int, float)):
                out.append((_label(str(source)), float(median), float(p90)))
    return out

