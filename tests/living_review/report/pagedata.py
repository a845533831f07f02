"""Read the numbers a rendered page shows, by the data-* attributes the template puts on them."""
from __future__ import annotations

import re
from html.parser import HTMLParser


class _Metrics(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.metrics: dict[str, str] = {}
        self.per_source: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self._open: tuple[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("data-link") and found.get("href"):
            self.links[str(found["data-link"])] = str(found["href"])
        if found.get("data-metric"):
            self._open = (str(found["data-metric"]), found.get("data-source"))
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._open:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            metric, source = self._open
            value = re.sub(r"\s+", " ", "".join(self._text)).strip()
            if source:
                self.per_source[source] = value
            else:
                self.metrics.setdefault(metric, value)
            self._open = None


def page_numbers(html: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(metrics, works per source, links) of the first review on the page."""
    parser = _Metrics()
    parser.feed(html)
    return parser.metrics, parser.per_source, parser.links
