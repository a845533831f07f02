"""The page's plots as inline SVG strings: pure functions of the gathered numbers.

Every piece of text is escaped here, so :mod:`.page` can mark each chart safe as a
whole. No JavaScript and no external fonts or images, so the charts work offline, in a
sandboxed iframe and in a file attachment.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING

from include.living_review import settings

if TYPE_CHECKING:
    from include.living_review.report.gather import SnapshotPoint

MAX_INTERSECTIONS = 12


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



# Small copies of gather's helpers, so the charts need nothing from the data layer.
def _label(source: str) -> str:
    return settings.SOURCE_LABELS.get(source, source)


def _next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + (day.month == 12), day.month % 12 + 1, 1)
