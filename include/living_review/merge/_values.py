"""Small helpers the merge's collaborators share: tolerant readers of record fields,
the memoized id normalizer, and what makes a DOI a preprint.

Record fields arrive from six mappers and from a parquet snapshot, so every reader
here accepts junk (NaN, wrong types, empty strings) and answers ``None`` or empty.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping

from include.living_review.records.ids import (
    normalize_doi,
    normalize_openalex_id,
    normalize_pmcid,
    normalize_pmid,
)

PREPRINT, PUBLISHED = "preprint", "published"
# DOI prefixes only preprint servers use: Research Square, SSRN, PsyArXiv, OSF Preprints,
# Preprints.org, arXiv, ChemRxiv. 10.1101 is shared by bioRxiv/medRxiv (suffix starts with a
# digit: 10.1101/2020.01.01.123456, 10.1101/123456) and Cold Spring Harbor's journals
# (10.1101/gad..., 10.1101/gr...), so only the digit form counts.
# Research Square, SSRN, PsyArXiv, OSF Preprints, Preprints.org, arXiv, ChemRxiv, JMIR Preprints
# (JMIR's journals share its 10.2196 prefix, so the whole "preprints" path is the marker).
PREPRINT_DOI_PREFIXES = ("10.21203/", "10.2139/", "10.31234/", "10.31219/", "10.20944/", "10.48550/", "10.26434/",
                         "10.2196/preprints")
_BIORXIV = re.compile(r"^10\.1101/\d")
# Publication types that mark a preprint (Europe PMC, PubMed and OpenAlex "preprint",
# Crossref "posted-content"), compared casefolded.
PREPRINT_TYPES = frozenset({"preprint", "posted-content", "posted_content"})

_OMID_PREFIX = re.compile(r"^(?:https?://w3id\.org/oc/meta/|omid:)", re.IGNORECASE)

# Positions in a node's normalized id tuple, and the key prefix of each.
DOI, PMID, PMCID, OPENALEX, S2, OMID = range(6)
ID_PREFIXES = ("doi:", "pmid:", "pmcid:", "openalex:", "s2:", "oci:")

IdCache = dict[tuple[int, object], str | None]
NormalizedIds = tuple[str | None, str | None, str | None, str | None, str | None, str | None]


def preprint_server_doi(doi: str) -> bool:
    """True if a normalized DOI belongs to a preprint server."""
    return doi.startswith(PREPRINT_DOI_PREFIXES) or _BIORXIV.match(doi) is not None


def has_preprint_type(types: object) -> bool:
    """True if any of the publication types marks a preprint."""
    return any(t.strip().casefold() in PREPRINT_TYPES for t in as_str_list(types))


def as_text(value: object) -> str | None:
    """Stripped text, or None for None, NaN and blanks."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def as_year(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None


def as_str_list(value: object) -> list[str]:
    """A list of non-empty strings; a lone string is a one-element list."""
    if value is None or isinstance(value, (str, bytes)):
        return [value] if isinstance(value, str) and value else []
    try:
        return [str(v) for v in value if v is not None and str(v)]  # type: ignore[union-attr]
    except TypeError:
        return []


def as_score(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return None if math.isnan(score) else score


def as_id_map(value: object) -> dict[str, str]:
    """``source_ids`` as a dict, from a mapping or (parquet's) list of pairs."""
    if not value:
        return {}
    items = value.items() if isinstance(value, Mapping) else value
    out: dict[str, str] = {}
    try:
        for k, v in items:  # type: ignore[union-attr]
            text = as_text(v)
            if k is not None and text:
                out[str(k)] = text
    except (TypeError, ValueError):
        return {}
    return out


def as_omid(value: object) -> str | None:
    """An OpenCitations id without its ``omid:`` or w3id URL prefix."""
    text = as_text(value)
    return _OMID_PREFIX.sub("", text).strip() or None if text else None


def first_seen_key(value: object) -> str:
    """Sortable text for a ``first_seen`` value; missing sorts last."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value) if value is not None else "~"


def earlier_date(old: dt.date | None, new: dt.date | None) -> dt.date | None:
    """The earlier of two dates, a missing one losing."""
    return new if old is None or (new is not None and new < old) else old


# Indexed by the positions above (DOI .. OMID).
_NORMALIZERS = (normalize_doi, normalize_pmid, normalize_pmcid, normalize_openalex_id, as_text, as_omid)


def normalized_id(slot: int, value: object, cache: IdCache) -> str | None:
    """Normalize one id of kind ``slot``, memoized: the same PMID or DOI string arrives from several sources."""
    if not value:
        return None
    try:
        return cache[slot, value]
    except KeyError:
        pass
    except TypeError:  # unhashable junk is not an id
        return None
    try:
        found = _NORMALIZERS[slot](value)
    except (TypeError, ValueError, AttributeError):
        found = None
    cache[slot, value] = found
    return found
