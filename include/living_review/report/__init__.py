"""The report stage: the living-review page, as static HTML (``make report``) and in the Airflow UI.

* :mod:`.gather` reads the committed data into :class:`ReviewReport` objects;
* :mod:`.charts` draws their plots as inline SVG;
* :mod:`.page` renders the HTML and writes the static page (:func:`main`);
* :mod:`.app` serves it with FastAPI for the plugin (``plugins/living_review_view.py``).

Plain Python with no Airflow imports. The plugin imports this package (and with it
pyarrow) only when the API server serves its first request, never at plugin load.
"""
from __future__ import annotations

from include.living_review.report.app import create_app
from include.living_review.report.charts import publication_svg, timeline_svg, upset_svg
from include.living_review.report.gather import ReviewReport, SnapshotPoint, gather
from include.living_review.report.page import AppLinks, StaticLinks, main, render_html, write_static

__all__ = ["AppLinks", "ReviewReport", "SnapshotPoint", "StaticLinks", "create_app", "gather", "main",
           "publication_svg", "render_html", "timeline_svg", "upset_svg", "write_static"]
