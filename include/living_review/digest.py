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
:mod:`include.living_review.delivery`'s job.

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
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2

from include.living_review import settings
from include.living_review.normalize import as_date
from include.living_review.config import ReviewConfig
from include.living_review.delivery import atomic_write
from include.living_review.ids import normalize_doi, normalize_pmcid, normalize_pmid

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
RETRACTED = "Retracted"
CORRECTED = "Corrected"
DEFAULT_LIKELY_RELEVANT_THRESHOLD = 0.35  # used only when settings has no LIKELY_RELEVANT_THRESHOLD
REASON_LIMIT = 300
NOTICE_LABELS = {"retraction": "Retraction notice", "correction": "Correction notice"}

TITLE_LIMIT = 500
SLACK_TITLE_LIMIT = 300
SLACK_HEADER_LIMIT = 150  # Block Kit header text maximum
SLACK_SECTION_LIMIT = 3000  # Block Kit section text maximum
SLACK_MAX_WARNINGS = 10

# C0/C1 controls except tab/newline/CR (whitespace is collapsed separately), lone
# surrogates (they cannot be encoded), and bidi overrides/isolates, which can make a
# title display as different text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
_SPACE = re.compile(r"\s+")
_ZWSP = "\u200b"
_MRKDWN_EMPHASIS = re.compile(r"[*_~`]")
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f\"'<>\\^`{|}]")


@dataclass(frozen=True)
class Link:
    label: str
    target: str
    url: str | None  # the target when it is a safe http(s) URL, else None (shown as text)


@dataclass(frozen=True)
class DigestItem:
    """One paper as the templates show it; every string is already cleaned (not escaped)."""

    work_id: str
    title: str
    url: str | None
    authors: str
    venue: str
    year: int | None
    publication_date: dt.date | None
    badges: tuple[str, ...]
    found_by: tuple[str, ...]
    relevance: float | None = None
    reason: str = ""  # the scorer's relevance_reason, cleaned
    preprints: tuple[Link, ...] = ()  # "Now published": the preprint version(s)
    notices: tuple[Link, ...] = ()  # "Retracted or corrected": the notices, linked when their id is a DOI/PMID
    flagged: bool = False  # retracted after an earlier digest announced it
    announced: dt.date | None = None  # the date of that digest, when known

    @property
    def announced_note(self) -> str:
        when = f"the digest of {self.announced.isoformat()}" if self.announced else "an earlier digest"
        return f"announced in {when}"

    @property
    def retracted(self) -> bool:
        return RETRACTED in self.badges

    @property
    def citation(self) -> str:
        """``Journal Abbrev 2025`` (or whichever parts exist)."""
        return " ".join(part for part in (self.venue, str(self.year) if self.year else "") if part)


@dataclass(frozen=True)
class Digest:
    """A rendered digest, ready for :func:`build_email`, Slack or :func:`write_outbox`."""

    review_id: str
    review_title: str
    snapshot_date: dt.date
    baseline: bool
    subject: str
    text: str
    html: str
    slack_payload: dict[str, Any]
    item_count: int  # new works in this digest (all of them, not only those shown)
    shown_count: int
    idempotency_key: str
    is_empty: bool
    work_ids: tuple[str, ...] = ()  # the new works
    recipients: tuple[str, ...] = ()
    # Change-feed events in the key: "published:<id>", "retracted:<id>", "corrected:<id>".
    events: tuple[str, ...] = ()
    flagged_retractions: tuple[str, ...] = ()  # work ids retracted after an earlier digest announced them

    @property
    def key12(self) -> str:
        return self.idempotency_key[:12]


# -- text helpers ---------------------------------------------------------------
def clean(value: object, limit: int | None = None) -> str:
    """Display text: controls stripped, whitespace collapsed, optionally cut with an ellipsis."""
    if value is None:
        return ""
    text = _SPACE.sub(" ", _CONTROL.sub("", str(value))).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def slack_escape(text: str) -> str:
    """Escape Slack's control characters; see the module docstring for the emphasis fence."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MRKDWN_EMPHASIS.sub(lambda m: f"{_ZWSP}{m.group(0)}{_ZWSP}", text)


def _slack_url(url: str) -> str:
    # safe_url already percent-encoded | < >; & is the one entity Slack wants in URLs.
    return url.replace("&", "&amp;")


def safe_url(value: object) -> str | None:
    """``value`` as an absolute http(s) URL with unsafe characters percent-encoded, else None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    if _CONTROL.search(text) or re.search(r"\s", text):
        return None
    return _URL_UNSAFE.sub(lambda m: quote(m.group(0), safe=""), text)


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
                 previously_announced: Mapping[str, dt.date | str] | None = None) -> Digest:
    """Render the digest of ``new_works`` (all works on a ``baseline`` run) and this window's events.

    ``published``, ``retracted`` and ``corrected`` are snapshot rows of the works with a
    ``preprint_published``, ``retracted`` or ``corrected`` change in the window;
    ``previously_announced`` maps a work id to the date of the digest that announced
    it, and a retraction of such a work is flagged at the top.
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
    events = tuple(sorted(_event_ids("published", published) | _event_ids("retracted", retracted)
                          | _event_ids("corrected", corrected)))
    key = idempotency_key(review.id, snapshot_date, work_ids, events)
    count = len(items)
    shown = items[: settings.BASELINE_DIGEST_ITEMS] if baseline else items
    split = any(item.relevance is not None for item in items)
    likely = [i for i in shown if i.relevance is not None and i.relevance >= threshold] if split else []
    others = shown[len(likely):] if split else []  # by_relevance puts the likely ones first
    is_empty = not (count or published_items or updates)
    union = total_works if union is None else union
    title = clean(review.title, 200)
    week = week_of(snapshot_date).isoformat()

    n_retracted = sum(1 for item in updates if item.retracted)
    n_corrected = len(updates) - n_retracted
    event_parts = [part for part in (
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
        subject=subject, text=text, html=html, slack_payload=_slack_payload(context, count),
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


# -- Slack ----------------------------------------------------------------------
def _slack_link(url: str | None, text: str) -> str:
    return f"<{_slack_url(url)}|{text}>" if url else text


def _slack_badge(badge: str) -> str:
    if badge == RETRACTED:
        return ":red_circle: *Retracted*"
    if badge == CORRECTED:
        return ":large_orange_circle: *Corrected*"
    return f"`{badge}`"


def _slack_item(item: DigestItem) -> str:
    title = slack_escape(clean(item.title, SLACK_TITLE_LIMIT))
    lines = [f"*<{_slack_url(item.url)}|{title}>*" if item.url else f"*{title}*"]
    meta = " · ".join(slack_escape(part) for part in (item.authors, item.citation) if part)
    if meta:
        lines.append(meta)
    tags = [_slack_badge(b) for b in item.badges]
    if item.found_by:
        tags.append("found by " + ", ".join(slack_escape(s) for s in item.found_by))
    if tags:
        lines.append("  ".join(tags))
    for link in (*item.preprints, *item.notices):
        lines.append(f"{slack_escape(link.label)}: {_slack_link(link.url, slack_escape(link.target))}")
    if item.flagged:
        lines.append(f":rotating_light: {slack_escape(item.announced_note)}")
    if item.reason:
        lines.append(f"why: {slack_escape(item.reason)}")
    return _fit_section("\n".join(lines))


def _slack_compact(item: DigestItem) -> str:
    """One line: the linked title, journal and year, and a Retracted mark when it applies."""
    title = slack_escape(clean(item.title, SLACK_TITLE_LIMIT))
    parts = [_slack_link(item.url, title)]
    if item.citation:
        parts.append(slack_escape(item.citation))
    line = "• " + " · ".join(parts)
    return line + ("  " + _slack_badge(RETRACTED) if item.retracted else "")


def _slack_flag(item: DigestItem) -> str:
    title = slack_escape(clean(item.title, SLACK_TITLE_LIMIT))
    return f"• *Retracted:* {_slack_link(item.url, title)} — {slack_escape(item.announced_note)}"


def _fit_section(text: str) -> str:
    return text if len(text) <= SLACK_SECTION_LIMIT else text[: SLACK_SECTION_LIMIT - 1] + "…"


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _fit_section(text)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _fit_section(text)}]}


def _heading(text: str) -> list[dict[str, Any]]:
    return [{"type": "divider"}, {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                                             "text": _header_text(text)}}]


def _packed(lines: Sequence[str], first: str = "") -> list[dict[str, Any]]:
    """Sections of whole lines, each within the section limit (so no link is ever cut)."""
    blocks, current = [], first
    for line in lines:
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > SLACK_SECTION_LIMIT and current:
            blocks.append(_mrkdwn(current))
            candidate = line
        current = candidate
    if current:
        blocks.append(_mrkdwn(current))
    return blocks


def _more(count: int, what: str = "") -> list[dict[str, Any]]:
    if count <= 0:
        return []
    return [_context(f"and {count} more{what} (see the email digest or the snapshot)")]


def _slack_payload(context: Mapping[str, Any], count: int) -> dict[str, Any]:
    """A Block Kit message for an incoming webhook (``text`` is the notification fallback).

    At most ``SLACK_MAX_ITEMS`` papers over all sections; events are rarer and weigh more
    than one more citer, so retractions and corrections get the budget first, then
    "Now published", then the new papers in digest order.
    """
    budget = settings.SLACK_MAX_ITEMS

    def take(seq: Sequence[DigestItem]) -> list[DigestItem]:
        nonlocal budget
        taken = list(seq[: max(budget, 0)])
        budget -= len(taken)
        return taken

    updates, published, shown = take(context["updates"]), take(context["published"]), take(context["items"])
    review = slack_escape(context["review_title"])
    review_link = f"<{_slack_url(context['review_url'])}|{review}>" if context["review_url"] else review
    blocks: list[dict[str, Any]] = []
    flagged: list[DigestItem] = context["flagged"]
    if flagged:
        blocks += _packed([_slack_flag(item) for item in flagged],
                          first=f":rotating_light: *{slack_escape(context['flag_heading'])}*")
    blocks += [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": _header_text(context["subject"])}},
        _mrkdwn(f"{slack_escape(context['intro'])}\nReview: {review_link}"),
    ]
    if count:
        blocks += _heading(context["new_heading"])
        if context["split"]:
            likely = shown[: len(context["likely"])]
            others = shown[len(likely):]
            if likely:
                blocks.append(_context(f"*Likely relevant* (relevance ≥ {context['threshold']})"))
                blocks += [_mrkdwn(_slack_item(item)) for item in likely]
            if others:
                blocks.append(_context("*Other citing papers*"))
                blocks += _packed([_slack_compact(item) for item in others])
        else:
            blocks += [_mrkdwn(_slack_item(item)) for item in shown]
        blocks += _more(count - len(shown))
    if context["published"]:
        blocks += _heading("Now published")
        blocks += [_mrkdwn(_slack_item(item)) for item in published]
        blocks += _more(len(context["published"]) - len(published), " now published")
    if context["updates"]:
        blocks += _heading("Retracted or corrected")
        blocks += [_mrkdwn(_slack_item(item)) for item in updates]
        blocks += _more(len(context["updates"]) - len(updates), " retracted or corrected")
    blocks.append(_context(f"Coverage: {slack_escape(context['coverage'])} · snapshot {context['snapshot_date']}"))
    warnings: list[str] = context["warnings"]
    if warnings:
        lines = [f"• {slack_escape(w)}" for w in warnings[:SLACK_MAX_WARNINGS]]
        if len(warnings) > SLACK_MAX_WARNINGS:
            lines.append(f"• and {len(warnings) - SLACK_MAX_WARNINGS} more")
        blocks.append(_mrkdwn(":warning: *Warnings*\n" + "\n".join(lines)))
    links = [f"<{_slack_url(link.url)}|{slack_escape(link.label)}>" if link.url
             else f"{slack_escape(link.label)}: {slack_escape(link.target)}" for link in context["links"]]
    if links:
        blocks.append(_context(" · ".join(links)))
    return {"text": slack_escape(context["subject"]), "blocks": blocks}


def _entities(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _header_text(subject: str) -> str:
    """The subject for a plain_text header: entities escaped (Slack decodes them), cut to 150."""
    limit = SLACK_HEADER_LIMIT
    text = _entities(subject)
    while len(text) > SLACK_HEADER_LIMIT:
        limit -= 5  # cut the raw text, never the middle of an entity
        text = _entities(clean(subject, limit))
    return text


# -- email and outbox -----------------------------------------------------------
def message_id(digest: Digest, sender: str = DEFAULT_SENDER) -> str:
    """A Message-ID derived from the idempotency key, so a duplicate is recognisable."""
    domain = parseaddr(sender)[1].rpartition("@")[2]
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", domain or ""):
        domain = "living-review.invalid"
    return f"<digest-{digest.idempotency_key}@{domain}>"


def build_email(digest: Digest, *, sender: str, recipients: Sequence[str],
                date: dt.datetime | None = None) -> EmailMessage:
    """multipart/alternative (text, then HTML) with a key-derived Message-ID and ``X-Living-Review-Digest``."""
    message = EmailMessage()
    message["Subject"] = digest.subject
    message["From"] = sender
    if recipients:
        message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(date or dt.datetime.now(dt.UTC))
    message["Message-ID"] = message_id(digest, sender)
    message[DIGEST_HEADER] = digest.idempotency_key
    # RFC 3834: keeps vacation auto-responders from replying to the digest.
    message["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps UTF-8 bodies 7-bit clean for servers without 8BITMIME.
    message.set_content(digest.text, cte="quoted-printable")
    message.add_alternative(digest.html, subtype="html", cte="quoted-printable")
    # Bodies are encoded by now; from here the limit only affects header folding. At 78
    # the one-token key header is folded onto a continuation line, which parsers
    # (CPython's among them) read back with a leading space, breaking exact matching.
    message.policy = message.policy.clone(max_line_length=998)
    return message


def outbox_paths(digest: Digest, outbox_dir: str | Path | Any) -> tuple[Any, Any]:
    """The two outbox files: local ``Path`` objects, or ``UPath`` ones on an object store."""
    from include.living_review.storage import data_path

    stem = f"{digest.snapshot_date.isoformat()}-{digest.key12}"
    folder = data_path(outbox_dir) / digest.review_id
    return folder / f"{stem}.eml", folder / f"{stem}.json"


def write_outbox(digest: Digest, outbox_dir: str | Path | Any, *, sender: str = DEFAULT_SENDER,
                 recipients: Sequence[str] | None = None) -> list[Any]:
    """Write ``<outbox>/<review>/<date>-<key12>.eml`` and ``.json`` (the Slack payload) once.

    A file that already exists is left alone: the name carries the key, so it holds
    this very digest, and a rerun then neither rewrites nor duplicates it.
    """
    eml, payload = outbox_paths(digest, outbox_dir)
    if not eml.exists():
        to = digest.recipients if recipients is None else recipients
        atomic_write(eml, build_email(digest, sender=sender, recipients=to).as_bytes())
        log.info("Wrote digest email to the outbox: %s", eml)
    if not payload.exists():
        atomic_write(payload, (json.dumps(digest.slack_payload, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
        log.info("Wrote digest Slack payload to the outbox: %s", payload)
    return [eml, payload]
