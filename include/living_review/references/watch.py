"""The references step: the review's included studies, their metadata, and what changed.

Reference lists come from PubMed (the review's ``ReferenceList``), Crossref (its
deposited ``reference``), OpenAlex (``referenced_works``) and Europe PMC
(``/MED/<pmid>/references``), plus the config's ``included_studies`` ids (alone, with
``included_studies_only``). A list is read once per source: a published review's
reference list does not change, so later runs read only a source whose list was not
had yet. The studies are merged with the citing works' id rules (``merge_works``).

Their status costs near nothing after the first run: known studies are *probed*
(PubMed ``esearch`` by modification date, Crossref ``from-update-date``, as for the
citing works), and only the changed or new ones are fetched.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from include.living_review.merge.works import merge_works
from include.living_review.records import INCLUDED_STUDIES_SCHEMA, Work
from include.living_review.run import RunContext
from include.living_review.sources.base import SourceSkipped, collector_paused
from include.living_review.storage import (
    Layout,
    base_commit,
    committed_dates,
    committed_manifest,
    read_parquet,
    write_json_atomic,
    write_parquet_atomic,
)

log = logging.getLogger(__name__)
REFERENCE_SOURCES = ("pubmed", "crossref", "openalex", "europepmc")
# A notice kind on an included study -> the event it makes.
REFERENCE_EVENT_KINDS = {"retraction": "reference_retracted", "correction": "reference_corrected",
                         "expression_of_concern": "reference_concern"}


def committed_included(layout: Layout | None) -> list[dict[str, Any]]:
    """The included studies a commit published (none before the first run, or for old commits)."""
    if layout is None or not layout.references_file.exists():
        return []
    return read_parquet(layout.references_file).to_pylist()


def last_ok_references(layout: Layout) -> tuple[dict[str, Any], dt.date | None]:
    """The references stats of the latest earlier commit where the watch succeeded, and where its probe ended.

    A run whose ``fetch_references`` failed keeps the previous list but probed nothing, so
    the next probe starts where the last good one ended (a change made while the watch was
    down is still found) and the lists that run had read are not read again.
    """
    for day in reversed([d for d in committed_dates(layout.data_dir, layout.review_id) if d < layout.snapshot_date]):
        stats = (committed_manifest(layout.on(day)) or {}).get("references") or {}
        if stats.get("status") == "ok":
            until = (stats.get("window") or {}).get("until")
            return stats, dt.date.fromisoformat(until) if until else day
    return {}, None


def _config_records(review_ids: list[str]) -> list[Work]:
    records = []
    for ident in review_ids:
        kind, _, value = ident.partition(":")
        records.append(Work(title=None, doi=value if kind == "doi" else None, pmid=value if kind == "pmid" else None,
                            sources=["config"], source_ids={"config": ident}))
    return records


def _list_references(ctx: RunContext, clients: Mapping[str, Any], already: set[str]) -> tuple[list[Work], dict]:
    review = ctx.review
    readers = {
        "pubmed": (review.pmid, lambda c: c.reference_list(review.pmid)),
        "crossref": (review.doi, lambda c: c.reference_list(review.doi)),
        "openalex": (review.doi or review.pmid, lambda c: c.reference_list(review)),
        "europepmc": (review.pmid, lambda c: c.reference_list(review.pmid)),
    }
    records: list[Work] = []
    listed: dict[str, Any] = {}
    for source, (needs, read) in readers.items():
        client = clients.get(source)
        if client is None or not needs or source in already:
            continue
        try:
            refs = read(client)
        except SourceSkipped as exc:
            listed[source] = {"status": "skipped", "reason": str(exc)}
            continue
        except Exception as exc:  # noqa: BLE001 - one list failing leaves the others (and next week)
            listed[source] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            log.warning("references: %s's reference list failed: %s", source, exc)
            continue
        for work in refs:
            work.sources = [source]
        listed[source] = {"status": "ok", "listed": len(refs)}
        records.extend(refs)
        log.info("references: %s lists %d references of %s", source, len(refs), review.id)
    return records, listed


def fetch_references(ctx: RunContext, clients: Mapping[str, Any]) -> dict[str, Any]:
    """Stage this run's included studies and what their status probes cost; see the module docstring."""
    review = ctx.review
    started = time.monotonic()
    base = base_commit(ctx.layout)
    previous = committed_included(base)
    base_stats, since = last_ok_references(ctx.layout) if base else ({}, None)
    had = {s for s, st in (base_stats.get("lists") or {}).items() if st.get("status") == "ok"}
    stats: dict[str, Any] = {"status": "ok", "lists": {s: st for s, st in (base_stats.get("lists") or {}).items()
                                                       if s in had}, "probe": {}}
    records: list[Work] = []
    if not review.included_studies_only:
        listed, lists = _list_references(ctx, clients, had)
        records.extend(listed)
        stats["lists"].update(lists)
    records.extend(_config_records(review.included_studies))
    # Every study ever listed stays watched: a list read once is not read again.
    known_pmids = {r["pmid"] for r in previous if r.get("pmid") and r.get("title")}
    known_dois = {r["doi"] for r in previous if r.get("doi") and r.get("title")}
    new_pmids = sorted({w.pmid for w in records if w.pmid} - known_pmids)
    new_dois = sorted({w.doi for w in records if w.doi} - known_dois)
    until = ctx.run_ts.date()
    if base is not None and since is None:  # no good watch yet (e.g. turned on later): from the last commit
        since = base.snapshot_date
    metadata: list[Work] = []
    pubmed, crossref = clients.get("pubmed"), clients.get("crossref")
    with collector_paused():
        if pubmed is not None:
            changed = pubmed.changed_since(known_pmids, since, until) if since and known_pmids else []
            if since and known_pmids:
                stats["probe"]["pubmed"] = {"known": len(known_pmids), "changed": len(changed)}
            from include.living_review.sources.pubmed import from_pubmed

            for page in pubmed.fetch_pages(sorted(set(new_pmids) | set(changed))):
                metadata.extend(from_pubmed(article) for article in page)
        if crossref is not None:
            if new_dois:
                works, _ = crossref.enrich(new_dois, lookup_missing=set())
                metadata.extend(works)
            if since and known_dois:
                changed_works, probe = crossref.changed_since(sorted(known_dois), since, until)
                metadata.extend(changed_works)
                stats["probe"]["crossref"] = {"known": probe["known"], "changed": probe["changed"]}
    for work in metadata:
        work.probe = True  # metadata of a study already listed; it lists nothing itself
    result = merge_works([*records, *metadata], [_as_previous(r) for r in previous])
    rows = []
    for row in result.works:
        old = next((p for p in previous if p["work_id"] == row["work_id"]), None)
        names = set(old.get("listed_by") or []) if old else set()
        names.update(s for s in row["sources"] if s in (*REFERENCE_SOURCES, "config"))
        rows.append({"work_id": row["work_id"], "doi": row["doi"], "pmid": row["pmid"], "pmcid": row["pmcid"],
                     "openalex_id": row["openalex_id"], "title": row["title"], "authors": row["authors"] or [],
                     "journal": row["journal"], "publication_year": row["publication_year"],
                     "is_retracted": bool(row["is_retracted"]), "update_notices": row["update_notices"] or [],
                     "sources": sorted(set(row["sources"] or []) | ({s for s in (old or {}).get("sources") or []})),
                     "listed_by": sorted(names),
                     "first_seen": (old or {}).get("first_seen") or ctx.run_ts})
    if review.included_studies_only:
        rows = [r for r in rows if "config" in r["listed_by"]]
    write_parquet_atomic(pa.Table.from_pylist(rows, schema=INCLUDED_STUDIES_SCHEMA), ctx.staging.references)
    requests = sum(getattr(getattr(c, "http", None), "log", None).count for c in clients.values()
                   if getattr(getattr(c, "http", None), "log", None) is not None)
    if since is not None:
        stats["window"] = {"since": since.isoformat(), "until": until.isoformat()}
    stats.update(studies=len(rows), retracted=sum(1 for r in rows if r["is_retracted"]), requests=requests,
                 fetched=len(metadata), seconds=round(time.monotonic() - started, 3))
    write_json_atomic(stats, ctx.staging.references_stats)
    log.info("references: %d included studies of %s (%d retracted), %d records fetched, %d requests",
             len(rows), review.id, stats["retracted"], len(metadata), requests)
    return stats


def _as_previous(row: dict[str, Any]) -> dict[str, Any]:
    """An included-studies row in the shape ``merge_works`` reads previous rows in."""
    return {**row, "source_ids": [], "last_reported": row.get("first_seen")}


def _notices(row: dict[str, Any], kind: str) -> set[str]:
    return {n for n in row.get("update_notices") or [] if n.split(":", 1)[0] == kind}


def reference_changes(previous: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New notices on included studies, as change-feed rows for the event log.

    A study is retracted once (one event, whatever number of sources name the notice);
    each new correction or expression of concern is an event of its own. On the first run
    every notice an included study already carries is new: a review should hear at once
    that one of its studies was retracted years ago.
    """
    before = {r["work_id"]: r for r in previous}

    def change(row: dict[str, Any], kind: str, subject: str, notices: list[str]) -> dict[str, Any]:
        return {"work_id": row["work_id"], "change": kind, "changed_fields": [], "title": row["title"],
                "doi": row["doi"], "detail": json.dumps({"subject": subject, "notices": notices,
                                                         "sources": row["sources"], "pmid": row["pmid"]})}

    changes = []
    for row in current:
        old = before.get(row["work_id"], {})
        retractions = sorted(_notices(row, "retraction"))
        if (row.get("is_retracted") or retractions) and not (old.get("is_retracted") or _notices(old, "retraction")):
            changes.append(change(row, "reference_retracted", "retraction", retractions))
        for kind, event in (("correction", "reference_corrected"), ("expression_of_concern", "reference_concern")):
            for notice in sorted(_notices(row, kind) - _notices(old, kind)):
                changes.append(change(row, event, notice, [notice]))
    return changes
