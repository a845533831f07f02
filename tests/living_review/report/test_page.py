"""The rendered page and the static export: key numbers, working links, escaping, robustness."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

from include.living_review import report as rp
from tests.living_review.report.handmade import damaged_data_dir, publish, write_config
from tests.living_review.report.history import History
from tests.living_review.report.pagedata import page_numbers

ROOT = Path(__file__).resolve().parents[3]


def test_static_report_shows_the_key_numbers_and_working_links(history: History, tmp_path: Path) -> None:
    out = tmp_path / "site"
    assert rp.main(["--out", str(out), "--data-dir", str(history.data_dir), "--config", str(history.config)]) == 0
    html = (out / "index.html").read_text(encoding="utf-8")
    metrics, per_source, links = page_numbers(html)

    assert metrics["total-works"] == str(history.union)
    assert metrics["union"] == metrics["coverage-union"] == str(history.reported)
    assert metrics["quarantined"] == str(history.quarantined)
    assert metrics["new"] == "0"
    assert metrics["snapshot-date"] == history.weeks[-1].isoformat()
    assert metrics["data-quality"] == "1 row quarantined"
    assert per_source == {s: str(n) for s, n in history.coverage.items()}
    for name in ("data-docs", "manifest"):  # relative links that resolve beside the data
        assert (out / unquote(links[name])).resolve().is_file(), links[name]
    assert json.loads((out / unquote(links["manifest"])).read_text())["snapshot_date"] == history.weeks[-1].isoformat()
    for chart in ("Citing works per snapshot", "Cumulative citing works by publication month",
                  "Which sources found which works"):
        assert chart in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_default_output_is_the_data_dirs_report_folder(history: History, tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("LIVING_REVIEW_DATA_DIR", str(data))
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(history.config))
    target = rp.write_static()
    assert target == data.resolve() / "report" / "index.html"
    assert "No snapshot published yet" in target.read_text(encoding="utf-8")
    assert target.stat().st_mode & 0o044  # readable by the web server / colleagues


def test_python_m_report_writes_the_static_page(tmp_path: Path) -> None:
    """``make report`` runs the package's ``__main__``."""
    data, out = tmp_path / "data", tmp_path / "site"
    config = write_config(tmp_path / "reviews.yaml", ["cli-1"])
    publish(data, "cli-1", dt.date(2026, 3, 2), ["A", "B", "C"])
    result = subprocess.run(
        [sys.executable, "-m", "include.living_review.report", "--out", str(out), "--data-dir", str(data),
         "--config", str(config)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"report written to {out.resolve() / 'index.html'}"
    metrics, _, links = page_numbers((out / "index.html").read_text(encoding="utf-8"))
    assert metrics["total-works"] == "3" and metrics["snapshot-date"] == "2026-03-02"
    assert (out / unquote(links["manifest"])).resolve() == (data / "runs" / "review_id=cli-1" /
                                                             "snapshot_date=2026-03-02" / "manifest.json").resolve()


def test_page_shows_missing_damaged_and_blocked_data(tmp_path: Path) -> None:
    data, config = damaged_data_dir(tmp_path)
    html = rp.render_html(rp.gather(data, config), rp.StaticLinks(tmp_path / "out"))
    assert "No snapshot published yet" in html
    assert "cannot read the snapshot" in html
    assert "publishing was blocked: 60% of rows failed" in html
    assert "problem in the reviews config" in html
    assert html.count('class="review"') == 5


def test_an_object_store_data_dir_is_explained(tmp_path: Path) -> None:
    report = rp.gather("s3://bucket/living-review", write_config(tmp_path / "reviews.yaml", ["one-1"]))
    assert report.notices and "is a URL" in report.notices[0]
    assert "is a URL" in rp.render_html(report, rp.AppLinks())


def test_untrusted_titles_are_escaped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path / "reviews.yaml", ["xss-1"])
    publish(data, "xss-1", dt.date(2026, 2, 2), ['<script>alert(1)</script> & "quotes"', "<img src=x onerror=y>"])
    html = rp.render_html(rp.gather(data, config), rp.AppLinks(), mode="airflow")
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; " in html


def test_static_links_are_relative_and_quoted(tmp_path: Path) -> None:
    """A data dir with spaces (a shared drive) still gives links that resolve from the page's folder."""
    data, out = tmp_path / "shared drive" / "data", tmp_path / "public html"
    config = write_config(tmp_path / "reviews.yaml", ["links-1"])
    layout = publish(data, "links-1", dt.date(2026, 3, 2), ["A"])
    [review] = rp.gather(data, config).reviews

    link = rp.StaticLinks(out).manifest(review)
    assert link is not None and " " not in link and not link.startswith("/")
    assert link.startswith("../shared%20drive/data/runs/")
    assert (out / unquote(link)).resolve() == Path(layout.manifest_file).resolve()
    assert rp.StaticLinks(out).data_docs(review) is None  # no Data Docs written: shown as text, not a dead link
    assert rp.AppLinks().manifest(review) == "reviews/links-1/manifest.json"
    assert rp.AppLinks().data_docs(review) is None
