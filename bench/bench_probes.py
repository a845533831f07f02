"""Update-probe cost: what a week with nothing new costs for K known works (issue 13).

``python -m bench.bench_probes [--known 100,1000,10000] [--studies 40] [--changed 6] [--out FILE]``

For each K, in a fresh process with a private Airflow metadata DB, the real pipeline
DAG (``dag.test()``) runs three weeks against the local fakes:

1. the first run: K synthetic citing papers and a review with S included studies;
2. **nothing new and nothing changed**: every request is counted on the fakes' logs,
   per source and endpoint, and set against the target of issue 13: at most 1-2
   requests per source, plus ceil(K_pmid / 200) PubMed ``esearch`` and ceil(K_doi / 100)
   Crossref ``from-update-date`` probe requests, plus the same for the included
   studies (their own probe, in ``fetch_references``);
3. ``--changed`` known works change where only one database shows it (half a PubMed
   retraction notice, half a Crossref Retraction Watch ``updated-by``), and one
   included study is retracted: the probes must find every one, and the week costs
   the probes plus ``efetch`` of just the changed PMIDs.

The minimum is computed from the corpus (the ids the first snapshot holds), not from the
pipeline's own counts. The listing requests of the cited-by sources are reported apart:
none of these APIs can list only the citations added or changed since a date, so
listing the citers costs ceil(listed / page size) every week; above one page that is
above the 1-2 of the target, and the table says so.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_requests import build_corpus, cached_crossref, run_dag
from bench.common import airflow_env, private_airflow_home, remove_tree, run_child, write_json

LISTING = ("pubmed", "europepmc", "openalex", "opencitations", "semanticscholar")
SOURCES = (*LISTING, "crossref")
DEFAULT_KNOWN = (100, 1000, 10_000)


def review_id(known: int) -> str:
    return f"bench-probes-{known}"


def endpoint(source: str, request: Any) -> str:
    """Which kind of request this was, from the fake's log entry."""
    path = request.path.rstrip("/")
    if source == "pubmed":
        return path.rsplit("/", 1)[-1].removesuffix(".fcgi")  # elink, esearch, efetch
    if source == "crossref":
        if path != "/works":
            return "single"
        return "probe" if "from-update-date" in (request.param("filter") or "") else "list"
    if source == "openalex":
        if path != "/works":
            return "resolve"
        return "list" if "cites:" in (request.param("filter") or "") else "by_ids"
    if source == "europepmc":
        return "references" if path.endswith("/references") else "search"
    return "citations"


def counted(stack: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for source in SOURCES:
        by: dict[str, int] = {}
        for request in stack.fakes[source].requests:
            key = endpoint(source, request)
            by[key] = by.get(key, 0) + 1
        out[source] = by
    return out


def known_ids(data_dir: Path, rid: str, day: dt.date) -> dict[str, int]:
    """How many known ids each probe must cover: snapshot works (and included studies) with metadata."""
    import pyarrow.parquet as pq

    from include.living_review.storage import Layout

    layout = Layout.of(data_dir, rid, day)
    works = pq.read_table(layout.snapshot_file, columns=["doi", "pmid", "title"]).to_pylist()
    studies = pq.read_table(layout.references_file, columns=["doi", "pmid", "title"]).to_pylist()
    return {"works_pmid": sum(1 for r in works if r["pmid"] and r["title"]),
            "works_doi": sum(1 for r in works if r["doi"] and r["title"]),
            "studies_pmid": sum(1 for r in studies if r["pmid"] and r["title"]),
            "studies_doi": sum(1 for r in studies if r["doi"] and r["title"])}


def minimum(papers: list[Any], known: dict[str, int],
            changed_pmids: tuple[int, int] = (0, 0)) -> dict[str, dict[str, int]]:
    """The fewest requests per source and endpoint for a week in which nothing new cites the review.

    ``changed_pmids``: (citing works, included studies) whose PubMed record changed; each set is
    fetched by its own task (``fetch_pubmed``, ``fetch_references``), so each needs its own efetch.
    """
    from bench.bench_requests import lists
    from include.living_review import settings

    listed = {s: sum(1 for p in papers if lists(s, p)) for s in LISTING}
    probe_pubmed = math.ceil(known["works_pmid"] / settings.PROBE_BATCH_SIZE) + math.ceil(
        known["studies_pmid"] / settings.PROBE_BATCH_SIZE)
    probe_crossref = math.ceil(known["works_doi"] / settings.CROSSREF_BATCH_SIZE) + math.ceil(
        known["studies_doi"] / settings.CROSSREF_BATCH_SIZE)
    return {
        "pubmed": {"elink": 1, "esearch": probe_pubmed,
                   "efetch": sum(math.ceil(n / settings.EFETCH_BATCH_SIZE) for n in changed_pmids)},
        "europepmc": {"search": max(1, math.ceil(listed["europepmc"] / settings.EUROPEPMC_PAGE_SIZE))},
        "openalex": {"list": max(1, math.ceil(listed["openalex"] / settings.OPENALEX_PER_PAGE))},
        "opencitations": {"citations": 1},
        "semanticscholar": {"citations": max(1, math.ceil(listed["semanticscholar"]
                                                        / settings.SEMANTIC_SCHOLAR_PAGE_SIZE))},
        "crossref": {"probe": probe_crossref},
        "_listed": listed,
    }


def compare(seen: dict[str, dict[str, int]], least: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Per source: requests, the minimum, the issue's target (listing 2 + probes) and whether it was met."""
    rows = {}
    for source in SOURCES:
        got, want = sum(seen[source].values()), sum(least[source].values())
        probes = least[source].get("esearch", 0) + least[source].get("probe", 0)
        target = 2 + probes + least[source].get("efetch", 0)
        rows[source] = {"requests": got, "minimum": want, "target": target, "by_endpoint": seen[source],
                        "minimum_by_endpoint": least[source], "probe_minimum": probes,
                        "at_minimum": got == want, "within_target": got <= target,
                        "listing_pages": want - probes - least[source].get("efetch", 0)}
    return rows


def run_one(known: int, studies: int, changed: int) -> dict[str, Any]:
    import yaml

    from include.living_review.storage import Layout
    from tests.fakes.corpus import REVIEW, included_studies
    from tests.fakes.stack import LocalStack

    rid = review_id(known)
    home = private_airflow_home()
    work = Path(tempfile.mkdtemp(prefix="lr-bench-probes-"))
    data_dir, config = work / "data", work / "reviews.yaml"
    config.write_text(yaml.safe_dump({"reviews": [{
        "id": rid, "title": REVIEW["title"], "doi": REVIEW["doi"], "pmid": REVIEW["pmid"], "pmcid": REVIEW["pmcid"],
        "sources": list(LISTING), "enrich": ["crossref"], "digest": {"email": [], "slack": False}}]},
        sort_keys=False), encoding="utf-8")
    week1 = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=14)
    weeks = [week1, week1 + dt.timedelta(days=7), week1 + dt.timedelta(days=14)]
    papers = build_corpus(known, 0)
    refs = included_studies(studies)
    for paper in [*papers, *refs]:  # unchanged since long before the first run, as most records are
        paper.modified = week1 - dt.timedelta(days=120)
    dag_id = f"living_review__{rid.replace('-', '_')}"
    result: dict[str, Any] = {"known_papers": known, "studies": studies}
    try:
        stack = LocalStack(papers, smtp=False, slack=False)
        stack.fakes["crossref"].server.server_close()
        stack.fakes["crossref"] = cached_crossref(papers)
        with stack:
            stack.set_included(refs)
            os.environ.update({**airflow_env(home), **stack.env(), "LIVING_REVIEW_CONFIG": str(config),
                               "LIVING_REVIEW_DATA_DIR": str(data_dir), "LIVING_REVIEW_TASK_RETRIES": "0"})
            for fake in stack.fakes.values():
                fake.clear()
            first = run_dag(weeks[0], dag_id)
            result["first"] = {"dag": first, "requests": counted(stack)}
            ids = known_ids(data_dir, rid, weeks[0])
            result["known"] = ids

            # -- week 2: nothing new, nothing changed -------------------------------------
            for fake in stack.fakes.values():
                fake.clear()
            quiet = run_dag(weeks[1], dag_id)
            least = minimum(papers, ids)
            result["quiet"] = {"dag": quiet, "sources": compare(counted(stack), least), "listed": least["_listed"]}

            # -- week 3: a few known works change where only one database shows it ---------
            targets = [p for p in papers if p.pmid and p.doi][:changed]
            for i, paper in enumerate(targets):
                paper.retracted, paper.notices_in = True, {"pubmed" if i % 2 == 0 else "crossref"}
                paper.modified = weeks[2] - dt.timedelta(days=1)
            refs[0].retracted, refs[0].notices_in, refs[0].modified = True, {"pubmed"}, weeks[2] - dt.timedelta(days=1)
            stack.fakes["crossref"]._key = None  # the cached messages carry last week's notices
            for fake in stack.fakes.values():
                fake.clear()
            changed_run = run_dag(weeks[2], dag_id)
            pubmed_changed = (sum(1 for i, _ in enumerate(targets) if i % 2 == 0), 1)  # works, the study
            least3 = minimum(papers, known_ids(data_dir, rid, weeks[1]), changed_pmids=pubmed_changed)
            manifest = json.loads(Layout.of(data_dir, rid, weeks[2]).manifest_file.read_text(encoding="utf-8"))
            result["changed"] = {"dag": changed_run, "sources": compare(counted(stack), least3),
                                 "changed": len(targets), "events": manifest.get("events") or {},
                                 "probes": {"pubmed": (manifest["sources"].get("pubmed") or {}).get("probe"),
                                            "crossref": (manifest.get("enrichment") or {}).get("probe"),
                                            "references": (manifest.get("references") or {}).get("probe")}}
        return result
    finally:
        remove_tree(work)
        remove_tree(home)


def run(sizes: tuple[int, ...] = DEFAULT_KNOWN, studies: int = 40, changed: int = 6) -> dict[str, Any]:
    """Each K in a fresh process (its own metadata DB, clean memory)."""
    out: dict[str, Any] = {"sizes": {}}
    for known in sizes:
        started = time.perf_counter()
        out["sizes"][str(known)] = run_child("bench.bench_probes", ["--one", str(known), "--studies", str(studies),
                                                                    "--changed", str(changed)], timeout=3600)
        out["sizes"][str(known)]["bench_seconds"] = time.perf_counter() - started
    return out


def report(result: dict[str, Any]) -> list[str]:
    """The plain-text section ``make bench`` prints."""
    from bench.run_all import fmt, table

    lines = ["7. UPDATE PROBES - a week with nothing new, for K known citing works (bench/bench_probes.py)",
             "   requests counted on the fakes; target: 2 per source + ceil(K_pmid/200) PubMed and "
             "ceil(K_doi/100) Crossref probes (studies' probes added)", ""]
    rows = []
    for known, r in result["sizes"].items():
        k = r["known"]
        for source in SOURCES:
            s = r["quiet"]["sources"][source]
            ends = ", ".join(f"{e} {n}" for e, n in sorted(s["by_endpoint"].items()))
            kids = (f"{k['works_pmid']}+{k['studies_pmid']} PMIDs" if source == "pubmed" else
                    f"{k['works_doi']}+{k['studies_doi']} DOIs" if source == "crossref" else "")
            note = "" if s["within_target"] else f"listing {s['listing_pages']} pages (no change filter)"
            rows.append([fmt(int(known)), source, kids, s["requests"], s["minimum"], s["target"],
                         "yes" if s["at_minimum"] else "NO", "yes" if s["within_target"] else "no", ends, note])
    lines += table(["K", "source", "known ids", "requests", "minimum", "target", "at min", "in target",
                    "by endpoint", ""], rows, "llrrrrlll l")
    lines.append("")
    for known, r in result["sizes"].items():
        c = r["changed"]
        total = sum(s["requests"] for s in c["sources"].values())
        least = sum(s["minimum"] for s in c["sources"].values())
        lines.append(f"   K={int(known):,}: {c['changed']} known works changed (half only in PubMed, half only in "
                     f"Crossref) + 1 included study retracted -> events {c['events']}; {total} requests, minimum "
                     f"{least}; DAG {r['quiet']['dag']['seconds']:.1f} s quiet, {r['first']['dag']['seconds']:.1f} s "
                     f"first run")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--known", default=",".join(map(str, DEFAULT_KNOWN)))
    parser.add_argument("--one", type=int, help="run one K in this process (what --known runs per child)")
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--changed", type=int, default=6)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.one is not None:
        result = run_one(args.one, args.studies, args.changed)
    else:
        result = run(tuple(int(k) for k in args.known.split(",")), args.studies, args.changed)
    if args.out:
        write_json(result, args.out)
    elif args.one is None:
        print("\n".join(report(result)))
    else:
        json.dump(result, sys.stdout, indent=2, default=str)
        print()


if __name__ == "__main__":
    main()
