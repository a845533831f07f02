"""The living-review page: what each review's published data says, as one HTML page.

Two ways to see it, one renderer:

* the Airflow plugin (``plugins/living_review_view.py``) serves it at ``/living-review/``;
* ``python -m include.living_review.report --out DIR`` (``make report``) writes it as a
  static ``index.html`` for people without Airflow access.

:func:`gather` reads the published files of every configured review (latest snapshot,
changes, quarantine, coverage ledger and manifest; see
:mod:`include.living_review.storage`) into :class:`ReviewReport` objects, and
:func:`render_html` turns them into a self-contained page: plots are inline SVG drawn
here, with no JavaScript and nothing fetched from the network, so the page works
offline, in a sandboxed iframe and as a file attachment.

Plain Python with no Airflow imports. The plugin imports this module (and with it
pyarrow) only when the API server serves its first request, never at plugin load.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from include.living_review import settings
from include.living_review.config import ConfigError, ReviewConfig, load_config
from include.living_review.storage import Layout, published_dates, read_json

log = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"
TEMPLATE_DIR = Path(__file__).with_name("templates")
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
MAX_INTERSECTIONS = 12
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
    from include.living_review.digest import review_url

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
    report.digest = _digest_line(manifest.get("digest") or {})
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
    import pyarrow.parquet as pq

    if not path.is_file():
        return []
    present = set(pq.read_schema(path).names)
    return pq.read_table(path, columns=[c for c in columns if c in present]).to_pylist()


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
        validation = read_json(child / "validation.json", {}) or {}
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
    status = str(digest.get("status") or "pending")
    channels = digest.get("channels") or {}
    return status + "".join(f"; {k}: {v}" for k, v in sorted(channels.items()))


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


# -- links ---------------------------------------------------------------------------
class StaticLinks:
    """Links from a static page in ``out_dir`` to the files beside it in the data directory."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir.resolve()

    def _rel(self, target: Path) -> str:
        return quote(os.path.relpath(target, self.out_dir).replace(os.sep, "/"))

    def data_docs(self, report: ReviewReport) -> str | None:
        return self._rel(report.data_docs) if report.data_docs else None

    def manifest(self, report: ReviewReport) -> str | None:
        return self._rel(report.manifest) if report.manifest else None


class AppLinks:
    """Links to the routes of :func:`create_app`, relative to the page (served at the app's ``/``)."""

    def data_docs(self, report: ReviewReport) -> str | None:
        return f"reviews/{quote(report.review_id)}/docs/index.html" if report.data_docs else None

    def manifest(self, report: ReviewReport) -> str | None:
        return f"reviews/{quote(report.review_id)}/manifest.json" if report.manifest else None


# -- SVG -------------------------------------------------------------------------------
def _nice_step(top: float, target: int = 5) -> int:
    """A 1/2/5 x 10^n step giving about ``target`` integer ticks up to ``top``."""
    if top <= target:
        return 1
    raw = top / target
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * magnitude:
            return max(1, int(multiple * magnitude))
    return max(1, int(10 * magnitude))


def _y_axis(top: int) -> tuple[int, list[int]]:
    step = _nice_step(max(top, 1))
    ceiling = step * math.ceil(max(top, 1) / step)
    return ceiling, list(range(0, ceiling + 1, step))


def _fmt_day(day: dt.date) -> str:
    return f"{day.day} {day.strftime('%b')}"


def timeline_svg(points: Sequence[SnapshotPoint]) -> str:
    """Stacked bars: works already tracked plus works new in that run, per snapshot."""
    width, height = 520, 240
    left, right, top, bottom = 44, 12, 22, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    ceiling, ticks = _y_axis(max((p.total for p in points), default=0))
    y = lambda v: top + plot_h - plot_h * v / ceiling  # noqa: E731
    parts = _svg_open(width, height, "Citing works per snapshot: works tracked and new that run")
    parts += _y_grid(ticks, y, left, width - right)
    band = plot_w / max(len(points), 1)
    bar = min(band * 0.7, 46)
    every = max(1, math.ceil(len(points) / 8))
    for index, point in enumerate(points):
        x = left + band * index + (band - bar) / 2
        old = point.total - point.new
        tip = f"{point.day.isoformat()}: {point.total} works, {point.new} new"
        parts.append(f'<g class="bar"><title>{escape(tip)}</title>')
        if old > 0:
            parts.append(f'<rect class="bar-old" x="{x:.1f}" y="{y(point.total - point.new):.1f}" width="{bar:.1f}" '
                         f'height="{y(0) - y(old):.1f}"/>')
        if point.new > 0:
            parts.append(f'<rect class="bar-new" x="{x:.1f}" y="{y(point.total):.1f}" width="{bar:.1f}" '
                         f'height="{y(old) - y(point.total):.1f}"/>')
        parts.append("</g>")
        if len(points) <= 16:
            parts.append(f'<text class="value" x="{x + bar / 2:.1f}" y="{y(point.total) - 4:.1f}" '
                         f'text-anchor="middle">{point.total}</text>')
        if index % every == 0 or index == len(points) - 1:
            parts.append(f'<text class="tick" x="{x + bar / 2:.1f}" y="{height - bottom + 16}" '
                         f'text-anchor="middle">{escape(_fmt_day(point.day))}</text>')
    years = sorted({p.day.year for p in points})
    caption = f"{years[0]}" if len(years) == 1 else f"{years[0]}–{years[-1]}"
    parts.append(f'<text class="axis-label" x="{left + plot_w / 2:.1f}" y="{height - 8}" '
                 f'text-anchor="middle">snapshot date ({caption})</text>')
    parts += _legend([("bar-old", "already tracked"), ("bar-new", "new that run")], left + 4, 12)
    parts.append("</svg>")
    return "".join(parts)


def publication_svg(series: Sequence[tuple[dt.date, int]]) -> str:
    """Cumulative citing works by publication month, as a filled step line."""
    width, height = 520, 240
    left, right, top, bottom = 44, 14, 22, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    ceiling, ticks = _y_axis(series[-1][1] if series else 0)
    start, end = series[0][0], _next_month(series[-1][0])
    span = max((end - start).days, 1)
    x = lambda d: left + plot_w * (d - start).days / span  # noqa: E731
    y = lambda v: top + plot_h - plot_h * v / ceiling  # noqa: E731
    parts = _svg_open(width, height, "Cumulative citing works by publication month")
    parts += _y_grid(ticks, y, left, width - right)
    path = [f"M{x(start):.1f},{y(0):.1f}"]
    previous = 0
    for month, total in series:
        path.append(f"L{x(month):.1f},{y(previous):.1f}L{x(month):.1f},{y(total):.1f}")
        previous = total
    path.append(f"L{x(end):.1f},{y(previous):.1f}")
    line = "".join(path)
    parts.append(f'<path class="area" d="{line}L{x(end):.1f},{y(0):.1f}Z"/>')
    parts.append(f'<path class="line" d="{line}"/>')
    for month, total in series:
        if total and (month == series[0][0] or total != dict(series).get(_prev_month(month))):
            tip = f"{month.strftime('%b %Y')}: {total} works published by then"
            parts.append(f'<circle class="dot" cx="{x(month):.1f}" cy="{y(total):.1f}" r="2.5">'
                         f'<title>{escape(tip)}</title></circle>')
    for tick, text in _month_ticks(start, end):
        parts.append(f'<line class="xtick" x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{y(0):.1f}" '
                     f'y2="{y(0) + 4:.1f}"/>')
        parts.append(f'<text class="tick" x="{x(tick):.1f}" y="{height - bottom + 16}" '
                     f'text-anchor="middle">{text}</text>')
    parts.append(f'<text class="axis-label" x="{left + plot_w / 2:.1f}" y="{height - 8}" '
                 f'text-anchor="middle">publication month</text>')
    parts.append(f'<text class="value" x="{x(end) - 2:.1f}" y="{y(previous) - 6:.1f}" '
                 f'text-anchor="end">{previous}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _month_ticks(start: dt.date, end: dt.date) -> list[tuple[dt.date, str]]:
    """Years on the axis; half-years too when the span is short enough to have room."""
    years = (end - start).days / 365.25
    months = (1,) if years > 3 else (1, 7)
    ticks = [(dt.date(year, month, 1), str(year) if month == 1 else "Jul")
             for year in range(start.year, end.year + 1) for month in months
             if start <= dt.date(year, month, 1) <= end]
    step = max(1, math.ceil(len(ticks) / 9))
    ticks = ticks[::step]
    if ticks and ticks[0][1] == "Jul":  # the first label must say which year it is
        ticks[0] = (ticks[0][0], f"Jul {ticks[0][0].year}")
    return ticks


def _prev_month(day: dt.date) -> dt.date:
    return dt.date(day.year - (day.month == 1), (day.month - 2) % 12 + 1, 1)


def upset_svg(set_sizes: Mapping[str, int], intersections: Sequence[tuple[tuple[str, ...], int]]) -> str:
    """UpSet plot: one column per combination of sources, bars for how many works it found."""
    sources = list(set_sizes)
    shown = list(intersections[:MAX_INTERSECTIONS])
    label_w, size_w, col_w, row_h = 124, 118, 30, 24
    bars_h, gap = 118, 10
    width = label_w + size_w + gap + col_w * max(len(shown), 1) + 12
    height = bars_h + gap + row_h * len(sources) + 30
    matrix_x = label_w + size_w + gap
    matrix_y = bars_h + gap
    parts = _svg_open(width, height, "Which sources found which works: an UpSet plot")
    top = max((count for _, count in shown), default=1)
    for index, (combo, count) in enumerate(shown):
        cx = matrix_x + col_w * index + col_w / 2
        bar_h = (bars_h - 18) * count / top
        names = " + ".join(_label(s) for s in combo) or "no source"
        parts.append(f'<g class="bar"><title>{escape(names)}: {count} work{"s" * (count != 1)}</title>'
                     f'<rect class="bar-combo" x="{cx - 9:.1f}" y="{bars_h - bar_h:.1f}" width="18" '
                     f'height="{bar_h:.1f}"/></g>')
        parts.append(f'<text class="value" x="{cx:.1f}" y="{bars_h - bar_h - 4:.1f}" '
                     f'text-anchor="middle">{count}</text>')
    largest = max(set_sizes.values(), default=1) or 1
    for row, source in enumerate(sources):
        cy = matrix_y + row_h * row + row_h / 2
        if row % 2 == 0:
            parts.append(f'<rect class="stripe" x="0" y="{cy - row_h / 2:.1f}" width="{width}" height="{row_h}"/>')
        parts.append(f'<text class="source" x="{label_w - 8}" y="{cy + 4:.1f}" text-anchor="end">'
                     f'{escape(_label(source))}</text>')
        size = set_sizes[source]
        bar_w = (size_w - 34) * size / largest
        parts.append(f'<g class="bar"><title>{escape(_label(source))}: {size} works in the snapshot</title>'
                     f'<rect class="bar-set" x="{label_w}" y="{cy - 7:.1f}" width="{bar_w:.1f}" height="14"/></g>')
        parts.append(f'<text class="value" x="{label_w + bar_w + 4:.1f}" y="{cy + 4:.1f}">{size}</text>')
    for index, (combo, _count) in enumerate(shown):
        cx = matrix_x + col_w * index + col_w / 2
        rows = [sources.index(s) for s in combo if s in sources]
        if len(rows) > 1:
            y1 = matrix_y + row_h * min(rows) + row_h / 2
            y2 = matrix_y + row_h * max(rows) + row_h / 2
            parts.append(f'<line class="link" x1="{cx:.1f}" x2="{cx:.1f}" y1="{y1:.1f}" y2="{y2:.1f}"/>')
        for row in range(len(sources)):
            cy = matrix_y + row_h * row + row_h / 2
            css = "dot-on" if row in rows else "dot-off"
            parts.append(f'<circle class="{css}" cx="{cx:.1f}" cy="{cy:.1f}" r="6"/>')
    parts.append(f'<text class="axis-label" x="{label_w}" y="{matrix_y - 2}">works per source</text>')
    parts.append(f'<text class="axis-label" x="{matrix_x}" y="{height - 8}">'
                 f'combinations of sources, largest first</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_open(width: int, height: int, label: str) -> list[str]:
    return [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>']


def _y_grid(ticks: Sequence[int], y: Callable[[float], float], x1: float, x2: float) -> list[str]:
    parts = []
    for tick in ticks:
        parts.append(f'<line class="grid" x1="{x1}" x2="{x2}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>')
        parts.append(f'<text class="tick" x="{x1 - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}</text>')
    return parts


def _legend(items: Sequence[tuple[str, str]], x: float, y: float) -> list[str]:
    parts = []
    for css, text in items:
        parts.append(f'<rect class="{css}" x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10"/>'
                     f'<text class="legend" x="{x + 14:.1f}" y="{y:.1f}">{escape(text)}</text>')
        x += 24 + 6.5 * len(text)
    return parts


# -- HTML ----------------------------------------------------------------------------
def render_html(report: Report, links: StaticLinks | AppLinks, *, mode: str = "static") -> str:
    """The page for ``report``; ``mode`` is ``static`` (a file) or ``airflow`` (the plugin)."""
    from markupsafe import Markup

    reviews = []
    for review in report.reviews:
        # The SVG is built from escaped parts above, so it is marked safe as a whole.
        charts: dict[str, Markup | None] = {
            "timeline": Markup(timeline_svg(review.timeline)) if review.timeline else None,
            "publication": Markup(publication_svg(review.by_publication_month))
            if review.by_publication_month else None,
            "upset": Markup(upset_svg(review.set_sizes, review.intersections)) if review.intersections else None,
        }
        reviews.append({"r": review, "charts": charts, "data_docs": links.data_docs(review),
                        "manifest": links.manifest(review)})
    return _environment().get_template(TEMPLATE).render(
        report=report, reviews=reviews, mode=mode, labels=SOURCE_LABELS, change_labels=CHANGE_LABELS,
        tool=f"{settings.TOOL_NAME} {settings.TOOL_VERSION}")


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["thousands"] = lambda n: f"{n:,}"
    return env


def write_static(out_dir: str | Path | None = None, *, data_dir: str | Path | None = None,
                 config_path: str | Path | None = None) -> Path:
    """Write ``index.html`` (default ``<data_dir>/report/``) and return its path."""
    data = Path(data_dir if data_dir is not None else settings.data_dir()).resolve()
    out = Path(out_dir).resolve() if out_dir else data / "report"
    report = gather(data, config_path)
    html = render_html(report, StaticLinks(out), mode="static")
    from include.living_review.delivery import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    target = out / "index.html"
    atomic_write(target, html.encode("utf-8"))
    target.chmod(0o644)  # a page to share; atomic_write's temp file is private by default
    log.info("report: %d review(s) -> %s", len(report.reviews), target)
    return target


# -- the web app --------------------------------------------------------------------
# No scripts, nothing external; frame-ancestors lets the Airflow UI embed the page.
PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'self'")
# Great Expectations' Data Docs come with their own scripts; a sandboxed origin keeps
# them (and any data they display) away from the Airflow session on this origin.
DOCS_CSP = "sandbox allow-scripts allow-popups"
ICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="#2563eb" stroke-width="2" '
    'stroke-linecap="round" stroke-linejoin="round"><path d="M4 19h16"/><path d="M4 15l4-4 4 3 7-8"/>'
    '<circle cx="19" cy="6" r="1.5"/></svg>')


def create_app(*, data_dir: str | Path | None = None, config_path: str | Path | None = None) -> Any:
    """The FastAPI app behind the plugin: the page, the latest manifest, Data Docs and an icon.

    ``data_dir`` and ``config_path`` default to the settings at *request* time, so a
    changed ``LIVING_REVIEW_DATA_DIR`` needs no restart. Authentication is the
    caller's job (the plugin wraps this app in Airflow's login check).
    """
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse, Response

    app = FastAPI(title="Living review", docs_url=None, redoc_url=None, openapi_url=None)

    def data_path() -> Path:
        return Path(data_dir if data_dir is not None else settings.data_dir()).resolve()

    def configured(review_id: str) -> str:
        try:
            ids = {review.id for review in load_config(config_path).reviews}
        except ConfigError:
            ids = set()
        if review_id not in ids:
            raise HTTPException(status_code=404, detail=f"review {review_id!r} is not configured")
        return review_id

    # Handlers are sync on purpose: FastAPI runs them in its thread pool, so reading
    # Parquet never blocks the API server's event loop.
    @app.get("/", response_class=HTMLResponse, response_model=None)
    def page() -> Any:
        html = render_html(gather(data_path(), config_path), AppLinks(), mode="airflow")
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store",
                                           "X-Content-Type-Options": "nosniff"})

    @app.get("/reviews/{review_id}/manifest.json", response_model=None)
    def manifest(review_id: str) -> Any:
        review_id = configured(review_id)
        dates = published_dates(data_path(), review_id)
        path = Layout.of(data_path(), review_id, dates[-1]).manifest_file if dates else None
        if path is None or not path.is_file():
            raise HTTPException(status_code=404, detail=f"review {review_id!r} has no published manifest yet")
        return FileResponse(path, media_type="application/json", headers={"Cache-Control": "no-store"})

    @app.get("/reviews/{review_id}/docs/{path:path}", response_model=None)
    def data_docs(review_id: str, path: str) -> Any:
        review_id = configured(review_id)
        root = (data_path() / "docs" / review_id).resolve()
        target = (root / (path or "index.html")).resolve()
        if not target.is_relative_to(root) or not target.is_file():  # no ../ escapes out of the docs
            raise HTTPException(status_code=404, detail="no such Data Docs file")
        return FileResponse(target, headers={"Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff"})

    @app.get("/icon.svg", response_model=None)
    def icon() -> Any:
        return Response(ICON_SVG, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.living_review.report",
                                     description="Write the living-review page as static HTML.")
    parser.add_argument("--out", help="output folder (default: <data dir>/report)")
    parser.add_argument("--data-dir", help=f"data directory (default: ${settings.DATA_DIR_ENV} or ./data)")
    parser.add_argument("--config", help="reviews config (default: $LIVING_REVIEW_CONFIG or include/reviews.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # unreadable files; the path is printed
    target = write_static(args.out, data_dir=args.data_dir, config_path=args.config)
    print(f"report written to {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

