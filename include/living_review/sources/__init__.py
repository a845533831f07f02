"""One module per bibliographic source; :func:`build_client` picks the right one."""
from __future__ import annotations

import importlib
from typing import Any

import requests

from include.living_review.connections import ClientSettings

# source name -> "module:Class"; imported lazily so one source's import cost is
# paid only by the task that fetches from it.
CLIENTS: dict[str, str] = {
    "pubmed": "include.living_review.sources.pubmed:PubMedClient",
    "europepmc": "include.living_review.sources.europepmc:EuropePmcClient",
    "openalex": "include.living_review.sources.openalex:OpenAlexClient",
    "opencitations": "include.living_review.sources.opencitations:OpenCitationsClient",
    "semanticscholar": "include.living_review.sources.semanticscholar:SemanticScholarClient",
    "crossref": "include.living_review.sources.crossref:CrossrefClient",
}


def build_client(source: str, conf: ClientSettings, *, session: requests.Session | None = None,
                 **kwargs: Any) -> Any:
    module_name, _, class_name = CLIENTS[source].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(base_url=conf.base_url, email=conf.email, api_key=conf.api_key, session=session, **kwargs)
