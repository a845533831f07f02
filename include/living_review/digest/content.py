"""The digest of new citing papers: content, email/Slack rendering and the local outbox.

:func:`build_digest` turns a run's new works and change-feed events into a
:class:`Digest` (subject, plain text, HTML, Slack Block Kit payload and an
idempotency key). Its sections, in this order:

* a red box at the very top for every retraction of a paper an earlier digest
  announced (``previously_announced``), also the first Slack block;
* "New citing papers": by relevance (unscored last), then newest first; when any
  row has a score, split into "Likely relevant" (score >= the threshold, shown in
  full with the scorer's reason) and "Other citing papers" (one line each). Nothing
  is dropped, only ordered; without scores it is one newest-first list;
* "Now published": works whose preprint was published in this window;
* "Retracted or corrected": retraction/correction events, with the notice linked.

:func:`build_email`
wraps it in a MIME message and :func:`write_outbox` stores it on disk when no SMTP
or Slack connection is configured. Sending (and sending only once) is
:mod:`include.living_review.digest.delivery`'s job.

Every string that comes from the data is untrusted (titles are scraped from six
APIs). The rules:

* Control characters, lone surrogates and bidi overrides/isolates are removed; RTL
  scripts, emoji and combining marks are kept as they are.
* HTML goes through Jinja2 with autoescaping, and the only links are the ``http(s)``
  URLs this module builds from validated ids (or caller links that pass
  :func:`safe_url`).
* Slack ``mrkdwn`` has no escape character: ``&``, ``<`` and ``>`` become entities
  (so ``<!channel>``, ``<@U123>`` and ``<http://evil|click>`` stay literal text), and
  each emphasis character (``*``, ``_``, ``~`` and the backtick) is fenced by ZERO WIDTH SPACEs (U+200B), which
  Slack does not treat as a word boundary, so ``*bold*`` shows literally and copying
  the title still yields the original characters.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from include.living_review import settings
from include.living_review.records.normalize import as_date
from include.living_review.config import ReviewConfig
from include.living_review.digest.slack import slack_payload
from include.living_review.records.ids import normalize_doi, normalize_pmcid, normalize_pmid
from include.living_review.digest.items import (  # noqa: F401 - re-exported: the digest's public face
    CORRECTED,
    DEFAULT_LIKELY_RELEVANT_THRESHOLD,
    NOTICE_LABELS,
    REASON_LIMIT,
    RETRACTED,
    SLACK_HEADER_LIMIT,
    SLACK_MAX_WARNINGS,
    SLACK_SECTION_LIMIT,
    SLACK_TITLE_LIMIT,
    TITLE_LIMIT,
    Digest,
    DigestItem,
    Link,
    _slack_url,
    clean,
    safe_url,
    slack_escape,
)

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).with_name("templates")
DEFAULT_SENDER = "living-review@localhost"
DIGEST_HEADER = "X-Living-Review-Digest"

SOURCE_LABELS = settings.SOURCE_LABELS
# Badge label per normalised publication type (PubMed names and the other sources' spellings).
_BADGES: dict[str, str] = {
    "review": "Review",
    "systematic review": "Systematic Review",
    "meta analysis": "Meta-Analysis",
    "randomized controlled trial": "RCT",
    "preprint": "Preprint",
    "posted content": "Preprint",
}
BADGE_ORDER = ("Systematic Review", "Meta-Analysis", "Review", "RCT", "Preprint")
def work_url(doi: object, pmid: object, pmcid: object) -> str | None:
    """doi.org for a DOI, else PubMed for a PMID, else PMC for a PMCID."""
    if (norm := normalize_doi(doi if isinstance(doi, str) else None)) is not None:
        return "https://doi.org/" + quote(norm, safe="/:;()._-")
    if (norm := normalize_pmid(pmid if isinstance(pmid, (str, int)) else None)) is not None:
        return f"https://pubmed.ncbi.nlm.nih.gov/{norm}/"
    if (norm := normalize_pmcid(pmcid if isinstance(pmcid, (str, int)) else None)) is not None:
        return f"https://pmc.ncbi.nlm.nih.gov/articles/{norm}/"
    return None


def format_authors(authors: object, shown: int = 3) -> str:
    """``A, B, C, et al.`` from a list of names (the first ``shown`` only)."""
    names = [clean(a, 120) for a in (authors or []) if clean(a)] if isinstance(authors, (list, tuple)) else []
    if len(names) > shown:
        return ", ".join(names[:shown]) + ", et al."
    return ", ".join(names)


def badges_for(publication_types: object, is_retracted: object) -> tuple[str, ...]:
    """Badge labels, in a fixed order; ``Retracted`` first whenever it applies."""
    found: set[str] = set()
    retracted = bool(is_retracted)
    types = publication_types if isinstance(publication_types, (list, tuple)) else []
    for raw in types:
        key = re.sub(r"[\s_-]+", " ", clean(raw).lower())
        if key == "retracted publication":
            retracted = True
        elif key in _BADGES:
            found.add(_BADGES[key])
    ordered = tuple(label for label in BADGE_ORDER if label in found)
    return ((RETRACTED,) if retracted else ()) + ordered


def source_label(source: str) -> str:
    return SOURCE_LABELS.get(source, clean(source, 40))


def _sources_in_order(sources: Sequence[str]) -> list[str]:
    known = [s for s in SOURCE_LABELS if s in sources]
    return known + sorted(s for s in sources if s not in SOURCE_LABELS)


def week_of(snapshot_date: dt.date) -> dt.date:
    """The Monday of ``snapshot_date``'s ISO week."""
    return snapshot_date - dt.timedelta(days=snapshot_date.weekday())


def idempotency_key(review_id: str, snapshot_date: dt.date, work_ids: Sequence[str],
                    events: Sequence[str] = ()) -> str:
    """sha256 over the review, the snapshot date and the *sets* of work ids and events (order-free).

    Without events the body is exactly the one earlier versions hashed, so a digest
    that was already delivered keeps its key (and is not sent again) after an upgrade.
    """
    content: dict[str, Any] = {"review": review_id, "snapshot_date": snapshot_date.isoformat(),
                               "works": sorted(set(work_ids))}
    if events:
        content["events"] = sorted(set(events))
    body = json.dumps(content, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


# -- building -------------------------------------------------------------------
def likely_relevant_threshold() -> float:
    """The score from which a work is "Likely relevant" (read at call time, so tests can patch it)."""
    return float(getattr(settings, "LIKELY_RELEVANT_THRESHOLD", DEFAULT_LIKELY_RELEVANT_THRESHOLD))


def _relevance(value: object) -> float | None:
    """A score in [0, 1] rounded to 4 places (float32 storage turns 0.35 into 0.34999…), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    score = float(value)
    if not math.isfinite(score):
        return None
    return round(min(max(score, 0.0), 1.0), 4)


_PMID_ID = re.compile(r"(?:pmid:\s*)?\d{1,10}", re.IGNORECASE)
_PMCID_ID = re.compile(r"(?:pmcid:\s*)?pmc\d{1,10}", re.IGNORECASE)


def id_url(ident: object) -> str | None:
    """doi.org for a DOI, PubMed for a bare PMID, PMC for a PMCID; None for anything else.

    Stricter than :func:`work_url`: a notice id may be free text ("J Foo. 2020/123"),
    whose trailing number must not become a PubMed link.
    """
    if not isinstance(ident, str):
        return None
    text = ident.strip()
    if normalize_doi(text) is not None:
        return work_url(text, None, None)
    if _PMID_ID.fullmatch(text):
        return work_url(None, text, None)
    if _PMCID_ID.fullmatch(text):
        return work_url(None, None, text)
    return None


def to_item(row: Mapping[str, Any]) -> DigestItem:
    """A snapshot row (``CITING_WORKS_SCHEMA`` columns) as a :class:`DigestItem`."""
    pub_date = as_date(row.get("publication_date"))
    year = row.get("publication_year")
    if not isinstance(year, int) or isinstance(year, bool):
        year = pub_date.year if pub_date else None
    sources = row.get("sources") if isinstance(row.get("sources"), (list, tuple)) else []
    relevance = _relevance(row.get("relevance"))
    return DigestItem(
        work_id=str(row.get("work_id") or ""),
        title=clean(row.get("title"), TITLE_LIMIT) or "(untitled)",
        url=work_url(row.get("doi"), row.get("pmid"), row.get("pmcid")),
        authors=format_authors(row.get("authors")),
        venue=clean(row.get("journal_abbrev") or row.get("journal"), 200),
        year=year,
        publication_date=pub_date,
        badges=badges_for(row.get("publication_types"), row.get("is_retracted")),
        found_by=tuple(source_label(s) for s in _sources_in_order([str(s) for s in sources if s])),
        relevance=relevance,
        reason=clean(row.get("relevance_reason"), REASON_LIMIT) if relevance is not None else "",
    )


def _date_key(item: DigestItem) -> tuple[int, int]:
    when = item.publication_date or (dt.date(item.year, 1, 1) if item.year and 0 < item.year < 10000 else None)
    return (-(when.toordinal() if when else 0), 0 if when else 1)


def _newest_first(items: list[DigestItem]) -> list[DigestItem]:
    return sorted(items, key=lambda item: (*_date_key(item), item.work_id))


def by_relevance(items: list[DigestItem]) -> list[DigestItem]:
    """Highest relevance first, unscored last; then newest first (all unscored: newest first)."""
    def key(item: DigestItem) -> tuple[int, float, int, int, str]:
        unscored = item.relevance is None
        return (int(unscored), -(item.relevance or 0.0), *_date_key(item), item.work_id)
    return sorted(items, key=key)


def _unique(items: list[DigestItem]) -> list[DigestItem]:
    """The first item per work id (rows without one are all kept)."""
    seen: set[str] = set()
    out = []
    for item in items:
        if item.work_id and item.work_id in seen:
            continue
        seen.add(item.work_id)
        out.append(item)
    return out


def _preprint_links(row: Mapping[str, Any]) -> tuple[Link, ...]:
    """The row's preprint versions (``versions`` entries of kind ``preprint``) other than itself."""
    own = normalize_doi(row.get("doi") if isinstance(row.get("doi"), str) else None)
    versions = row.get("versions") if isinstance(row.get("versions"), (list, tuple)) else []
    out: list[Link] = []
    for version in versions:
        if not isinstance(version, Mapping) or version.get("kind") != "preprint":
            continue
        ident = clean(version.get("id"), 200)
        doi = normalize_doi(ident)
        shown = doi or ident
        if not ident or (own is not None and doi == own) or any(link.target == shown for link in out):
            continue
        out.append(Link("Preprint", shown, id_url(ident)))
    return tuple(out)


def _notice_links(row: Mapping[str, Any], kinds: Sequence[str]) -> tuple[Link, ...]:
    """``update_notices`` of ``kinds`` that name their notice (``retraction:<id>``), in ``kinds`` order."""
    notices = row.get("update_notices") if isinstance(row.get("update_notices"), (list, tuple)) else []
    found: list[tuple[int, Link]] = []
    for entry in notices:
        if not isinstance(entry, str):
            continue
        kind, _, ident = entry.partition(":")
        kind, ident = kind.strip().lower(), clean(ident, 200)
        if kind not in kinds or not ident:
            continue
        doi = normalize_doi(ident)
        link = Link(NOTICE_LABELS[kind], doi or ident, id_url(ident))
        if all(link != other for _, other in found):
            found.append((kinds.index(kind), link))
    return tuple(link for _, link in sorted(found, key=lambda pair: pair[0]))


def included_items(rows: Sequence[Mapping[str, Any]]) -> list[DigestItem]:
    """The included studies with new notices: retracted first, each with its notices linked."""
    items = []
    for row in rows:
        item = to_item(row)
        kinds = set(row.get("reference_events") or [])
        badges = item.badges
        if "reference_retracted" in kinds or row.get("is_retracted"):
            badges = _with_badge(badges, RETRACTED)
        if kinds & {"reference_corrected", "reference_concern"}:
            badges = _with_badge(badges, CORRECTED)
        items.append(replace(item, badges=badges, reason="", found_by=(),
                             notices=_notice_links(row, ("retraction", "correction", "expression_of_concern"))))
    return sorted(_unique(items), key=lambda item: (not item.retracted, item.work_id))


def _with_badge(badges: tuple[str, ...], badge: str) -> tuple[str, ...]:
    """``badges`` with ``badge`` added: Retracted first, then Corrected, then the type badges."""
    if badge in badges:
        return badges
    if badge == RETRACTED:
        return (RETRACTED, *badges)
    return (*[b for b in badges if b == RETRACTED], badge, *[b for b in badges if b != RETRACTED])


def _update_items(retracted: Sequence[Mapping[str, Any]], corrected: Sequence[Mapping[str, Any]],
                  announced: Mapping[str, object]) -> list[DigestItem]:
    """One entry per retracted or corrected work: flagged retractions, other retractions, then corrections."""
    corrected_rows = {str(row.get("work_id") or ""): row for row in corrected}
    retracted_ids = {str(row.get("work_id") or "") for row in retracted} - {""}
    entries: list[DigestItem] = []
    for row in retracted:
        item = to_item(row)
        also_corrected = bool(item.work_id) and item.work_id in corrected_rows
        kinds = ("retraction", "correction") if also_corrected else ("retraction",)
        badges = _with_badge(item.badges, RETRACTED)
        if also_corrected:
            badges = _with_badge(badges, CORRECTED)
        flagged = bool(item.work_id) and item.work_id in announced
        entries.append(replace(item, badges=badges, notices=_notice_links(row, kinds), flagged=flagged, reason="",
                               announced=as_date(announced.get(item.work_id)) if flagged else None))
    for row in corrected:
        item = to_item(row)
        if item.work_id in retracted_ids:
            continue
        entries.append(replace(item, badges=_with_badge(item.badges, CORRECTED), reason="",
                               notices=_notice_links(row, ("correction",))))
    entries = _unique(entries)
    return sorted(entries, key=lambda item: (not item.flagged, not item.retracted, *_date_key(item), item.work_id))


def _event_ids(kind: str, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    return {f"{kind}:{row.get('work_id')}" for row in rows if row.get("work_id")}


def coverage_line(coverage: Mapping[str, int | None], union: int | None) -> str:
    """``PubMed 212 · Europe PMC 260 · OpenAlex 301 · union 334``."""
    parts = [f"{source_label(s)} {coverage[s] if coverage[s] is not None else 'n/a'}"
             for s in _sources_in_order(list(coverage))]
    if union is not None:
        parts.append(f"union {union}")
    return " · ".join(parts)


def _links(links: Mapping[str, object] | Sequence[tuple[str, object]] | None) -> list[Link]:
    pairs = links.items() if isinstance(links, Mapping) else (links or [])
    out = []
    for label, target in pairs:
        if target is None or target == "":
            continue
        out.append(Link(clean(label, 80), clean(target, 500), safe_url(str(target))))
    return out


def review_url(review: ReviewConfig) -> str | None:
    return work_url(review.doi, review.pmid, review.pmcid)


def build_digest(review: ReviewConfig, snapshot_date: dt.date | str, new_works: Sequence[Mapping[str, Any]], *,
                 total_works: int, coverage: Mapping[str, int | None] | None = None, union: int | None = None,
                 warnings: Sequence[str] = (),
                 links: Mapping[str, object] | Sequence[tuple[str, object]] | None = None,
                 baseline: bool = False,
                 published: Sequence[Mapping[str, Any]] = (),
                 retracted: Sequence[Mapping[str, Any]] = (),
                 corrected: Sequence[Mapping[str, Any]] = (),
                 previously_announced: Mapping[str, dt.date | str] | None = None,
                 key: str | None = None, included: Sequence[Mapping[str, Any]] = ()) -> Digest:
    """Render the digest of ``new_works`` (all works on a ``baseline`` run) and this window's events.

    ``published``, ``retracted`` and ``corrected`` are snapshot rows of the works with a
    ``preprint_published``, ``retracted`` or ``corrected`` change in the window;
    ``previously_announced`` maps a work id to the date of the digest that announced
    it, and a retraction of such a work is flagged at the top. ``key`` is the digest's
    identity in the delivery ledger (by default a hash of its content).
    """
    if isinstance(snapshot_date, str):
        snapshot_date = dt.date.fromisoformat(snapshot_date)
    announced = previously_announced or {}
    threshold = likely_relevant_threshold()
    items = by_relevance([to_item(row) for row in new_works])
    work_ids = tuple(sorted({item.work_id for item in items if item.work_id}))
    new_ids = set(work_ids)
    # A work new in this window already links its published version; it is not listed twice.
    # Relevance reasons belong to the triage of new papers; events are shown whatever their score.
    published_items = _newest_first(_unique([replace(to_item(row), preprints=_preprint_links(row), reason="")
                                             for row in published if str(row.get("work_id") or "") not in new_ids]))
    updates = _update_items(retracted, corrected, announced)
    flagged = [item for item in updates if item.flagged]
    studies = included_items(included)
    events = tuple(sorted(_event_ids("published", published) | _event_ids("retracted", retracted)
                          | _event_ids("corrected", corrected)))
    key = key or idempotency_key(review.id, snapshot_date, work_ids, events)
    count = len(items)
    shown = items[: settings.BASELINE_DIGEST_ITEMS] if baseline else items
    split = any(item.relevance is not None for item in items)
    likely = [i for i in shown if i.relevance is not None and i.relevance >= threshold] if split else []
    others = shown[len(likely):] if split else []  # by_relevance puts the likely ones first
    is_empty = not (count or published_items or updates or studies)
    union = total_works if union is None else union
    title = clean(review.title, 200)
    week = week_of(snapshot_date).isoformat()

    n_retracted = sum(1 for item in updates if item.retracted)
    n_corrected = len(updates) - n_retracted
    n_studies_retracted = sum(1 for item in studies if item.retracted)
    event_parts = [part for part in (
        _plural(n_studies_retracted, "included study retracted", "included studies retracted")
        if n_studies_retracted else "",
        _plural(len(studies) - n_studies_retracted, "included study corrected", "included studies corrected")
        if len(studies) > n_studies_retracted else "",
        f"{n_retracted} retracted" if n_retracted else "",
        f"{n_corrected} corrected" if n_corrected else "",
        f"{len(published_items)} now published" if published_items else "") if part]
    if baseline:
        head = f"now tracking {_plural(total_works, 'citing paper', 'citing papers')}"
        intro = f"This is the first run for this review: {_plural(total_works, 'work cites', 'works cite')} it."
        if count > len(shown):
            intro += (f" The {len(shown)} most relevant (then most recent) are listed below;" if split else
                      f" The {len(shown)} most recent are listed below;") + " the full list is in the snapshot."
        elif count:
            intro += " They are listed below."
    elif count:
        head = _plural(count, "new citing paper", "new citing papers")
        intro = (f"{_plural(count, 'new paper cites', 'new papers cite')} this review since the last run "
                 f"({_plural(total_works, 'citing work', 'citing works')} in total).")
    else:
        head = "no new citing papers"
        intro = (f"No new papers cite this review since the last run "
                 f"({_plural(total_works, 'citing work', 'citing works')} in total).")
    subject = f"{title}: {', '.join([head, *event_parts])} ({'baseline, ' if baseline else ''}week of {week})"

    context = {
        "subject": subject,
        "review_id": review.id,
        "review_title": title,
        "review_url": review_url(review),
        "snapshot_date": snapshot_date.isoformat(),
        "week": week,
        "intro": intro,
        "new_heading": "Citing papers" if baseline else "New citing papers",
        "items": shown,
        "split": split,
        "likely": likely,
        "others": others,
        "threshold": f"{threshold:g}",
        "more": count - len(shown),
        "published": published_items,
        "updates": updates,
        "flagged": flagged,
        "included": studies,
        "included_heading": (f"{_plural(len(studies), 'study', 'studies')} included in this review "
                             f"{'was' if len(studies) == 1 else 'were'} retracted or corrected"),
        "flag_heading": (f"{_plural(len(flagged), 'retraction', 'retractions')} of "
                         f"{'a paper' if len(flagged) == 1 else 'papers'} you were told about"),
        "coverage": coverage_line(coverage or {}, union),
        "warnings": [w for w in (clean(w, 1000) for w in warnings) if w],
        "links": _links(links),
        "baseline": baseline,
        "is_empty": is_empty,
        "tool": f"{settings.TOOL_NAME} {settings.TOOL_VERSION}",
    }
    env = _environment()
    text = env.get_template("digest.txt.j2").render(**context)
    html = env.get_template("digest.html.j2").render(**context)
    digest = Digest(
        review_id=review.id, review_title=title, snapshot_date=snapshot_date, baseline=baseline,
        subject=subject, text=text, html=html, slack_payload=slack_payload(context, count),
        item_count=count, shown_count=len(shown), idempotency_key=key, is_empty=is_empty,
        work_ids=work_ids, recipients=tuple(review.digest.email), events=events,
        flagged_retractions=tuple(item.work_id for item in flagged),
    )
    log.info("Digest for %s on %s: %d new, %d shown, %d published, %d retracted, %d corrected "
             "(%d flagged), key %s", review.id, snapshot_date, count, len(shown), len(published_items),
             n_retracted, n_corrected, len(flagged), digest.key12)
    return digest


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


