"""The digest as a Slack Block Kit message for an incoming webhook.

Slack ``mrkdwn`` has no escape character; see :func:`include.living_review.digest.content.slack_escape`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from include.living_review import settings
from include.living_review.digest.items import (
    CORRECTED,
    RETRACTED,
    SLACK_HEADER_LIMIT,
    SLACK_MAX_WARNINGS,
    SLACK_SECTION_LIMIT,
    SLACK_TITLE_LIMIT,
    DigestItem,
    _slack_url,
    clean,
    slack_escape,
)


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


def slack_payload(context: Mapping[str, Any], count: int) -> dict[str, Any]:
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
    included: list[DigestItem] = context.get("included") or []
    if included:  # the review's own included studies come before everything else
        lines = []
        for item in included:
            title = slack_escape(clean(item.title, SLACK_TITLE_LIMIT))
            notices = "; ".join(f"{slack_escape(link.label)}: {_slack_link(link.url, slack_escape(link.target))}"
                                for link in item.notices)
            lines.append(f"• *{'Retracted' if item.retracted else 'Corrected'} (an included study):* "
                         f"{_slack_link(item.url, title)}" + (f" — {notices}" if notices else ""))
        blocks += _packed(lines, first=f":rotating_light: *{slack_escape(context['included_heading'])}*")
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
