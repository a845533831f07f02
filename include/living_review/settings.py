"""Tunables with their defaults, in one place.

Secrets never live here: they come from Airflow connections (see ``connections.py``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "include" / "reviews.yaml"
CONFIG_ENV = "LIVING_REVIEW_CONFIG"
DATA_DIR_ENV = "LIVING_REVIEW_DATA_DIR"
# Bounds on what the config loader reads before it converts anything (issue 14: a YAML
# alias bomb of 635 bytes expanded to gigabytes). 1 MiB holds ~3,000 reviews; a review
# entry, aliases expanded, counts one per value plus its characters (a typical entry is
# under 1,000, an entry with a long abstract a few thousand).
CONFIG_MAX_BYTES = 1024 * 1024
CONFIG_MAX_ENTRY_SIZE = 100_000
CONFIG_MAX_TOTAL_SIZE = 4 * CONFIG_MAX_BYTES
CONFIG_MAX_DEPTH = 32

TOOL_NAME = "living-review"
TOOL_VERSION = "0.1.0"
USER_AGENT = f"{TOOL_NAME}/{TOOL_VERSION} (+https://github.com/living-review/living-review)"

# Connection id -> public default base URL, used when the connection is absent.
SOURCE_CONNECTIONS: dict[str, str] = {
    "pubmed": "ncbi_eutils",
    "europepmc": "europe_pmc",
    "openalex": "openalex",
    "crossref": "crossref",
    "opencitations": "opencitations",
    "semanticscholar": "semantic_scholar",
}
DEFAULT_BASE_URLS: dict[str, str] = {
    "ncbi_eutils": "https://eutils.ncbi.nlm.nih.gov/entrez/eutils",
    "europe_pmc": "https://www.ebi.ac.uk/europepmc/webservices/rest",
    "openalex": "https://api.openalex.org",
    "crossref": "https://api.crossref.org",
    "opencitations": "https://api.opencitations.net",
    "semantic_scholar": "https://api.semanticscholar.org",
}
# How each source is named to people (digests, summaries, the report page).
SOURCE_LABELS: dict[str, str] = {
    "pubmed": "PubMed", "europepmc": "Europe PMC", "openalex": "OpenAlex", "opencitations": "OpenCitations",
    "semanticscholar": "Semantic Scholar", "crossref": "Crossref",
}
SMTP_CONN_ID = "smtp_default"
SLACK_CONN_ID = "slack_digest"
# For an s3:// data dir when LIVING_REVIEW_STORAGE_OPTIONS is unset (mapped in dags/_lib/glue.py).
STORAGE_CONN_ID = "aws_default"

# Requests per second each provider allows (anonymous, with key). The pools in
# ``pools.json`` are sized from the same figures.
RATE_LIMITS: dict[str, tuple[float, float]] = {
    "pubmed": (3.0, 10.0),
    "europepmc": (10.0, 10.0),
    "openalex": (10.0, 10.0),
    "crossref": (5.0, 10.0),  # public pool 5/s; polite pool (mailto) 10/s
    "opencitations": (3.0, 3.0),
    "semanticscholar": (1.0, 1.0),
}

RATE_SAFETY = 0.95  # clients pace at this share of each provider's limit

HTTP_TIMEOUT = (10.0, 60.0)  # (connect, read) seconds
# The whole of one try of one request (connect, headers, body, redirects) may take at
# most this long. The read timeout restarts on every byte, so a server that drips a
# byte a second would otherwise hold a task until its 2-hour execution_timeout. Five
# minutes reads the largest page (~15 MB of Europe PMC) at 50 KB/s; a try that hits
# it is retried like a network error (5 tries: at most ~25 minutes). Checked between
# network reads, so a try can overrun it by at most one read timeout.
HTTP_REQUEST_DEADLINE = float(os.environ.get("LIVING_REVIEW_HTTP_DEADLINE_SECONDS", "300"))
HTTP_MAX_TRIES = int(os.environ.get("LIVING_REVIEW_HTTP_MAX_TRIES", "5"))
HTTP_BACKOFF_BASE = float(os.environ.get("LIVING_REVIEW_HTTP_BACKOFF_BASE", "1.0"))
HTTP_BACKOFF_CAP = 30.0
HTTP_RETRY_AFTER_CAP = 120.0
# A response body larger than this is refused instead of being parsed; the
# largest legitimate page (1000 Europe PMC core records) is ~15 MB.
HTTP_MAX_BODY_BYTES = 64 * 1024 * 1024

EFETCH_BATCH_SIZE = 200
# Known works asked about per update-probe request: PubMed esearch [uid] terms (POST);
# Crossref takes about 100 `doi:` filters per list request (its URL stays under 8 KB).
PROBE_BATCH_SIZE = 200
CROSSREF_BATCH_SIZE = 100
EUROPEPMC_PAGE_SIZE = 1000
OPENALEX_PER_PAGE = 100
SEMANTIC_SCHOLAR_PAGE_SIZE = 1000
MAX_RECORDS_PER_SOURCE = 200_000

# Data quality: more than this share of rows failing a blocking expectation is
# systemic (an upstream format change, not a bad record) and blocks publishing.
SYSTEMIC_FAILURE_SHARE = 0.5
# A source whose citing count drops by more than this share since last run fails.
SOURCE_DROP_SHARE = 0.5
# The merged snapshot may not shrink by more than this share.
ROW_DROP_SHARE = 0.2

BASELINE_DIGEST_ITEMS = 20
# Relevance triage: "tfidf" (default, no extra install) or "embedding" (needs
# requirements-embeddings.txt, ~1.2 GB); see docs/relevance.md.
RELEVANCE_SCORER = os.environ.get("LIVING_REVIEW_RELEVANCE_SCORER", "tfidf")
LIKELY_RELEVANT_THRESHOLD = 0.4
SLACK_MAX_ITEMS = 10
FUZZY_TITLE_THRESHOLD = 93.0


def data_dir() -> str:
    """The data directory: ``$LIVING_REVIEW_DATA_DIR`` or ``./data``."""
    return os.environ.get(DATA_DIR_ENV) or str(Path.cwd() / "data")


STORAGE_OPTIONS_ENV = "LIVING_REVIEW_STORAGE_OPTIONS"


def storage_options() -> dict[str, Any]:
    """fsspec options for an object-store data dir: ``$LIVING_REVIEW_STORAGE_OPTIONS`` as JSON.

    For S3 (s3fs) e.g. ``{"endpoint_url": "http://127.0.0.1:9000", "key": "...", "secret": "..."}``.
    Empty by default: s3fs then uses the standard ``AWS_*`` variables and credential chain.
    """
    raw = os.environ.get(STORAGE_OPTIONS_ENV, "").strip()
    if not raw:
        return {}
    try:
        options = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{STORAGE_OPTIONS_ENV} is not valid JSON ({exc}); set it to an object such as "
                         '{"endpoint_url": "http://127.0.0.1:9000"} or unset it') from exc
    if not isinstance(options, dict):
        raise ValueError(f"{STORAGE_OPTIONS_ENV} must be a JSON object, not {type(options).__name__}")
    return options


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def pool_for(source: str) -> str:
    """The Airflow pool that throttles ``source`` (defined in ``include/pools.json``)."""
    return f"living_review_{source}"


# Airflow task retries on top of the HTTP layer's own retries. The delay is an env
# tunable so the test suite can retry in seconds instead of minutes.
# The run lease (include/living_review/storage/locks.py): a run's tasks renew it; a lease
# not renewed for this long belongs to a dead run and may be taken over. Longer than the
# longest task (execution_timeout, 2 hours) so a slow fetch never loses it.
RUN_LEASE_TTL_SECONDS = float(os.environ.get("LIVING_REVIEW_RUN_LEASE_TTL_SECONDS", str(3 * 3600)))
# Keep a committed run's staging folder instead of removing it in end_run (for debugging).
KEEP_STAGING = os.environ.get("LIVING_REVIEW_KEEP_STAGING", "").lower() in ("1", "true", "yes")
TASK_RETRIES = int(os.environ.get("LIVING_REVIEW_TASK_RETRIES", "2"))
TASK_RETRY_DELAY_SECONDS = float(os.environ.get("LIVING_REVIEW_RETRY_DELAY_SECONDS", "300"))
