"""Screenshots of the living-review page and of a sample digest, in headless Chromium.

    python -m scripts.screenshot            # build a 4-week sample history, then shoot both
    python -m scripts.screenshot --data-dir demo-output/data --config demo-output/reviews.yaml

Writes ``docs/sample-digest.html`` (a digest email's HTML part, rendered by
:func:`include.living_review.digest.build_digest` from real pipeline rows),
``docs/img/report.png`` (the static report, full page) and ``docs/img/digest.png``;
with ``--airflow-url`` also ``docs/img/report-in-airflow.png`` (the page inside the Airflow UI).

Without ``--data-dir`` the data comes from ``tests/living_review/report/history.py``: the real
pipeline steps run against the local fakes for four weekly runs, so the page has a
history, a quarantined record and changes to show. Needs Debian's ``chromium``
(``apt-get install -y chromium``). The helpers here are also what the screenshot
test uses.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
WIDTH = 1200
DIGEST_WIDTH = 720  # about a mail client's reading pane; the digest itself is 640 px wide
# Offline and quiet: no updates, sync, QUIC or background requests leave the machine.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-device-scale-factor=1")
_HEIGHT_PROBE = ('<script>document.documentElement.setAttribute("data-page-height", '
                 'Math.ceil(document.documentElement.getBoundingClientRect().height))</script>')


def find_chromium() -> str | None:
    """The Chromium binary, or None when none is installed."""
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run_chromium(args: list[str], *, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    binary = find_chromium()
    if binary is None:
        raise RuntimeError("chromium is not installed; run `apt-get install -y chromium`")
    with tempfile.TemporaryDirectory(prefix="lr-chromium-") as profile:
        return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout, check=False, cwd=profile)


def dump_dom(page: Path) -> str:
    """The page's DOM after layout, as Chromium serialises it (``--dump-dom``)."""
    result = _run_chromium(["--dump-dom", page.resolve().as_uri()])
    if result.returncode != 0 or "<html" not in result.stdout:
        raise RuntimeError(f"chromium --dump-dom failed ({result.returncode}): {result.stderr[-500:]}")
    return result.stdout


def page_height(page: Path, width: int = WIDTH) -> int:
    """The rendered height of ``page`` at ``width``, measured on a probe copy.

    Chromium's ``--screenshot`` captures the window only; the page itself has no
    script (its CSP forbids them), so a copy with a one-line probe reports the height.
    """
    with tempfile.TemporaryDirectory(prefix="lr-probe-") as folder:
        probe = Path(folder) / page.name
        probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _HEIGHT_PROBE + "</body>"),
                         encoding="utf-8")
        result = _run_chromium([f"--window-size={width},800", "--dump-dom", probe.as_uri()])
    match = re.search(r'data-page-height="(\d+)"', result.stdout)
    if not match:
        raise RuntimeError(f"could not measure {page}: {result.stderr[-500:]}")
    return int(match.group(1))


def screenshot(page: Path | str, png: Path, *, width: int = WIDTH, height: int | None = None,
               wait_ms: int = 0) -> Path:
    """A PNG of ``page`` (a file, or a URL with ``height``): the whole file when ``height`` is None.

    ``wait_ms`` gives a scripted page (the Airflow UI) virtual time to fetch and render.
    """
    if isinstance(page, Path):
        height = height or page_height(page, width)
        url = page.resolve().as_uri()
    else:
        url, height = page, height or 1000
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    extra = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
    result = _run_chromium([*extra, f"--screenshot={png.resolve()}", f"--window-size={width},{height}", url])
    if result.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium --screenshot failed ({result.returncode}): {result.stderr[-500:]}")
    log.info("screenshot %s (%dx%d) -> %s", url, width, height, png)
    return png


# -- PNG reading (stdlib only: Pillow is not a dependency) ------------------------------
@dataclass(frozen=True)
class PngImage:
    width: int
    height: int
    channels: int
    rows: list[bytes]  # decoded scanlines (the first ``max_rows`` only)


def read_png(path: Path, *, max_rows: int | None = None) -> PngImage:
    """Decode an 8-bit, non-interlaced RGB/RGBA/grey PNG (what Chromium writes)."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    pos, idat, header = 8, bytearray(), None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise ValueError(f"{path} has no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour type {colour}, interlace {interlace})")
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(min(height, max_rows or height)):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        _unfilter(kind, line, previous, channels)
        rows.append(bytes(line))
        previous = line
    return PngImage(width, height, channels, rows)


def _unfilter(kind: int, line: bytearray, prev: bytearray, bpp: int) -> None:
    if kind == 0:
        return
    if kind == 2:
        line[:] = bytes((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = prev[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
        elif kind == 4:
            corner = prev[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        else:
            raise ValueError(f"bad PNG filter type {kind}")


def pixel_stats(image: PngImage) -> tuple[float, int]:
    """(variance of the grey level, number of distinct colours) over the decoded rows."""
    grey: list[int] = []
    colours: set[bytes] = set()
    step = image.channels
    for row in image.rows:
        for x in range(0, len(row) - step + 1, step * 3):  # every third pixel is plenty
            pixel = row[x:x + step]
            colours.add(pixel)
            grey.append(sum(pixel[:3]) // min(3, step))
    mean = sum(grey) / max(len(grey), 1)
    return sum((g - mean) ** 2 for g in grey) / max(len(grey), 1), len(colours)


# -- what to shoot --------------------------------------------------------------------
def build_sample_data(folder: Path) -> tuple[Path, Path]:
    """(data dir, config) of a four-week history built by the real pipeline steps."""
    from tests.living_review.report.history import build_history

    history = build_history(folder)
    return history.data_dir, history.config


def render_sample_digest(data_dir: Path, config: Path | None, out: Path) -> Path:
    """The digest email's HTML for the latest run that found new works, from its real rows."""
    import pyarrow.parquet as pq

    from include.living_review.config import load_config
    from include.living_review.digest import build_digest
    from include.living_review.storage import Layout, published_dates, read_json

    review = load_config(config).reviews[0]
    dates = published_dates(data_dir, review.id)
    if not dates:
        raise RuntimeError(f"no published snapshot of {review.id} under {data_dir}")
    layout = Layout.of(data_dir, review.id, dates[-1])
    for day in reversed(dates):  # a digest with papers in it says more than "nothing new"
        candidate = Layout.of(data_dir, review.id, day)
        if (read_json(candidate.manifest_file, {}) or {}).get("counts", {}).get("new"):
            layout = candidate
            break
    manifest = read_json(layout.manifest_file, {}) or {}
    rows = pq.read_table(layout.snapshot_file).to_pylist()
    run_ts = dt.datetime.fromisoformat(manifest["run_timestamp"]) if manifest.get("run_timestamp") else None
    new_rows = [r for r in rows if run_ts is not None and r["first_seen"] == run_ts]
    coverage = dict(manifest.get("coverage") or {})
    union = coverage.pop("union", len(rows))
    warnings = []
    quarantined = (manifest.get("counts") or {}).get("quarantined")
    if quarantined:
        warnings.append(f"{quarantined} record(s) were quarantined; run `make quarantine` to see why.")
    digest = build_digest(review, layout.snapshot_date, new_rows, total_works=len(rows), coverage=coverage,
                          union=union, warnings=warnings,
                          links={"Living review page": "https://airflow.example.org/living-review/",
                                 "Snapshot": str(Path("data") / layout.snapshot_file.relative_to(data_dir))},
                          baseline=bool(manifest.get("baseline")))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(digest.html, encoding="utf-8")
    log.info("sample digest (%d new works, %s) -> %s", digest.item_count, layout.snapshot_date, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.screenshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="use this data dir instead of building a sample history")
    parser.add_argument("--config", type=Path, help="the reviews config for --data-dir")
    parser.add_argument("--docs", type=Path, default=DOCS, help="where sample-digest.html and img/ go")
    parser.add_argument("--airflow-url", help="also shoot the page inside a running Airflow UI at this base URL "
                                              "(e.g. http://127.0.0.1:8080) -> img/report-in-airflow.png")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("include").setLevel(logging.WARNING)  # the pipeline's own progress is noise here
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("LIVING_REVIEW_HTTP_BACKOFF_BASE", "0.05")
    if find_chromium() is None:
        parser.error("chromium is not installed; run `apt-get install -y chromium`")

    from include.living_review.report import write_static

    with tempfile.TemporaryDirectory(prefix="lr-screenshot-") as scratch:
        if args.data_dir:
            data_dir, config = args.data_dir.resolve(), args.config
        else:
            data_dir, config = build_sample_data(Path(scratch))
        page = write_static(Path(scratch) / "report", data_dir=data_dir, config_path=config)
        screenshot(page, args.docs / "img" / "report.png")
        digest = render_sample_digest(data_dir, config, args.docs / "sample-digest.html")
        screenshot(digest, args.docs / "img" / "digest.png", width=DIGEST_WIDTH)
    if args.airflow_url:
        # The UI embeds the plugin's page at /plugin/<url_route>; a logged-in session is
        # needed, e.g. SIMPLE_AUTH_MANAGER_ALL_ADMINS=True on a local api-server.
        screenshot(args.airflow_url.rstrip("/") + "/plugin/living-review", args.docs / "img" / "report-in-airflow.png",
                   width=1400, height=1000, wait_ms=15000)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
