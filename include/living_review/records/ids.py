"""Identifier normalizers shared by every source. Each is idempotent and total."""
from __future__ import annotations

import re

# re.ASCII: "\d" must not accept Arabic-Indic or other Unicode digits. A DOI suffix is
# any printable run: no whitespace, controls or bidi overrides (they would travel into
# work_id, Parquet and the links of a digest).
DOI_RE = re.compile(r"^10\.[0-9]{4,9}/[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]+$")
PMID_RE = re.compile(r"^[1-9]\d{0,9}$", re.ASCII)
PMCID_RE = re.compile(r"^PMC\d{1,10}$", re.ASCII)
OPENALEX_RE = re.compile(r"^W\d+$", re.ASCII)

_DOI_PREFIX = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*)", re.IGNORECASE)
_URL_TAIL = re.compile(r"[/=]([^/=?#]+)/?$")


def normalize_doi(value: str | None) -> str | None:
    """Lowercase DOI without ``https://doi.org/`` or ``doi:``; None if it is not a DOI."""
    if not value:
        return None
    text = _DOI_PREFIX.sub("", str(value).strip()).strip().rstrip(".").lower()
    # Percent-encoded slashes show up in URL-shaped DOIs from some sources.
    text = text.replace("%2f", "/")
    return text if DOI_RE.fullmatch(text) else None


def normalize_pmid(value: str | int | None) -> str | None:
    """Digits only: accepts ``123``, ``"pmid:123"`` and PubMed URLs."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    match = _URL_TAIL.search(text) if "/" in text else None
    if match:
        text = match.group(1)
    text = text.lower().removeprefix("pmid:").strip()
    return text if PMID_RE.fullmatch(text) else None


def normalize_pmcid(value: str | int | None) -> str | None:
    """``PMC`` + digits: accepts bare numbers (Semantic Scholar, OpenAlex URLs) and PMC URLs."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    match = _URL_TAIL.search(text) if "/" in text else None
    if match:
        text = match.group(1)
    text = text.upper().removeprefix("PMCID:").strip()
    if text.isdigit():
        text = "PMC" + text
    text = text.split(".")[0]  # versioned ids such as PMC2883744.1
    return text if PMCID_RE.fullmatch(text) else None


def normalize_openalex_id(value: str | None) -> str | None:
    """``W`` + digits from a bare id or an ``https://openalex.org/W…`` URL."""
    if not value:
        return None
    text = str(value).strip().rstrip("/").rsplit("/", 1)[-1].upper()
    return text if OPENALEX_RE.fullmatch(text) else None


def work_id_for(doi: str | None, pmid: str | None, pmcid: str | None,
                openalex_id: str | None = None, s2_paper_id: str | None = None,
                omid: str | None = None) -> str | None:
    """The stable key for a work first seen with these ids (the data contract's rule)."""
    if doi:
        return f"doi:{doi}"
    if pmid:
        return f"pmid:{pmid}"
    if pmcid:
        return f"pmcid:{pmcid}"
    if openalex_id:
        return f"openalex:{openalex_id}"
    if s2_paper_id:
        return f"s2:{s2_paper_id}"
    if omid:
        return f"oci:{omid}"
    return None
