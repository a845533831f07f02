"""The living-review page: what each review's published data says, as one HTML page.

Two ways to see it, one renderer:

* the Airflow plugin (``plugins/living_review_view.py``) serves it at ``/living-review/``
  through :func:`~include.living_review.report.app.create_app`;
* ``python -m include.living_review.report --out DIR`` (``make report``) writes it as a
  static ``index.html`` for people without Airflow access (:func:`write_static`).

:func:`render_html` fills ``templates/report.html.j2`` with a gathered
:class:`~include.living_review.report.gather.Report` and the charts of
:mod:`.charts`; the link style (:class:`StaticLinks` or :class:`AppLinks`) says where
the page's links to the manifest and Data Docs point.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from include.living_review import settings
from include.living_review.report.charts import publication_svg, timeline_svg, upset_svg
from include.living_review.report.gather import CHANGE_LABELS, SOURCE_LABELS, Report, ReviewReport, gather

log = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"
TEMPLATE_DIR = Path(__file__).with_name("templates")


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
    from include.living_review.storage import write_atomic as atomic_write

    out.mkdir(parents=True, exist_ok=True)
    target = out / "index.html"
    atomic_write(target, html.encode("utf-8"))
    target.chmod(0o644)  # a page to share; atomic_write's temp file is private by default
    log.info("report: %d review(s) -> %s", len(report.reviews), target)
    return target


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

