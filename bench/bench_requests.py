"""Request efficiency: the real pipeline DAG against the local fakes, requests counted on the fakes.

``python -m bench.bench_requests [--papers 5000] [--new 10] [--out FILE]``

Runs ``living_review__<id>`` with ``dag.test()`` for a synthetic review cited by
``--papers`` papers spread over the six sources with uneven coverage, then again a
week later with ``--new`` more papers. Each source's requests, as logged by its fake
server, are compared with the fewest requests that could have answered:

- PubMed: 1 elink + ceil(new PMIDs / 200) efetch (PubMed lists papers with a PMID and a PMCID)
  + ceil(known PMIDs / 200) esearch, the update probe (none on the first run)
- Europe PMC: ceil(listed / 1000) pages; OpenAlex: 1 look-up (cached after the first run)
  + ceil(listed / page size) pages; OpenCitations: 1 call; Semantic Scholar: ceil(listed / 1000) pages
- Crossref: ceil(new DOIs / 100) batched ``filter=doi:`` list requests (every new work is asked
  for its relations and notices, the full record where no listing source gave metadata)
  + ceil(known DOIs / 100) ``from-update-date`` probe requests (none on the first run)

The review's included studies are benchmarked by ``bench_probes.py``; here the watch is off.

The minimum is computed from the corpus, independently of the pipeline's own counts.
Airflow runs on a private copy of the metadata DB (see ``bench.common.private_airflow_home``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, airflow_env, private_airflow_home, remove_tree, write_json

REVIEW_ID = "bench-requests"
DAG_ID = "living_review__bench_requests"
LISTING = ("pubmed", "europepmc", "openalex", "opencitations", "semanticscholar")
SOURCES = (*LISTING, "crossref")
# Chance that each database lists a citing paper (PubMed further needs a PMID and a PMCID).
COVERAGE = {"pubmed": 0.90, "europepmc": 0.80, "openalex": 0.90, "opencitations": 1 / 3, "semanticscholar": 0.75}
# Share of papers only OpenCitations lists (ids, no metadata): Crossref must enrich them.
IDS_ONLY_SHARE = 0.015


def cached_crossref(papers: list[Any]) -> Any:
    """The Crossref fake, with its per-request rebuild of every message (O(papers²)) done once per corpus.

    Without this the fake, not the client, would set Crossref's pace at 5,000 papers.
    """
    from tests.fakes.crossref import FakeCrossref

    class CachedCrossref(FakeCrossref):
        _key: tuple[int, int] | None = None
        _messages: dict[str, Any] = {}

        def messages(self) -> dict[str, Any]:
            key = (id(self.papers), len(self.papers))
            if key != self._key:
                self._key, self._messages = key, super().messages()
            return self._messages

    return CachedCrossref(papers)


def build_corpus(n: int, new: int, seed: int = 11) -> list[Any]:
    """``n + new`` synthetic papers; visibility depends on the index only, so week 1 is a prefix of week 2."""
    from tests.fakes.corpus import synthetic_corpus

    papers = synthetic_corpus(n + new, seed=seed)
    for i, paper in enumerate(papers):
        rng = random.Random(f"{seed}:{i}")
        ids_only = rng.random() < IDS_ONLY_SHARE or (i >= n and i - n < 2)  # two of the new ones too
        if ids_only:
            paper.visible_in = {"opencitations", "crossref"}
        else:
            paper.visible_in = {s for s, p in COVERAGE.items() if rng.random() < p} | {"crossref"}
            if not paper.visible_in & set(LISTING):
                paper.visible_in.add("openalex")
    return papers


def lists(source: str, paper: Any) -> bool:
    if source not in paper.visible_in:
        return False
    return bool(paper.pmid and paper.pmcid) if source == "pubmed" else True


def minimum(papers: list[Any], known: dict[str, set[str]], *, openalex_cached: bool) -> dict[str, dict[str, int]]:
    """The fewest requests per source (by endpoint) for this corpus, given what the last snapshot holds."""
    from include.living_review import settings

    listed = {s: [p for p in papers if lists(s, p)] for s in LISTING}
    new_pmids = [p for p in listed["pubmed"] if p.pmid not in known["pmid"]]
    metadata = {"pubmed", "europepmc", "openalex", "semanticscholar"}
    lacking = [p for p in papers if p.doi and "crossref" in p.visible_in and lists("opencitations", p)
               and not any(lists(s, p) for s in metadata) and p.doi.lower() not in known["doi"]]
    new_dois = {p.doi.lower() for p in papers if p.doi and any(lists(s, p) for s in LISTING)} - known["doi_any"]
    crossref = {"list": math.ceil(len(new_dois) / settings.CROSSREF_BATCH_SIZE)}
    if known["doi"]:
        crossref["probe"] = math.ceil(len(known["doi"]) / settings.CROSSREF_BATCH_SIZE)
    return {
        "pubmed": {"elink": 1, "efetch": math.ceil(len(new_pmids) / settings.EFETCH_BATCH_SIZE),
                   "esearch": math.ceil(len(known["pmid"]) / settings.PROBE_BATCH_SIZE)},
        "europepmc": {"search": max(1, math.ceil(len(listed["europepmc"]) / settings.EUROPEPMC_PAGE_SIZE))},
        "openalex": {"resolve": 0 if openalex_cached else 1,
                     "list": max(1, math.ceil(len(listed["openalex"]) / settings.OPENALEX_PER_PAGE))},
        "opencitations": {"citations": 1},
        "semanticscholar": {"citations": max(1, math.ceil(len(listed["semanticscholar"])
                                                        / settings.SEMANTIC_SCHOLAR_PAGE_SIZE))},
        "crossref": crossref,
        "_listed": {s: len(v) for s, v in listed.items()} | {"pubmed_new": len(new_pmids),
                                                               "crossref_candidates": len(lacking),
                                                               "crossref_new_dois": len(new_dois)},
    }


def endpoint(source: str, request: Any) -> str:
    path = request.path.rstrip("/")
    if source == "pubmed":
        return path.rsplit("/", 1)[-1].removesuffix(".fcgi")  # elink, esearch, efetch
    if source == "openalex":
        return "list" if path.endswith("/works") else "resolve"
    if source == "crossref":
        if not path.endswith("/works"):
            return "single"
        return "probe" if "from-update-date" in (request.param("filter") or "") else "list"
    return {"europepmc": "search", "opencitations": "citations", "semanticscholar": "citations"}[source]


def observed(stack: Any) -> dict[str, Any]:
    """Requests per source and endpoint from the fakes' logs, plus the achieved request rate."""
    out: dict[str, Any] = {}
    for source in SOURCES:
        log = list(stack.fakes[source].requests)
        by: dict[str, int] = {}
        for request in log:
            key = endpoint(source, request)
            by[key] = by.get(key, 0) + 1
        times = sorted(r.at for r in log)
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        out[source] = {"by_endpoint": by, "requests": len(log),
                       "achieved_rps": (len(times) - 1) / span if span > 0 else None, "span_s": span}
    return out


def snapshot_ids(data_dir: Path, day: dt.date) -> dict[str, set[str]]:
    """Ids of works in the published snapshot that have metadata (what the next run knows)."""
    import pyarrow.parquet as pq

    from include.living_review.storage import Layout

    path = Layout.of(data_dir, REVIEW_ID, day).snapshot_file
    rows = pq.read_table(path, columns=["doi", "pmid", "title"]).to_pylist() if path.exists() else []
    return {"pmid": {r["pmid"] for r in rows if r["pmid"] and r["title"]},
            "doi": {r["doi"].lower() for r in rows if r["doi"] and r["title"]},
            "doi_any": {r["doi"].lower() for r in rows if r["doi"]}}


def run_dag(day: dt.date, dag_id: str = DAG_ID) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.session import create_session

    bag = DagBag(str(ROOT / "dags"))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    started = time.perf_counter()
    dag_run = bag.dags[dag_id].test(logical_date=dt.datetime.combine(day, dt.time(), dt.timezone.utc))
    seconds = time.perf_counter() - started
    with create_session() as session:
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}
    return {"seconds": seconds, "states": states, "state": str(dag_run.state)}


def compare(seen: dict[str, Any], least: dict[str, dict[str, int]]) -> dict[str, Any]:
    rows = {}
    for source in SOURCES:
        want = sum(least[source].values())
        got = seen[source]["requests"]
        rows[source] = {"requests": got, "minimum": want, "by_endpoint": seen[source]["by_endpoint"],
                        "minimum_by_endpoint": least[source],
                        "ratio": got / want if want else (1.0 if got == 0 else math.inf),
                        "achieved_rps": seen[source]["achieved_rps"]}
    return rows


def run(n: int = 5000, new: int = 10) -> dict[str, Any]:
    from tests.fakes.corpus import REVIEW
    from tests.fakes.stack import LocalStack

    home = private_airflow_home()
    work = Path(tempfile.mkdtemp(prefix="lr-bench-requests-"))
    data_dir = work / "data"
    config = work / "reviews.yaml"
    import yaml

    config.write_text(yaml.safe_dump({"reviews": [{
        "id": REVIEW_ID, "title": REVIEW["title"], "doi": REVIEW["doi"], "pmid": REVIEW["pmid"],
        "pmcid": REVIEW["pmcid"], "sources": list(SOURCES),
        "watch_included_studies": False, "digest": {"email": [], "slack": False}}]}, sort_keys=False),
        encoding="utf-8")
    papers = build_corpus(n, new)
    week1 = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=7)
    for paper in papers:  # records unchanged since long before the first run: the probes find nothing
        paper.modified = week1 - dt.timedelta(days=120)
    week2 = week1 + dt.timedelta(days=7)
    result: dict[str, Any] = {"papers": n, "new_papers": new}
    try:
        stack = LocalStack(papers[:n], smtp=False, slack=False)
        stack.fakes["crossref"].server.server_close()
        stack.fakes["crossref"] = cached_crossref(papers[:n])
        with stack:
            os.environ.update({**airflow_env(home), **stack.env(), "LIVING_REVIEW_CONFIG": str(config),
                               "LIVING_REVIEW_DATA_DIR": str(data_dir), "LIVING_REVIEW_TASK_RETRIES": "0"})
            for fake in stack.fakes.values():
                fake.clear()
            least = minimum(papers[:n], {"pmid": set(), "doi": set(), "doi_any": set()}, openalex_cached=False)
            dag = run_dag(week1)
            result["full"] = {"dag": dag, "sources": compare(observed(stack), least), "listed": least["_listed"]}

            known = snapshot_ids(data_dir, week1)
            for fake in stack.fakes.values():
                fake.clear()
            stack.set_papers(papers)
            # set_papers() leaves the OpenCitations, Semantic Scholar and Crossref fakes' cited_by
            # pointing at last week's list; point them at this week's corpus too.
            for source in ("opencitations", "semanticscholar", "crossref"):
                stack.fakes[source].cited_by = {REVIEW["doi"].lower(): papers}
            least = minimum(papers, known, openalex_cached=True)
            dag = run_dag(week2)
            result["incremental"] = {"dag": dag, "sources": compare(observed(stack), least),
                                     "listed": least["_listed"]}
        for name, day in (("full", week1), ("incremental", week2)):
            from include.living_review.storage import Layout

            manifest = json.loads(Layout.of(data_dir, REVIEW_ID, day).manifest_file.read_text(encoding="utf-8"))
            result[name]["counts"] = manifest["counts"]
            result[name]["quarantine_reasons"] = (manifest.get("data_quality") or {}).get("blocking_counts")
            result[name]["enrichment"] = {k: (manifest.get("enrichment") or {}).get(k)
                                          for k in ("candidates", "enriched", "requests")}
        return result
    finally:
        remove_tree(work)
        remove_tree(home)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=5000)
    parser.add_argument("--new", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = run(args.papers, args.new)
    if args.out:
        write_json(result, args.out)
    else:
        json.dump(result, sys.stdout, indent=2, default=str)
        print()


if __name__ == "__main__":
    main()
